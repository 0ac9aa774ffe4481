"""Turns bench/results/results.json into a Markdown table and a convergence plot."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGETS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "floor_first": ("true", lambda v: v is True),
    "datelog_active": ("true", lambda v: v is True),
    "floor_ratio": ("<= 1.1", lambda v: v <= 1.1),
    "p99_ratio": (
        "<= 1.2 (the 99th percentile app Ready, since the burst began)",
        lambda v: v <= 1.2,
    ),
    "n1_ratio": ("<= 1.5 (every repeat at N = 1)", lambda v: v <= 1.5),
    "cpu_s_per_100_apps": ("<= 3", lambda v: v <= 3),
    "writes_per_app": ("<= 9 (7 children applied, 2 status writes)", lambda v: v <= 9),
    "gets_per_app": ("<= 2", lambda v: v <= 2),
    "steady_writes_per_app_minute": ("0", lambda v: v == 0),
    "rss_mib": ("< 150 MiB", lambda v: v < 150),
    "rss_peak_mib": ("<= 130 MiB", lambda v: v <= 130),
    "rss_growth_pct": ("< 5 %", lambda v: v < 5),
    "restart_s": ("<= 15 s", lambda v: v <= 15),
    "restart_writes": ("0", lambda v: v == 0),
    "restart_rss_mib": ("< 150 MiB", lambda v: v < 150),
    "duration_s": ("<= 1500 s (the whole default run, floor included)", lambda v: v <= 1500),
}

FLOOR = {"floor_ratio": "floor_fleet_s", "p99_ratio": "floor_p99_since_start_s"}
"""The floor's own figure beside a target that is measured against it."""


def table(result: dict[str, Any]) -> str:
    rows = [
        "| N | run | floor (s) | fleet (s) | ratio | p50 (s) | p95 (s) | p99 (s) "
        "| floor p50/p99 (s) | p99 since the start, floor's (s), ratio | writes/app "
        "| RSS idle/after (MiB) "
        "| operator CPU (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for measured in result["runs"]:
        run = {key: "-" if value is None else value for key, value in measured.items()}
        rows.append(
            f"| {run['n']} | {run.get('repeat', 1)} | {run['floor_fleet_s']} | {run['fleet_s']} "
            f"| {run['floor_ratio']} | {run['p50_s']} | {run['p95_s']} | {run['p99_s']} "
            f"| {run['floor_p50_s']}/{run['floor_p99_s']} "
            f"| {run.get('p99_since_start_s', '-')}, {run.get('floor_p99_since_start_s', '-')}, "
            f"{run.get('p99_ratio', '-')} "
            f"| {run['writes_per_app']} | {run.get('rss_mib_idle', '-')}/{run['rss_mib']} "
            f"| {run.get('operator_cpu_s', '-')} |"
        )
    last = result["runs"][-1]
    order = " then ".join(result.get("order", ["operator", "floor"]))
    lines = [
        "\n".join(rows),
        "",
        f"Each run: {order}, "
        + (
            "each on a freshly started cluster of its own"
            if result.get("fresh_cluster_per_side")
            else "each on a cluster cleaned of the other"
        )
        + "; a fresh operator for each fleet; the apps' pods are kwok's (simulated); date logger "
        f"{'active (the default schedule)' if result.get('datelog_active') else 'suspended'}.",
        "",
        *(
            f"Spread over the runs of N = {n} (lowest, highest): "
            + ", ".join(f"{k} {lo}-{hi}" for k, (lo, hi) in figures.items())
            + "."
            for n, figures in result.get("spread", {}).items()
        ),
        "",
        "Cost per 100 apps (RSS above the idle operator, operator CPU seconds for the fleet): "
        + "; ".join(
            f"N = {n}: {c['rss_mib']} MiB, {c['operator_cpu_s']} CPU s"
            for n, c in result.get("cost_per_100_apps", {}).items()
        )
        + ".",
        "",
        f"At N = {last['n']}: a quiet {last.get('steady_s', '-')} s after the fleet, "
        f"{last.get('steady_requests_per_app_minute', '-')} requests and "
        f"{last.get('steady_writes_per_app_minute', '-')} writes per app per minute; soak of "
        f"{last.get('soak_s', '-')} s, RSS growth {last.get('rss_growth_pct', '-')} %, "
        f"{last.get('soak_requests_per_app_minute', '-')} requests and "
        f"{last.get('soak_writes_per_app_minute', '-')} writes per app per minute; restart "
        f"resumed every app in {last.get('restart_s', '-')} s with "
        f"{last.get('restart_writes', '-')} writes, holding {last.get('restart_rss_mib', '-')} MiB "
        f"after it; {last.get('full_checks', '-')} full checks"
        + (
            f", {last['full_check_cpu_s']} CPU s each"
            if last.get("full_check_cpu_s") is not None
            else ""
        )
        + f", and {last.get('soak_cpu_s_per_minute', '-')} CPU s per minute over the soak. "
        f"Peak RSS (VmHWM): {last.get('rss_peak_mib', '-')} MiB for the operator that "
        f"created the fleet, {last.get('restart_rss_peak_mib', '-')} MiB for the restarted one. "
        "Not counted in these per-app figures: the leader-election lease, "
        f"{last.get('lease_requests_per_minute', '-')} requests per minute for the whole "
        "operator (a renewal every 2 s, whatever the number of apps).",
        "",
        "Requests per app created, by verb (N = "
        f"{last['n']}): {json.dumps(last['requests_per_app_by_verb'])}; writes by target and "
        f"answer: {json.dumps(last.get('writes_per_app_by_target', {}))}.",
        "",
        f"Passes per app created: {last.get('passes_per_app', '-')}, by outcome "
        f"{json.dumps(last.get('passes_per_app_by_outcome', {}))}. KiB of answers decoded per "
        f"app: {last.get('received_kib_per_app', '-')}, by verb and resource "
        f"{json.dumps(last.get('received_kib_per_app_by_source', {}))}.",
        "",
        f"| target (N = {last['n']}) | wanted | measured | met | the floor, same run |",
        "|---|---|---|---|---|",
    ]
    for key, (wanted, ok) in TARGETS.items():
        value = last.get(key, result.get(key))
        met = "not measured" if value is None else "yes" if ok(value) else "no"
        floor = last.get(FLOOR.get(key, "")) or ""
        lines.append(f"| {key} | {wanted} | {value} | {met} | {floor} |")
    lines += timeline_tables(last.get("tail_timeline"))
    machine = result["machine"]
    lines += [
        "",
        f"Measured by `{result['command']}` in {result['duration_s']} s on {machine['cpus']} "
        f"CPUs ({machine['cpu']}), {machine['memory_gib']} GiB; versions "
        f"{json.dumps(result['versions'])}.",
    ]
    return "\n".join(lines) + "\n"


def timeline_tables(tail: dict[str, Any] | None) -> list[str]:
    """Where the median app and the slowest one spent their time (bench/timeline.py)."""
    if not tail:
        return []
    lines = []
    slowest = tail["slowest_1pct"][0]
    for title, app in (("the median app", tail["median"]), ("the slowest app", slowest)):
        lines += [
            "",
            f"Timeline of {title}, {app['app']} (Ready after {app['ready_s']} s), from the audit "
            "log: seconds since its creation was sent.",
            "",
            "| first (s) | last (s) | requests | who, what |",
            "|---|---|---|---|",
            *(f"| {e['t']} | {e['last_t']} | {e['count']} | {e['event']} |" for e in app["events"]),
        ]
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415  (heavy; only the report needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(8, 5))
    for run in result["runs"]:
        for key, style, who in (
            ("latencies_s", "-", "operator"),
            ("floor_latencies_s", "--", "floor"),
        ):
            values = run[key]
            if not values:  # No floor in a --no-floor run.
                continue
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            ax.step(values, fractions, style, where="post", label=f"N={run['n']} {who}")
    ax.set_xlabel("seconds from creation to Ready")
    ax.set_ylabel("fraction of apps Ready")
    ax.set_title("StatefulWebApp convergence: operator vs direct server-side apply (floor)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_report(result: dict[str, Any], out: Path) -> None:
    (out / "results.md").write_text(table(result))
    plot(result, out / "convergence.png")


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    write_report(json.loads((folder / "results.json").read_text()), folder)
