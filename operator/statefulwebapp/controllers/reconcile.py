"""The app's reconciler: one idempotent pass from the spec to the children and the status.

A pass runs for every event of the app (its creation, changes and the operator's start) and of
any of its children, so drift is repaired and the status recomputed from the same code path. It
reads the app and its children from the operator's caches, writes only what differs, and writes
the status only when it changed: a quiet cluster costs no requests.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pykube

from statefulwebapp.api import kinds
from statefulwebapp.api.model import AppSpec, SpecError
from statefulwebapp.api.objects import Key, Obj, timestamp
from statefulwebapp.api.parse import parse
from statefulwebapp.controllers import refusals, sources
from statefulwebapp.controllers.app_state import Memory, Outcome, Seen
from statefulwebapp.controllers.converge import converge, name_conflict, owned
from statefulwebapp.controllers.events import EventRecorder
from statefulwebapp.controllers.policy import NO_POLICY, ExportClaims, Policy, exports_of
from statefulwebapp.runtime import informer, kube, workqueue
from statefulwebapp.runtime.metrics import Metrics
from statefulwebapp.specs import failures, names, pods, registry, restoring, status

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]
Index = Mapping[Any, Any]
"""The apps' cache (an informer's store) or kopf's index of the restores (``idx_restores``): key ->
the packed objects stored."""


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


@dataclass(frozen=True)
class Observation:
    """What the caches show of one app for one pass: the app, its children, the kubelet's words."""

    body: Obj
    """The app as last seen, with the status this operator last wrote."""
    children: Mapping[str, Obj | None]
    """Each child (its ``key``) as last seen by the watches; None if not seen."""
    mount_failures: Sequence[Obj] = ()
    """The kubelet's FailedMount events of the app's pods (``sources.pack_pod_event``)."""
    probe_failures: Sequence[Obj] = ()
    """Their Unhealthy events, told since the app's last restore ended, and their BackOff
    events (marked ``backoff``)."""
    lost_nodes: Sequence[Obj] = ()
    """The nodes whose Ready condition is not True (``pods.node_view``)."""
    restoring: str = ""
    """The StatefulWebAppRestore under way for the app, if one is: its web pods are stopped."""
    app_current: bool = False
    """The app's own watch event brought this very version since the last pass: it exists, and
    creating its children needs no read of it first."""
    stale: frozenset[str] = frozenset()
    """Children a resync found gone although the caches still show them: whether their names
    are free is asked of the other names' caches alone."""


@dataclass(frozen=True)
class AppResult(workqueue.Result):
    """A pass's result for the work queue, and whether the app was found gone."""

    app_gone: bool = False
    """The app no longer exists (deleted during a watch gap): forget it, collect its volume."""


@dataclass
class AppReconciler:
    """Reconciles StatefulWebApps (kubebuilder's reconciler): its client, caches and budgets.

    :meth:`reconcile` is one pass of one app, as the work queue runs it (one at a time per
    app); :meth:`converge` is its core, from an :class:`Observation` to an :class:`Outcome`.
    """

    api: pykube.HTTPClient
    """The passes' client."""
    queue: workqueue.WorkQueue
    """The work queue: its budgets of progress-only status writes and of unasked rollouts."""
    apps: Index = field(default_factory=dict)
    """The apps' cache (``sources.APPS``)."""
    restores: Index = field(default_factory=dict)
    """kopf's index of the restores, by their app."""
    cache: Mapping[str, informer.Store] = field(default_factory=dict)
    """The informers' caches, by store name (a child's key, or a source's name)."""
    metrics: Metrics = field(default_factory=Metrics)
    recorder: EventRecorder = field(default_factory=EventRecorder)
    """Where the app's Warning events go."""
    memory: Memory = field(default_factory=Memory)
    """Per app, what passes remember of its children (stored forms, refusals)."""
    policy: Policy = NO_POLICY
    """The admin's decisions: the archives' root on the nodes, the exports allowed."""
    claims: ExportClaims | None = None
    """The exports live apps use, of which an app gets none an older app holds."""
    gone: dict[Key, str] = field(default_factory=dict)
    """Apps found deleted although kopf's index still holds them (a watch gap: kopf relists
    without DELETED events), with the uid of that stale entry: they get no more passes."""
    last_status: dict[Key, tuple[str | None, Obj]] = field(default_factory=dict)
    """Per app, the resourceVersion and status of this operator's last status write, until
    the watch has shown that write."""
    current: dict[Key, str] = field(default_factory=dict)
    """Per app, the resourceVersion its last watch event brought, until the next pass: an index
    entry can outlive a watch gap, an event cannot."""

    def seen_event(self, key: Key, body: Obj) -> None:
        """The app's watch event (or the list at start) showed ``body``: it exists as of now."""
        self.current[key] = str(body.get("metadata", {}).get("resourceVersion"))

    def reconcile(
        self, key: Key, logger: Log, missing: frozenset[str] = frozenset()
    ) -> workqueue.Result:
        """One pass of the app ``key``.

        ``missing``: children a resync found gone although the caches still show them.
        """
        # 1. The app as kopf's index holds it. None, one going away, or one found gone after a
        #    watch gap: recreating its children would fight the deletion.
        indexed = first(self.apps, key)
        if (
            indexed is None
            or indexed["metadata"].get("deletionTimestamp")
            or self.gone.get(key) == indexed["metadata"].get("uid")
        ):
            return workqueue.Result()
        # 2. The status this operator last wrote stands until the watch shows it.
        body = self.with_written_status(key, indexed)
        # 3. What the caches show of its children, its pods and its restores.
        started = time.monotonic()
        observation = self.observe(key, body, missing)
        if self.current.pop(key, None) == indexed["metadata"].get("resourceVersion"):
            observation = replace(observation, app_current=True)
        # 4. The pass.
        try:
            outcome = self.converge(observation, logger)
        except Exception as err:
            logger.error("reconcile failed, retrying with backoff: %s", err)
            # The status write is the one request outside converge's own handling of failures.
            trouble = isinstance(err, (kube.ApiError, *refusals.TRANSIENT))
            self.metrics.passed("retry" if trouble else "error", time.monotonic() - started)
            return workqueue.Result(failed=True)
        # 5. What it did: counted, remembered, and logged when it is news.
        self.metrics.passed(outcome.label, time.monotonic() - started)
        self.metrics.app_ready(key, outcome.ready_reason)
        if outcome.app_gone:
            logger.info("the app is gone (deleted while unwatched): no more passes")
            self.gone[key] = str(body["metadata"].get("uid"))
            return AppResult(app_gone=True)
        if outcome.written_status is not None:
            self.last_status[key] = (outcome.written_version, outcome.written_status)
        # Logged when the status changes or a retry follows, not on every event of a child that
        # is waiting for a spec change.
        for problem in outcome.problems if outcome.status_written or outcome.retry else ():
            say = logger.error if problem.retry else logger.warning
            said = "" if problem.retry else "; not retried"
            say("%s: %s%s", problem.reason, problem.message, said)
        # 6. When it comes back: a retry, a held write, a report of the kubelet's ageing out.
        return workqueue.Result(
            failed=outcome.retry,
            held=outcome.status_held or bool(outcome.rollouts_held),
            status_written=outcome.status_written,
            retry_after=outcome.retry_after,
            requeue_after=outcome.recheck_after,
        )

    def observe(self, key: Key, body: Obj, missing: frozenset[str]) -> Observation:
        """The app's children, pods' failures and restore under way, from the caches."""
        uid = str(body["metadata"].get("uid") or "")
        children = {
            child.key: owned_first(self.cache[child.key], key, uid) for child in registry.CHILDREN
        }
        children.update(dict.fromkeys(missing))
        mounts = self.cache[sources.MOUNT_FAILURES.store].get(key, ())
        checks = [json.loads(p) for p in self.cache[sources.PROBE_FAILURES.store].get(key, ())]
        checks += [
            {**json.loads(p), "backoff": True}
            for p in self.cache[sources.BACKOFFS.store].get(key, ())
        ]
        restores = [json.loads(packed) for packed in self.restores.get(key, ())]
        lost = self.cache[sources.NODES.store].get(sources.NOT_READY, ())
        return Observation(
            body=body,
            children=children,
            mount_failures=[json.loads(packed) for packed in mounts],
            probe_failures=failures.told_after(checks, restoring.last_ended(restores)),
            restoring=restoring.under_way(restores),
            stale=missing,
            lost_nodes=[json.loads(packed) for packed in lost],
        )

    def own_write(self, key: Key, body: Obj) -> bool:
        """Whether ``body`` is the app as this operator's last status write left it.

        The watch shows every status write back. The pass that wrote it saw the app, and any
        change made before the write had an event of its own, earlier: that one brings a pass.
        """
        entry = self.last_status.get(key)
        version = body.get("metadata", {}).get("resourceVersion")
        return entry is not None and entry[0] is not None and version == entry[0]

    def unseen_status(self, key: Key, body: Obj) -> Obj | None:
        """The status last written, if ``body`` does not show it yet; forgotten once it does."""
        entry = self.last_status.get(key)
        if entry is None:
            return None
        version, written = entry
        meta = body.get("metadata", {})
        if meta.get("resourceVersion") == version or body.get("status") == written:
            self.last_status.pop(key, None)
            return None
        return written

    def with_written_status(self, key: Key, body: Obj) -> Obj:
        """The app as last seen, with the status last written if the watch has not shown it.

        The status is the operator's alone to write, and a pass can run before the watch
        delivers the operator's own last write. Compared with the older status, the same status
        would be written again and its conditions' lastTransitionTime moved.
        """
        written = self.unseen_status(key, body)
        return body if written is None else {**body, "status": written}

    def forget(self, key: Key) -> None:
        """Drop what passes remember of an app that is gone."""
        self.memory.forget(key)
        self.current.pop(key, None)
        self.metrics.forget_app(key)
        self.last_status.pop(key, None)

    def converge(self, seen_now: Observation, logger: Log) -> Outcome:
        """Bring the app's children in line with its spec and publish the recomputed status.

        A missing child's name is looked up in the caches before creating it, so an object of
        the same name that belongs to someone else is reported, never overwritten. A status
        change that is only progress (:func:`status.urgent`) waits for the queue's budget of
        such writes (``status_held`` tells the caller to come back). A StatefulSet or
        DaemonSet whose rendering changed while the spec did not (an operator upgrade) waits
        for the queue's budget of rollouts: a fleet must not roll at once.
        """
        body = seen_now.body
        outcome = Outcome()
        seen = Seen.of(body)
        key = (seen.namespace, seen.name)
        children = dict(seen_now.children)
        # 1. Parse the spec once into the typed model.
        try:
            app = parse(body, backup_root=self.policy.backup_root)
            if seen_now.restoring:
                app = replace(app, restoring=seen_now.restoring)
        except SpecError as err:
            problem = status.Problem("InvalidSpec", f"{err}; fix the field and re-apply")
            outcome.problems.append(problem)
            self._warn_if_news(body, seen, outcome, logger)
            # Without a valid spec there is no model to compute a status from: report the
            # problem alone and touch no child.
            invalid = _invalid_status(seen, problem)
            outcome.ready_reason = status.ready_condition(invalid).get("reason")
            self._publish(seen, invalid, outcome)
            return outcome
        # 2. Render every child, stamped with the digest of its rendering (digested once per spec).
        desired = self.memory.rendering(app)
        # 3. The admin decides which exports an app may mount, and one export serves one app:
        #    an app refused either way gets nothing created or changed.
        claims = self.claims
        refused = self.policy.refusal(app) or (
            claims.holder(key, exports_of(app)) if claims else None
        )
        if refused is not None:
            outcome.problems.append(refused)
        else:
            try:
                # 4. Before creating a missing child: the app must really exist (an index entry
                #    can outlive a watch gap), and no object may be in a child's way.
                missing = [k for k, wanted in desired.items() if wanted and children.get(k) is None]
                unlisted: list[str] = []
                if missing:
                    names = self._names_in_use(seen_now, app, desired, missing)
                    if names is None:
                        outcome.app_gone = True
                        return outcome
                    found, unlisted = names
                    children.update(found)
                conflict = _find_conflict(app, desired, children) or _not_listed(unlisted)
                if conflict is not None:
                    outcome.problems.append(conflict)
                else:
                    # 5. Converge each child on its own: one refusal freezes no other.
                    converge(
                        self.api,
                        app=app,
                        desired=desired,
                        children=children,
                        outcome=outcome,
                        memory=self.memory,
                        logger=logger,
                        rollout_due=self.queue.rollout_due if seen.acknowledged else _always,
                    )
            except (kube.ApiError, *refusals.TRANSIENT) as err:
                if isinstance(err, kube.ApiError) and err.terminating:
                    # The namespace, and the app with it, is going away: nothing to repair.
                    return outcome
                outcome.problems.append(
                    refusals.problem(kinds.APP, f"{app.namespace}/{app.name}", err)
                )
        now = timestamp()
        # 6. The app's pods, listed only when the counts and the kubelet's reports say
        #    something is wrong with them; a stuck web pod the spec has moved on from is
        #    deleted.
        listed = (
            None
            if refused
            else self._pods(
                seen_now, app, children=children, outcome=outcome, now=now, logger=logger
            )
        )
        self._warn_if_news(body, seen, outcome, logger)
        # 7. The status, recomputed from the children as they now are.
        new = status.compute(
            app,
            generation=seen.generation,
            children=children,
            previous=seen.status,
            problem=status.combine(outcome.problems),
            mount_failures=seen_now.mount_failures,
            probe_failures=seen_now.probe_failures,
            listed=listed,
            now=now,
        )
        outcome.ready_reason = status.ready_condition(new).get("reason")
        if outcome.ready_reason != "Ready":
            outcome.recheck_after = failures.recheck_after(
                app, seen_now.mount_failures, seen_now.probe_failures, now
            )
        self._publish(seen, new, outcome)
        return outcome

    def _pods(
        self,
        seen_now: Observation,
        app: AppSpec,
        *,
        children: Mapping[str, Obj | None],
        outcome: Outcome,
        now: str,
        logger: Log,
    ) -> pods.Seen | None:
        """The app's pods and the nodes not Ready, when :func:`pods.wanted`; else None.

        Deletes the stuck web pods :func:`pods.to_replace` names. A list or delete the server
        refuses is a problem of the pass, as a child's refused write is.
        """
        sts = children.get(registry.STATEFULSET.key)
        ds = children.get(registry.DAEMONSET.key)
        checks = failures.fresh_checks(app, seen_now.probe_failures, now)
        if not pods.wanted(
            app,
            web_ready=status.web_ready(app, sts),
            web_failures=checks,
            lost_nodes=seen_now.lost_nodes,
        ):
            return None
        workloads = {
            names.WEB: str(((sts or {}).get("metadata") or {}).get("uid") or ""),
            names.BACKUP: str(((ds or {}).get("metadata") or {}).get("uid") or ""),
        }
        collection = kube.path(kinds.POD, "", app.namespace).rstrip("/")
        selector = f"{names.LABEL_INSTANCE}={app.name},{names.MANAGED_SELECTOR}"
        replaced: list[str] = []
        where = f"{app.namespace}/{app.name}-*"
        try:
            listed = pods.ours(
                [
                    pods.view(body)
                    for page in kube.pages(self.api, collection, selector=selector, limit=500)
                    for body in page.get("items") or ()
                ],
                workloads,
            )
            stuck = pods.stuck_web_pods(app, listed, failures.last_words(app, checks))
            for pod in pods.to_replace(app, sts, stuck):
                where = f"{app.namespace}/{pod['name']}"
                if kube.delete(self.api, kinds.POD, pod["name"], app.namespace, uid=pod["uid"]):
                    replaced.append(pod["name"])
                    outcome.deleted.append(f"Pod/{pod['name']}")
                    self.recorder.event(
                        seen_now.body,
                        "Normal",
                        "ReplacedStuckPod",
                        f"deleted web pod {pod['name']} of revision {pod['revision']}, stuck "
                        f"({pod['why']}): the StatefulSet makes it anew at its new revision",
                        logger,
                    )
        except (kube.ApiError, *refusals.TRANSIENT) as err:
            outcome.problems.append(refusals.problem(kinds.POD, where, err))
            return None
        return pods.Seen(
            pods=tuple(listed),
            lost_nodes=tuple(seen_now.lost_nodes),
            stuck=tuple(stuck),
            replaced=tuple(replaced),
        )

    def _names_in_use(
        self,
        seen_now: Observation,
        app: AppSpec,
        desired: Mapping[str, Obj | None],
        missing: Sequence[str],
    ) -> tuple[dict[str, Obj | None], list[str]] | None:
        """Who holds each ``missing`` child's name, and the kinds not listed; None: the app is gone.

        The caches answer: the children's stores (any app's, and nobody's) and the other names
        of each kind. For a child the full check found gone although its store shows it, only
        the other names are asked. The app is read unless its own event has just shown it.
        """
        found: dict[str, Obj | None] = {}
        unlisted: list[str] = []
        for key in missing:
            child = registry.BY_KEY[key]
            manifest = desired[key] or {}
            name = (app.namespace if child.namespaced else "", manifest["metadata"]["name"])
            known, obj = sources.named(self.cache, child, name, others=key in seen_now.stale)
            if known:
                found[key] = obj
            elif child.name not in unlisted:
                unlisted.append(child.name)
        if not seen_now.app_current:
            current = kube.get(self.api, kinds.APP, app.name, app.namespace, cached=True)
            if current is None or current["metadata"].get("uid") != app.uid:
                return None
        return found, unlisted

    def _warn_if_news(self, body: Obj, seen: Seen, outcome: Outcome, logger: Log) -> None:
        """Post a Warning event when the app's Ready condition does not already tell of it.

        Events are for changes: repeating the same Warning on every child event would flood the
        namespace and cost a write each time.
        """
        problem = status.combine(outcome.problems)
        if problem is None or all(p.reason == "ServerTrouble" for p in outcome.problems):
            # Server trouble is retried with backoff: a log line and the condition tell of it,
            # a Warning event per retry would add load to a server already in trouble.
            return
        said = (seen.ready.get("reason"), seen.ready.get("message"))
        if said != (problem.reason, problem.message):
            self.recorder.event(body, "Warning", problem.reason, problem.message, logger)

    def _publish(self, seen: Seen, new: dict[str, Any], outcome: Outcome) -> None:
        if all(seen.status.get(name) == value for name, value in new.items()):
            return
        urgent = status.urgent(seen.status, new)
        if not urgent and not self.queue.progress_due((seen.namespace, seen.name)):
            outcome.status_held = True
            return
        written = kube.patch_status(self.api, seen.namespace, seen.name, new, kinds.APP)
        outcome.status_written = True
        if written is not None:
            outcome.written_version = written.get("metadata", {}).get("resourceVersion")
            outcome.written_status = written.get("status")


def _always() -> bool:
    return True


def _not_listed(kinds_: Sequence[str]) -> status.Problem | None:
    """The caches of some kinds are not listed yet: no name of theirs is known to be free."""
    if not kinds_:
        return None
    return status.Problem(
        "NotListed",
        f"the operator could not list the {', '.join(kinds_)} of the cluster yet, so it cannot "
        "tell whether this app's names are free; nothing was created. It lists again with "
        "backoff: its log says why the list failed (a permission the chart's RBAC lacks, the "
        "API server down)",
        retry=True,
    )


def _find_conflict(
    app: AppSpec,
    desired: Mapping[str, Obj | None],
    children: Mapping[str, Obj | None],
) -> status.Problem | None:
    for key, manifest in desired.items():
        if manifest is None:
            continue
        live = children.get(key)
        if live is not None and not owned(app, live):
            return name_conflict(registry.BY_KEY[key], manifest["metadata"]["name"], app)
    return None


def _invalid_status(seen: Seen, problem: status.Problem) -> dict[str, Any]:
    previous = seen.status.get("conditions") or []
    ready = status.condition(
        "Ready",
        ok=False,
        reason=problem.reason,
        message=problem.message,
        previous=previous,
        now=timestamp(),
    )
    return {"observedGeneration": seen.generation, "conditions": [ready]}
