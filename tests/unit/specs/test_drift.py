"""The drift rule (drift.py) on renderings and on live objects recorded from a real cluster.

``tests/unit/data/live/`` holds children as the API server returned them (managed fields
included), recorded with ``tests/unit/data/record_live.py``; their renderings are in the same
files, so these tests need no cluster.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, cast

import pytest

from statefulwebapp.api.parse import parse
from statefulwebapp.controllers.converge import owned
from statefulwebapp.specs import drift
from statefulwebapp.specs.render import render_network_policy, render_statefulset, render_volume
from statefulwebapp.specs.render_backup import render_daemonset
from tests.e2e.fieldsets import owned_paths, rendering_fields
from tests.unit.scenario import SCENARIO

APP = parse(SCENARIO)
LIVE = Path(__file__).parents[1] / "data/live"


def test_stamp_is_a_stable_digest_of_the_rendering() -> None:
    a = drift.stamp(render_statefulset(APP))
    b = drift.stamp(render_statefulset(parse(copy.deepcopy(SCENARIO))))
    assert drift.stamp_of(a) == drift.stamp_of(b)
    assert len(drift.stamp_of(a) or "") == 16
    other = copy.deepcopy(SCENARIO)
    other["spec"]["replicas"] = 4
    assert drift.stamp_of(drift.stamp(render_statefulset(parse(other)))) != drift.stamp_of(a)
    # Stamping adds the annotation and changes nothing else.
    unstamped = copy.deepcopy(a)
    del unstamped["metadata"]["annotations"]
    assert unstamped == render_statefulset(APP)


def test_server_defaults_do_not_count_as_drift() -> None:
    desired = drift.stamp(render_statefulset(APP))
    live = copy.deepcopy(desired)
    live["metadata"]["resourceVersion"] = "5"
    live["spec"]["podManagementPolicy"] = "OrderedReady"
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = (
        "/dev/termination-log"
    )
    live["status"] = {"readyReplicas": 3}
    assert drift.up_to_date(desired, live)


def test_changed_values_are_drift_and_a_sidecar_is_not() -> None:
    desired = drift.stamp(render_statefulset(APP))
    live = copy.deepcopy(desired)
    live["spec"]["replicas"] = 1
    assert not drift.up_to_date(desired, live)
    live = copy.deepcopy(desired)
    # Someone else's container (an injected sidecar) is theirs: server-side apply merges
    # containers by name, so it is no drift of ours.
    live["spec"]["template"]["spec"]["containers"].insert(0, {"name": "sidecar"})
    assert drift.up_to_date(desired, live)
    del live["spec"]["template"]["spec"]["containers"][1]["image"]
    assert not drift.up_to_date(desired, live)


def test_a_field_dropped_from_the_rendering_is_drift() -> None:
    with_resources = copy.deepcopy(SCENARIO)
    with_resources["spec"]["resources"] = {"limits": {"cpu": "1"}}
    live = drift.stamp(render_statefulset(parse(with_resources)))
    without = copy.deepcopy(SCENARIO)
    without["spec"]["resources"] = {}  # None at all: the block is dropped from the rendering.
    desired = drift.stamp(render_statefulset(parse(without)))
    # Every field we render still has its value: only the stamp tells the removal.
    assert drift.is_subset(desired["spec"], live["spec"])
    assert not drift.up_to_date(desired, live)


def test_a_child_without_a_stamp_is_applied_once() -> None:
    desired = drift.stamp(render_volume(APP))
    assert not drift.up_to_date(desired, render_volume(APP))
    assert not drift.up_to_date(desired, None)


def test_stored_form_is_remembered_only_when_it_differs() -> None:
    body = copy.deepcopy(SCENARIO)
    body["spec"]["resources"] = {"limits": {"cpu": "0.5"}}
    desired = drift.stamp(render_statefulset(parse(body)))
    answer = copy.deepcopy(desired)
    assert drift.stored_form(desired, answer) is None
    answer["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "500m"
    answer["spec"]["revisionHistoryLimit"] = 10
    form = drift.stored_form(desired, answer)
    assert form is not None
    assert form["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m"}
    }
    assert "revisionHistoryLimit" not in form["spec"]
    assert not drift.up_to_date(desired, answer)
    assert drift.up_to_date(desired, answer, form)
    answer["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "2"
    assert not drift.up_to_date(desired, answer, form)


def test_ownership() -> None:
    sts = render_statefulset(APP)
    assert owned(APP, sts)
    sts["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    assert not owned(APP, sts)
    pv = render_volume(APP)
    assert owned(APP, pv)
    pv["metadata"]["labels"]["apps.k8slab.io/app-namespace"] = "other"
    assert not owned(APP, pv)


# -- recorded live objects ------------------------------------------------------------------


def recorded() -> list[Path]:
    return sorted(LIVE.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


@pytest.mark.parametrize("path", recorded(), ids=[p.stem for p in recorded()])
def test_recorded_child_is_up_to_date_with_what_it_was_applied_from(path: Path) -> None:
    case = load(path)
    desired, live = case["rendered"], case["live"]
    assert live["metadata"]["managedFields"], "recorded without managed fields"
    stored = drift.stored_form(desired, case["answer"])
    assert drift.up_to_date(desired, live, stored)


@pytest.mark.parametrize("path", recorded(), ids=[p.stem for p in recorded()])
def test_recorded_managed_fields_are_exactly_the_rendering(path: Path) -> None:
    # What "up to date" means: the fields the operator owns are the fields it renders, no
    # more (a dropped field still owned would be the removal bug), no fewer.
    case = load(path)
    assert owned_paths(case["live"]) == rendering_fields(case["rendered"])


@pytest.mark.parametrize("path", recorded(), ids=[p.stem for p in recorded()])
def test_recorded_child_with_a_value_changed_by_hand_is_drift(path: Path) -> None:
    case = load(path)
    desired, live = case["rendered"], copy.deepcopy(case["live"])
    live["metadata"]["labels"][next(iter(desired["metadata"]["labels"]))] = "changed"
    assert not drift.up_to_date(desired, live, drift.stored_form(desired, case["answer"]))


def test_recordings_cover_removal_and_canonical_forms() -> None:
    names = {p.stem for p in recorded()}
    assert {"statefulset-quantities", "daemonset-no-tolerations"} <= names
    sts = load(LIVE / "statefulset-quantities.json")
    # The spec said 0.5 and 1000m; the API server stored its canonical forms.
    limits = sts["live"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["cpu"] == "500m"
    assert not drift.is_subset(sts["rendered"], sts["live"])
    ds = load(LIVE / "daemonset-no-tolerations.json")
    # Applied after tolerateControlPlane went from true to false: the tolerations are gone.
    assert "tolerations" not in ds["live"]["spec"]["template"]["spec"]
    with_them = drift.stamp(cast("dict[str, Any]", render_daemonset(APP)))
    assert not drift.up_to_date(with_them, ds["live"])


def test_the_network_policy_is_owned_as_three_whole_fields() -> None:
    # Not recorded from a cluster: the API's types say it (podSelector is a LabelSelector,
    # structType=atomic; policyTypes and ingress are listType=atomic), so server-side apply
    # records each as one field, as the e2e tests' fieldsets.ATOMIC reads them.
    policy = render_network_policy(APP)
    assert policy is not None
    fields = rendering_fields(drift.stamp(policy))
    assert {f for f in fields if f.startswith("spec.")} == {
        "spec.podSelector",
        "spec.policyTypes",
        "spec.ingress",
    }
