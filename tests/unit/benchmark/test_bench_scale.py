"""The projection of two fleet runs to a larger fleet (bench/scale.py)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import scale


def run(n: int, **figures: float) -> dict[str, float]:
    return {"n": n, "rss_mib_idle": 58.0, **figures}


def test_a_figure_in_proportion_to_the_apps_is_said_so_and_extended_on_its_line() -> None:
    small = run(1000, rss_mib=128.0, operator_cpu_s=40.0, writes_per_app=9.0)
    large = run(3000, rss_mib=268.0, operator_cpu_s=180.0, writes_per_app=9.0)
    rows = {row["key"]: row for row in scale.project(small, large, 10_000)}
    memory = rows["rss_mib"]
    # 70 MiB above the idle operator per 1000 apps, then 210 per 3000: in proportion.
    assert (memory["per_app_growth"], memory["linear"]) == (1.0, True)
    assert memory["projected"] == 268.0 + 70.0 / 1000 * 7000
    cpu = rows["operator_cpu_s"]
    # 40 ms per app, then 60: grows faster than the apps.
    assert (cpu["per_app_growth"], cpu["linear"]) == (1.5, False)
    assert cpu["projected"] == 180.0 + 140.0 / 2000 * 7000
    # A figure already per app stays where it was.
    assert rows["writes_per_app"]["projected"] == 9.0
    assert rows["writes_per_app"]["linear"]


def test_a_figure_one_run_lacks_is_left_out() -> None:
    rows = scale.project(run(1000, restart_s=5.0), run(3000, full_check_cpu_s=1.0), 10_000)
    assert rows == []


def test_the_command_writes_both_files_beside_the_larger_run(tmp_path: Path) -> None:
    small, large = tmp_path / "a.json", tmp_path / "big" / "results.json"
    large.parent.mkdir()
    small.write_text(json.dumps({"runs": [run(100, restart_s=1.0), run(1000, restart_s=5.0)]}))
    large.write_text(json.dumps({"runs": [run(3000, restart_s=15.0)]}))
    assert scale.main([str(small), str(large)]) == 0
    written = json.loads((large.parent / "scale.json").read_text())
    assert (written["small_n"], written["large_n"], written["to"]) == (1000, 3000, 10_000)
    assert written["figures"][0]["projected"] == 50.0
    table = (large.parent / "scale.md").read_text()
    assert "| restart: every app resumed | 5 s | 15 s | x 1 | yes | 50 s |" in table
