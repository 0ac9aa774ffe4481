"""What can be checked of deploy/Dockerfile without building it.

The image itself is built by hack/images/build.sh and run for real on the local cluster's
real node: tests/e2e/test_real_node.py.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "deploy/Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = "\n".join(
        ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")
    )
    lines = [ln.strip() for ln in text.replace("\\\n", " ").splitlines()]
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1])
        for ln in lines
        if ln and not ln.startswith("#")
    ]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    users = [arg for op, arg in final_stage() if op == "USER"]
    assert users, "the image runs as root: add a USER instruction"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) != 0


def test_entrypoint_is_the_declared_console_script_and_it_starts() -> None:
    entry = [arg for op, arg in final_stage() if op == "ENTRYPOINT"][-1]
    command = shlex.split(entry.strip("[]").replace(",", " "))[0]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert command in scripts
    exe = Path(sys.executable).with_name(command)
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True, timeout=60)
    assert "--namespace" in out.stdout
    assert "--log-format" in out.stdout


def test_final_stage_installs_only_runtime_dependencies() -> None:
    runs = " ".join(arg for op, arg in instructions() if op == "RUN")
    assert "[dev]" not in runs
    assert "--no-cache-dir" in runs
    assert all(op != "RUN" for op, _ in final_stage()), "the runtime stage only copies"
    bases = [arg for op, arg in instructions() if op == "ARG" and arg.startswith("BASE=")]
    assert bases[0].endswith("-slim"), "the default base is a slim public image"


def test_the_user_matches_the_chart() -> None:
    helpers = (REPO / "deploy/statefulwebapp-operator/templates/_helpers.tpl").read_text()
    uid, _, gid = [arg for op, arg in final_stage() if op == "USER"][-1].partition(":")
    assert f"runAsUser: {uid}" in helpers
    assert f"runAsGroup: {gid}" in helpers
