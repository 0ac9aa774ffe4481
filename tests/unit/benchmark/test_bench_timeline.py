"""bench/timeline.py: audit-log lines become each app's timeline; the tail is picked by latency."""

from __future__ import annotations

import datetime
import json
from typing import Any

from bench.timeline import tail_timeline, timelines

NS = "bench-1-0"
AGENTS = ("statefulwebapp-operator/",)
T0 = datetime.datetime(2026, 12, 2, 12, 0, 0, tzinfo=datetime.UTC).timestamp()


def body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps.k8slab.io/v1alpha1",
        "kind": "StatefulWebApp",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 1, "storage": {"nfs": {"server": "nfs.local", "path": "/x"}}},
    }


def line(
    at: float, agent: str, verb: str, resource: str, name: str, sub: str = "", ns: str = NS
) -> bytes:
    ref = {"resource": resource, "name": name, "namespace": ns, "subresource": sub}
    stamp = datetime.datetime.fromtimestamp(T0 + at, datetime.UTC).isoformat()
    return json.dumps(
        {
            "stage": "ResponseComplete",
            "verb": verb,
            "userAgent": agent,
            "objectRef": {k: v for k, v in ref.items() if v},
            "stageTimestamp": stamp.replace("+00:00", "Z"),
        }
    ).encode()


def test_each_request_is_told_by_who_did_what_to_which_object_of_which_app() -> None:
    op, kcm, kwok = "statefulwebapp-operator/0.1.0", "kube-controller-manager/v1.36.3", "kwok/v0"
    lines = [
        line(0.01, "python-requests", "create", "statefulwebapps", "a"),
        line(0.05, op, "patch", "statefulsets", "a"),
        line(0.06, op, "patch", "statefulwebapps", "a", "status"),
        line(0.10, kcm, "update", "statefulsets", "a", "status"),
        line(0.12, kwok, "patch", "pods", "a-0", "status"),
        line(0.20, kcm, "update", "statefulsets", "a", "status"),
        line(0.30, op, "patch", "persistentvolumes", f"{NS}.a-data", ns=""),
        line(0.40, op, "patch", "statefulwebapps", "a", "status"),
        line(0.50, op, "patch", "statefulsets", "other-app"),  # Not an app of the fleet.
        line(0.50, op, "watch", "statefulsets", ""),
        b"not json",
    ]
    found = timelines(lines, {"a": body("a")}, {"a": T0}, AGENTS)
    events = {e["event"]: e for e in found["a"]}
    assert list(events) == [
        "client create StatefulWebApp",
        "operator patch StatefulSet",
        "operator patch StatefulWebApp/status",
        "controller-manager update StatefulSet/status",
        "kwok patch Pod/status",
        "operator patch PersistentVolume",
    ]
    status = events["operator patch StatefulWebApp/status"]
    assert (status["t"], status["last_t"], status["count"]) == (0.06, 0.4, 2)
    assert events["controller-manager update StatefulSet/status"]["count"] == 2


def test_the_tail_is_the_slowest_hundredth_and_the_median_app() -> None:
    latencies = {f"app-{i:03d}": 1.0 + i / 100 for i in range(200)}
    tail = tail_timeline(latencies, {"app-199": [{"event": "x"}]})
    assert [a["app"] for a in tail["slowest_1pct"]] == ["app-199", "app-198"]
    assert tail["slowest_1pct"][0]["events"] == [{"event": "x"}]
    assert tail["median"]["app"] == "app-100"
    assert tail_timeline({"only": 0.5}, {})["slowest_1pct"][0]["app"] == "only"
