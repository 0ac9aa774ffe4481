"""kopf wiring: indexes of the apps and their children, and short handlers around reconcile.

Every event ends up in one place, :func:`statefulwebapp.reconcile.reconcile`: the app's own
(its creation, any change, the listing at the operator's start) and any event of a labelled
child (a deletion included, which is how a deleted child comes back within seconds). kopf
watches the apps; the children are watched by ``watch.py`` (packed on arrival, no per-object
worker), with a server-side label selector, so the operator never lists the cluster's other
StatefulSets or Services.

Only event handlers and indexes are registered: kopf keeps no state on the apps (no finalizer,
no last-handled annotation), so creating an app costs its children's applies and two status
writes, a restart costs no write at all, and uninstalling the operator never leaves a namespace
stuck in deletion. What is level-triggered here is ``status.observedGeneration`` versus
``metadata.generation``, recomputed on every pass like the rest of the status. The one thing
the garbage collector cannot do, delete the cluster-scoped volume of a deleted app, is done from
the app's deletion event, and from the volume's own event if the operator was not running.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, cast

import kopf

from statefulwebapp import kinds, kube, passes, refusals, restore, resync, watch
from statefulwebapp.metrics import Metrics
from statefulwebapp.reconcile import Memory, Obj, collect_volume, reconcile

APP = (kinds.APP.group, kinds.APP.version, kinds.APP.plural)
RESTORE = (kinds.RESTORE.group, kinds.RESTORE.version, kinds.RESTORE.plural)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    """Operator settings, HTTP clients, the children's watches and the resync thread.

    Returns once every child is listed: kopf starts the apps' watch after the startup
    handlers, so the first pass of an app finds its children there.
    """
    # Watches that silently stop are kopf's best-known failure; bound them on both ends.
    settings.watching.server_timeout = watch.SERVER_TIMEOUT
    settings.watching.connect_timeout, settings.watching.client_timeout = watch.CLIENT_TIMEOUT
    # The CRD is installed before the operator starts (the chart and `make run` do it), so
    # kopf need not follow CRDs and namespaces at run time: that saves two cluster-wide
    # watches and their RBAC rules. Namespace globs need scanning, hence exact names only.
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    # The command passes the metrics it serves; without them (kopf run directly) a registry
    # of their own, served by nobody.
    if "metrics" not in memo:
        memo.metrics = Metrics()
    metrics = memo.metrics
    metrics.queue(PASSES.depth)
    memo.api = kube.connect(metrics=metrics)
    # The namespaces served (empty: all). Volumes are cluster-scoped: an operator serving some
    # namespaces must not collect the volumes of apps in the others.
    namespaces = memo.setdefault("namespaces", frozenset())
    # kopf passes its indexes to operator-level handlers too: the same live objects the event
    # handlers read.
    every = {**kwargs, "memo": memo}
    memo.child_events = ChildEvents(every)
    # Watches hold a connection each for minutes: a client of their own, apart from the passes'.
    streams = len(watch.SOURCES) * max(1, len(namespaces))
    memo.children = watch.start(
        kube.connect(pool=streams, metrics=metrics), namespaces, memo.child_events.tell, metrics
    )
    _collect_orphans(every)
    period = float(memo.setdefault("resync_seconds", RESYNC_SECONDS))
    if period > 0:
        # The copied context carries kopf's event queue into the thread.
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(_resync_loop, period, every), name="resync", daemon=True
        ).start()


def _collect_orphans(kwargs: Mapping[str, Any]) -> None:
    """Collect the volumes whose app was deleted while the operator was not running."""
    memo = kwargs["memo"]
    try:
        apps = resync.list_apps(memo.api, memo.namespaces)
    except kube.ApiError as err:  # The resync tries again.
        _log.error("could not list the apps to find orphaned volumes: %s", err)
        return
    for key in set(memo.children[kinds.PERSISTENT_VOLUME.name]) - apps:
        _collect(key, kwargs, _log)


RESYNC_SECONDS = 30.0
"""Default period of the full check (``--resync-seconds``): the longest a change missed in a
watch gap stays unrepaired. Its cost is a few metadata-only list requests per period (two pages
per kind at a thousand apps) and no write when in sync."""
_log = logging.getLogger(__name__)


def _resync_loop(period: float, kwargs: Mapping[str, Any]) -> None:
    while True:
        time.sleep(period)
        try:
            index = _index_snapshot(kwargs)
            plan = resync.compare(
                index, resync.from_cluster(kwargs["memo"].api, kwargs["memo"].namespaces)
            )
        except Exception as err:  # A failed check is tried again next period.
            _log.warning("resync: could not compare with the cluster: %s", err)
            continue
        if plan:
            _log.warning(
                "resync: the watches missed changes: repairing %s; deleted apps %s; "
                "orphaned volumes %s",
                {f"{ns}/{name}": sorted(k) for (ns, name), k in plan.repair.items()} or "-",
                sorted(f"{ns}/{name}" for ns, name in plan.gone) or "-",
                sorted(f"{ns}/{name}" for ns, name in plan.orphans) or "-",
            )
        _apply_plan(plan, kwargs)


def _index_snapshot(kwargs: Mapping[str, Any]) -> resync.Snapshot:
    apps = frozenset(
        key for key in kwargs["idx_apps"] if _has(kwargs["idx_apps"], key) and key not in _gone
    )
    children: dict[tuple[str, str], set[str]] = {}
    for child in kinds.CHILDREN:
        index = kwargs["memo"].children[child.name]
        for key in list(index):
            if _has(index, key):
                children.setdefault(key, set()).add(child.name)
    return resync.Snapshot(apps, {key: frozenset(k) for key, k in children.items()})


def _apply_plan(plan: resync.Plan, kwargs: Mapping[str, Any]) -> None:
    for key, missing in plan.repair.items():
        PASSES.request(key, _step(key, kwargs, _log, missing))
    for key in plan.gone:
        stale = _first(kwargs["idx_apps"], key)
        _gone[key] = str((stale or {}).get("metadata", {}).get("uid"))
        _forget(key, kwargs)
        _collect(key, kwargs, _log)
    for key in plan.orphans:
        _collect(key, kwargs, _log)


def _key(namespace: str | None, name: str | None) -> tuple[str, str]:
    return (namespace or "", name or "")


@kopf.index(*APP, id="idx_apps")
async def index_apps(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    """Apps by (namespace, name), so a child's event finds its app without a request."""
    return {_key(namespace, name): watch.pack(body)}


def _has(index: Mapping[Any, Any], key: Any) -> bool:
    return bool(index.get(key))


def _first(index: Mapping[Any, Any], key: Any) -> dict[str, Any] | None:
    store = index.get(key)
    packed = next(iter(store), None) if store is not None else None
    return json.loads(packed) if packed is not None else None


def _observed(key: tuple[str, str], kwargs: Mapping[str, Any]) -> dict[str, Obj | None]:
    children = kwargs["memo"].children
    return {child.name: _first(children[child.name], key) for child in kinds.CHILDREN}


PASSES = passes.Passes(workers=8, coalesce=0.5, retry=2.0, retry_max=300.0, progress_interval=30.0)
"""When each app gets a pass (see passes.py).

Eight workers, within kube.POOL_SIZE connections: the handlers below only hand work over, so
kopf's event loop never waits on the API and its per-object queues (full bodies, managed fields
included) drain as fast as events come; a burst waits as keys in PASSES instead. A 0.5 s window
absorbs a child's burst of status updates. Progress-only status writes: per app every 30 s,
operator-wide one per second, so that a burst of a thousand new apps costs each its six applies
and two status writes (acknowledged, Ready); those two are never held.
"""
_resume = passes.Resume()
MEMORY = Memory()
"""Per app, what passes remember of its children (stored forms, refusals): see reconcile.py."""


def _step(
    key: tuple[str, str],
    kwargs: Mapping[str, Any],
    logger: kopf.Logger,
    missing: frozenset[str] = frozenset(),
) -> passes.Step:
    """One pass for the app, as PASSES runs it (now, or later in another thread).

    ``missing``: child kinds a resync found gone although the index still shows them.
    """
    # The copied context carries kopf's settings and event queue (for kopf.warn) into
    # whichever thread runs the step.
    context = contextvars.copy_context()

    def step() -> passes.Result:
        app = _first(kwargs["idx_apps"], key)
        result = passes.Result()
        # No app, one going away, or one found gone after a watch gap: recreating its
        # children would fight the deletion.
        if (
            app is not None
            and not app["metadata"].get("deletionTimestamp")
            and _gone.get(key) != app["metadata"].get("uid")
        ):
            result = _reconcile(_with_written_status(key, app), kwargs, logger, missing)
        _resume.passed(key, lambda: set(kwargs["idx_apps"].keys()))
        return result

    return lambda: context.run(step)


_gone: dict[tuple[str, str], str] = {}
"""Apps found deleted although the index still holds them (a watch gap: kopf relists without
DELETED events), by key, with the uid of that stale entry: they get no more passes."""

_last_status: dict[tuple[str, str], tuple[str | None, Obj]] = {}
"""Per app, the resourceVersion and status of this operator's last status write, until the
watch has shown that write."""


def _unseen_status(key: tuple[str, str], app: Obj) -> Obj | None:
    """The status last written, if ``app`` does not show it yet; forgotten once it does."""
    entry = _last_status.get(key)
    if entry is None:
        return None
    version, status = entry
    if app.get("metadata", {}).get("resourceVersion") == version or app.get("status") == status:
        _last_status.pop(key, None)
        return None
    return status


def _with_written_status(key: tuple[str, str], app: Obj) -> Obj:
    """The app as last seen, with the status last written if the watch has not shown it yet.

    The status is the operator's alone to write, and a pass can run before the watch delivers
    the operator's own last write. Compared with the older status, the same status would be
    written again and its conditions' lastTransitionTime moved.
    """
    status = _unseen_status(key, app)
    return app if status is None else {**app, "status": status}


def _reconcile(
    body: Obj, kwargs: Mapping[str, Any], logger: kopf.Logger, missing: frozenset[str]
) -> passes.Result:
    meta = body["metadata"]
    key = _key(meta["namespace"], meta["name"])
    metrics: Metrics = kwargs["memo"].metrics
    started = time.monotonic()
    observed = _observed(key, kwargs)
    observed.update(dict.fromkeys(missing))
    stores = kwargs["memo"].children
    failures = stores[watch.MOUNT_FAILURES.store].get(key, ())
    unhealthy = stores[watch.PROBE_FAILURES.store].get(key, ())
    restores = [json.loads(packed) for packed in kwargs["idx_restores"].get(key, ())]

    def warn(reason: str, message: str) -> None:
        try:
            kopf.warn(kopf.Body(cast(kopf.RawBody, dict(body))), reason=reason, message=message)
        except LookupError:  # Outside kopf's context (no event queue): the log must do.
            logger.warning("%s: %s", reason, message)

    try:
        outcome = reconcile(
            kwargs["memo"].api,
            body=body,
            observed=observed,
            warn=warn,
            logger=logger,
            memory=MEMORY,
            progress_due=functools.partial(PASSES.progress_due, key),
            rollout_due=PASSES.rollout_due,
            mount_failures=[json.loads(packed) for packed in failures],
            probe_failures=[json.loads(packed) for packed in unhealthy],
            restoring=restore.under_way(restores),
        )
    except Exception as err:
        logger.error("reconcile failed, retrying with backoff: %s", err)
        # The status write is the one request outside reconcile's own handling of failures.
        trouble = isinstance(err, (kube.ApiError, *refusals.TRANSIENT))
        metrics.passed("retry" if trouble else "error", time.monotonic() - started)
        return passes.Result(failed=True)
    metrics.passed(outcome.label, time.monotonic() - started)
    metrics.app_ready(key, outcome.ready_reason)
    if outcome.app_gone:
        logger.info("the app is gone (deleted while unwatched): no more passes")
        _forget(key, kwargs)
        _gone[key] = str(meta.get("uid"))
        _collect(key, kwargs, logger)
        return passes.Result()
    if outcome.written_status is not None:
        _last_status[key] = (outcome.written_version, outcome.written_status)
    # Logged when the status changes or a retry follows, not on every event of a child that
    # is waiting for a spec change.
    for problem in outcome.problems if outcome.status_written or outcome.retry else ():
        log = logger.error if problem.retry else logger.warning
        log("%s: %s%s", problem.reason, problem.message, "" if problem.retry else "; not retried")
    return passes.Result(
        failed=outcome.retry,
        held=outcome.status_held or bool(outcome.rollouts_held),
        status_written=outcome.status_written,
        retry_after=outcome.retry_after,
        requeue_after=outcome.recheck_after,
    )


@kopf.on.event(*APP, id="app")
async def on_app_event(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """The app appeared, changed or was listed at start: converge it. Deleted: collect."""
    # kopf runs no handler before its index of the apps is full: the children's events held
    # until now can find their apps.
    kwargs["memo"].child_events.open()
    key = _key(namespace, name)
    if event["type"] != "DELETED":
        _unseen_status(key, body)  # Forget the last write as soon as the watch shows it.
        if _gone.get(key) != body.get("metadata", {}).get("uid"):
            _gone.pop(key, None)  # A new app of that name.
        PASSES.request(key, _step(key, kwargs, logger))
        return
    _forget(key, kwargs)
    _collect(key, kwargs, logger)


def _forget(key: tuple[str, str], kwargs: Mapping[str, Any]) -> None:
    PASSES.forget(key)
    MEMORY.forget(key)
    kwargs["memo"].metrics.forget_app(key)
    _last_status.pop(key, None)
    _resume.passed(key, lambda: set(kwargs["idx_apps"].keys()))


class ChildEvents:
    """Turns the children's watch events into passes, once kopf has listed the apps.

    The children are listed before kopf starts; an event that comes before kopf's index of the
    apps is full would find no app (or count a partial fleet as resumed), so it is held until
    the first app handler runs, then told.
    """

    def __init__(self, kwargs: Mapping[str, Any]) -> None:
        """``kwargs``: kopf's operator-level kwargs (its app index) and the memo."""
        self.kwargs = kwargs
        self._lock = threading.Lock()
        self._held: dict[tuple[str, tuple[str, str]], tuple[kinds.Kind, str]] | None = {}

    def tell(self, child: kinds.Kind, key: tuple[str, str], event: str) -> None:
        """A child (or a mount failure) changed or vanished (a watch thread calls this)."""
        with self._lock:
            if self._held is not None:
                self._held[child.name, key] = (child, event)
                return
        self._changed(child, key, event)

    def open(self) -> None:
        """Now that kopf has listed the apps: tell what was held, and every event from now on."""
        with self._lock:
            held, self._held = self._held, None
        for (_, key), (child, event) in (held or {}).items():
            self._changed(child, key, event)

    def _changed(self, child: kinds.Kind, key: tuple[str, str], event: str) -> None:
        """Repair the child if needed and recompute the app's status."""
        logger = _app_logger(key)
        if child is kinds.PERSISTENT_VOLUME and (
            key in _gone or not _has(self.kwargs["idx_apps"], key)
        ):
            # A volume whose app is gone: its deletion event was handled before the volume
            # could go, or it was deleted during a watch gap.
            if event != "DELETED":
                _collect(key, self.kwargs, logger)
            return
        PASSES.request(key, _step(key, self.kwargs, logger))


def _app_logger(key: tuple[str, str]) -> _AppLogger:
    return _AppLogger(_log, {"app": "/".join(key)})


class _AppLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes messages with the app, as kopf's per-object loggers do."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        """``[namespace/name] msg``."""
        return f"[{(self.extra or {}).get('app')}] {msg}", kwargs


def _collect(key: tuple[str, str], kwargs: Mapping[str, Any], logger: kopf.Logger) -> None:
    """Delete the volume of a deleted app, on the pass pool, tried again until it is gone."""
    served = kwargs["memo"].namespaces
    if served and key[0] not in served:
        return

    def step() -> passes.Result:
        # An app of the same name may be back (deleted and re-applied in quick succession):
        # the volume is then its own. collect_volume confirms with a direct read anyway.
        if _has(kwargs["idx_apps"], key) and key not in _gone:
            return passes.Result()
        try:
            if collect_volume(kwargs["memo"].api, *key):
                logger.info("deleted the volume of deleted app %s/%s", *key)
        except kube.ApiError as err:
            logger.error("could not delete the volume of deleted app %s/%s: %s", *key, err)
            return passes.Result(failed=True)
        return passes.Result()

    PASSES.request(("volume", *key), step)


@kopf.index(*RESTORE, id="idx_restores")
async def index_restores(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[tuple[str, str], str]:
    """Restores by their app's (namespace, name): an app's pass sees whether one runs."""
    kept: dict[str, Any] = {k: body.get(k) for k in ("apiVersion", "kind", "spec", "status")}
    meta = body.get("metadata") or {}
    kept["metadata"] = {
        **{k: meta.get(k) for k in ("name", "namespace", "uid", "creationTimestamp")},
        "ownerReferences": meta.get("ownerReferences") or [],
    }
    return {_key(namespace, restore.app_of(body)): json.dumps(kept, separators=(",", ":"))}


@kopf.on.event(*RESTORE, id="restore")
async def on_restore_event(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """A restore appeared, changed, was listed at start or deleted: take it a step further."""
    app_key = _key(namespace, restore.app_of(body))
    if event["type"] == "DELETED":
        PASSES.forget(("restore", namespace or "", name))
    else:
        step = _restore_step(app_key, name, kwargs, logger)
        PASSES.request(("restore", namespace or "", name), step)
    # kopf has indexed this event before calling here, so the app's pass sees the phase the
    # restore's own pass just wrote (a pass that pass asked for may run before the watch
    # brings its write, and find nothing new): it stops the web pods or starts them again.
    if _has(kwargs["idx_apps"], app_key):
        PASSES.request(app_key, _step(app_key, kwargs, _app_logger(app_key)))


def _restore_step(
    app_key: tuple[str, str], name: str, kwargs: Mapping[str, Any], logger: kopf.Logger
) -> passes.Step:
    """One pass of restore ``name`` of the app ``app_key``, as PASSES runs it."""
    context = contextvars.copy_context()
    memo = kwargs["memo"]

    def step() -> passes.Result:
        siblings = [json.loads(packed) for packed in kwargs["idx_restores"].get(app_key, ())]
        body = next((r for r in siblings if r["metadata"]["name"] == name), None)
        if body is None:
            return passes.Result()  # Deleted, or its app renamed: nothing to do.
        app = _first(kwargs["idx_apps"], app_key)
        namespace = app_key[0]

        def post_event(kind: str, reason: str, message: str) -> None:
            if app is None:
                return
            try:
                kopf.event(
                    kopf.Body(cast(kopf.RawBody, app)), type=kind, reason=reason, message=message
                )
            except LookupError:  # Outside kopf's context (no event queue): the log must do.
                logger.info("%s: %s", reason, message)

        try:
            action = restore.reconcile_restore(
                memo.api,
                body,
                app=app,
                apps=[n for ns, n in kwargs["idx_apps"] if ns == namespace],
                siblings=siblings,
                statefulset=_first(memo.children[kinds.STATEFULSET.name], app_key),
                post_event=post_event,
            )
        except (kube.ApiError, *refusals.TRANSIENT) as err:
            logger.error("restore %s: %s; retrying with backoff", name, err)
            return passes.Result(failed=True)
        if action.wake_app:
            PASSES.request(app_key, _step(app_key, kwargs, _app_logger(app_key)))
        if action.status is not None and action.status.get("phase") in {
            restore.SUCCEEDED,
            restore.FAILED,
        }:
            logger.info("restore %s: %s", action.status["phase"], action.status.get("message"))
        return passes.Result(requeue_after=action.requeue_after)

    return lambda: context.run(step)
