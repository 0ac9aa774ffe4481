"""kopf's handlers called as kopf calls them (keyword arguments, the memo holding the
controller), without kopf or a cluster: they only hand events over."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Any, Protocol, cast

import kopf

from statefulwebapp import handlers
from tests.unit.harness import APP, KEY, STATUS, Fixture, app


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


index_apps = cast(Index, handlers.index_apps)
on_app_event = cast(OnEvent, handlers.on_app_event)
on_restore_event = cast(OnEvent, handlers.on_restore_event)


def memo(fx: Fixture) -> kopf.Memo:
    return kopf.Memo(controller=fx.controller)


def app_event(fx: Fixture, kind: kopf.RawEventType, body: dict[str, Any], **extra: Any) -> None:
    """The app's event ``kind`` (ADDED, DELETED) handed over as kopf hands it."""
    raw = cast(kopf.RawBody, body)
    asyncio.run(
        on_app_event(
            event={"type": kind, "object": raw},
            body=kopf.Body(raw),
            namespace="default",
            name="web",
            logger=logging.getLogger("test"),
            memo=memo(fx),
            **extra,
        )
    )


def test_the_apps_index_holds_each_app_packed_under_its_key() -> None:
    body = app()
    entry = asyncio.run(
        index_apps(
            body=kopf.Body(cast(kopf.RawBody, body)), namespace="default", name="web", uid="u"
        )
    )
    ((key, packed),) = entry.items()
    assert key == KEY
    assert json.loads(packed)["spec"] == body["spec"]


def test_an_app_event_reaches_the_controller_and_its_deletion_collects() -> None:
    fx = Fixture()
    body = fx.index(app())
    app_event(fx, "ADDED", body, retry=0)
    fx.settle()
    assert STATUS in fx.api.sent()
    del fx.apps[KEY], fx.api.objects[APP]
    app_event(fx, "DELETED", body)
    fx.settle(("volume", *KEY))
    assert ("DELETE", "/api/v1/persistentvolumes/default.web-data") in fx.api.requests


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
