"""The test tooling's own safety checks, run as unit tests: no cluster, a private network
namespace."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_iptables_rules_are_removed_without_a_shell_reading_their_text() -> None:
    """node.sh's teardown deletes the rules it recorded, comments with ``$(...)``, quotes and
    ``;`` included, and no command in a comment runs (hack/cluster/test-rule-removal.sh)."""
    run = subprocess.run(
        [REPO / "hack/cluster/test-rule-removal.sh"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
