"""What the e2e modules that run real containers share: the images built here, placement on
the real node, the test NFS export, and small pod helpers.

The local cluster's node ``real`` (``hack/cluster/node.sh``) runs pods for real; it is tainted,
so a pod lands there only when it asks (:data:`ON_REAL_NODE`).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.apps import REAL_NODE
from tests.e2e.cluster import REPO, Cluster, local_images

TOLERATE_REAL_NODE = {"key": REAL_NODE, "operator": "Exists", "effect": "NoSchedule"}
ON_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {REAL_NODE: "true"},
    "tolerations": [TOLERATE_REAL_NODE],
}
"""A pod spec's (and an app spec's) placement on the real node."""


@dataclass(frozen=True)
class Placement:
    """Where pods run for real on the cluster under test, and how a pod spec gets there."""

    spec: dict[str, Any]
    """nodeSelector and tolerations for a pod spec, an app spec or chart values (may be empty)."""
    nodes: frozenset[str]
    """The nodes such a pod may land on."""


def images() -> dict[str, str]:
    """The locally built images by short name (busybox, nginx, operator, ...)."""
    return local_images()


def pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    return list(json.loads(out)["items"])


def exec_in(cluster: Cluster, namespace: str, pod: str, script: str) -> str:
    return cluster.kubectl("exec", "-n", namespace, pod, "--", "sh", "-c", script)


def http_get(ip: str, port: int, path: str = "/") -> str | None:
    """The body nginx serves, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}{path}", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


def nfs_export() -> dict[str, Any]:
    """The test export of the local cluster (``make -s nfs-export``): server, path, options."""
    out = subprocess.run(
        [REPO / "hack/cluster/nfs.sh", "export"], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise AssertionError(
            f"the local cluster's NFS server does not run: {out.stderr.strip()} "
            "(REAL_NODE=1 make cluster-up starts it; make test does)"
        )
    export: dict[str, Any] = json.loads(out.stdout)
    return export


def export_dir(cluster: Cluster, name: str) -> tuple[dict[str, Any], Path]:
    """A directory of the test export of its own, for one app: its ``storage.nfs`` and the
    directory on this machine (the server's side), where a test reads what pods wrote.

    The export is the cluster's: kind's (:attr:`Cluster.nfs`) or the local cluster's."""
    export = cluster.nfs or nfs_export()
    local = Path(export["path"]) / name
    local.mkdir(mode=0o777, exist_ok=True)
    local.chmod(0o777)  # Written by pods of any user.
    return {**export, "path": f"{export['path']}/{name}"}, local
