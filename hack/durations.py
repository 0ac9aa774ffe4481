"""What each test of the last ``make test`` cost, from the JUnit files pytest wrote.

Usage: ``python hack/durations.py .test-results/*.xml`` (``make durations``). Prints one row per
module (tests run, skipped, failed, seconds) for each suite, then the 25 slowest tests, and
writes every test's seconds to ``durations.tsv`` beside the first file.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple


class Case(NamedTuple):
    """One test case as JUnit records it."""

    suite: str
    """The JUnit file's name: unit, unit-helm, e2e-local, e2e-kind."""
    module: str
    seconds: float
    outcome: str
    """passed, skipped, failure or error."""
    test: str


def cases(path: Path) -> list[Case]:
    """Every test case of one JUnit file."""
    found = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = next((c.tag for c in case if c.tag in {"skipped", "failure", "error"}), "passed")
        classname = case.get("classname", "")
        # A test in a class has the class as the last part: the module is the test_ part.
        parts = classname.split(".")
        last = max((i for i, part in enumerate(parts) if part.startswith("test_")), default=-1)
        module = ".".join(parts[: last + 1]) or classname
        test = f"{classname}::{case.get('name')}"
        found.append(Case(path.stem, module, float(case.get("time", 0)), outcome, test))
    return found


def main(paths: list[str]) -> int:
    """Print the tables of the JUnit files ``paths``; 1 if there is none."""
    files = [Path(p) for p in paths if Path(p).is_file()]
    if not files:
        print("no JUnit file: run make test (or make unit) first", file=sys.stderr)
        return 1
    rows = [row for path in files for row in cases(path)]
    table: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for suite, module, seconds, outcome, _ in rows:
        entry = table[(suite, module)]
        entry[0] += outcome != "skipped"
        entry[1] += outcome == "skipped"
        entry[2] += outcome in {"failure", "error"}
        entry[3] += seconds
    print(f"{'suite':<12} {'module':<48} {'run':>5} {'skip':>5} {'fail':>5} {'seconds':>9}")
    for (suite, module), (run, skipped, failed, seconds) in sorted(table.items()):
        print(f"{suite:<12} {module:<48} {run:>5} {skipped:>5} {failed:>5} {seconds:>9.1f}")
    for suite in sorted({s for s, *_ in rows}):
        total = sum(r[2] for r in rows if r[0] == suite)
        print(f"{suite:<12} {'(all)':<48} {'':>5} {'':>5} {'':>5} {total:>9.1f}")
    print("\nslowest 25:")
    for suite, _, seconds, outcome, test_id in sorted(rows, key=lambda r: -r[2])[:25]:
        print(f"{seconds:>8.1f} s  {suite:<10} {outcome:<7} {test_id}")
    out = files[0].parent / "durations.tsv"
    out.write_text(
        "suite\ttest\tseconds\toutcome\n"
        + "".join(f"{s}\t{t}\t{sec:.2f}\t{o}\n" for s, _, sec, o, t in rows)
    )
    print(f"\nevery test's seconds: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
