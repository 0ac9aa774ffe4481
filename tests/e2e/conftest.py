"""The e2e cluster fixture, behind one option: ``--cluster=local|kind|existing``.

- ``local`` (default): the project's own cluster (``hack/cluster/up.sh``: real control plane,
  kwok nodes, CoreDNS on loopback). Started if it is not running; ``make test`` stops it.
- ``kind``: a kind cluster through pytest-kind, shaped by ``tests/e2e/kind.yaml`` (one tainted
  control plane, three workers), on podman with the node image built here
  (``hack/kind/kind.sh``); kept for the next run, ``make kind-down`` deletes it. Names are
  resolved from inside the cluster with a one-shot busybox pod.
- ``existing``: whatever ``$KUBECONFIG`` points at, used as it is (DNS as for kind).

Each proof runs once, on the cluster where it is real. Every e2e module (or test) says where
with a marker and why in its reason: ``kind_cluster`` for what needs real containers on several
kubeadm nodes (the scenario, DNS and NFS content, the chart's pods and ``helm test``, drift on
real pods), ``local_cluster`` for what the API server decides (admission, RBAC, leases, the
operator's own behaviour on kwok's pods) or what needs this machine's processes (the real
node's export, etcd, the API server restarted). A test runs where its closest marker says;
on the other cluster it is skipped with the marker's reason (``-rs`` prints it), never
silently. A module's docstring says the same in words.

Every test gets its own namespace, deleted afterwards. A cluster that cannot be reached is an
error, never a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pykube
import pytest

from tests.e2e.apps import REAL_NODE, apply, delete_namespace, sample, wait_ready
from tests.e2e.cluster import CRD_NAMES, CRDS, REPO, Cluster, Operator, make_namespace
from tests.e2e.realnode import ON_REAL_NODE, Placement


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster",
        choices=["local", "kind", "existing"],
        default="local",
        help="which cluster e2e tests run on (default: local, the kwok-based one)",
    )


PLACEMENTS = ("local_cluster", "kind_cluster")
E2E = Path(__file__).resolve().parent


def placement_of(item: pytest.Item) -> pytest.Mark | None:
    """The test's closest placement marker: a test's own overrides its module's."""
    return next((m for m in item.iter_markers() if m.name in PLACEMENTS), None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The other cluster's tests are skipped with the reason their marker gives, never silently.
    other = "kind_cluster" if config.getoption("--cluster") == "local" else "local_cluster"
    for item in items:
        marker = placement_of(item)
        if marker is None:
            if E2E in item.path.parents:
                raise pytest.UsageError(
                    f"{item.nodeid}: say where it runs: a local_cluster or kind_cluster marker "
                    "with the reason (tests/e2e/conftest.py)"
                )
            continue
        reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
        if not reason:
            raise pytest.UsageError(f"{item.nodeid}: {marker.name} needs a reason")
        if marker.name == other:
            where = "kind" if other == "kind_cluster" else "the local cluster"
            item.add_marker(pytest.mark.skip(reason=f"runs on {where} only: {reason}"))


def _local() -> Cluster:
    up = subprocess.run(
        [REPO / "hack/cluster/up.sh"], check=False, capture_output=True, text=True, timeout=300
    )
    if up.returncode != 0:
        pytest.fail(f"the local cluster did not start (hack/cluster/up.sh):\n{up.stderr}")
    kubeconfig = Path(up.stdout.strip().splitlines()[-1])
    port = int((REPO / ".cluster/coredns/port").read_text())
    return Cluster("local", kubeconfig, dns_port=port)


def _kind() -> Cluster:
    from pytest_kind import KindCluster  # noqa: PLC0415

    kind_sh = REPO / "hack/kind/kind.sh"
    out = subprocess.run([kind_sh, "env"], check=False, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"the kind tooling is not ready (hack/kind/kind.sh env):\n{out.stderr}")
    env = dict(line.split("=", 1) for line in out.stdout.split())
    # kind reads its provider and podman its settings from the environment pytest-kind passes on.
    for key in ("KIND_EXPERIMENTAL_PROVIDER", "CONTAINERS_CONF"):
        os.environ[key] = env[key]
    kubeconfig = Path(env["KIND_KUBECONFIG"])
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kind = KindCluster(
        env["KIND_CLUSTER"],
        kubeconfig=kubeconfig,
        image=env["KIND_NODE_IMAGE"],
        kind_path=Path(env["KIND"]),
    )
    kind.create(config_file=REPO / "tests/e2e/kind.yaml")
    ready = subprocess.run([kind_sh, "ready"], check=False, capture_output=True, text=True)
    if ready.returncode != 0:
        pytest.fail(f"the kind cluster is not ready (hack/kind/kind.sh ready):\n{ready.stderr}")
    export = subprocess.run([kind_sh, "nfs-export"], check=True, capture_output=True, text=True)
    return Cluster("kind", kubeconfig, nfs=json.loads(export.stdout))


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    choice = request.config.getoption("--cluster")
    if choice == "local":
        yield _local()
    elif choice == "kind":
        yield _kind()
    else:
        path = os.environ.get("KUBECONFIG", str(Path.home() / ".kube/config"))
        yield Cluster("existing", Path(path.split(os.pathsep)[0]))


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = make_namespace(cluster)
    yield name
    pykube.Namespace(cluster.api, {"metadata": {"name": name}}).delete()


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """The CRD installed and the real console script running against the cluster.

    Module-scoped: two operators must never serve the same apps, and the RBAC module runs its
    own under the chart's ServiceAccount.
    """
    running = start_operator(cluster, tmp_path_factory)
    yield running
    running.stop()


def start_operator(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, *extra: str
) -> Operator:
    """The CRDs installed, then the operator started with ``extra`` options (its archives
    under ``cluster.BACKUP_ROOT``)."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    cluster.kubectl("wait", "--for=condition=Established", *CRD_NAMES)
    return Operator.start(
        cluster,
        tmp_path_factory.mktemp("operator") / "operator.log",
        *extra,
    )


@pytest.fixture
def lease(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A lease of its own (``default/<module>-<random>``), for tests that run several operators
    on one lease; deleted afterwards. The CRD is installed."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    cluster.kubectl("wait", "--for=condition=Established", *CRD_NAMES)
    name = f"{request.module.__name__.rsplit('_', 1)[-1]}-{uuid.uuid4().hex[:6]}"
    yield f"default/{name}"
    cluster.kubectl("delete", "lease", name, "-n", "default", "--ignore-not-found")


@pytest.fixture
def apps_ns(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace for the apps of one test whose operators it starts itself."""
    namespace = make_namespace(cluster, request.module.__name__.rsplit("_", 1)[-1])
    yield namespace
    delete_namespace(cluster, namespace)


@pytest.fixture(scope="module")
def app_ns(cluster: Cluster, operator: Operator) -> Iterator[str]:
    """The sample app, applied once and Ready, shared by a module's read-only checks."""
    namespace = make_namespace(cluster, "swa")
    apply(cluster, namespace, sample())
    wait_ready(cluster, namespace)
    yield namespace
    delete_namespace(cluster, namespace)


@pytest.fixture
def fresh_ns(cluster: Cluster, operator: Operator) -> Iterator[str]:
    """A namespace of its own, with the operator running, for tests that change or break an app.

    Its apps are deleted first, while the operator runs, so that their volumes go too.
    """
    namespace = make_namespace(cluster, "swa")
    yield namespace
    delete_namespace(cluster, namespace)


@pytest.fixture(scope="module")
def real_node(cluster: Cluster) -> str:
    """The name of the node where containers really run (the local cluster's ``real``)."""
    return _real_node(cluster)


def _real_node(cluster: Cluster) -> str:
    if cluster.kind != "local":
        pytest.fail(
            "the real-node tests run the images built on this machine (hack/images) on the local "
            "cluster's real node: use --cluster=local"
        )
    node = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    real = [n for n in node if n["metadata"].get("labels", {}).get(REAL_NODE) == "true"]
    if not real:
        pytest.fail(
            f"no node labelled {REAL_NODE}=true: these tests need the real node; start the local "
            "cluster with REAL_NODE=1 make cluster-up (make test does)"
        )
    ready = next(c for c in real[0]["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", f"the real node is not Ready: {ready}"
    return str(real[0]["metadata"]["name"])


@pytest.fixture(scope="module")
def placement(cluster: Cluster) -> Placement:
    """Where pods run for real: the local cluster's real node (asked for by label and
    toleration), or any worker of kind (every node runs containers; the control plane is
    tainted, so a pod without a toleration lands on a worker)."""
    if cluster.kind == "local":
        return Placement(ON_REAL_NODE, frozenset({_real_node(cluster)}))
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    workers = {
        n["metadata"]["name"]
        for n in nodes
        if not any(t["effect"] == "NoSchedule" for t in n["spec"].get("taints") or [])
    }
    return Placement({}, frozenset(workers))


NFS_GUARD_LOG = REPO / ".cluster/node/nfs-guard.log"
"""Where the real node's mount helper (``swa-nfs-mount``) logs every server it refused."""


def _guard_logs(config: pytest.Config) -> str:
    """What every real kubelet's mount helper refused so far: the local real node's log, and on
    kind each node's (inside its container)."""
    logs = NFS_GUARD_LOG.read_text() if NFS_GUARD_LOG.exists() else ""
    if config.getoption("--cluster") != "kind":
        return logs
    engine = os.environ.get("KIND_EXPERIMENTAL_PROVIDER", "podman")
    cluster = os.environ.get("KIND_CLUSTER", "statefulwebapp-e2e")
    nodes = subprocess.run(
        [
            engine,
            "ps",
            "--filter",
            f"label=io.x-k8s.kind.cluster={cluster}",
            "--format",
            "{{.Names}}",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    for node in sorted(nodes):
        out = subprocess.run(
            [engine, "exec", node, "cat", "/var/log/swa-nfs/guard.log"],
            capture_output=True,
            text=True,
            check=False,
        )
        logs += "".join(f"{node}: {line}\n" for line in out.stdout.splitlines())
    return logs


@pytest.fixture(scope="session", autouse=True)
def no_foreign_mounts(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the run if a real kubelet was asked to mount an export of another machine.

    Only the cluster's own test export may be mounted for real: the sample's 211.183.3.100 is
    a public address. The helper refuses before any packet leaves; this makes the test that
    asked for it fail the run instead of passing on a pod that never started.
    """
    before = _guard_logs(request.config)
    yield
    after = _guard_logs(request.config)
    refused = after[len(before) :] if after.startswith(before) else after
    assert not refused.strip(), (
        "a real kubelet was asked to mount an NFS export that is not on this machine "
        f"(refused by swa-nfs-mount, {NFS_GUARD_LOG} or a kind node's "
        f"/var/log/swa-nfs/guard.log):\n{refused}"
    )
