"""The controller: what the operator holds while it runs, and what it does with each event.

One object, built when the operator starts (``handlers.configure``) and kept in kopf's memo:
the API client, the work queue of passes (``workqueue.WorkQueue``), the children's informers and
their caches (``informer.py``), kopf's indexes of the apps and restores, what passes remember of
each app (``app_state.Memory``) and the bookkeeping of apps that are gone. kopf's handlers
(``handlers.py``) only hand it their events.

Four kinds of thread call in: kopf's event loop (app and restore events), the informers (a
child changed), the work queue's workers (a pass), and the resync (what the watches missed).
What they share is either thread-safe (the queue, the caches, kopf's indexes) or a dict whose
single reads and writes are atomic.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kopf
import pykube

from statefulwebapp.api.objects import Key, Obj
from statefulwebapp.controllers import refusals, restore, sources
from statefulwebapp.controllers.app_state import Memory
from statefulwebapp.controllers.policy import NO_POLICY, ExportClaims, Policy
from statefulwebapp.controllers.reconcile import reconcile
from statefulwebapp.controllers.resync import Plan, Snapshot, compare, from_cluster, list_apps
from statefulwebapp.controllers.volumes import collect_volume
from statefulwebapp.runtime import informer, kube, workqueue
from statefulwebapp.runtime.metrics import Metrics
from statefulwebapp.specs import names, registry, restoring

Index = Mapping[Any, Any]
"""One of kopf's indexes (``idx_apps``, ``idx_restores``): key -> the packed objects stored."""

RESYNC_SECONDS = 30.0
"""Default period of the full check (``--resync-seconds``): the longest a change missed in a
watch gap stays unrepaired, while the check stays within :data:`RESYNC_CPU_SHARE`. Its cost is
a few metadata-only list requests per period and no write when in sync."""

RESYNC_CPU_SHARE = 0.01
"""The most of one core the full check may take: the period grows past ``--resync-seconds``
when one check costs more than this share of it. A check decodes the metadata of every app and
child, managed fields included (no list can leave them out): with a thousand apps, about 1.3 s
of CPU, and every 30 s that was 30 % of the operator's CPU during the benchmark's 1000-app
fleet. With it, a thousand apps are checked about every two minutes; the children's own
watches still relist after a gap at once (informer.py)."""

LOOKUPS = 8
"""Threads for the looks before creating children: with the eight pass workers, within
kube.POOL_SIZE connections (a worker waiting for its looks holds none)."""

log = logging.getLogger(__name__)


def resync_wait(period: float, cost: float) -> float:
    """Seconds until the next full check after one that took ``cost`` CPU seconds.

    ``period``, or longer when that cost is more than :data:`RESYNC_CPU_SHARE` of it.
    """
    return max(period, cost / RESYNC_CPU_SHARE)


def new_queue(
    rollouts_per_minute: float = workqueue.ROLLOUTS_PER_MINUTE,
) -> workqueue.WorkQueue:
    """The work queue of passes.

    Eight workers, within kube.POOL_SIZE connections: kopf's handlers only hand work over, so
    kopf's event loop never waits on the API and its per-object queues (full bodies, managed
    fields included) drain as fast as events come; a burst waits as keys in the queue instead.
    A 0.5 s window absorbs a child's burst of status updates while more apps than workers are in
    a pass or a window; with fewer, 50 ms, so that a lone app's children ready are passed at
    once rather than half a second later (a burst from one kwok or kubelet update is over in
    milliseconds). Progress-only status writes: per app every 30 s, operator-wide one per
    second, so that a burst of new apps costs each its applies and two status writes
    (acknowledged, Ready); those two are never held.
    """
    return workqueue.WorkQueue(
        workers=8,
        coalesce=0.5,
        coalesce_idle=0.05,
        retry=2.0,
        retry_max=300.0,
        progress_interval=30.0,
        rollouts_per_minute=rollouts_per_minute,
    )


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


class Controller:
    """The operator's state and its reactions to events; see the module's docstring."""

    def __init__(
        self,
        api: pykube.HTTPClient,
        *,
        apps: Index,
        restores: Index,
        metrics: Metrics,
        namespaces: frozenset[str] = frozenset(),
        policy: Policy = NO_POLICY,
        queue: workqueue.WorkQueue | None = None,
        children: Mapping[str, informer.Store] | None = None,
    ) -> None:
        """A controller on kopf's indexes ``apps`` and ``restores``.

        ``children``: the informers' caches, when they are not started here (:meth:`start`),
        as in the unit tests.
        """
        self.api = api
        """The passes' client (the informers have their own: their connections stay open)."""
        self.apps = apps
        self.restores = restores
        self.metrics = metrics
        self.namespaces = namespaces
        """The namespaces served (empty: all). Volumes are cluster-scoped: an operator serving
        some namespaces must not collect the volumes of apps in the others."""
        self.policy = policy
        """The admin's decisions: the archives' root on the nodes, the exports allowed."""
        self.claims = ExportClaims()
        """Which live app uses which NFS export; filled from kopf's index at :meth:`open`."""
        self.queue = queue or new_queue()
        self.lookups = ThreadPoolExecutor(LOOKUPS, thread_name_prefix="lookup")
        """Where a pass's looks before creating children go at once (reconcile._look_up)."""
        self.children: Mapping[str, informer.Store] = children or {}
        """The informers' caches, by store name (a child kind, or a source's name)."""
        self.memory = Memory()
        """Per app, what passes remember of its children (stored forms, refusals)."""
        self.resume = workqueue.Resume()
        self.gone: dict[Key, str] = {}
        """Apps found deleted although kopf's index still holds them (a watch gap: kopf relists
        without DELETED events), with the uid of that stale entry: they get no more passes."""
        self.last_status: dict[Key, tuple[str | None, Obj]] = {}
        """Per app, the resourceVersion and status of this operator's last status write, until
        the watch has shown that write."""
        self._lock = threading.Lock()
        self._held: dict[tuple[str, Key], tuple[kube.Resource, str]] | None = {}
        """Child events told before kopf had listed the apps (see :meth:`tell`); None after."""
        metrics.queue(self.queue.depth)

    # ------------------------------------------------------------------------- start ----

    def start(self, resync_seconds: float = RESYNC_SECONDS) -> None:
        """List and watch the children, collect orphaned volumes, start the resync.

        Returns once every child is listed: kopf starts the apps' watch after the startup
        handlers, so the first pass of an app finds its children there.
        """
        # Watches hold a connection each for minutes: a client of their own.
        streams = len(sources.SOURCES) * max(1, len(self.namespaces))
        self.children = sources.start(
            kube.connect(pool=streams, metrics=self.metrics, user_agent=names.USER_AGENT),
            self.namespaces,
            self.tell,
            self.metrics,
        )
        self.collect_orphans()
        if resync_seconds > 0:
            # The copied context carries kopf's event queue into the thread.
            context = contextvars.copy_context()
            threading.Thread(
                target=context.run,
                args=(self._resync_loop, resync_seconds),
                name="resync",
                daemon=True,
            ).start()

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

    # ----------------------------------------------------------------- child events ----

    def tell(self, child: kube.Resource, key: Key, event: str) -> None:
        """A child (or a pod's event) changed or vanished: an informer's thread calls this.

        The children are listed before kopf starts; an event that comes before kopf's index of
        the apps is full would find no app (or count a partial fleet as resumed), so it is held
        until the first app event (:meth:`open`), then told.
        """
        with self._lock:
            if self._held is not None:
                self._held[child.key if isinstance(child, registry.Child) else child.name, key] = (
                    child,
                    event,
                )
                return
        self._child_changed(child, key, event)

    def open(self) -> None:
        """Tell what was held, and every event from now on: kopf has listed the apps."""
        with self._lock:
            held, self._held = self._held, None
        if held is not None:
            # The first app event: kopf's index holds every app, so every claim on an export
            # is known before any pass asks which app holds one.
            for key in list(self.apps):
                app = first(self.apps, key)
                if app is not None:
                    self.claims.update(key, app)
        for (_, key), (child, event) in (held or {}).items():
            self._child_changed(child, key, event)

    def _child_changed(self, child: kube.Resource, key: Key, event: str) -> None:
        """Repair the child if needed and recompute the app's status."""
        volume = isinstance(child, registry.Child) and not child.namespaced
        if volume and (key in self.gone or not has(self.apps, key)):
            # A volume whose app is gone: its deletion event was handled before the volume
            # could go, or it was deleted during a watch gap.
            if event != "DELETED":
                self.collect(key)
            return
        self.enqueue(key)

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

    # ---------------------------------------------------------------------- resync ----

    def _resync_loop(self, period: float) -> None:
        wait = period
        while True:
            time.sleep(wait)
            started = time.thread_time()
            self.resync()
            wait = resync_wait(period, time.thread_time() - started)

    def resync(self) -> Plan | None:
        """Compare the caches with a fresh list of the cluster and repair what differs."""
        try:
            plan = compare(self.snapshot(), from_cluster(self.api, self.namespaces))
        except Exception as err:  # A failed check is tried again next period.
            log.warning("resync: could not compare with the cluster: %s", err)
            return None
        if plan:
            log.warning(
                "resync: the watches missed changes: repairing %s; deleted apps %s; "
                "orphaned volumes %s",
                {f"{ns}/{name}": sorted(k) for (ns, name), k in plan.repair.items()} or "-",
                sorted(f"{ns}/{name}" for ns, name in plan.gone) or "-",
                sorted(f"{ns}/{name}" for ns, name in plan.orphans) or "-",
            )
        for key, missing in plan.repair.items():
            self.enqueue(key, log, missing)
        for key in plan.gone:
            stale = first(self.apps, key)
            self.gone[key] = str((stale or {}).get("metadata", {}).get("uid"))
            self.forget(key)
            self.collect(key)
        for key in plan.orphans:
            self.collect(key)
        return plan

    def snapshot(self) -> Snapshot:
        """The apps and the kinds of their children, as the index and caches show them."""
        apps = frozenset(key for key in self.apps if has(self.apps, key) and key not in self.gone)
        children: dict[Key, set[str]] = {}
        for child in registry.CHILDREN:
            cache = self.children[child.key]
            for key in list(cache):
                if has(cache, key):
                    children.setdefault(key, set()).add(child.key)
        return Snapshot(apps, {key: frozenset(k) for key, k in children.items()})

    # --------------------------------------------------------------------- restores ----

    def restore_changed(self, namespace: str, name: str, app_key: Key, deleted: bool) -> None:
        """A restore appeared, changed, was listed at start or deleted: take it a step further.

        kopf has indexed the event before its handler calls here, so the app's pass sees the
        phase the restore's own pass just wrote (a pass that pass asked for may run before the
        watch brings its write, and find nothing new): it stops the web pods or starts them.
        """
        queued = ("restore", namespace, name)
        if deleted:
            self.queue.forget(queued)
        else:
            self.queue.add(queued, self._restore_step(app_key, name))
        if has(self.apps, app_key):
            self.enqueue(app_key)

    def _restore_step(self, app_key: Key, name: str) -> workqueue.Step:
        """One pass of restore ``name`` of the app ``app_key``, as the work queue runs it."""
        context = contextvars.copy_context()
        logger = app_logger(app_key)

        def step() -> workqueue.Result:
            siblings = [json.loads(packed) for packed in self.restores.get(app_key, ())]
            body = next((r for r in siblings if r["metadata"]["name"] == name), None)
            if body is None:
                return workqueue.Result()  # Deleted, or its app renamed: nothing to do.
            app = first(self.apps, app_key)
            namespace = app_key[0]

            def post_event(kind: str, reason: str, message: str) -> None:
                if app is None:
                    return
                try:
                    kopf.event(
                        kopf.Body(cast(kopf.RawBody, app)),
                        type=kind,
                        reason=reason,
                        message=message,
                    )
                except LookupError:  # Outside kopf's context (no event queue): the log must do.
                    logger.info("%s: %s", reason, message)

            try:
                action = restore.reconcile_restore(
                    self.api,
                    body,
                    app=app,
                    apps=[n for ns, n in self.apps if ns == namespace],
                    siblings=siblings,
                    statefulset=owned_first(
                        self.children[registry.STATEFULSET.name],
                        app_key,
                        str((app or {}).get("metadata", {}).get("uid") or ""),
                    ),
                    post_event=post_event,
                    backup_root=self.policy.backup_root,
                )
            except (kube.ApiError, *refusals.TRANSIENT) as err:
                logger.error("restore %s: %s; retrying with backoff", name, err)
                return workqueue.Result(failed=True)
            if action.wake_app:
                self.enqueue(app_key)
            if action.status is not None and action.status.get("phase") in {
                restoring.SUCCEEDED,
                restoring.FAILED,
            }:
                logger.info("restore %s: %s", action.status["phase"], action.status.get("message"))
            return workqueue.Result(requeue_after=action.requeue_after)

        return lambda: context.run(step)
