"""A pass and the app's pods: listed only when something is wrong, a stuck web pod replaced.

Against the fake API server: which requests a pass sends (none for a healthy app), the delete
of a stuck pod (with its uid as a precondition), and what the status and events say.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from statefulwebapp.api import kinds
from statefulwebapp.runtime import kube
from statefulwebapp.specs import pods
from tests.unit.fakeapi import FakeApi, error
from tests.unit.harness import Pass, failing, put_pod, ready, rolled
from tests.unit.scenario import APP_PATH, NS, PATHS, SCENARIO, node_body, pod_body

PODS = kube.path(kinds.POD, "", NS).rstrip("/")


@pytest.fixture
def app() -> Pass:
    api = FakeApi()
    api.objects[APP_PATH] = copy.deepcopy(SCENARIO)
    app = Pass(api)
    ready(app)
    return app


def reason(app: Pass) -> tuple[str, str]:
    condition = next(c for c in app.body["status"]["conditions"] if c["type"] == "Ready")
    return condition["reason"], condition["message"]


def test_a_healthy_app_or_one_only_on_its_way_costs_no_list_of_its_pods(app: Pass) -> None:
    app.run()
    rolled(app, "web-bbb")
    app.run()
    assert reason(app)[0] == "WebPodsNotReady"
    assert PODS not in app.api.sent("GET")


def test_a_stuck_pod_the_spec_moved_on_from_is_deleted(app: Pass) -> None:
    uid = rolled(app, "web-ccc")
    put_pod(app, pod_body("web-0", owner=uid))
    put_pod(app, pod_body("web-2", revision="web-bbb", ready=False, owner=uid))
    outcome = app.run(probe_failures=failing("web-2"))
    assert PODS in app.api.sent("GET")
    assert app.api.sent("DELETE") == [kube.path(kinds.POD, "web-2", NS)]
    assert kube.path(kinds.POD, "web-2", NS) not in app.api.objects
    assert outcome.deleted == ["Pod/web-2"]
    assert app.recorded.normals[0][0] == "ReplacedStuckPod"
    assert "web-2 of revision web-bbb" in app.recorded.normals[0][1]
    said = reason(app)
    assert said[0] == "RolloutStuck"
    assert "the operator deleted it, and the StatefulSet makes it anew at web-ccc" in said[1]


def test_turned_off_the_stuck_pod_is_named_for_the_user_to_delete(app: Pass) -> None:
    app.edit(rollout={"replaceStuckPods": False})
    uid = rolled(app, "web-ccc")
    put_pod(app, pod_body("web-2", revision="web-bbb", ready=False, owner=uid))
    app.run(probe_failures=failing("web-2"))
    assert app.api.sent("DELETE") == []
    said = reason(app)
    assert said[0] == "RolloutStuck"
    assert "kubectl delete pod -n default web-2" in said[1]
    # Turned on again: the next pass replaces it.
    app.edit(rollout=None)
    app.run(probe_failures=failing("web-2"))
    assert app.api.sent("DELETE") == [kube.path(kinds.POD, "web-2", NS)]


def test_a_pod_with_the_apps_labels_and_another_owner_is_never_deleted(app: Pass) -> None:
    rolled(app, "web-ccc")
    put_pod(app, pod_body("web-2", revision="web-bbb", ready=False, owner="uid-not-ours"))
    app.run(probe_failures=failing("web-2"))
    assert PODS in app.api.sent("GET")
    assert app.api.sent("DELETE") == []
    assert reason(app)[0] == "WebPodsNotReady"


def test_a_lost_node_lists_the_pods_of_an_app_whose_counts_look_fine(app: Pass) -> None:
    sts = app.api.objects[PATHS["StatefulSet"]]
    ds = app.api.objects[PATHS["DaemonSet"]]
    agent = pod_body("web-backup-x7k2p", component="backup", node="n2", ready=False)
    agent["metadata"]["ownerReferences"][0]["uid"] = ds["metadata"]["uid"]
    put_pod(app, pod_body("web-0", owner=sts["metadata"]["uid"]))
    put_pod(app, agent)
    lost = [pods.node_view(node_body("n2", "Unknown", "NodeStatusUnknown"))]
    app.run(lost_nodes=lost)
    said = reason(app)
    assert said[0] == "NodeNotReady"
    assert said[1].startswith("node n2 is unreachable")
    assert "backup agent web-backup-x7k2p on it" in said[1]
    # The node is back: its pods are ready again, and so is the app.
    app.api.objects[kube.path(kinds.POD, "web-backup-x7k2p", NS)] = put_ready(agent)
    app.run()
    assert reason(app)[0] == "Ready"


def put_ready(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    for condition in body["status"]["conditions"]:
        condition["status"] = "True"
    return body


RBAC_DENIAL = 'pods is forbidden: User "system:serviceaccount:swa:op" cannot {} resource "pods"'


def test_a_refused_list_or_delete_is_reported_as_the_server_said(app: Pass) -> None:
    uid = rolled(app, "web-ccc")
    app.api.answers[("GET", PODS)] = error(403, "Forbidden", RBAC_DENIAL.format("list"))
    app.run(probe_failures=failing("web-2"))
    said = reason(app)
    assert said[0] == "Forbidden"
    assert said[1].startswith("Pod default/web-*: pods is forbidden")
    assert app.api.sent("DELETE") == []
    del app.api.answers[("GET", PODS)]
    put_pod(app, pod_body("web-2", revision="web-bbb", ready=False, owner=uid))
    path = kube.path(kinds.POD, "web-2", NS)
    app.api.answers[("DELETE", path)] = error(403, "Forbidden", RBAC_DENIAL.format("delete"))
    app.run(probe_failures=failing("web-2"))
    said = reason(app)
    assert said[0] == "Forbidden"
    assert said[1].startswith("Pod default/web-2: pods is forbidden")
    assert app.api.sent("DELETE") == [path]
