"""Status is a pure function of the spec and the children as observed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from statefulwebapp.api.parse import parse
from statefulwebapp.specs.failures import recheck_after
from statefulwebapp.specs.status import Problem, combine, compute, date_log, urgent
from tests.unit.scenario import SCENARIO, healthy

APP = parse(SCENARIO)


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def test_all_children_healthy_is_ready() -> None:
    status = compute(APP, generation=7, children=healthy(), now="T1")
    assert ready(status)["status"] == "True"
    assert status["observedGeneration"] == 7
    assert (status["ready"], status["storage"], status["backup"]) == ("3/3", "Bound", "4/4")
    assert status["dateLog"] == "ok"
    assert status["selector"] == "app.kubernetes.io/instance=web,app.kubernetes.io/component=web"


def test_each_gate_names_what_is_missing() -> None:
    cases = {
        "PersistentVolumeClaim": ("status", {"phase": "Pending"}, "StorageNotBound"),
        "StatefulSet": (
            "status",
            {"observedGeneration": 2, "replicas": 3, "readyReplicas": 2, "updatedReplicas": 3},
            "WebPodsNotReady",
        ),
        "DaemonSet": (
            "status",
            {
                "observedGeneration": 1,
                "desiredNumberScheduled": 4,
                "numberReady": 3,
                "updatedNumberScheduled": 4,
            },
            "BackupNotReady",
        ),
    }
    for kind, (key, value, reason) in cases.items():
        children = healthy()
        children[kind][key] = value
        condition = ready(compute(APP, generation=1, children=children, now="T"))
        assert (condition["status"], condition["reason"]) == ("False", reason)
        assert condition["message"]


def test_missing_children() -> None:
    for kind, reason in [
        ("StatefulSet", "StatefulSetMissing"),
        ("DaemonSet", "BackupMissing"),
        ("CronJob", "DateLoggerMissing"),
    ]:
        children = healthy()
        children[kind] = None
        assert ready(compute(APP, generation=1, children=children, now="T"))["reason"] == reason


def test_stale_statefulset_generation_is_not_ready() -> None:
    children = healthy()
    children["StatefulSet"]["metadata"]["generation"] = 3
    assert (
        ready(compute(APP, generation=1, children=children, now="T"))["reason"] == "WebPodsNotReady"
    )


def test_problem_wins_over_healthy_children() -> None:
    condition = ready(
        compute(
            APP, generation=1, children=healthy(), problem=Problem("NameConflict", "x"), now="T"
        )
    )
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "False",
        "NameConflict",
        "x",
    )


def test_transition_time_moves_only_on_flips() -> None:
    first = compute(APP, generation=1, children=healthy(), now="T1")
    again = compute(APP, generation=1, children=healthy(), previous=first, now="T2")
    assert ready(again)["lastTransitionTime"] == "T1"
    children = healthy()
    children["PersistentVolumeClaim"] = None
    flipped = compute(APP, generation=1, children=children, previous=again, now="T3")
    assert ready(flipped)["lastTransitionTime"] == "T3"


def test_progress_is_not_urgent_but_news_is() -> None:
    done = compute(APP, generation=2, children=healthy(), now="T1")
    children = healthy()
    children["StatefulSet"]["status"]["readyReplicas"] = 1
    one = compute(APP, generation=2, children=children, now="T1")
    children["StatefulSet"]["status"]["readyReplicas"] = 2
    two = compute(APP, generation=2, children=children, now="T1")
    children["PersistentVolumeClaim"]["status"]["phase"] = "Pending"
    unbound = compute(APP, generation=2, children=children, now="T1")
    assert not urgent(one, two)  # A count moved.
    assert not urgent(two, unbound)  # One waiting reason gave way to another.
    assert urgent({}, one)  # First status of a new app.
    assert urgent(two, done)  # Ready flipped.
    assert urgent(done, two)
    newer = compute(APP, generation=3, children=children, now="T1")
    assert urgent(unbound, newer)  # A new generation is acknowledged at once.
    conflict = compute(
        APP, generation=2, children=children, problem=Problem("NameConflict", "m"), now="T1"
    )
    assert urgent(two, conflict)
    assert urgent(conflict, two)
    children = healthy()
    children["CronJob"]["status"]["lastSuccessfulTime"] = "2026-11-25T10:01:02Z"
    assert compute(APP, generation=2, children=children, now="T1") == done  # Another good run.
    children["CronJob"]["status"]["lastScheduleTime"] = "2026-11-25T10:02:00Z"
    failing = compute(APP, generation=2, children=children, previous=done, now="T1")
    assert failing["dateLog"] == "failing"
    assert urgent(done, failing)  # The date logger's health changed.
    assert not urgent(done, dict(done))
    assert urgent(failing, done)  # Recovered.


def test_several_problems_are_named_in_one_condition() -> None:
    assert combine([]) is None
    one = Problem(
        "Refused", "PersistentVolumeClaim ns/web-data was refused", "PersistentVolumeClaim"
    )
    assert combine([one]) == one
    two = Problem("ServerTrouble", "DaemonSet ns/web-backup: timeout; retrying", "DaemonSet", True)
    both = combine([one, two])
    assert both is not None
    assert both.reason == "Refused"
    assert both.retry
    assert both.message == (
        "2 children not applied: PersistentVolumeClaim ns/web-data was refused; "
        "DaemonSet ns/web-backup: timeout; retrying"
    )
    status = compute(APP, generation=3, children=healthy(), problem=both, now="t")
    assert status["conditions"][0]["message"] == both.message


def cron(scheduled: str | None, succeeded: str | None, active: bool = False) -> dict[str, Any]:
    state: dict[str, Any] = {"lastScheduleTime": scheduled, "lastSuccessfulTime": succeeded}
    if active:
        state["active"] = [{"name": "web-datelog-1"}]
    return {"status": {k: v for k, v in state.items() if v is not None or k == "active"}}


T0, T1, T2 = "2026-11-25T10:00:00Z", "2026-11-25T10:00:02Z", "2026-11-25T10:01:00Z"


@pytest.mark.parametrize(
    ("job", "previous", "expected"),
    [
        # No run has finished: nothing has gone wrong, and the first good run is no news.
        (None, None, "ok"),
        (cron(None, None), None, "ok"),
        (cron(T0, None, active=True), None, "ok"),
        (cron(T0, T1), None, "ok"),
        (cron(T0, T1), "ok", "ok"),
        # The next run has started: the last finished one still speaks.
        (cron(T2, T1, active=True), "ok", "ok"),
        (cron(T2, T1, active=True), "failing", "failing"),
        # It ended without a success.
        (cron(T2, T1), "ok", "failing"),
        (cron(T0, None), "ok", "failing"),  # The first run failed.
        (cron(T0, None, active=True), "suspended", "ok"),  # Resumed, running.
    ],
)
def test_date_log_is_health_not_a_clock(
    job: dict[str, Any] | None, previous: str | None, expected: str
) -> None:
    assert date_log(APP, job, previous) == expected


def test_a_healthy_date_logger_costs_no_status_change_per_run() -> None:
    """A run of the default schedule, event by event as the CronJob controller records it:
    scheduled (a Job active), then succeeded. The status the operator would write never
    changes, so no run costs a write."""
    children = healthy()
    first = compute(APP, generation=1, children=children, now="T1")
    for job in (cron(T2, T1, active=True), cron(T2, "2026-11-25T10:01:03Z")):
        children["CronJob"] = job
        again = compute(APP, generation=1, children=children, previous=first, now="T2")
        assert again == first
        assert not urgent(first, again)


def test_date_log_follows_the_spec_switches() -> None:
    off = dataclasses.replace(APP, date_logger=dataclasses.replace(APP.date_logger, enabled=False))
    paused = dataclasses.replace(
        APP, date_logger=dataclasses.replace(APP.date_logger, suspend=True)
    )
    assert date_log(off, cron(T0, T1), "ok") == "disabled"
    assert date_log(paused, cron(T0, None), "ok") == "suspended"


KUBELET_MESSAGE = (
    'MountVolume.SetUp failed for volume "default.web-data" : mount failed: exit status 32\n'
    "Mounting command: /cache/bin/swa-nfs-mount\n"
    "Mounting arguments: mount -t nfs -o nfsvers=3 211.183.3.100:/shared /var/lib/kubelet/x\n"
    "Output: swa-nfs-mount: mount 211.183.3.100:/shared: connection refused\n"
)


def failure(pod: str, seen: str = "2026-11-25T10:04:00Z", **extra: Any) -> dict[str, Any]:
    return {"pod": pod, "node": "real", "message": KUBELET_MESSAGE, "seen": seen, **extra}


def web_waiting() -> dict[str, Any]:
    children = healthy()
    children["StatefulSet"]["status"]["readyReplicas"] = 2
    return children


def test_a_failing_mount_is_named_with_the_kubelets_words() -> None:
    status = compute(
        APP,
        generation=1,
        children=web_waiting(),
        mount_failures=[failure("web-2")],
        now="2026-11-25T10:05:00Z",
    )
    condition = ready(status)
    assert (condition["status"], condition["reason"]) == ("False", "VolumeMountFailed")
    message = condition["message"]
    assert message.startswith(
        "web pod web-2 cannot mount volume default.web-data (NFS 211.183.3.100:/shared) on node "
        "real: MountVolume.SetUp failed"
    )
    assert "(swa-nfs-mount: mount 211.183.3.100:/shared: connection refused)" in message
    assert urgent(compute(APP, generation=1, children=web_waiting(), now="T"), status)


def test_mount_failures_count_only_while_fresh_and_for_this_apps_pods() -> None:
    def reason(*failures: dict[str, Any]) -> str:
        status = compute(
            APP,
            generation=1,
            children=web_waiting(),
            mount_failures=failures,
            now="2026-11-25T10:20:00Z",
        )
        return str(ready(status)["reason"])

    assert reason(failure("web-1", seen="2026-11-25T10:16:00Z")) == "VolumeMountFailed"
    # Older than five minutes: the kubelet would have reported it again had it kept failing.
    assert reason(failure("web-1", seen="2026-11-25T10:10:00Z")) == "WebPodsNotReady"
    # A pod scaled away, another app's pod, a name that is no pod of ours.
    assert reason(failure("web-3", seen="2026-11-25T10:19:00Z")) == "WebPodsNotReady"
    assert reason(failure("shop-0", seen="2026-11-25T10:19:00Z")) == "WebPodsNotReady"
    assert reason(failure("web", seen="2026-11-25T10:19:00Z")) == "WebPodsNotReady"


def test_ready_pods_win_over_old_mount_failures() -> None:
    status = compute(
        APP,
        generation=1,
        children=healthy(),
        mount_failures=[failure("web-0", seen="2026-11-25T10:19:00Z")],
        now="2026-11-25T10:20:00Z",
    )
    assert ready(status)["reason"] == "Ready"


def test_backup_agents_failing_to_mount_name_their_pods() -> None:
    children = healthy()
    children["DaemonSet"]["status"]["numberReady"] = 3
    late = "Unable to attach or mount volumes: unmounted volumes=[data]: timed out"
    status = compute(
        APP,
        generation=1,
        children=children,
        mount_failures=[
            failure("web-backup-x7k2p", seen="2026-11-25T10:19:30Z", message=late),
            failure("web-backup-x7k2p", seen="2026-11-25T10:19:00Z"),
            failure("web-backup-b4c5d", seen="2026-11-25T10:19:10Z"),
        ],
        now="2026-11-25T10:20:00Z",
    )
    condition = ready(status)
    assert condition["reason"] == "VolumeMountFailed"
    # The mount's own error is preferred over the later timeout, which says only time passed.
    assert condition["message"].startswith(
        "backup agents web-backup-b4c5d, web-backup-x7k2p cannot mount volume default.web-data"
    )
    assert "timed out" not in condition["message"]


def test_a_missing_disruption_budget_is_named_only_where_one_is_rendered() -> None:
    children = healthy()
    children["PodDisruptionBudget"] = None
    condition = ready(compute(APP, generation=1, children=children, now="T"))
    assert condition["reason"] == "DisruptionBudgetMissing"
    assert condition["message"] == "PodDisruptionBudget web does not exist yet"
    one = parse({**SCENARIO, "spec": {**SCENARIO["spec"], "replicas": 1}})
    children["StatefulSet"]["status"].update(replicas=1, readyReplicas=1, updatedReplicas=1)
    assert ready(compute(one, generation=1, children=children, now="T"))["reason"] == "Ready"


def agents_waiting() -> dict[str, Any]:
    children = healthy()
    children["DaemonSet"]["status"]["numberReady"] = 2
    return children


def unhealthy(pod: str, said: str, node: str, seen: str = "2026-11-25T10:19:30Z") -> dict[str, Any]:
    message = f"Readiness probe failed: backup: {said}\n"
    return {"pod": pod, "node": node, "message": message, "seen": seen}


def test_failing_backup_agents_are_named_with_their_nodes_and_the_scripts_error() -> None:
    said = "last archive run failed: archiving /data into /backup failed: tar: write error"
    failures = [
        unhealthy("web-backup-x7k2p", said, "worker2"),
        unhealthy("web-backup-b9d4f", said, "worker1"),
    ]
    status = compute(APP, generation=1, children=agents_waiting(), probe_failures=failures, now=NOW)
    condition = ready(status)
    assert (condition["status"], condition["reason"]) == ("False", "BackupFailing")
    assert condition["message"] == (
        f"backup agents on nodes worker1, worker2: {said}; "
        "see kubectl logs -n default web-backup-b9d4f"
    )
    # News, written at once; and the same failure seen again is no change at all.
    assert urgent(compute(APP, generation=1, children=agents_waiting(), now=NOW), status)
    again = compute(
        APP,
        generation=1,
        children=agents_waiting(),
        probe_failures=failures[::-1],
        previous=status,
        now="2026-11-25T10:20:30Z",
    )
    assert again == status


NOW = "2026-11-25T10:20:00Z"


def test_a_starting_agent_or_an_old_failure_is_only_progress() -> None:
    def reason(*failures: dict[str, Any], children: dict[str, Any] | None = None) -> str:
        status = compute(
            APP,
            generation=1,
            children=children or agents_waiting(),
            probe_failures=failures,
            now=NOW,
        )
        return str(ready(status)["reason"])

    stale = "no archive made in two intervals (7200 s); the newest is default-web-x.tar.gz"
    assert reason(unhealthy("web-backup-x7k2p", stale, "n1")) == "BackupFailing"
    for hung in (
        "the newest archive is gone from /backup/n1 (deleted by hand?); the next run makes one",
        "an archive run has gone on for over 3600 s: is the volume or /backup/n1 hung?",
    ):
        assert reason(unhealthy("web-backup-x7k2p", hung, "n1")) == "BackupFailing"
    starting = "no archive run has finished yet"
    assert reason(unhealthy("web-backup-x7k2p", starting, "n1")) == "BackupNotReady"
    # Told 330 s ago: past its 25 warnings, the kubelet tells a failing check once in 300 s.
    quieted = unhealthy("web-backup-x7k2p", stale, "n1", seen="2026-11-25T10:14:30Z")
    assert reason(quieted) == "BackupFailing"
    # Not told for longer than that and two checks: the agent has passed its check since.
    old = unhealthy("web-backup-x7k2p", stale, "n1", seen="2026-11-25T10:13:59Z")
    assert reason(old) == "BackupNotReady"
    # Another app's agent, a web pod's probe.
    assert reason(unhealthy("shop-backup-x7k2p", stale, "n1")) == "BackupNotReady"
    assert reason(unhealthy("web-0", stale, "n1")) == "BackupNotReady"
    # Every agent ready again: the failure seen before says nothing any more.
    assert reason(unhealthy("web-backup-x7k2p", stale, "n1"), children=healthy()) == "Ready"


def test_a_restore_under_way_says_so_and_wins_over_the_stopped_pods() -> None:
    restoring = dataclasses.replace(APP, restoring="back")
    children = healthy()
    children["StatefulSet"]["status"].update(replicas=0, readyReplicas=0, updatedReplicas=0)
    status = compute(restoring, generation=1, children=children, now=NOW)
    condition = ready(status)
    assert (condition["status"], condition["reason"]) == ("False", "Restoring")
    assert condition["message"] == (
        "restore back is running: the web pods are stopped until it has finished "
        "(kubectl get swar back -n default)"
    )
    assert urgent(compute(APP, generation=1, children=healthy(), now=NOW), status)
    problem = Problem("Forbidden", "no")
    assert (
        ready(compute(restoring, generation=1, children=children, problem=problem, now=NOW))[
            "reason"
        ]
        == "Forbidden"
    )


WORK_FILES = "paused: a restore's work files (.swa-restore-*) are in the volume"


def test_a_restore_stopped_half_way_is_named_with_what_the_volume_holds_and_how_to_finish() -> None:
    failures = [
        unhealthy("web-backup-x7k2p", WORK_FILES, "worker2"),
        unhealthy("web-backup-b9d4f", WORK_FILES, "worker1"),
    ]
    # The web pods are back on the volume (the restore's deletion let them start): the
    # interrupted restore wins over whatever else the children show.
    children = agents_waiting()
    children["StatefulSet"]["status"]["readyReplicas"] = 1

    status = compute(APP, generation=1, children=children, probe_failures=failures, now=NOW)

    condition = ready(status)
    assert (condition["status"], condition["reason"]) == ("False", "RestoreInterrupted")
    assert condition["message"] == (
        "volume default.web-data (NFS 211.183.3.100:/shared) holds the work files of a restore "
        "that did not finish (.swa-restore-* at its top: the content from before that restore, "
        "and the archive's, extracted in full or in part, perhaps half swapped in), seen by the "
        "backup agents on nodes worker1, worker2; the web pods serve what the volume holds and "
        "no archive is made meanwhile. To finish, create a StatefulWebAppRestore with appName "
        "web in namespace default: it completes the stopped swap first, then restores the "
        "archive it names"
    )
    assert urgent(compute(APP, generation=1, children=children, now=NOW), status)
    # A restore under way says so instead; every agent ready again: it is over.
    restoring = dataclasses.replace(APP, restoring="back")
    assert ready(compute(restoring, generation=1, children=children, probe_failures=failures))[
        "reason"
    ] == ("Restoring")
    healthy_agents = healthy()
    assert ready(compute(APP, generation=1, children=healthy_agents, probe_failures=failures))[
        "reason"
    ] == ("Ready")


def test_a_failing_web_check_is_named_with_the_kubelets_words() -> None:
    said = "Readiness probe failed: HTTP probe failed with statuscode: 404"
    failures = [
        {"pod": "web-2", "node": "real", "message": said, "seen": "2026-11-25T10:19:30Z"},
        {"pod": "web-1", "node": "real", "message": said, "seen": "2026-11-25T10:19:40Z"},
        {"pod": "web-7", "node": "real", "message": "scaled away", "seen": "2026-11-25T10:19:40Z"},
    ]
    status = compute(APP, generation=1, children=web_waiting(), probe_failures=failures, now=NOW)
    condition = ready(status)
    assert condition["reason"] == "WebPodsNotReady"
    assert condition["message"] == (
        f"2/3 web pods ready (3 updated); web-1: {said}; "
        "see kubectl get pods -l app.kubernetes.io/instance=web"
    )
    # The check failing another way since (nginx was starting): the newest failure is said.
    starting = "Readiness probe failed: Get http://10.0.0.7:80/: connect: connection refused"
    earlier = {"pod": "web-1", "node": "real", "message": starting, "seen": "2026-11-25T10:19:00Z"}
    for order in ([earlier, *failures], [*failures, earlier]):
        status = compute(APP, generation=1, children=web_waiting(), probe_failures=order, now=NOW)
        assert f"web-1: {said};" in ready(status)["message"]
    # A pod that failed while it started and is ready since is not the one failing now.
    started = {"pod": "web-0", "node": "real", "message": starting, "seen": "2026-11-25T10:19:35Z"}
    status = compute(
        APP, generation=1, children=web_waiting(), probe_failures=[started, *failures], now=NOW
    )
    assert f"web-1: {said};" in ready(status)["message"]
    # Not told for longer than the kubelet's quiet spell: not said any more; ready pods:
    # nothing to say.
    old = [{**f, "seen": "2026-11-25T10:10:00Z"} for f in failures]
    quiet = compute(APP, generation=1, children=web_waiting(), probe_failures=old, now=NOW)
    assert "probe failed" not in ready(quiet)["message"]
    healthy_status = compute(
        APP, generation=1, children=healthy(), probe_failures=failures, now=NOW
    )
    assert ready(healthy_status)["reason"] == "Ready"


def test_a_status_quoting_the_kubelet_is_computed_again_when_the_quote_ages_out() -> None:
    """Nothing is told when a report stops counting: the pass asks to come back then."""
    said = "Readiness probe failed: HTTP probe failed with statuscode: 404"
    probe = {"pod": "web-1", "node": "real", "message": said, "seen": "2026-11-25T10:19:30Z"}
    mount = {"pod": "web-2", "node": "real", "message": "MountVolume.SetUp failed", "seen": NOW}
    # 10:19:30 + 360 s (300 s of the kubelet's quiet spell, two 30 s checks) is 10:25:30.
    assert recheck_after(APP, [], [probe], NOW) == 330.0
    # A mount failure counts 300 s and two of the kubelet's 122 s retry waits.
    assert recheck_after(APP, [mount], [probe], NOW) == 330.0
    assert recheck_after(APP, [mount], [], NOW) == 544.0
    assert recheck_after(APP, [], [{**probe, "seen": "2026-11-25T10:10:00Z"}], NOW) is None
    assert recheck_after(APP, [], [], NOW) is None
    # A longer check period lengthens the window.
    slow = parse(
        {**SCENARIO, "spec": {**SCENARIO["spec"], "probes": {"readiness": {"periodSeconds": 60}}}}
    )
    assert recheck_after(slow, [], [probe], NOW) == 390.0


def test_a_missing_network_policy_is_named_unless_it_is_turned_off() -> None:
    children = healthy()
    children["NetworkPolicy"] = None
    condition = ready(compute(APP, generation=1, children=children, now="T"))
    assert condition["reason"] == "NetworkPolicyMissing"
    assert condition["message"] == "NetworkPolicy web-ingress does not exist yet"
    off = parse({**SCENARIO, "spec": {**SCENARIO["spec"], "networkPolicy": {"enabled": False}}})
    assert ready(compute(off, generation=1, children=children, now="T"))["reason"] == "Ready"
    # Only progress: the policy is on its way, as every child of a new app is.
    before = compute(APP, generation=1, children=children, now="T")
    after = compute(APP, generation=1, children=healthy(), now="T")
    assert urgent(before, after)  # Ready flips.
    waiting = healthy()
    waiting["PodDisruptionBudget"] = None
    waiting["NetworkPolicy"] = None
    assert not urgent(
        compute(APP, generation=1, children=waiting, now="T"),
        compute(APP, generation=1, children=children, now="T"),
    )
