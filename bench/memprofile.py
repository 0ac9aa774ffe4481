"""Where the operator's memory goes: the operator under tracemalloc, snapshots on demand.

    python -m bench.memprofile OUT.txt -- [operator flags]

Runs the operator's own ``main`` in this process with tracemalloc tracing 25 frames. Each
SIGUSR1 appends to OUT.txt the process's RSS, the traced total and the top holders, grouped
by the first frame outside the standard library and asyncio (so kopf's and our own call sites
show, not ``json/decoder.py``). Tracing costs time and memory of its own: compare holders with
each other, not the RSS with a run without it. It also slows the process enough that lease
renewals would miss their deadline, so here the operator runs without leader election: never
beside another instance.
"""

from __future__ import annotations

import signal
import sys
import sysconfig
import tracemalloc
from pathlib import Path
from types import FrameType

from statefulwebapp import cli
from statefulwebapp.runtime import lease

FRAMES = 25
TOP = 15
STDLIB = (sysconfig.get_paths()["stdlib"] + "/", "<frozen", "<string>", __file__)
"""Frames skipped when naming a holder: the standard library (not site-packages), this file."""


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _site(trace: tracemalloc.Traceback) -> str:
    """The innermost frame that is neither the standard library nor this script."""
    for frame in reversed(trace):  # tracemalloc orders frames oldest first
        if not frame.filename.startswith(STDLIB):
            return f"{frame.filename.rsplit('site-packages/', 1)[-1]}:{frame.lineno}"
    return f"{trace[0].filename}:{trace[0].lineno}"


def dump(out: Path) -> None:
    snapshot = tracemalloc.take_snapshot()
    sites: dict[str, list[int]] = {}
    for stat in snapshot.statistics("traceback"):
        entry = sites.setdefault(_site(stat.traceback), [0, 0])
        entry[0] += stat.size
        entry[1] += stat.count
    traced = sum(size for size, _ in sites.values())
    lines = [f"RSS {_rss_mib():.1f} MiB, traced {traced / 2**20:.1f} MiB"]
    for site, (size, count) in sorted(sites.items(), key=lambda kv: -kv[1][0])[:TOP]:
        lines.append(f"  {size / 2**20:8.1f} MiB {count:9d} blocks  {site}")
    with out.open("a") as f:
        f.write("\n".join(lines) + "\n\n")


class _NoElection:
    """Stands in for lease.Elector: this process is the only instance."""

    def __init__(self, *_: object) -> None:
        pass

    def acquire(self) -> None:
        pass

    def keep(self, **_: object) -> None:
        pass

    def release(self) -> None:
        pass


def main() -> int:
    out = Path(sys.argv[1])
    args = sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]
    tracemalloc.start(FRAMES)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        dump(out)

    signal.signal(signal.SIGUSR1, on_signal)
    lease.Elector = _NoElection  # type: ignore[assignment,misc]
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
