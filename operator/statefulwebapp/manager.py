"""The manager: what the operator holds while it runs, and where each event is routed.

One object, the :class:`Controller`, built when the operator starts (``handlers.configure``) and
kept in kopf's memo: the API client, the work queue of passes (``workqueue.WorkQueue``), the
informers of the apps and their children and their caches (``controllers/sources.py``), kopf's
index of the restores, what passes remember of each app (``app_state.Memory``) and the
bookkeeping of apps that are gone. kopf's handlers (``handlers.py``) only hand it the restores'
events. Its app half (an app's events, its passes, its volume's collection) is
``controllers/app.py``; here are the start, the events held until every app and child is
listed, the resync and the restores.

Four kinds of thread call in: kopf's event loop (restore events), the informers (an app or a
child changed), the work queue's workers (a pass), and the resync (what the watches missed).
What they share is either thread-safe (the queue, the caches, kopf's index) or a dict whose
single reads and writes are atomic.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Mapping

import pykube

from statefulwebapp.api.objects import Key
from statefulwebapp.controllers import sources
from statefulwebapp.controllers.app import Apps, app_logger, has
from statefulwebapp.controllers.events import EventRecorder
from statefulwebapp.controllers.policy import NO_POLICY, ExportClaims, Policy
from statefulwebapp.controllers.reconcile import AppReconciler, Index, first
from statefulwebapp.controllers.restore import RestoreReconciler, RestoreResult
from statefulwebapp.controllers.resync import Plan, Snapshot, compare, from_cluster
from statefulwebapp.runtime import informer, kube, workqueue
from statefulwebapp.runtime.metrics import Metrics
from statefulwebapp.specs import names, registry

RESYNC_SECONDS = 300.0
"""Default period of the full check (``--resync-seconds``): the longest a change the watches
missed stays unrepaired. A watch gap is not such a change: the informers list again after one
and report what vanished meanwhile (informer.py); the check is the net under them (a bug, a
relist that keeps failing), so it runs seldom: each check decodes the metadata of every app and
child, managed fields included. In sync it writes nothing."""

RESYNC_CPU_SHARE = 0.01
"""The most of one core the full check may take: the period grows past ``--resync-seconds``
when one check costs more than this share of it. A check decodes the metadata of every app and
child, managed fields included (no list can leave them out), so its cost grows with the
fleet, and at a fixed period it would come to dominate the operator's CPU. Past that share the
check runs less often; the children's own watches still relist after a gap at once
(informer.py)."""

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


class Controller(Apps):
    """The operator's state and its reactions to events; see the module's docstring."""

    def __init__(
        self,
        api: pykube.HTTPClient,
        *,
        apps: Index | None = None,
        restores: Index,
        metrics: Metrics,
        namespaces: frozenset[str] = frozenset(),
        policy: Policy = NO_POLICY,
        queue: workqueue.WorkQueue | None = None,
        children: Mapping[str, informer.Store] | None = None,
    ) -> None:
        """A controller on kopf's index of the ``restores``.

        ``apps`` and ``children``: the informers' caches, when they are not started here
        (:meth:`start`), as in the unit tests.
        """
        self.api = api
        """The passes' client (the informers have their own: their connections stay open)."""
        self.apps: Index = apps if apps is not None else {}
        """The apps' cache (:data:`sources.APPS`), by (namespace, name)."""
        self.metrics = metrics
        self.namespaces = namespaces
        """The namespaces served (empty: all). Volumes are cluster-scoped: an operator serving
        some namespaces must not collect the volumes of apps in the others."""
        self.claims = ExportClaims()
        """Which live app uses which NFS export; filled from the apps' cache once every app is
        listed (:meth:`caches_synced`)."""
        self.queue = queue or new_queue()
        self.children: Mapping[str, informer.Store] = children or {}
        """The informers' caches, by store name (a child kind, or a source's name)."""
        self.resume = workqueue.Resume()
        recorder = EventRecorder(api)
        self.reconciler = AppReconciler(
            api,
            self.queue,
            apps=self.apps,
            restores=restores,
            cache=self.children,
            metrics=metrics,
            recorder=recorder,
            policy=policy,
            claims=self.claims,
        )
        """Passes of the apps."""
        self.restorer = RestoreReconciler(
            api,
            self.apps,
            restores,
            cache=self.children,
            recorder=recorder,
            backup_root=policy.backup_root,
        )
        """Passes of the restores."""
        self._lock = threading.Lock()
        self._held: dict[tuple[str, Key], tuple[kube.Resource, str]] | None = {}
        """Events told before every app and child was listed (:meth:`on_child_event`); None
        after."""
        metrics.queue(self.queue.depth)

    # ------------------------------------------------------------------------- start ----

    def start(self, resync_seconds: float = RESYNC_SECONDS) -> None:
        """List and watch the apps and children, pass each app, collect orphans, start the resync.

        Every app and child is listed before the first pass, so each finds all there is.
        """
        # Watches hold a connection each for minutes: a client of their own.
        streams = len(sources.SOURCES) * max(1, len(self.namespaces))
        self.children = sources.start(
            kube.connect(pool=streams, metrics=self.metrics, user_agent=names.USER_AGENT),
            self.namespaces,
            self.on_child_event,
            self.metrics,
        )
        apps = self.children[sources.APPS.store]
        self.apps = self.reconciler.apps = self.restorer.apps = apps
        self.reconciler.cache = self.restorer.cache = self.children
        self.caches_synced()
        for key in list(apps):
            body = first(apps, key)
            if body is not None:
                self.app_changed(key, body)
        if apps.synced:
            # Unlisted (RBAC, the server down), no app is known: every volume would look
            # orphaned. The resync looks again.
            self.collect_orphans()
        if resync_seconds > 0:
            # The copied context carries the caller's (kopf's settings) into the thread.
            context = contextvars.copy_context()
            threading.Thread(
                target=context.run,
                args=(self._resync_loop, resync_seconds),
                name="resync",
                daemon=True,
            ).start()

    # ----------------------------------------------------------------- child events ----

    def on_child_event(self, child: kube.Resource, key: Key, event: str) -> None:
        """An app, a child or a pod's event changed or vanished (an informer's thread calls).

        An event that comes before every app and child is listed would find no app (or count a
        partial fleet as resumed), so it is held until they are (:meth:`caches_synced`), then
        told.
        """
        with self._lock:
            if self._held is not None:
                self._held[child.key if isinstance(child, registry.Child) else child.name, key] = (
                    child,
                    event,
                )
                return
        self._child_changed(child, key, event)

    def caches_synced(self) -> None:
        """Tell what was held, and every event from now on: the apps are listed."""
        with self._lock:
            held, self._held = self._held, None
        if held is not None:
            # The apps' cache holds every app, so every claim on an export is known before any
            # pass asks which app holds one.
            for key in list(self.apps):
                app = first(self.apps, key)
                if app is not None:
                    self.claims.update(key, app)
        for (_, key), (child, event) in (held or {}).items():
            self._child_changed(child, key, event)

    def _child_changed(self, child: kube.Resource, key: Key, event: str) -> None:
        """Converge the app (or collect what a deleted app left); repair the child if needed."""
        if child.name == sources.APPS.kind.name:
            if event == "DELETED":
                self.app_deleted(key)
            elif (body := first(self.apps, key)) is not None:
                self.app_changed(key, body)
            return
        if child.name == sources.NODES.kind.name:
            # A node became Ready or stopped being so: any app may have a pod on it.
            for app_key in list(self.apps):
                self.enqueue(app_key)
            return
        volume = isinstance(child, registry.Child) and not child.namespaced
        if volume and (key in self.reconciler.gone or not has(self.apps, key)):
            # A volume whose app is gone: its deletion event was handled before the volume
            # could go, or it was deleted during a watch gap.
            if event != "DELETED":
                self.collect(key)
            return
        self.enqueue(key)

    # ---------------------------------------------------------------------- resync ----

    def _resync_loop(self, period: float) -> None:
        wait = period
        while True:
            time.sleep(wait)
            wait = self.full_check(period)

    def full_check(self, period: float) -> float:
        """One full check, its CPU cost measured (a metric); seconds until the next one."""
        started = time.thread_time()
        self.resync()
        cost = time.thread_time() - started
        self.metrics.full_check(cost)
        return resync_wait(period, cost)

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
            self.reconciler.gone[key] = str((stale or {}).get("metadata", {}).get("uid"))
            self.forget(key)
            self.collect(key)
        for key in plan.orphans:
            self.collect(key)
        return plan

    def snapshot(self) -> Snapshot:
        """The apps and the kinds of their children, as the index and caches show them."""
        gone = self.reconciler.gone
        apps = frozenset(key for key in self.apps if has(self.apps, key) and key not in gone)
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
            result = self.restorer.reconcile(app_key, name, logger)
            if isinstance(result, RestoreResult) and result.wake_app:
                self.enqueue(app_key)
            return result

        return lambda: context.run(step)
