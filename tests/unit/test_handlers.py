"""kopf's handlers called as kopf calls them (keyword arguments, the memo holding the
controller), without kopf or a cluster: they only hand events over."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol, cast

import kopf

from statefulwebapp import handlers
from tests.unit.harness import KEY, STATUS, Fixture, app


# kopf's decorators type a handler as the callback protocol of every keyword kopf passes;
# these are the handlers as declared (and as the tests call them, with the keywords they read).
class Index(Protocol):
    def __call__(
        self, *, body: kopf.Body, namespace: str | None, name: str, **kwargs: Any
    ) -> Coroutine[Any, Any, dict[Any, Any]]: ...


class OnEvent(Protocol):
    def __call__(
        self,
        *,
        event: kopf.RawEvent,
        body: kopf.Body,
        namespace: str | None,
        name: str,
        memo: kopf.Memo,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, None]: ...


on_restore_event = cast(OnEvent, handlers.on_restore_event)


def memo(fx: Fixture) -> kopf.Memo:
    return kopf.Memo(controller=fx.controller)


def test_a_restore_event_wakes_its_app() -> None:
    fx = Fixture()
    fx.index(app())
    fx.controller.caches_synced()
    restore: kopf.RawBody = {
        "apiVersion": "apps.k8slab.io/v1alpha1",
        "kind": "StatefulWebAppRestore",
        "metadata": {"name": "back", "namespace": "default", "uid": "r1"},
        "spec": {"appName": "web"},
    }
    asyncio.run(
        on_restore_event(
            event={"type": "ADDED", "object": restore},
            body=kopf.Body(restore),
            namespace="default",
            name="back",
            memo=memo(fx),
        )
    )
    fx.settle(KEY, ("restore", "default", "back"))
    assert STATUS in fx.api.sent(), "the app's pass did not run"
