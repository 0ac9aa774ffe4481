"""The fleet benchmark's counting of the operator's requests in the API server's audit log."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from bench import fleet


def audit(verb: str, resource: str, code: int, agent: str, **ref: str) -> str:
    return json.dumps(
        {
            "stage": "ResponseComplete",
            "stageTimestamp": "2026-12-07T10:00:01.000000Z",
            "userAgent": agent,
            "verb": verb,
            "objectRef": {"resource": resource, **ref},
            "responseStatus": {"code": code},
        },
        separators=(",", ":"),  # As the API server writes it.
    )


def test_writes_are_counted_by_target_and_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = fleet.OPERATOR_AGENTS[1] + "0.1.0", "kube-controller-manager/v1.36"
    log = tmp_path / "audit.log"
    log.write_text(
        "\n".join(
            [
                audit("patch", "statefulsets", 200, ours),
                audit("patch", "statefulsets", 409, ours),
                audit("patch", "statefulwebapps", 200, ours, subresource="status"),
                audit("get", "statefulwebapps", 200, ours),
                audit("update", "leases", 200, ours),
                audit("patch", "statefulsets", 200, theirs),
            ]
        )
        + "\n"
    )
    monkeypatch.setattr(fleet, "audit_files", lambda since: [log])
    verbs, written = fleet.requests_and_writes("2026-12-07T10:00:00.000000Z")
    assert verbs == {"patch": 3, "get": 1}, "the lease and the other component left out"
    assert written == {
        "patch statefulsets 200": 1,
        "patch statefulsets 409": 1,
        "patch statefulwebapps/status 200": 1,
    }


def test_the_operators_counters_are_given_per_app_created() -> None:
    counted = Counter(
        {
            "bytes watch statefulsets": 3 * 2048,
            "bytes apply statefulsets": 2 * 1024,
            "passes changed": 6,
            "passes in_sync": 3,
        }
    )
    assert fleet.per_app(counted, 2) == {
        "received_kib_per_app": 4.0,
        "received_kib_per_app_by_source": {"watch statefulsets": 3.0, "apply statefulsets": 1.0},
        "passes_per_app": 4.5,
        "passes_per_app_by_outcome": {"changed": 3.0, "in_sync": 1.5},
    }


def test_a_run_without_the_floor_has_no_ratio_and_its_report_says_not_measured() -> None:
    from bench import report  # noqa: PLC0415  (matplotlib is imported only to plot)

    fleet_ = fleet.Fleet(latencies=[1.0, 2.0, 4.0], fleet_s=4.0)
    floor = fleet.Fleet(latencies=[1.0, 2.0], fleet_s=2.0)
    assert fleet.floor_figures(fleet_, floor)["floor_ratio"] == 2.0
    figures = fleet.floor_figures(fleet_, None)
    assert set(figures.values()) == {None}
    run: dict[str, Any] = {
        "n": 3000,
        "fleet_s": 4.0,
        "p50_s": 2.0,
        "p95_s": 4.0,
        "p99_s": 4.0,
        "writes_per_app": 9.0,
        "rss_mib": 200.0,
        "rss_mib_idle": 58.0,
        "operator_cpu_s": 90.0,
        "requests_per_app_by_verb": {},
        **figures,
    }
    result = {"runs": [run], "machine": {"cpus": 2, "cpu": "x", "memory_gib": 1}, "versions": {}}
    table = report.table({**result, "command": "c", "duration_s": 1})
    assert "| 3000 | 1 | - | 4.0 | - |" in table
    assert "| floor_ratio | <= 1.1 | None | not measured |  |" in table
    assert fleet.summary([run])["n1_ratio"] is None


def test_the_p99_ratio_times_both_sides_from_the_bursts_start() -> None:
    """The floor sends each app's create once the apps before it have their children; the
    operator's fleet is created at once. Timed from its own create, a floor app looks faster
    than it was: the ratio compares Ready times since each burst began."""
    # The floor's apps were created one per 10 s and each Ready 5 s later; the operator's
    # were all created at 0 and Ready at 5, 15, ..., 95 s: the same Ready times.
    floor = fleet.Fleet(
        latencies=[5.0] * 10,
        fleet_s=95.0,
        by_app={f"a{i}": 5.0 for i in range(10)},
        created={f"a{i}": 1000.0 + 10 * i for i in range(10)},
        start=1000.0,
    )
    ops = fleet.Fleet(
        latencies=[5.0 + 10 * i for i in range(10)],
        fleet_s=95.0,
        by_app={f"a{i}": 5.0 + 10 * i for i in range(10)},
        created=dict.fromkeys((f"a{i}" for i in range(10)), 1000.0),
        start=1000.0,
    )
    figures = fleet.floor_figures(ops, floor)
    assert (figures["p99_since_start_s"], figures["floor_p99_since_start_s"]) == (95.0, 95.0)
    assert figures["p99_ratio"] == 1.0
    assert figures["floor_p99_s"] == 5.0, "each floor app's own latency stays reported"
