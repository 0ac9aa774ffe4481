"""Helpers for e2e tests: the Cluster handle, polling, and throw-away namespaces."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import dns.exception
import dns.resolver
import pykube
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]


def tools_bin() -> Path:
    """The cache directory holding kubectl, helm and the cluster binaries."""
    out = subprocess.run(
        [REPO / "hack/tools/build.sh", "--dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


class Check(Protocol):
    """What :func:`wait_for` polls: called with no argument.

    A Protocol rather than ``Callable[[], Any]``: a lambda that binds a loop variable as a
    default (``lambda ip=ip: ...``) is callable with no argument, but mypy cannot infer such a
    lambda against a ``Callable`` type.
    """

    def __call__(self) -> Any:
        """The value polled: truthy once the awaited thing happened."""


def wait_for(check: Check, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail saying ``what`` never happened."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last seen: {last!r})")


@dataclass
class Cluster:
    """A cluster for e2e tests: API client, kubectl, and cluster DNS lookups."""

    kind: str
    kubeconfig_path: Path
    dns_port: int | None = None
    """Loopback port of the local cluster's CoreDNS; None resolves from inside the cluster."""
    nfs: dict[str, Any] | None = None
    """On a cluster whose every node runs pods for real (kind): its test export, which apps
    use instead of the sample's public one (:func:`tests.e2e.apps.runnable`)."""
    api: pykube.HTTPClient = field(init=False)

    def __post_init__(self) -> None:
        self.api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(self.kubeconfig_path)))
        self._kubectl = str(tools_bin() / "kubectl")

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        """Run kubectl against this cluster and return its stdout."""
        result = subprocess.run(
            [self._kubectl, "--kubeconfig", str(self.kubeconfig_path), *args],
            input=stdin,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout + (result.stderr if not check else "")

    def resolve(self, name: str) -> list[str]:
        """A records of a cluster DNS name (empty if it does not resolve)."""
        if self.dns_port is None:
            return self._resolve_in_cluster(name)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.dns_port
        resolver.lifetime = 2.0
        try:
            return sorted(r.to_text() for r in resolver.resolve(name, "A"))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.exception.Timeout):
            return []

    def _phase(self, pod: str) -> str:
        return self.kubectl("get", "pod", "-n", "default", pod, "-o", "jsonpath={.status.phase}")

    def _resolve_in_cluster(self, name: str) -> list[str]:
        """Ask the cluster's DNS from a one-shot busybox pod: its ``nslookup`` output, parsed.

        The pod runs to completion and its log is read afterwards: an attached ``kubectl run
        -i`` falls back to the log when the container is gone first, printing answers twice.
        """
        pod = f"nslookup-{uuid.uuid4().hex[:6]}"
        image = local_images()["busybox"]
        self.kubectl(
            "run",
            pod,
            "-n",
            "default",
            "--restart=Never",
            f"--image={image}",
            "--",
            "nslookup",
            name,
        )
        try:
            wait_for(
                lambda: self._phase(pod) in {"Succeeded", "Failed"}, 60, f"pod {pod} to finish"
            )
            out = self.kubectl("logs", "-n", "default", pod, check=False)
        finally:
            self.kubectl("delete", "pod", "-n", "default", pod, "--wait=false", check=False)
        found: set[str] = set()
        answer = False  # nslookup prints its server's address too: only those after a Name
        for line in out.splitlines():
            if line.startswith(("Name:", "Server:")):
                answer = line.startswith("Name:")
            elif answer and line.startswith("Address"):
                found.add(line.split()[-1])
        return sorted(found)


@functools.cache
def local_images() -> dict[str, str]:
    """The images built on this machine (``hack/images``) by short name: busybox, nginx, ..."""
    out = subprocess.run(
        [REPO / "hack/images/build.sh", "--names"], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.split())


def make_namespace(cluster: Cluster, prefix: str = "e2e") -> str:
    """Create a fresh namespace and wait for its default ServiceAccount."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    pykube.Namespace(cluster.api, {"metadata": {"name": name}}).create()
    wait_for(
        lambda: pykube.ServiceAccount.objects(cluster.api, namespace=name).get_or_none(
            name="default"
        ),
        30,
        f"the default ServiceAccount of {name}",
    )
    return name


BACKUP_ROOT = Path(tempfile.gettempdir()) / "statefulwebapp-e2e" / "backups"
"""Every e2e operator's ``--backup-root``: archives on the nodes under a directory of the tests'
(the local cluster's real node's host directories are this machine's, and none belong in its
/var), known to the tests that compare children with the rendering."""

CRD = REPO / "crds/statefulwebapps.apps.k8slab.io.yaml"
CRDS = REPO / "crds"
"""Both CRDs (``kubectl apply -f`` of the folder does not descend into ``samples/``)."""
CRD_NAMES = ("crd/statefulwebapps.apps.k8slab.io", "crd/statefulwebapprestores.apps.k8slab.io")
CHART = REPO / "deploy/statefulwebapp-operator"


@dataclass
class Operator:
    """The ``statefulwebapp-operator`` console script, running as a child process."""

    process: subprocess.Popen[bytes]
    log: Path
    health_port: int
    backup_root: Path = BACKUP_ROOT
    """Its ``--backup-root``: each app's archives on a node in ``<root>/<namespace>/<name>``
    (on the local cluster's real node, this machine's)."""

    def backups(self, namespace: str, name: str = "web") -> Path:
        """The directory of an app's archives on the nodes."""
        return self.backup_root / namespace / name

    @classmethod
    def start(
        cls, cluster: Cluster, log: Path, *extra: str, backup_root: Path = BACKUP_ROOT
    ) -> Operator:
        """Start it and wait for its health endpoint (served by a standby too).

        Each start gets a lease of its own unless ``extra`` names one: operators of different
        test modules never overlap, and one killed by a test must not make the next wait.
        """
        extra = (*extra, "--backup-root", str(backup_root))
        if "--lease" not in extra:
            extra = (*extra, "--lease", f"default/e2e-{uuid.uuid4().hex[:8]}")
        port = _free_port()
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path)}
        exe = Path(sys.executable).with_name("statefulwebapp-operator")
        with log.open("wb") as out:
            process = subprocess.Popen(
                [exe, "--health", f"http://127.0.0.1:{port}/healthz", *extra],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        running = cls(process, log, port, backup_root)
        wait_for(running.healthy, 60, f"the operator's health endpoint (log: {log})")
        return running

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the operator exited with {self.process.returncode}:\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1):
                return True
        except OSError:
            return False

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_operator(
    cluster: Cluster, tmp_path: Path, label: str, lease: str, namespace: str
) -> Operator:
    """An operator serving ``namespace`` on ``lease``, logging to ``tmp_path/<label>.log``."""
    log = tmp_path / f"{label}.log"
    return Operator.start(cluster, log, "--lease", lease, "--namespace", namespace)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def compact_etcd() -> int:
    """Compact the local cluster's etcd at its current revision; returns that revision.

    Any watch resuming from an older resourceVersion then gets 410 Gone and must relist: the
    way to make a watch gap on purpose. Uses etcd's JSON gateway (the local etcd has no TLS).
    """
    pid = (REPO / ".cluster/kwok/clusters/swa/pids/kube-apiserver.pid").read_text().strip()
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    url = next(a.decode().split("=", 1)[1] for a in args if a.startswith(b"--etcd-servers="))
    status = requests.post(f"{url}/v3/maintenance/status", json={}, timeout=10)
    revision = int(status.json()["header"]["revision"])
    compact = requests.post(
        f"{url}/v3/kv/compaction", json={"revision": str(revision), "physical": True}, timeout=30
    )
    compact.raise_for_status()
    return revision


def helm(cluster: Cluster, *args: str) -> str:
    """Run the pinned helm against this cluster and return its stdout."""
    result = subprocess.run(
        [tools_bin() / "helm", "--kubeconfig", str(cluster.kubeconfig_path), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout
