"""Status, recomputed from what the children show, every time.

Pure: given the spec, the children as last observed, and the previous status (only to keep
``lastTransitionTime`` stable, and the date logger's health while a run is in progress), it
returns the whole status. Nothing is remembered between calls, so the status cannot drift
away from the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from statefulwebapp.api.model import AppSpec
from statefulwebapp.api.objects import Obj
from statefulwebapp.specs import names, pods, registry
from statefulwebapp.specs.failures import (
    MOUNT_FAILURE_SECONDS,
    failing_backups,
    failing_mounts,
    failing_web_checks,
    fresh_checks,
    fresh_failures,
    interrupted_restore,
)
from statefulwebapp.specs.render import render_disruption_budget


@dataclass(frozen=True)
class Problem:
    """Why the app, or one child of it, cannot be reconciled right now."""

    reason: str
    """CamelCase reason for the Ready condition."""
    message: str
    """What is wrong and what the user can do about it."""
    child: str = ""
    """The child kind it concerns; empty when it concerns the whole app."""
    retry: bool = False
    """Whether trying again may help without a spec change (server trouble, RBAC)."""
    retry_after: float | None = None
    """Seconds the API server asked us to wait (``Retry-After``), if it did."""


def combine(problems: Sequence[Problem]) -> Problem | None:
    """One problem telling of all: the first one's reason, every message.

    Each child is applied on its own, so several can fail in one pass; the Ready condition
    names every one of them.
    """
    if not problems:
        return None
    if len(problems) == 1:
        return problems[0]
    return Problem(
        problems[0].reason,
        f"{len(problems)} children not applied: " + "; ".join(p.message for p in problems),
        retry=any(p.retry for p in problems),
    )


def _get(obj: Obj | None, *keys: str, default: Any = None) -> Any:
    cur: Any = obj
    for key in keys:
        if not isinstance(cur, Mapping):
            return default
        cur = cur.get(key)
    return default if cur is None else cur


def _fresh(obj: Obj | None) -> bool:
    """Whether the child's controller has seen its latest spec."""
    gen = _get(obj, "metadata", "generation", default=0)
    return bool(_get(obj, "status", "observedGeneration", default=0) >= gen)


def compute(
    app: AppSpec,
    *,
    generation: int,
    children: Mapping[str, Obj | None],
    previous: Obj | None = None,
    problem: Problem | None = None,
    mount_failures: Sequence[Obj] = (),
    probe_failures: Sequence[Obj] = (),
    listed: pods.Seen | None = None,
    now: str = "",
) -> dict[str, Any]:
    """The full status of the app from its children as observed.

    ``children`` maps a child kind to the live object (None if absent). ``previous`` is the
    status as last written. ``problem`` is set by the reconciler when it could not act (invalid
    spec, conflict, refused write); it wins over whatever the children show, because the
    children then no longer follow the spec. ``mount_failures`` are the kubelet's FailedMount
    events of the app's pods (``sources.pack_pod_event``): they say why pods wait;
    ``probe_failures`` their Unhealthy and BackOff events: what a backup agent's check found
    wrong, why a web pod is not ready. ``listed``: the app's pods, when the pass listed them
    (:func:`pods.wanted`), and the nodes not Ready.
    """
    previous = previous or {}
    sts = children.get(registry.STATEFULSET.name)
    pvc = children.get(registry.PERSISTENT_VOLUME_CLAIM.name)
    ds = children.get(registry.DAEMONSET.name)
    cron = children.get(registry.CRONJOB.name)

    ready_replicas = int(_get(sts, "status", "readyReplicas", default=0))
    claim_phase = str(_get(pvc, "status", "phase", default="Missing"))
    backup_ready = int(_get(ds, "status", "numberReady", default=0))
    backup_desired = int(_get(ds, "status", "desiredNumberScheduled", default=0))

    reason, message = _readiness(
        app,
        children,
        problem,
        fresh_failures(mount_failures, now, MOUNT_FAILURE_SECONDS),
        fresh_checks(app, probe_failures, now),
        listed=listed,
    )
    selector = ",".join(f"{k}={v}" for k, v in names.selector(app, names.WEB).items())
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "replicas": app.replicas,
        "readyReplicas": ready_replicas,
        "selector": selector,
        "ready": f"{ready_replicas}/{app.replicas}",
        "storage": claim_phase,
        "backup": f"{backup_ready}/{backup_desired}" if app.backup.enabled else "disabled",
        "dateLog": date_log(app, cron, previous.get("dateLog")),
        "conditions": [
            condition(
                "Ready",
                ok=reason == "Ready",
                reason=reason,
                message=message,
                previous=previous.get("conditions") or (),
                now=now,
            ),
        ],
    }
    return status


def web_ready(app: AppSpec, sts: Obj | None) -> bool:
    """Whether the StatefulSet says every web pod is ready, at its latest spec and revision."""
    ready = int(_get(sts, "status", "readyReplicas", default=0))
    updated = int(_get(sts, "status", "updatedReplicas", default=0))
    current = int(_get(sts, "status", "replicas", default=0))
    return (
        sts is not None
        and _fresh(sts)
        and ready == app.replicas
        and current == app.replicas
        and not (app.replicas and updated != app.replicas)
    )


DATE_LOG_STATES = ("disabled", "suspended", "ok", "failing")
"""What ``status.dateLog`` can say; see :func:`date_log`."""


def date_log(app: AppSpec, cron: Obj | None, previous: str | None) -> str:
    """The date logger's health: a state that changes when its health does, never a clock.

    ``failing`` when the latest finished run did not succeed, ``ok`` otherwise (it succeeded,
    or no run has finished yet: nothing has gone wrong), ``suspended`` or ``disabled`` as the
    spec says. A new app's first run therefore costs no status write: a state ``waiting``
    until then did, a thousand writes at the same minute for a thousand new apps. While a run
    is in progress the previous state stands: the CronJob controller records a new schedule
    and the run's success in two updates, and reading the gap between them as news would
    cost a status write per run, a write per app per minute with the default schedule. When
    each run happened is on the CronJob (``kubectl get cronjob <name>-datelog``).
    """
    if not app.date_logger.enabled:
        return "disabled"
    if app.date_logger.suspend:
        return "suspended"
    told = last_run(cron)
    if told is None:
        return previous if previous in ("ok", "failing") else "ok"
    return told


def last_run(cron: Obj | None) -> str | None:
    """How the CronJob says its latest finished run went: ``ok`` or ``failing``.

    None while a run is in progress: the CronJob's status then no longer says how the run
    before it went (:func:`date_log` keeps what it said).
    """
    scheduled = _get(cron, "status", "lastScheduleTime")
    succeeded = _get(cron, "status", "lastSuccessfulTime")
    if scheduled is None:
        return "ok"
    # RFC 3339 UTC timestamps of one format compare in time order as strings.
    if succeeded is not None and succeeded >= scheduled:
        return "ok"
    if _get(cron, "status", "active"):
        return None
    return "failing"


def _readiness(  # noqa: PLR0911, PLR0912  (one early return per readiness gate, in order)
    app: AppSpec,
    children: Mapping[str, Obj | None],
    problem: Problem | None,
    mount_failures: Sequence[Obj] = (),
    probe_failures: Sequence[Obj] = (),
    *,
    listed: pods.Seen | None = None,
) -> tuple[str, str]:
    if problem is not None:
        return problem.reason, problem.message
    if app.restoring:
        return (
            "Restoring",
            f"restore {app.restoring} is running: the web pods are stopped until it has "
            f"finished (kubectl get swar {app.restoring} -n {app.namespace})",
        )
    pvc = children.get(registry.PERSISTENT_VOLUME_CLAIM.name)
    sts = children.get(registry.STATEFULSET.name)
    ds = children.get(registry.DAEMONSET.name)
    cron = children.get(registry.CRONJOB.name)
    # An agent whose check fails is not ready: a report of one while every agent is ready is
    # from before it recovered.
    if int(_get(ds, "status", "numberReady", default=0)) < int(
        _get(ds, "status", "desiredNumberScheduled", default=0)
    ) and (interrupted := interrupted_restore(app, probe_failures)):
        return "RestoreInterrupted", interrupted
    phase = _get(pvc, "status", "phase", default="Missing")
    if phase != "Bound":
        return (
            "StorageNotBound",
            f"claim {names.claim(app)} is {phase}, waiting for it to bind to volume "
            f"{names.volume(app)} (NFS {app.storage.nfs.server}:{app.storage.nfs.path})",
        )
    if sts is None:
        return "StatefulSetMissing", f"StatefulSet {names.statefulset(app)} does not exist yet"
    if listed is not None:
        # A node gone takes its pods' readiness with it: the StatefulSet's and DaemonSet's
        # counts then say less than the node does, and a probe failure told before says
        # nothing of it.
        lost = pods.on_lost_nodes(app, listed.pods, listed.lost_nodes)
        if lost:
            return "NodeNotReady", lost
        # Only what the kubelet said of a pod that is not ready now is current.
        ready_now = {p["name"] for p in listed.pods if p["ready"]}
        probe_failures = [f for f in probe_failures if f.get("pod") not in ready_now]
    ready = int(_get(sts, "status", "readyReplicas", default=0))
    updated = int(_get(sts, "status", "updatedReplicas", default=0))
    if not web_ready(app, sts):
        failing = failing_mounts(app, mount_failures, names.WEB)
        if failing:
            return "VolumeMountFailed", failing
        if listed is not None:
            said = pods.rollout_stuck(app, sts, listed.stuck, listed.replaced)
            if said:
                return "RolloutStuck", said
        checks = failing_web_checks(app, probe_failures)
        return (
            "WebPodsNotReady",
            f"{ready}/{app.replicas} web pods ready ({updated} updated)"
            + (f"; {checks}" if checks else "")
            + f"; see kubectl get pods -l {names.LABEL_INSTANCE}={app.name}",
        )
    if app.backup.enabled:
        if ds is None:
            return "BackupMissing", f"DaemonSet {names.daemonset(app)} does not exist yet"
        desired = int(_get(ds, "status", "desiredNumberScheduled", default=0))
        ready_agents = int(_get(ds, "status", "numberReady", default=0))
        updated_agents = int(_get(ds, "status", "updatedNumberScheduled", default=0))
        if not _fresh(ds) or desired == 0 or ready_agents != desired or updated_agents != desired:
            failing = failing_mounts(app, mount_failures, names.BACKUP)
            if failing:
                return "VolumeMountFailed", failing
            failing = failing_backups(app, probe_failures)
            if failing:
                return "BackupFailing", failing
            return (
                "BackupNotReady",
                f"{ready_agents}/{desired} backup agents ready on eligible nodes",
            )
    if (
        children.get(registry.DISRUPTION_BUDGET.name) is None
        and render_disruption_budget(app) is not None
    ):
        return (
            "DisruptionBudgetMissing",
            f"PodDisruptionBudget {names.disruption_budget(app)} does not exist yet",
        )
    if app.network_policy.enabled and children.get(registry.NETWORK_POLICY.name) is None:
        return (
            "NetworkPolicyMissing",
            f"NetworkPolicy {names.network_policy(app)} does not exist yet",
        )
    if app.date_logger.enabled and cron is None:
        return "DateLoggerMissing", f"CronJob {names.cronjob(app)} does not exist yet"
    return "Ready", f"{app.replicas}/{app.replicas} web pods ready, storage bound"


PROGRESS_REASONS = frozenset(
    {
        "StorageNotBound",
        "StatefulSetMissing",
        "WebPodsNotReady",
        "BackupMissing",
        "BackupNotReady",
        "DisruptionBudgetMissing",
        "NetworkPolicyMissing",
        "DateLoggerMissing",
    }
)
"""Ready=False reasons that only say the children are still on their way."""
PROGRESS_FIELDS = frozenset({"readyReplicas", "ready", "storage", "backup"})
"""Counts that move while children come up; every other field says something new."""


def urgent(old: Obj, new: Obj) -> bool:
    """Whether ``new`` differs from ``old`` in something a user must see at once.

    A new generation, a Ready flip, a problem appearing or going, the date logger's health:
    yes. A count moving (1/3 -> 2/3 web pods) or one waiting reason giving way to the next
    while Ready stays False: no. Those are progress, and the reconciler may hold them back a
    while, so that a rollout costs two status writes (acknowledged, Ready) instead of one per
    pod.
    """
    for key in (new.keys() | old.keys()) - PROGRESS_FIELDS - {"conditions"}:
        if old.get(key) != new.get(key):
            return True
    before = ready_condition(old)
    after = ready_condition(new)
    if before.get("status") != after.get("status"):
        return True
    if before == after:
        return False
    return not {before.get("reason"), after.get("reason")} <= PROGRESS_REASONS


def ready_condition(status: Obj) -> Obj:
    """The Ready condition of a status, or an empty mapping."""
    conditions = status.get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def condition(
    kind: str, *, ok: bool, reason: str, message: str, previous: Sequence[Obj], now: str
) -> dict[str, Any]:
    """One condition; ``lastTransitionTime`` moves only when the status value flips."""
    value = "True" if ok else "False"
    old = next((c for c in previous if c.get("type") == kind), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == value else None
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now,
    }
