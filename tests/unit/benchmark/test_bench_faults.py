"""bench/faults.py: the burst's floor and the report of whose status is stale, from listings."""

from __future__ import annotations

from typing import Any

import pytest
from bench import faults, fleet

from statefulwebapp.specs import names


def obj(kind: str, app: str, status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    labels = {names.LABEL_INSTANCE: app}
    return {"kind": kind, "metadata": {"labels": labels, "generation": 1, **meta}, "status": status}


def pod(app: str, owner: str, ready: bool) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": str(ready)}]
    return obj("Pod", app, {"conditions": conditions}, ownerReferences=[{"kind": owner}])


def workloads(app: str, sts_ready: int, ds_ready: int) -> list[dict[str, Any]]:
    return [
        obj("StatefulSet", app, {"readyReplicas": sts_ready, "updatedReplicas": 1}),
        obj("DaemonSet", app, {"numberReady": ds_ready}),
    ]


def test_a_stale_workload_status_is_told_from_its_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    listing = [
        *workloads("a", sts_ready=0, ds_ready=3),
        pod("a", "StatefulSet", ready=True),
        *(pod("a", "DaemonSet", ready=True) for _ in range(4)),
        *workloads("b", sts_ready=1, ds_ready=2),
        pod("b", "StatefulSet", ready=True),
        pod("b", "DaemonSet", ready=True),
        pod("b", "DaemonSet", ready=False),
    ]
    monkeypatch.setattr(faults, "listed", lambda ns, *kinds: listing)
    assert faults.stale_statuses("ns", ["a", "b", "c"]) == {
        "a": "StatefulSet says 0 ready, its pods 1/1 Ready; "
        "DaemonSet says 3 ready, its pods 4/4 Ready",
        "b": "StatefulSet says 1 ready, its pods 1/1 Ready; "
        "DaemonSet says 2 ready, its pods 1/2 Ready",
        "c": "no StatefulSet; no DaemonSet",
    }


def test_the_burst_floor_counts_an_app_once_all_its_children_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def children(app: str, ds_ready: int) -> list[dict[str, Any]]:
        sts = obj("StatefulSet", app, {"readyReplicas": 1, "updatedReplicas": 1})
        sts["status"]["observedGeneration"] = 1
        ds = obj(
            "DaemonSet",
            app,
            {"desiredNumberScheduled": 4, "numberReady": ds_ready, "updatedNumberScheduled": 4},
        )
        return [
            sts,
            ds,
            obj("PersistentVolumeClaim", app, {"phase": "Bound"}),
            obj("CronJob", app, {}),
        ]

    listing = [*children("a", ds_ready=4), *children("b", ds_ready=3)]
    monkeypatch.setattr(faults, "listed", lambda ns, *kinds: listing)
    monkeypatch.setitem(fleet.SPEC, "replicas", 1)  # the SPEC bench.faults imports
    assert faults.floor_ready_apps("ns") == {"a"}
