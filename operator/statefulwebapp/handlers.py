"""kopf wiring: indexes of the apps and their children, and short handlers around reconcile.

Every event ends up in one place, :func:`statefulwebapp.reconcile.reconcile`: the app's own
(its creation, any change, the listing at the operator's start) and any event of a labelled
child (a deletion included, which is how a deleted child comes back within seconds). The
children are watched with a server-side label selector, so the operator never lists the
cluster's other StatefulSets or Services.

Only event handlers and indexes are registered: kopf keeps no state on the apps (no finalizer,
no last-handled annotation), so creating an app costs its children's applies and two status
writes, a restart costs no write at all, and uninstalling the operator never leaves a namespace
stuck in deletion. What is level-triggered here is ``status.observedGeneration`` versus
``metadata.generation``, recomputed on every pass like the rest of the status. The one thing
the garbage collector cannot do, delete the cluster-scoped volume of a deleted app, is done from
the app's deletion event, and from the volume's own event if the operator was not running.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf

from statefulwebapp import kube, names
from statefulwebapp.model import GROUP, PLURAL, VERSION
from statefulwebapp.reconcile import Obj, collect_volume, reconcile

APP = (GROUP, VERSION, PLURAL)
CHILDREN: dict[str, tuple[str, str, str]] = {
    "PersistentVolume": ("", "v1", "persistentvolumes"),
    "PersistentVolumeClaim": ("", "v1", "persistentvolumeclaims"),
    "Service": ("", "v1", "services"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "DaemonSet": ("apps", "v1", "daemonsets"),
    "CronJob": ("batch", "v1", "cronjobs"),
}
MANAGED = {names.LABEL_MANAGED_BY: names.MANAGER}


def _index_name(kind: str) -> str:
    return f"idx_{kind.lower()}"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Operator settings, and one HTTP client shared by every handler."""
    # Watches that silently stop are kopf's best-known failure; bound them on both ends.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    for group, version, plural in CHILDREN.values():
        settings.watching.label_selectors[_selector(group, version, plural)] = (
            names.MANAGED_SELECTOR
        )
    # The CRD is installed before the operator starts (the chart and `make run` do it), so
    # kopf need not follow CRDs and namespaces at run time: that saves two cluster-wide
    # watches and their RBAC rules. Namespace globs need scanning, hence exact names only.
    settings.scanning.disabled = True
    settings.execution.max_workers = 8  # With PASS_WORKERS, within kube.POOL_SIZE.
    settings.posting.level = logging.WARNING
    memo.api = kube.connect()
    # The namespaces served (empty: all). Volumes are cluster-scoped: an operator serving some
    # namespaces must not collect the volumes of apps in the others.
    memo.setdefault("namespaces", frozenset())


def _selector(group: str, version: str, plural: str) -> tuple[str, str] | str:
    return (f"{group}/{version}", plural) if group else plural


def _key(namespace: str | None, name: str | None) -> tuple[str, str]:
    return (namespace or "", name or "")


def _trim(body: Obj) -> dict[str, Any]:
    """What reconcile and status need of an object; the rest is not worth holding."""
    meta = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "generation", "labels", "ownerReferences")
            if key in meta
        },
        "spec": body.get("spec"),
        "status": body.get("status"),
    }


@kopf.index(*APP, id="idx_apps")
def index_apps(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    """Apps by (namespace, name), so a child's event finds its app without a request."""
    trimmed = _trim(body)
    trimmed["metadata"]["deletionTimestamp"] = body.get("metadata", {}).get("deletionTimestamp")
    return {_key(namespace, name): trimmed}


def _index_child(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {_owner_key(body): _trim(body)}


def _owner_key(body: Obj) -> tuple[str, str]:
    labels = body.get("metadata", {}).get("labels") or {}
    namespace = labels.get(names.LABEL_APP_NAMESPACE) or body.get("metadata", {}).get("namespace")
    return _key(namespace, labels.get(names.LABEL_INSTANCE))


def _first(index: Mapping[Any, Any], key: Any) -> Any:
    store = index.get(key)
    return next(iter(store), None) if store is not None else None


def _observed(key: tuple[str, str], kwargs: Mapping[str, Any]) -> dict[str, Obj | None]:
    return {kind: _first(kwargs[_index_name(kind)], key) for kind in CHILDREN}


class PassFailedError(Exception):
    """The API refused a write; the pass is tried again after RETRY_SECONDS."""


PROGRESS_SECONDS = 30.0
"""Per app, a status change that is only progress is written at most this often.

Changes a user must see at once (a new generation acknowledged, Ready flipping, a problem) are
never held: see :func:`statefulwebapp.status.urgent`. Counts moving in between (1/3, 2/3 web
pods ready) wait, so that a new app costs two status writes instead of one per pod.
"""
PROGRESS_WRITES_PER_SECOND = 1.0
"""Across the operator: a burst of a thousand new apps must not add a write per app for counts.

The figure that matters in a burst is when each app turns Ready, and that write is never held.
"""

_written: dict[tuple[str, str], float] = {}
"""When each app's status was last written (monotonic seconds)."""
_revisits: set[tuple[str, str]] = set()
"""Apps with a held status change and a pass scheduled to write it."""
_next_progress_write = 0.0


def _progress_due(key: tuple[str, str]) -> bool:
    global _next_progress_write  # noqa: PLW0603  (one operator-wide budget, under _lock)
    now = time.monotonic()
    with _lock:
        if now - _written.get(key, -PROGRESS_SECONDS) < PROGRESS_SECONDS:
            return False
        if now < _next_progress_write:
            return False
        _next_progress_write = now + 1 / PROGRESS_WRITES_PER_SECOND
        return True


def _run(body: Obj, kwargs: Mapping[str, Any], logger: kopf.Logger) -> None:
    meta = body["metadata"]
    key = _key(meta["namespace"], meta["name"])

    def warn(reason: str, message: str) -> None:
        kopf.warn(kopf.Body(cast(kopf.RawBody, dict(body))), reason=reason, message=message)

    outcome = reconcile(
        kwargs["memo"].api,
        body=body,
        observed=_observed(key, kwargs),
        warn=warn,
        logger=logger,
        progress_due=functools.partial(_progress_due, key),
    )
    with _lock:
        if outcome.status_written:
            _written[key] = time.monotonic()
        revisit = outcome.status_held and key not in _revisits
        if revisit:
            _revisits.add(key)
    if revisit:
        _later(PROGRESS_SECONDS, _revisit, key, kwargs, logger)
    if outcome.problem is not None and outcome.problem.reason in {"Forbidden", "ApplyFailed"}:
        raise PassFailedError(outcome.problem.message)


def _revisit(key: tuple[str, str], kwargs: Mapping[str, Any], logger: kopf.Logger) -> None:
    with _lock:
        _revisits.discard(key)
    _schedule(key, kwargs, logger)


@kopf.on.event(*APP, id="app")
def on_app_event(
    event: kopf.RawEvent,
    namespace: str | None,
    name: str,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """The app appeared, changed or was listed at start: converge it. Deleted: collect."""
    key = _key(namespace, name)
    if event["type"] != "DELETED":
        _schedule(key, kwargs, logger)
        return
    with _lock:
        _written.pop(key, None)
    _resume.passed(key, kwargs["idx_apps"])
    # An app of the same name may already be back (delete and re-apply in quick succession);
    # the volume is then its own.
    if _first(kwargs["idx_apps"], key) is None:
        _collect(key, kwargs, logger)


def _collect(key: tuple[str, str], kwargs: Mapping[str, Any], logger: kopf.Logger) -> None:
    served = kwargs["memo"].namespaces
    if served and key[0] not in served:
        return
    try:
        if collect_volume(kwargs["memo"].api, *key):
            logger.info("deleted the volume of deleted app %s/%s", *key)
    except kube.ApiError as err:
        # Nothing to retry from: the app is gone. The volume's next event, or the operator's
        # next start, tries again.
        logger.error("could not delete the volume of deleted app %s/%s: %s", *key, err)


COALESCE_SECONDS = 0.5
"""After a pass for an app, further child events of it wait this long and share one pass.

A new app's children report progress in bursts (a DaemonSet's status moves 0/4, 1/4 ... 4/4
within a second). The first event is handled at once, so a lone change (a deleted child) is
repaired without delay; the rest of a burst costs one more pass, and one status write.
"""
RETRY_SECONDS = 10.0

_busy: set[tuple[str, str]] = set()
"""Apps with a pass running or a window open."""
_dirty: set[tuple[str, str]] = set()
"""Apps whose children changed during the pass or window: they get one trailing pass."""
_lock = threading.Lock()
PASS_WORKERS = 4
_passes = concurrent.futures.ThreadPoolExecutor(PASS_WORKERS, thread_name_prefix="pass")


def on_child_event(
    event: kopf.RawEvent, body: kopf.Body, logger: kopf.Logger, **kwargs: Any
) -> None:
    """A child changed or vanished: repair it if needed and recompute the app's status."""
    key = _owner_key(body)
    if body.get("kind") == "PersistentVolume" and _first(kwargs["idx_apps"], key) is None:
        # A volume whose app is gone: deleted while the operator was not running, or its
        # deletion event was handled before the volume could go.
        if event["type"] != "DELETED":
            _collect(key, kwargs, logger)
        return
    _schedule(key, kwargs, logger)


def _schedule(key: tuple[str, str], kwargs: Mapping[str, Any], logger: kopf.Logger) -> None:
    """A pass for the app now, or, if one ran within COALESCE_SECONDS, one shared pass soon."""
    with _lock:
        if key in _busy:
            _dirty.add(key)
            return
        _busy.add(key)
    _pass(key, kwargs, logger)


def _pass(key: tuple[str, str], kwargs: Mapping[str, Any], logger: kopf.Logger) -> None:
    delay = COALESCE_SECONDS
    app = _first(kwargs["idx_apps"], key)
    # No app, or one going away: recreating its children would fight the deletion.
    try:
        if app is not None and not app["metadata"].get("deletionTimestamp"):
            _run(app, kwargs, logger)
        _resume.passed(key, kwargs["idx_apps"])
    except Exception as err:
        # No kopf retry out here: come back later ourselves, whatever went wrong, so the
        # app is never left without a pass.
        logger.error("reconcile of %s/%s failed, retrying in %ss: %s", *key, RETRY_SECONDS, err)
        with _lock:
            _dirty.add(key)
        delay = RETRY_SECONDS
    finally:
        _later(delay, _trail, key, kwargs, logger)


class _Delays:
    """One thread that hands due steps to the pass pool.

    A burst of a thousand apps waiting out their windows costs a heap entry each, not a timer
    thread each.
    """

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Callable[[], Any]]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, step: Callable[[], Any]) -> None:
        with self._wake:
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._seq), step))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="delays", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, step = heapq.heappop(self._due)
            _passes.submit(step)


_delays = _Delays()


class _Resume:
    """Says once when every app that existed at start has had its first pass.

    kopf fills every index before any handler runs, so the apps index at the first pass is the
    whole fleet the operator found. The log line is how to tell that a restart has caught up.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.pending: set[tuple[str, str]] | None = None
        self.total = 0

    def passed(self, key: tuple[str, str], apps: Mapping[Any, Any]) -> None:
        with _lock:
            if self.pending is None:
                # An app created after the start still closes the count.
                self.pending = {*apps.keys(), key}
                self.total = len(self.pending)
            if not self.pending:
                return
            self.pending.discard(key)
            if self.pending:
                return
        elapsed = time.monotonic() - self.started
        _log.info("resumed %d apps in %.1f s since start", self.total, elapsed)


_log = logging.getLogger(__name__)
_resume = _Resume()


def _later(delay: float, step: Callable[..., Any], *args: Any) -> None:
    # The copied context carries kopf's settings and event queue into the pool's thread; the
    # delays thread only hands over, so at most PASS_WORKERS passes talk to the API at once.
    context = contextvars.copy_context()
    _delays.call_later(delay, functools.partial(context.run, step, *args))


def _trail(key: tuple[str, str], kwargs: Mapping[str, Any], logger: kopf.Logger) -> None:
    with _lock:
        if key not in _dirty:
            _busy.discard(key)
            return
        _dirty.discard(key)
    _pass(key, kwargs, logger)


for _kind, (_group, _version, _plural) in CHILDREN.items():
    _resource = (_group, _version, _plural) if _group else (_version, _plural)
    kopf.index(*_resource, labels=MANAGED, id=_index_name(_kind))(_index_child)
    kopf.on.event(*_resource, labels=MANAGED, id=f"child_{_kind.lower()}")(on_child_event)
