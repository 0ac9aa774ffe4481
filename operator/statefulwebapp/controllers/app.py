"""The app half of the controller: an app's events, its passes, and its volume's collection.

:class:`Apps` is mixed into :class:`statefulwebapp.manager.Controller`, which builds the state it
declares here; the pass itself is :func:`statefulwebapp.controllers.reconcile.reconcile`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kopf
import pykube

from statefulwebapp.api.objects import Key, Obj
from statefulwebapp.controllers import refusals, sources
from statefulwebapp.controllers.app_state import Memory
from statefulwebapp.controllers.policy import ExportClaims, Policy
from statefulwebapp.controllers.reconcile import reconcile
from statefulwebapp.controllers.resync import list_apps
from statefulwebapp.controllers.volumes import collect_volume
from statefulwebapp.runtime import informer, kube, workqueue
from statefulwebapp.runtime.metrics import Metrics
from statefulwebapp.specs import names, registry, restoring

Index = Mapping[Any, Any]
"""One of kopf's indexes (``idx_apps``, ``idx_restores``): key -> the packed objects stored."""

log = logging.getLogger(__name__)


def key_of(namespace: str | None, name: str | None) -> Key:
    """The key of an app (or of a restore's app)."""
    return (namespace or "", name or "")


def first(index: Index, key: Any) -> dict[str, Any] | None:
    """The first object an index or a cache holds under ``key``, unpacked; None if none."""
    store = index.get(key)
    packed = next(iter(store), None) if store is not None else None
    return json.loads(packed) if packed is not None else None


def owned_first(cache: Index, key: Key, uid: str) -> dict[str, Any] | None:
    """The object a cache holds under app ``key`` that is the app's (``names.owned``); else None.

    A cache is keyed by the owner an object names; an earlier app of the same name may still
    own one there (the garbage collector has not come yet), and it is not this app's.
    """
    for packed in cache.get(key, ()):
        obj: dict[str, Any] = json.loads(packed)
        if names.owned(obj, key[0], key[1], uid):
            return obj
    return first(cache, key)


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
    restores: Index
    metrics: Metrics
    namespaces: frozenset[str]
    policy: Policy
    claims: ExportClaims
    queue: workqueue.WorkQueue
    lookups: ThreadPoolExecutor
    children: Mapping[str, informer.Store]
    memory: Memory
    resume: workqueue.Resume
    gone: dict[Key, str]
    last_status: dict[Key, tuple[str | None, Obj]]

    def open(self) -> None:
        """Tell the child events held until kopf listed the apps (the manager's)."""
        raise NotImplementedError

    # ------------------------------------------------------------------- app events ----

    def app_changed(self, key: Key, body: Obj, logger: kopf.Logger | None = None) -> None:
        """The app appeared, changed or was listed at start: converge it."""
        # kopf runs no handler before its index of the apps is full: the children's events
        # held until now can find their apps.
        self.open()
        self._unseen_status(key, body)  # Forget the last write as soon as the watch shows it.
        if self.gone.get(key) != body.get("metadata", {}).get("uid"):
            self.gone.pop(key, None)  # A new app of that name.
        self.enqueue(key, logger)
        # Apps on an export this one took or left: one of them may be refused, or free, now.
        for other in self.claims.update(key, body):
            self.enqueue(other)

    def app_deleted(self, key: Key, logger: kopf.Logger | None = None) -> None:
        """The app is gone: forget it and collect its volume."""
        self.open()
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
        self.memory.forget(key)
        self.metrics.forget_app(key)
        self.last_status.pop(key, None)
        self.resume.passed(key, lambda: set(self.apps.keys()))

    # ------------------------------------------------------------------------- passes ----

    def _step(
        self,
        key: Key,
        logger: kopf.Logger,
        missing: frozenset[str],
    ) -> workqueue.Step:
        """One pass for the app, as the work queue runs it (now, or later in another thread)."""
        # The copied context carries kopf's settings and event queue (for kopf.warn) into
        # whichever thread runs the step.
        context = contextvars.copy_context()

        def step() -> workqueue.Result:
            app = first(self.apps, key)
            result = workqueue.Result()
            # No app, one going away, or one found gone after a watch gap: recreating its
            # children would fight the deletion.
            if (
                app is not None
                and not app["metadata"].get("deletionTimestamp")
                and self.gone.get(key) != app["metadata"].get("uid")
            ):
                result = self._reconcile(key, self._with_written_status(key, app), logger, missing)
            self.resume.passed(key, lambda: set(self.apps.keys()))
            return result

        return lambda: context.run(step)

    def _unseen_status(self, key: Key, app: Obj) -> Obj | None:
        """The status last written, if ``app`` does not show it yet; forgotten once it does."""
        entry = self.last_status.get(key)
        if entry is None:
            return None
        version, status = entry
        if app.get("metadata", {}).get("resourceVersion") == version or app.get("status") == status:
            self.last_status.pop(key, None)
            return None
        return status

    def _with_written_status(self, key: Key, app: Obj) -> Obj:
        """The app as last seen, with the status last written if the watch has not shown it.

        The status is the operator's alone to write, and a pass can run before the watch
        delivers the operator's own last write. Compared with the older status, the same status
        would be written again and its conditions' lastTransitionTime moved.
        """
        status = self._unseen_status(key, app)
        return app if status is None else {**app, "status": status}

    def _observed(self, key: Key, uid: str) -> dict[str, Obj | None]:
        return {
            child.key: owned_first(self.children[child.key], key, uid)
            for child in registry.CHILDREN
        }

    def _reconcile(
        self,
        key: Key,
        body: Obj,
        logger: kopf.Logger,
        missing: frozenset[str],
    ) -> workqueue.Result:
        started = time.monotonic()
        observed = self._observed(key, str(body["metadata"].get("uid") or ""))
        observed.update(dict.fromkeys(missing))
        failures = self.children[sources.MOUNT_FAILURES.store].get(key, ())
        unhealthy = self.children[sources.PROBE_FAILURES.store].get(key, ())
        restores = [json.loads(packed) for packed in self.restores.get(key, ())]

        def warn(reason: str, message: str) -> None:
            try:
                kopf.warn(kopf.Body(cast(kopf.RawBody, dict(body))), reason=reason, message=message)
            except LookupError:  # Outside kopf's context (no event queue): the log must do.
                logger.warning("%s: %s", reason, message)

        try:
            outcome = reconcile(
                self.api,
                body=body,
                observed=observed,
                warn=warn,
                logger=logger,
                memory=self.memory,
                progress_due=lambda: self.queue.progress_due(key),
                rollout_due=self.queue.rollout_due,
                mount_failures=[json.loads(packed) for packed in failures],
                probe_failures=restoring.told_since_last(
                    restores, [json.loads(packed) for packed in unhealthy]
                ),
                restoring=restoring.under_way(restores),
                lookups=self.lookups,
                policy=self.policy,
                claims=self.claims,
            )
        except Exception as err:
            logger.error("reconcile failed, retrying with backoff: %s", err)
            # The status write is the one request outside reconcile's own handling of failures.
            trouble = isinstance(err, (kube.ApiError, *refusals.TRANSIENT))
            self.metrics.passed("retry" if trouble else "error", time.monotonic() - started)
            return workqueue.Result(failed=True)
        self.metrics.passed(outcome.label, time.monotonic() - started)
        self.metrics.app_ready(key, outcome.ready_reason)
        if outcome.app_gone:
            logger.info("the app is gone (deleted while unwatched): no more passes")
            self.forget(key)
            self.gone[key] = str(body["metadata"].get("uid"))
            self.collect(key, logger)
            return workqueue.Result()
        if outcome.written_status is not None:
            self.last_status[key] = (outcome.written_version, outcome.written_status)
        # Logged when the status changes or a retry follows, not on every event of a child that
        # is waiting for a spec change.
        for problem in outcome.problems if outcome.status_written or outcome.retry else ():
            say = logger.error if problem.retry else logger.warning
            say(
                "%s: %s%s",
                problem.reason,
                problem.message,
                "" if problem.retry else "; not retried",
            )
        return workqueue.Result(
            failed=outcome.retry,
            held=outcome.status_held or bool(outcome.rollouts_held),
            status_written=outcome.status_written,
            retry_after=outcome.retry_after,
            requeue_after=outcome.recheck_after,
        )

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
            if has(self.apps, key) and key not in self.gone:
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
        """Collect the volumes whose app was deleted while the operator was not running."""
        try:
            apps = list_apps(self.api, self.namespaces)
        except kube.ApiError as err:  # The resync tries again.
            log.error("could not list the apps to find orphaned volumes: %s", err)
            return
        volumes = (c for c in registry.CHILDREN if not c.namespaced)
        for key in set().union(*(self.children[c.key] for c in volumes)) - apps:
            self.collect(key)
