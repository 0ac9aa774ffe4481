"""Where the operator's CPU goes during a fleet: py-spy samples, summed per function.

``make bench BENCH_ARGS='--profile'`` records the operator while the largest fleet is created
(py-spy attached to the running process, 100 samples a second) and writes ``profile.json``: the
functions that were on the CPU most, by their own samples and by the samples of everything they
called, and the share of each among all samples. Only the thread holding the GIL is sampled: a
thread waiting on a socket or a lock is not the operator's CPU (sampling every thread not idle
counted them, a third of the samples in ``SSLSocket.read``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any


class Recording:
    """py-spy attached to ``pid`` until :meth:`stop`."""

    def __init__(self, pid: int, raw: Path) -> None:
        """Start sampling ``pid`` into ``raw`` (collapsed stacks)."""
        self.raw = raw
        spy = Path(sys.executable).with_name("py-spy")
        args = ["--pid", str(pid), "--rate", "100", "--format", "raw", "--output", str(raw)]
        self.process = subprocess.Popen(
            [spy, "record", *args, "--gil", "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self, top: int = 15) -> dict[str, Any]:
        """Stop sampling (py-spy writes its file on SIGINT) and summarise it."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)
        return summarise(self.raw.read_text().splitlines(), top)


def summarise(lines: list[str], top: int) -> dict[str, Any]:
    """The ``top`` functions by own and by inclusive samples, from collapsed stack lines.

    A line is ``frame;frame;...;frame count``, outermost first; a frame is ``function
    (file:line)``, whose line number is dropped so that a function counts once.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_function(frame) for frame in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for frame in dict.fromkeys(frames):  # Each once, outermost first (ties keep it).
            inclusive[frame] += n

    def ranked(counts: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": f, "samples": n, "share_pct": round(100 * n / total, 1)}
            for f, n in counts.most_common(top)
        ]

    return {"samples": total, "own": ranked(own), "inclusive": ranked(inclusive)}


def _function(frame: str) -> str:
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    # .../site-packages/kopf/_core/x.py -> kopf/_core/x.py: the module, not this machine's paths.
    for marker in ("site-packages/", "/operator/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        if "/lib/python3" in path:
            path = "python/" + path.rsplit("/lib/python3", 1)[1].partition("/")[2]
    return f"{name} ({path})"
