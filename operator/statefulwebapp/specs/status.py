"""Status, recomputed from what the children show, every time.

Pure: given the spec, the children as last observed, and the previous status (only to keep
``lastTransitionTime`` stable, and the date logger's health while a run is in progress), it
returns the whole status. Nothing is remembered between calls, so the status cannot drift
away from the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from statefulwebapp.api.model import AppSpec
from statefulwebapp.api.objects import Obj
from statefulwebapp.specs import names, registry
from statefulwebapp.specs.render import BACKUP_CHECK_SECONDS, render_disruption_budget


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
    now: str = "",
) -> dict[str, Any]:
    """The full status of the app from its children as observed.

    ``children`` maps a child kind to the live object (None if absent). ``previous`` is the
    status as last written. ``problem`` is set by the reconciler when it could not act (invalid
    spec, conflict, refused write); it wins over whatever the children show, because the
    children then no longer follow the spec. ``mount_failures`` are the kubelet's FailedMount
    events of the app's pods (``sources.pack_pod_event``): they say why pods wait;
    ``probe_failures`` their Unhealthy events: what a backup agent's check found wrong.
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
        _fresh_failures(mount_failures, now, MOUNT_FAILURE_SECONDS),
        _fresh_failures(probe_failures, now, probe_failure_seconds(app)),
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
    scheduled = _get(cron, "status", "lastScheduleTime")
    succeeded = _get(cron, "status", "lastSuccessfulTime")
    if scheduled is None:
        return "ok"
    # RFC 3339 UTC timestamps of one format compare in time order as strings.
    if succeeded is not None and succeeded >= scheduled:
        return "ok"
    if _get(cron, "status", "active"):
        return previous if previous in ("ok", "failing") else "ok"
    return "failing"


KUBELET_EVENT_REFILL_SECONDS = 300.0
"""The kubelet tells at most 25 warnings of one pod at once, then one every five minutes
(client-go's event spam filter): a failure that goes on is told again within this long and
one more period of whatever fails (a check, a mount try)."""

MOUNT_RETRY_SECONDS = 122.0
"""The longest the kubelet waits between two tries of a failing mount (its backoff's cap)."""

MOUNT_FAILURE_SECONDS = KUBELET_EVENT_REFILL_SECONDS + 2 * MOUNT_RETRY_SECONDS
"""How long a FailedMount event counts after the kubelet last told it: it tells again, within
this long, while the mount fails, and stops once it works (the pod then soon becomes ready);
an older event says nothing of today's pods."""


def probe_failure_seconds(app: AppSpec) -> float:
    """How long a failed check (a backup agent's, a web pod's) counts after it was last told.

    A check that keeps failing is told again within this long.
    """
    period = max(BACKUP_CHECK_SECONDS, app.probes.readiness.period_seconds)
    return KUBELET_EVENT_REFILL_SECONDS + 2 * period


def _fresh_failures(failures: Sequence[Obj], now: str, seconds: float) -> list[Obj]:
    if not failures or not now:
        return list(failures)
    cutoff = datetime.fromisoformat(now) - timedelta(seconds=seconds)
    return [f for f in failures if (seen := _seen(f)) is not None and seen >= cutoff]


def _seen(failure: Obj) -> datetime | None:
    try:
        return datetime.fromisoformat(str(failure.get("seen")))
    except ValueError:
        return None


def recheck_after(
    app: AppSpec, mount_failures: Sequence[Obj], probe_failures: Sequence[Obj], now: str
) -> float | None:
    """Seconds until the first of the kubelet's reports that count now stops counting, or None.

    Nothing is told when a report ages out, so a status that quotes one must be computed again
    then, or it would go on quoting a failure that has ended.
    """
    if not now:
        return None
    at = datetime.fromisoformat(now)
    ends = [
        (seen - at).total_seconds() + seconds
        for failures, seconds in (
            (mount_failures, MOUNT_FAILURE_SECONDS),
            (probe_failures, probe_failure_seconds(app)),
        )
        for failure in _fresh_failures(failures, now, seconds)
        if (seen := _seen(failure)) is not None
    ]
    return max(1.0, min(ends)) if ends else None


def _failing_mounts(app: AppSpec, failures: Sequence[Obj], component: str) -> str:
    """Why pods of ``component`` cannot mount the volume, with the kubelet's words; "" if not."""
    by_pod: dict[str, Obj] = {}
    for failure in failures:
        pod = str(failure.get("pod") or "")
        if names.pod_owner(pod) != (app.name, component):
            continue
        if component == names.WEB and int(pod.rsplit("-", 1)[1]) >= app.replicas:
            continue  # A pod scaled away.
        # The kubelet's "MountVolume.SetUp failed ..." carries the mount's own error; its
        # later "Unable to attach or mount volumes ... timed out" only says time passed.
        held = by_pod.get(pod)
        if held is None or _rank(failure) > _rank(held):
            by_pod[pod] = failure
    if not by_pod:
        return ""
    pods = sorted(by_pod)
    first = by_pod[pods[0]]
    what = "web pod" if component == names.WEB else "backup agent"
    nfs = app.storage.nfs
    return (
        f"{what}{'s' if len(pods) > 1 else ''} {', '.join(pods)} cannot mount volume "
        f"{names.volume(app)} (NFS {nfs.server}:{nfs.path})"
        + (f" on node {first['node']}" if first.get("node") else "")
        + f": {kubelet_detail(str(first.get('message', '')))}; the kubelet keeps trying: check "
        "that the NFS server answers and exports the path to this node"
    )


def _rank(failure: Obj) -> tuple[bool, str]:
    """Which of a pod's FailedMount events says most: the mount's own error, then the newest."""
    return str(failure.get("message", "")).startswith("MountVolume."), str(failure.get("seen"))


def kubelet_detail(message: str, limit: int = 400) -> str:
    """The kubelet's mount error in one line: its first line and the mount command's output."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "no message"
    output = next(
        (line[len("Output:") :].strip() for line in lines if line.startswith("Output:")), ""
    )
    detail = f"{lines[0]} ({output})" if output and output not in lines[0] else lines[0]
    return detail if len(detail) <= limit else detail[: limit - 3] + "..."


BACKUP_FAILURES = (
    "last archive run failed",
    "no archive made in two intervals",
    "the newest archive is gone",
    "an archive run has gone on for over",
)
"""What a backup agent's check says when archiving went wrong (``scripts/backup-check.sh``);
its other answers: no run has finished yet (an agent still starting), and :data:`RESTORE_WORK`."""
RESTORE_WORK = "paused: a restore's work files"
"""What a backup agent's check says while the volume holds a restore's work files."""


def _agents_saying(app: AppSpec, failures: Sequence[Obj], said: Sequence[str]) -> dict[str, Obj]:
    """Per node, the newest failure of the app's agents whose check said one of ``said``."""
    by_node: dict[str, Obj] = {}
    for failure in failures:
        pod = str(failure.get("pod") or "")
        if names.pod_owner(pod) != (app.name, names.BACKUP):
            continue
        text = str(failure.get("message") or "").split("probe failed: ", 1)[-1].strip()
        text = text.removeprefix("backup: ")
        if not text.startswith(tuple(said)):
            continue
        node = str(failure.get("node") or "?")
        if node not in by_node or str(failure.get("seen")) > str(by_node[node].get("seen")):
            by_node[node] = {**failure, "said": text}
    return by_node


def _interrupted_restore(app: AppSpec, failures: Sequence[Obj]) -> str:
    """What the volume holds when a restore stopped half-way, and how to finish; "" if not.

    Only the agents see into the volume; ``failures`` told before the app's last restore ended
    were left out by the caller: they are of that restore's own work files.
    """
    by_node = _agents_saying(app, failures, (RESTORE_WORK,))
    if not by_node:
        return ""
    nodes = sorted(by_node)
    nfs = app.storage.nfs
    return (
        f"volume {names.volume(app)} (NFS {nfs.server}:{nfs.path}) holds the work files of a "
        "restore that did not finish (.swa-restore-* at its top: the content from before that "
        "restore, and the archive's, extracted in full or in part, perhaps half swapped in), "
        f"seen by the backup agent{'s' if len(nodes) > 1 else ''} on "
        f"node{'s' if len(nodes) > 1 else ''} {', '.join(nodes)}; the web pods serve what the "
        "volume holds and no archive is made meanwhile. To finish, create a "
        f"StatefulWebAppRestore with appName {app.name} in namespace {app.namespace}: it "
        "completes the stopped swap first, then restores the archive it names"
    )


def _failing_backups(app: AppSpec, failures: Sequence[Obj]) -> str:
    """Which agents' checks say archiving fails, on which nodes, and why; "" if none do."""
    by_node = _agents_saying(app, failures, BACKUP_FAILURES)
    if not by_node:
        return ""
    nodes = sorted(by_node)
    pod = min(str(failure.get("pod")) for failure in by_node.values())
    return (
        f"backup agent{'s' if len(nodes) > 1 else ''} on node{'s' if len(nodes) > 1 else ''} "
        f"{', '.join(nodes)}: {by_node[nodes[0]]['said']}; see kubectl logs -n {app.namespace} "
        f"{pod}"
    )


def _failing_web_checks(app: AppSpec, failures: Sequence[Obj]) -> str:
    """The kubelet's words for the web check that failed last; "" if none has lately.

    For example ``web-1: Readiness probe failed: HTTP probe failed with statuscode: 404``.
    """
    # The one seen last says what fails now: a pod's check can fail in several ways over its
    # life (connection refused while nginx starts, then 404), one event each, and a pod that
    # failed a check while it started and is ready since has no newer failure.
    newest: dict[str, Obj] = {}
    for failure in failures:
        pod = str(failure.get("pod") or "")
        if names.pod_owner(pod) != (app.name, names.WEB):
            continue
        if int(pod.rsplit("-", 1)[1]) >= app.replicas:
            continue  # A pod scaled away.
        if not str(failure.get("message") or "").strip():
            continue
        held = newest.get(pod)
        if held is None or str(failure.get("seen")) > str(held.get("seen")):
            newest[pod] = failure
    if not newest:
        return ""
    last = max(newest, key=lambda pod: (str(newest[pod].get("seen")), pod))
    said = str(newest[last]["message"]).strip().splitlines()[0][:300]
    return f"{last}: {said}"


def _readiness(  # noqa: PLR0911, PLR0912  (one early return per readiness gate, in order)
    app: AppSpec,
    children: Mapping[str, Obj | None],
    problem: Problem | None,
    mount_failures: Sequence[Obj] = (),
    probe_failures: Sequence[Obj] = (),
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
    ) and (interrupted := _interrupted_restore(app, probe_failures)):
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
    ready = int(_get(sts, "status", "readyReplicas", default=0))
    updated = int(_get(sts, "status", "updatedReplicas", default=0))
    current = int(_get(sts, "status", "replicas", default=0))
    if (
        not _fresh(sts)
        or ready != app.replicas
        or current != app.replicas
        or (app.replicas and updated != app.replicas)
    ):
        failing = _failing_mounts(app, mount_failures, names.WEB)
        if failing:
            return "VolumeMountFailed", failing
        checks = _failing_web_checks(app, probe_failures)
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
            failing = _failing_mounts(app, mount_failures, names.BACKUP)
            if failing:
                return "VolumeMountFailed", failing
            failing = _failing_backups(app, probe_failures)
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
