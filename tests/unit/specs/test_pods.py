"""What the app's pods and nodes say: a rollout stuck at a failing pod, a node lost (pure)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from statefulwebapp.api.parse import parse
from statefulwebapp.specs import pods
from statefulwebapp.specs.failures import last_words
from statefulwebapp.specs.status import compute
from tests.unit.scenario import DS_UID, SCENARIO, STS_UID, healthy, node_body, pod_body

APP = parse(SCENARIO)
OFF = dataclasses.replace(APP, rollout=dataclasses.replace(APP.rollout, replace_stuck_pods=False))
"""The app with ``rollout.replaceStuckPods: false``."""
NOW = "2026-12-07T10:10:00Z"


def rolling(update: str, current: str = "web-aaa", *, ready: int = 2, updated: int = 1) -> Any:
    """The children of an app whose StatefulSet rolls from ``current`` to ``update``."""
    children = healthy()
    children["StatefulSet"]["metadata"]["uid"] = STS_UID
    children["StatefulSet"]["status"].update(
        readyReplicas=ready, updatedReplicas=updated, currentRevision=current, updateRevision=update
    )
    return children


def listed(*bodies: Any, lost: tuple[Any, ...] = (), replaced: tuple[str, ...] = ()) -> Any:
    views = tuple(pods.view(b) for b in bodies)
    return pods.Seen(views, tuple(pods.node_view(n) for n in lost), replaced=replaced)


def unhealthy(pod: str, said: str, seen: str = "2026-12-07T10:09:50Z") -> dict[str, Any]:
    return {"pod": pod, "node": "n1", "message": said, "seen": seen}


def ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def condition_of(
    children: Any, seen: pods.Seen, failures: Any = (), app: Any = APP
) -> dict[str, Any]:
    """The Ready condition of ``app`` given its children, listed pods and the kubelet's reports.

    The stuck web pods among them are found as the pass finds them.
    """
    stuck = pods.stuck_web_pods(app, seen.pods, last_words(app, failures))
    seen = dataclasses.replace(seen, stuck=tuple(stuck))
    status = compute(
        app, generation=2, children=children, probe_failures=failures, listed=seen, now=NOW
    )
    return ready_condition(status)


# ------------------------------------------------------------------------------ views ----


def test_a_pods_view_keeps_whose_it_is_its_revision_node_and_trouble() -> None:
    crashing = pod_body("web-2", ready=False, waiting=("CrashLoopBackOff", "back-off 40s"))
    assert pods.view(crashing) == {
        "name": "web-2",
        "uid": "uid-web-2",
        "component": "web",
        "owner": STS_UID,
        "revision": "web-aaa",
        "node": "n1",
        "ready": False,
        "deleting": False,
        "trouble": "CrashLoopBackOff: back-off 40s",
    }
    starting = pod_body("web-2", ready=False, waiting=("ContainerCreating", ""))
    assert pods.view(starting)["trouble"] == ""
    unscheduled = pod_body("web-2", ready=False)
    unscheduled["status"]["conditions"][0] = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/4 nodes are available: 4 Insufficient cpu.",
    }
    assert pods.view(unscheduled)["trouble"] == (
        "Unschedulable: 0/4 nodes are available: 4 Insufficient cpu."
    )


def test_a_nodes_view_is_its_ready_condition() -> None:
    view = pods.node_view(node_body("n2", "Unknown", "NodeStatusUnknown"))
    assert view == {
        "name": "n2",
        "ready": "Unknown",
        "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
        "since": "2026-12-07T10:00:00Z",
    }
    assert pods.node_view({"metadata": {"name": "new"}})["ready"] == "Unknown"


def test_only_pods_the_apps_workloads_control_count() -> None:
    planted = pods.view(pod_body("web-1", owner="uid-someone-elses", ready=False))
    agent = pods.view(pod_body("web-backup-x7k2p", component="backup", owner=DS_UID))
    web = pods.view(pod_body("web-0"))
    mine = pods.ours([planted, agent, web], {"web": STS_UID, "backup": DS_UID})
    assert [p["name"] for p in mine] == ["web-backup-x7k2p", "web-0"]
    assert pods.ours([web], {"web": "", "backup": ""}) == []


# ------------------------------------------------------------------ when to list them ----


def test_pods_are_listed_only_when_something_is_wrong() -> None:
    failing = [unhealthy("web-2", "Readiness probe failed: 404")]
    lost = [pods.node_view(node_body("n2", "Unknown"))]
    assert not pods.wanted(APP, web_ready=True, web_failures=[], lost_nodes=[])
    assert not pods.wanted(APP, web_ready=False, web_failures=[], lost_nodes=[])
    assert not pods.wanted(APP, web_ready=True, web_failures=failing, lost_nodes=[])
    assert pods.wanted(APP, web_ready=False, web_failures=failing, lost_nodes=[])
    assert pods.wanted(APP, web_ready=True, web_failures=[], lost_nodes=lost)
    # A pod scaled away, an agent, another app's pod: nothing to list for.
    others = [unhealthy("web-3", "x"), unhealthy("web-backup-x7k2p", "x"), unhealthy("api-0", "x")]
    assert not pods.wanted(APP, web_ready=False, web_failures=others, lost_nodes=[])
    restoring = dataclasses.replace(APP, restoring="r1")
    assert not pods.wanted(restoring, web_ready=False, web_failures=failing, lost_nodes=lost)


# -------------------------------------------------------------------- stuck rollouts ----


def test_a_rollout_stopped_at_a_failing_pod_names_the_pod_its_revision_and_the_kubelet() -> None:
    children = rolling("web-bbb")
    condition = condition_of(
        children,
        listed(
            pod_body("web-0"),
            pod_body("web-1"),
            pod_body("web-2", revision="web-bbb", node="n3", ready=False),
        ),
        [unhealthy("web-2", "Readiness probe failed: HTTP probe failed with 404")],
    )
    assert condition["reason"] == "RolloutStuck"
    assert condition["message"] == (
        "the rollout to revision web-bbb stopped at web pod web-2 on node n3: Readiness probe "
        "failed: HTTP probe failed with 404; the StatefulSet waits for it for ever: fix the "
        "spec (or undo the change) and apply it; the operator then replaces web-2"
    )
    said = condition_of(
        children,
        listed(pod_body("web-2", revision="web-bbb", ready=False)),
        [unhealthy("web-2", "Readiness probe failed: 404")],
        app=OFF,
    )["message"]
    assert said.endswith("then delete web-2 by hand (spec.rollout.replaceStuckPods is false)")


def test_a_stuck_pod_the_spec_moved_on_from_is_replaced_unless_turned_off() -> None:
    # The spec was fixed: the StatefulSet rolls to web-ccc, web-2 still fails at web-bbb.
    children = rolling("web-ccc")
    sts = children["StatefulSet"]
    crashing = pod_body("web-2", revision="web-bbb", ready=False, waiting=("CrashLoopBackOff", "x"))
    stuck = pods.stuck_web_pods(APP, [pods.view(crashing), pods.view(pod_body("web-1"))], {})
    assert [p["name"] for p in stuck] == ["web-2"]
    assert [p["name"] for p in pods.to_replace(APP, sts, stuck)] == ["web-2"]
    # Never the revision being rolled out, nor before the StatefulSet took the new spec.
    assert pods.to_replace(APP, rolling("web-bbb")["StatefulSet"], stuck) == []
    unseen = copy.deepcopy(sts)
    unseen["metadata"]["generation"] = 3
    assert pods.to_replace(APP, unseen, stuck) == []
    assert pods.to_replace(OFF, sts, stuck) == []
    # A pod that is only starting is not stuck.
    starting = pods.view(pod_body("web-2", revision="web-bbb", ready=False))
    assert pods.stuck_web_pods(APP, [starting], {}) == []

    said = condition_of(children, listed(crashing, replaced=("web-2",)))
    assert said["reason"] == "RolloutStuck"
    assert said["message"] == (
        "web pod web-2 of revision web-bbb on node n1 fails (CrashLoopBackOff: x) and the spec "
        "has moved on to revision web-ccc: the StatefulSet waits for it for ever; the operator "
        "deleted it, and the StatefulSet makes it anew at web-ccc"
    )
    manual = condition_of(children, listed(crashing), app=OFF)
    assert manual["message"].endswith(
        "; delete it (kubectl delete pod -n default web-2) and it is made anew at web-ccc "
        "(spec.rollout.replaceStuckPods is false)"
    )


def test_a_failing_pod_with_no_rollout_under_way_is_not_a_stuck_rollout() -> None:
    children = rolling("web-aaa", ready=2, updated=3)
    condition = condition_of(
        children,
        listed(pod_body("web-2", ready=False)),
        [unhealthy("web-2", "Readiness probe failed: 404")],
    )
    assert condition["reason"] == "WebPodsNotReady"
    assert "web-2: Readiness probe failed: 404" in condition["message"]


# ------------------------------------------------------------------------ lost nodes ----


def test_a_lost_node_is_named_with_its_condition_and_the_pods_on_it() -> None:
    # The trial of the issue: n2 stopped; web-1 and an agent ran there. web-2 failed a
    # start-up check minutes ago on a healthy node and is ready since.
    children = rolling("web-aaa", ready=2, updated=3)
    condition = condition_of(
        children,
        listed(
            pod_body("web-0"),
            pod_body("web-1", node="n2", ready=False),
            pod_body("web-2"),
            pod_body("web-backup-x7k2p", component="backup", owner=DS_UID, node="n2", ready=False),
            lost=(node_body("n2", "Unknown", "NodeStatusUnknown"),),
        ),
        [unhealthy("web-2", "Startup probe failed: connection refused")],
    )
    assert condition["reason"] == "NodeNotReady"
    assert condition["message"] == (
        "node n2 is unreachable (its kubelet stopped posting status) since "
        "2026-12-07T10:00:00Z: web pod web-1 and backup agent web-backup-x7k2p on it; no "
        "archive is made there meanwhile. A StatefulSet never runs two pods of one name, so "
        "web-1 comes back when the node does; if the node is gone for good, delete it (kubectl "
        "delete node n2) and its pods are made again elsewhere"
    )
    assert "web-2" not in condition["message"]


def test_a_lost_node_without_the_apps_pods_leaves_the_app_as_it_is() -> None:
    lost = (node_body("n9", "False", "KubeletNotReady"),)
    assert condition_of(healthy(), listed(pod_body("web-0"), lost=lost))["reason"] == "Ready"


def test_a_probe_failure_is_quoted_only_for_a_pod_that_is_not_ready_now() -> None:
    children = rolling("web-aaa", ready=2, updated=3)
    failures = [
        unhealthy("web-2", "Startup probe failed: connection refused", "2026-12-07T10:09:58Z"),
        unhealthy("web-1", "Readiness probe failed: 404", "2026-12-07T10:09:00Z"),
    ]
    seen = listed(pod_body("web-1", ready=False), pod_body("web-2"))
    message = condition_of(children, seen, failures)["message"]
    assert "web-1: Readiness probe failed: 404" in message
    assert "web-2" not in message
