"""The FUSE NFS client against the local cluster's own NFS server, as the kubelet calls it.

``hack/tools/nfs-mount/test.sh`` mounts the test export twice (and a third time to kill its
daemon), and checks what nginx, busybox ``tar`` and the backup script need: content shared at
once between mounts, create, rename, remove, mkdir, readdir, truncate, symlinks, modes and
owners, a non-root reader, 50 MB byte for byte after unmount, a killed daemon cleaned up by a
plain ``umount``, a clear error when the server is down, and the guard refusing a server that
is not an address of this machine (before any packet is sent).

Runs on the local cluster only: it mounts this machine's export with the client itself.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.e2e.cluster import REPO, tools_bin
from tests.e2e.realnode import nfs_export


@pytest.mark.local_cluster(
    reason="it runs the FUSE client on this machine against the local cluster's NFS server; "
    "on kind the same client mounts the scenario's volumes in every node"
)
def test_the_fuse_client_does_what_the_pods_need() -> None:
    export = nfs_export()
    options = dict(o.split("=", 1) for o in export["mountOptions"] if "=" in o)
    out = subprocess.run(
        [
            REPO / "hack/tools/nfs-mount/test.sh",
            tools_bin() / "swa-nfs-mount",
            f"{export['server']}:{export['path']}",
            options["port"],
            options["mountport"],
            export["path"],
        ],
        capture_output=True,
        text=True,
        # The FUSE client even where the kernel has one (then the node itself uses the kernel's).
        env={**os.environ, "SWA_NFS_CLIENT": "fuse"},
        timeout=600,
        check=False,
    )
    summary = re.search(r"(\d+) passed, (\d+) failed", out.stdout)
    assert summary, out.stdout + out.stderr
    failed = [line for line in out.stdout.splitlines() if line.startswith("FAIL")]
    assert (out.returncode, int(summary[2]), failed) == (0, 0, []), out.stdout + out.stderr
    assert int(summary[1]) >= 20, out.stdout
