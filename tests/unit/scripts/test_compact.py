"""The scripts as pod specs carry them (``render.compact``): the same programs, fewer bytes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from statefulwebapp.specs import render

SCRIPTS = Path(__file__).resolve().parents[3] / "operator/statefulwebapp/scripts"
SHIPPED = {
    "backup.sh": render.BACKUP_SCRIPT,
    "backup-check.sh": render.BACKUP_CHECK_SCRIPT,
    "restore.sh": render.RESTORE_SCRIPT,
}


def as_bash_reads_it(script: str) -> str:
    """The program bash parses from ``script``, printed back by bash itself: no comments, one
    layout, here-documents and quoted strings as written (``declare -f`` of a function whose
    body is the script; nothing of it runs)."""
    bash = shutil.which("bash")
    assert bash, "bash not found on PATH"
    proc = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", f"program() {{\n{script}\n}}\ndeclare -f program"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return proc.stdout


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_script_is_the_same_program_without_its_comments(name: str) -> None:
    source = (SCRIPTS / name).read_text()
    shipped = SHIPPED[name]
    assert as_bash_reads_it(shipped) == as_bash_reads_it(source)
    assert len(shipped) < 0.6 * len(source), "its comments are still in it"
    assert not [line for line in shipped.splitlines() if line.lstrip().startswith("#")]


@pytest.mark.parametrize(
    "text",
    [
        # A quoted string spanning lines: its blank and "#" lines are text.
        'x="one\n\n# two"\necho "$x"\n',
        "x='one\n\n# two'\necho \"$x\"\n",
        # A here-document, plain and with <<- (tabs before its end).
        "cat <<EOF\n\n# text\nEOF\necho done\n",
        "cat <<-'END'\n\t# text\n\n\tEND\necho done\n",
        # A line continued: the next line is part of the command.
        "echo one \\\n\ntwo\n",
    ],
)
def test_text_that_looks_like_a_comment_or_a_blank_line_is_kept(text: str) -> None:
    assert render.compact(text) == text
    assert as_bash_reads_it(render.compact(text)) == as_bash_reads_it(text)


def test_comment_lines_and_blank_lines_go_and_code_stays_as_written() -> None:
    text = '#!/bin/sh\n# Why.\n\nset -eu\n    # Indented why.\n    echo "#1" # kept\n'
    assert render.compact(text) == 'set -eu\n    echo "#1" # kept\n'
