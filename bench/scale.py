"""What one operator serves: two fleet runs' figures, per app, and a projection to a larger fleet.

Reads the largest run of two ``bench.fleet`` results (the default run's N = 1000 and a run at
N = 3000, say), says of each figure whether it grew in proportion to the apps between them, and
extends the line through the two to ``--to`` apps (10,000 by default). It writes
``scale.json`` and ``scale.md`` beside the larger run's results::

    python -m bench.scale bench/results/results.json bench/results/n3000/results.json

A projection is a straight line through two measurements, not a measurement: it holds while
nothing new limits the operator (the API server's own memory, etcd's size, a watch's buffer).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One figure of a run that grows with the fleet."""

    key: str
    """Its key in a run of ``results.json``."""
    what: str
    """What it measures, for a reader."""
    unit: str
    """Its unit."""
    total: bool = True
    """Whether the figure is the fleet's whole (per app: divided by N); else already per app."""
    base: str = ""
    """A key whose value is subtracted first: the part that does not grow with the apps."""


FIGURES = (
    Figure("rss_mib", "RSS after creating the fleet", "MiB", base="rss_mib_idle"),
    Figure("rss_peak_mib", "peak RSS (VmHWM)", "MiB", base="rss_mib_idle"),
    Figure("operator_cpu_s", "CPU to create the fleet", "s"),
    Figure("restart_s", "restart: every app resumed", "s"),
    Figure("restart_rss_mib", "RSS after a restart", "MiB", base="rss_mib_idle"),
    Figure("full_check_cpu_s", "CPU of one full check", "s"),
    Figure("soak_cpu_s_per_minute", "CPU per minute, idle fleet", "s"),
    Figure("received_kib_per_app", "KiB decoded per app created", "KiB", total=False),
    Figure("passes_per_app", "passes per app created", "", total=False),
    Figure("writes_per_app", "writes per app created", "", total=False),
    Figure("fleet_s", "the fleet Ready (the cluster's pace)", "s"),
)

LINEAR = (0.8, 1.25)
"""A figure per app at the larger N within these times its value at the smaller grew in
proportion to the apps."""


def largest(result: dict[str, Any]) -> dict[str, Any]:
    """The run of the largest N in a ``results.json``."""
    return dict(max(result["runs"], key=lambda run: run["n"]))


def project(small: dict[str, Any], large: dict[str, Any], to: int) -> list[dict[str, Any]]:
    """Each figure at both N, per app, how it grew, and the line through both extended to ``to``.

    A figure missing from either run is left out.
    """
    n1, n2 = small["n"], large["n"]
    rows = []
    for figure in FIGURES:
        if small.get(figure.key) is None or large.get(figure.key) is None:
            continue
        v1, v2 = float(small[figure.key]), float(large[figure.key])
        if figure.total:
            b1, b2 = (float(run.get(figure.base) or 0) for run in (small, large))
            per1, per2 = (v1 - b1) / n1, (v2 - b2) / n2
        else:
            per1, per2 = v1, v2
        at = v2 + (v2 - v1) / (n2 - n1) * (to - n2)
        growth = per2 / per1 if per1 else None
        rows.append(
            {
                "key": figure.key,
                "what": figure.what,
                "unit": figure.unit,
                "at_small": v1,
                "at_large": v2,
                "per_app_growth": None if growth is None else round(growth, 2),
                "linear": growth is not None and LINEAR[0] <= growth <= LINEAR[1],
                "projected": round(at, 2),
            }
        )
    return rows


def markdown(rows: Iterable[dict[str, Any]], n1: int, n2: int, to: int, command: str) -> str:
    """The projection as a table, with how it was made."""
    lines = [
        f"| figure | N = {n1} | N = {n2} | per app, {n2} against {n1} | in proportion "
        f"| projected at N = {to} |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        unit = f" {row['unit']}" if row["unit"] else ""
        growth = row["per_app_growth"]
        lines.append(
            f"| {row['what']} | {row['at_small']:g}{unit} | {row['at_large']:g}{unit} "
            f"| {'-' if growth is None else f'x {growth:g}'} | {'yes' if row['linear'] else 'no'} "
            f"| {row['projected']:g}{unit} |"
        )
    lines += [
        "",
        f"Per app: a figure of the whole fleet above the idle operator, divided by N. 'In "
        f"proportion': the per-app figure at N = {n2} within x {LINEAR[0]} to x {LINEAR[1]} of "
        f"its value at N = {n1}. The projection extends the straight line through the two "
        f"runs. Made by `{command}`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("small", type=Path, help="results.json of the smaller fleet")
    p.add_argument("large", type=Path, help="results.json of the larger fleet")
    p.add_argument("--to", type=int, default=10_000, help="apps to project to (%(default)s)")
    args = p.parse_args(list(argv) if argv is not None else None)
    small = largest(json.loads(args.small.read_text()))
    large = largest(json.loads(args.large.read_text()))
    if small["n"] >= large["n"]:
        p.error(f"the second run's N ({large['n']}) must be larger than the first's")
    rows = project(small, large, args.to)
    command = "python -m bench.scale " + " ".join(sys.argv[1:] if argv is None else list(argv))
    out = args.large.parent
    summary = {"small_n": small["n"], "large_n": large["n"], "to": args.to, "figures": rows}
    (out / "scale.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "scale.md").write_text(markdown(rows, small["n"], large["n"], args.to, command))
    print((out / "scale.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
