"""What the kubelet's events of an app's pods say: failing mounts, failing checks, backups.

The kubelet tells why a pod waits for its volume (``FailedMount``) and why a probe failed
(``Unhealthy``) only in events; the watches keep them packed (``controllers/sources.py``) and
the status repeats what they say while it is fresh. Pure, as ``status.py`` that reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from statefulwebapp.api.model import AppSpec
from statefulwebapp.api.objects import Obj
from statefulwebapp.specs import names
from statefulwebapp.specs.render import BACKUP_CHECK_SECONDS

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


CRASH_BACKOFF_CAP_SECONDS = 300.0
"""The longest the kubelet waits before it starts a crashing container again."""

BACKOFF_SECONDS = KUBELET_EVENT_REFILL_SECONDS + 2 * CRASH_BACKOFF_CAP_SECONDS
"""How long a BackOff event (a container crashing, an image not pulled) counts after it was
last told: the kubelet tells it again within this long while the back-off goes on."""


def probe_failure_seconds(app: AppSpec) -> float:
    """How long a failed check (a backup agent's, a web pod's) counts after it was last told.

    A check that keeps failing is told again within this long.
    """
    period = max(BACKUP_CHECK_SECONDS, app.probes.readiness.period_seconds)
    return KUBELET_EVENT_REFILL_SECONDS + 2 * period


def check_seconds(app: AppSpec, failure: Obj) -> float:
    """How long one of the kubelet's reports of a failing container counts.

    A back-off's counts longer than a failed check's: see :data:`BACKOFF_SECONDS`.
    """
    return BACKOFF_SECONDS if failure.get("backoff") else probe_failure_seconds(app)


def fresh_checks(app: AppSpec, failures: Sequence[Obj], now: str) -> list[Obj]:
    """The failed checks and back-offs that count at ``now`` (each by :func:`check_seconds`)."""
    return [f for f in failures if fresh_failures([f], now, check_seconds(app, f))]


def fresh_failures(failures: Sequence[Obj], now: str, seconds: float) -> list[Obj]:
    """The failures seen within ``seconds`` before ``now`` (all of them when ``now`` is unknown)."""
    if not failures or not now:
        return list(failures)
    cutoff = datetime.fromisoformat(now) - timedelta(seconds=seconds)
    return [f for f in failures if (seen := _seen(f)) is not None and seen >= cutoff]


def _seen(failure: Obj) -> datetime | None:
    try:
        return datetime.fromisoformat(str(failure.get("seen")))
    except ValueError:
        return None


def told_after(reports: Sequence[Obj], moment: str) -> list[Obj]:
    """The ``reports`` last told after ``moment`` (an RFC 3339 time); all of them if "".

    A report whose time cannot be read is left out once there is a moment to compare with.
    """
    if not moment:
        return list(reports)
    after = datetime.fromisoformat(moment)
    return [r for r in reports if (seen := _seen(r)) is not None and seen > after]


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
    windows = [(f, MOUNT_FAILURE_SECONDS) for f in mount_failures]
    windows += [(f, check_seconds(app, f)) for f in probe_failures]
    ends = [
        (seen - at).total_seconds() + seconds
        for failure, seconds in windows
        if fresh_failures([failure], now, seconds) and (seen := _seen(failure)) is not None
    ]
    return max(1.0, min(ends)) if ends else None


def failing_mounts(app: AppSpec, failures: Sequence[Obj], component: str) -> str:
    """Why pods of ``component`` cannot mount the volume, with the kubelet's words; "" if not."""
    by_pod: dict[str, Obj] = {}
    for failure in failures:
        pod = str(failure.get("pod") or "")
        if names.pod_owner(pod) != (app.name, component):
            continue
        if component == names.WEB and not names.serving_web_pod(app, pod):
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


def interrupted_restore(app: AppSpec, failures: Sequence[Obj]) -> str:
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


def failing_backups(app: AppSpec, failures: Sequence[Obj]) -> str:
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


def _newest_per_web_pod(app: AppSpec, failures: Sequence[Obj]) -> dict[str, Obj]:
    """Per web pod within the replicas, the kubelet's last report of it that says something."""
    # The one seen last says what fails now: a pod's check can fail in several ways over its
    # life (connection refused while nginx starts, then 404), one event each, and a pod that
    # failed a check while it started and is ready since has no newer failure.
    newest: dict[str, Obj] = {}
    for failure in failures:
        pod = str(failure.get("pod") or "")
        if not names.serving_web_pod(app, pod):
            continue  # Another's, an agent, or a pod scaled away.
        if not str(failure.get("message") or "").strip():
            continue
        held = newest.get(pod)
        if held is None or str(failure.get("seen")) > str(held.get("seen")):
            newest[pod] = failure
    return newest


def _first_line(failure: Obj) -> str:
    return str(failure["message"]).strip().splitlines()[0][:300]


def last_words(app: AppSpec, failures: Sequence[Obj]) -> dict[str, str]:
    """Per web pod within the replicas, the first line of the kubelet's last report of it."""
    return {pod: _first_line(f) for pod, f in _newest_per_web_pod(app, failures).items()}


def failing_web_checks(app: AppSpec, failures: Sequence[Obj]) -> str:
    """The kubelet's words for the web check that failed last; "" if none has lately.

    For example ``web-1: Readiness probe failed: HTTP probe failed with statuscode: 404``.
    """
    newest = _newest_per_web_pod(app, failures)
    if not newest:
        return ""
    last = max(newest, key=lambda pod: (str(newest[pod].get("seen")), pod))
    return f"{last}: {_first_line(newest[last])}"
