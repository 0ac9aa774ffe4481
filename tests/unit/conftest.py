"""Fixtures the script tests share: busybox, and a PATH of its applets only."""

from __future__ import annotations

import shutil
import subprocess

import pytest


@pytest.fixture(scope="session")
def busybox() -> str:
    path = shutil.which("busybox")
    if path is None:
        pytest.fail(
            "busybox not found on PATH: run `make tools` or install it "
            "(e.g. `apt-get install -y busybox`)"
        )
    return path


@pytest.fixture(scope="session")
def applet_path(busybox: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Directory with one symlink per busybox applet, to use as the only PATH entry."""
    bindir = tmp_path_factory.mktemp("busybox-bin")
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        (bindir / applet).symlink_to(busybox)
    return str(bindir)
