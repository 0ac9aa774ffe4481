"""The app half of the manager: an app's events routed to its passes, its volume's collection.

:class:`Apps` is mixed into :class:`statefulwebapp.manager.Controller`, which builds the state it
declares here; the pass itself is ``AppReconciler.reconcile`` (``controllers/reconcile.py``).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from typing import Any

import kopf
import pykube

from statefulwebapp.api.objects import Key, Obj
from statefulwebapp.controllers.policy import ExportClaims
from statefulwebapp.controllers.reconcile import AppReconciler, AppResult, Index
from statefulwebapp.controllers.volumes import collect_volume
from statefulwebapp.runtime import informer, kube, workqueue
from statefulwebapp.specs import registry

log = logging.getLogger(__name__)


def key_of(namespace: str | None, name: str | None) -> Key:
    """The key of an app (or of a restore's app)."""
    return (namespace or "", name or "")


def has(index: Index, key: Any) -> bool:
    """Whether an index or a cache holds anything under ``key``."""
    return bool(index.get(key))


class AppLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes messages with the app, as kopf's per-object loggers do."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        """``[namespace/name] msg``."""
        return f"[{(self.extra or {}).get('app')}] {msg}", kwargs


def app_logger(key: Key) -> AppLogger:
    """The logger of the app ``key``, for work that runs outside kopf's handlers."""
    return AppLogger(log, {"app": "/".join(key)})


class Apps:
    """An app's events and passes, and the collection of its volume (see the module's docstring)."""

    api: pykube.HTTPClient
    apps: Index
    namespaces: frozenset[str]
    claims: ExportClaims
    queue: workqueue.WorkQueue
    children: Mapping[str, informer.Store]
    reconciler: AppReconciler
    resume: workqueue.Resume

    def caches_synced(self) -> None:
        """Tell the events held until every app and child was listed (the manager's)."""
        raise NotImplementedError

    # ------------------------------------------------------------------- app events ----

    def app_changed(self, key: Key, body: Obj, logger: kopf.Logger | None = None) -> None:
        """The app appeared, changed or was listed at start: converge it."""
        # No app is told of before every app is listed (Controller.start): the events held
        # until now can find their apps.
        self.caches_synced()
        own_write = self.reconciler.own_write(key, body)
        # Forget the last write as soon as the watch shows it.
        self.reconciler.unseen_status(key, body)
        self.reconciler.seen_event(key, body)
        if self.reconciler.gone.get(key) != body.get("metadata", {}).get("uid"):
            self.reconciler.gone.pop(key, None)  # A new app of that name.
        if not own_write:
            self.enqueue(key, logger)
        # Apps on an export this one took or left: one of them may be refused, or free, now.
        for other in self.claims.update(key, body):
            self.enqueue(other)

    def app_deleted(self, key: Key, logger: kopf.Logger | None = None) -> None:
        """The app is gone: forget it and collect its volume."""
        self.caches_synced()
        self.forget(key)
        self.collect(key, logger)

    def enqueue(
        self,
        key: Key,
        logger: kopf.Logger | None = None,
        missing: frozenset[str] = frozenset(),
    ) -> None:
        """Queue a pass of the app ``key``.

        ``missing``: child kinds a resync found gone although the cache still shows them.
        """
        self.queue.add(key, self._step(key, logger or app_logger(key), missing))

    def forget(self, key: Key) -> None:
        """Drop what is remembered of an app that is gone."""
        self.queue.forget(key)
        for other in self.claims.remove(key):
            self.enqueue(other)  # The export it held may be another app's now.
        self.reconciler.forget(key)
        self.resume.passed(key, lambda: set(self.apps.keys()))

    # ------------------------------------------------------------------------- passes ----

    def _step(
        self,
        key: Key,
        logger: kopf.Logger,
        missing: frozenset[str],
    ) -> workqueue.Step:
        """One pass for the app, as the work queue runs it (now, or later in another thread)."""
        # The copied context carries the caller's (kopf's settings, when kopf called) into
        # whichever thread runs the step.
        context = contextvars.copy_context()

        def step() -> workqueue.Result:
            result = self.reconciler.reconcile(key, logger, missing)
            if isinstance(result, AppResult) and result.app_gone:
                self.forget(key)
                self.collect(key, logger)
            self.resume.passed(key, lambda: set(self.apps.keys()))
            return result

        return lambda: context.run(step)

    # --------------------------------------------------------------------- volumes ----

    def collect(
        self,
        key: Key,
        logger: kopf.Logger | None = None,
    ) -> None:
        """Delete the volume of a deleted app, on the work queue, tried again until it is gone."""
        if self.namespaces and key[0] not in self.namespaces:
            return
        say = logger or log

        def step() -> workqueue.Result:
            # An app of the same name may be back (deleted and re-applied in quick succession):
            # the volume is then its own. collect_volume confirms with a direct read anyway.
            if has(self.apps, key) and key not in self.reconciler.gone:
                return workqueue.Result()
            try:
                if collect_volume(self.api, *key):
                    say.info("deleted the volume of deleted app %s/%s", *key)
            except kube.ApiError as err:
                say.error("could not delete the volume of deleted app %s/%s: %s", *key, err)
                return workqueue.Result(failed=True)
            return workqueue.Result()

        self.queue.add(("volume", *key), step)

    def collect_orphans(self) -> None:
        """Collect the volumes whose app was deleted while the operator was not running.

        Asked once the apps' cache is listed: an app it does not hold is not in the cluster.
        """
        volumes = (c for c in registry.CHILDREN if not c.namespaced)
        for key in set().union(*(self.children[c.key] for c in volumes)) - set(self.apps):
            self.collect(key)
