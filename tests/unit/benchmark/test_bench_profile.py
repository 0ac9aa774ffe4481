"""bench/profile.py: py-spy's collapsed stacks summed per function, own and inclusive."""

from __future__ import annotations

from bench.profile import summarise

OP = "/repo/operator/statefulwebapp"
SITE = "/repo/.venv/lib/python3.11/site-packages"


def test_samples_are_summed_per_function_whatever_the_line() -> None:
    lines = [
        f"run (/usr/lib/python3.11/threading.py:10);step ({OP}/workqueue.py:5);"
        f"loads ({SITE}/kopf/_core/x.py:3) 7",
        f"run (/usr/lib/python3.11/threading.py:12);step ({OP}/workqueue.py:9) 3",
        "garbage",
    ]
    found = summarise(lines, top=2)
    assert found["samples"] == 10
    assert found["own"] == [
        {"function": "loads (kopf/_core/x.py)", "samples": 7, "share_pct": 70.0},
        {"function": "step (statefulwebapp/workqueue.py)", "samples": 3, "share_pct": 30.0},
    ]
    assert [f["function"] for f in found["inclusive"]] == [
        "run (python/threading.py)",
        "step (statefulwebapp/workqueue.py)",
    ]
