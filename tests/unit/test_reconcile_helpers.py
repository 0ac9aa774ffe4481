"""The comparisons reconcile relies on to write nothing when nothing drifted."""

from __future__ import annotations

from statefulwebapp.model import parse
from statefulwebapp.reconcile import is_subset, owned
from statefulwebapp.render import render_statefulset, render_volume
from tests.unit.test_render import SCENARIO

APP = parse(SCENARIO)


def test_server_defaults_do_not_count_as_drift() -> None:
    desired = render_statefulset(APP)
    live = render_statefulset(APP)
    live["metadata"]["resourceVersion"] = "5"
    live["spec"]["podManagementPolicy"] = "OrderedReady"
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = (
        "/dev/termination-log"
    )
    live["status"] = {"readyReplicas": 3}
    assert is_subset(desired, live)


def test_changed_managed_fields_are_drift() -> None:
    desired = render_statefulset(APP)
    live = render_statefulset(APP)
    live["spec"]["replicas"] = 1
    assert not is_subset(desired, live)
    live = render_statefulset(APP)
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar"})
    assert not is_subset(desired, live)


def test_ownership() -> None:
    sts = render_statefulset(APP)
    assert owned(APP, sts)
    sts["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    assert not owned(APP, sts)
    pv = render_volume(APP)
    assert owned(APP, pv)
    pv["metadata"]["labels"]["apps.k8slab.io/app-namespace"] = "other"
    assert not owned(APP, pv)
