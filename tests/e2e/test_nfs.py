"""The NFS data path for real: the app's volume mounted by a real kubelet, shared by every
replica, archived by the backup agent, kept across the app's deletion, and its failure told.

The local cluster's NFS server (``hack/cluster/nfs.sh``: nfs-ganesha on 127.0.0.1) exports a
directory of this machine; each test module's app gets a subdirectory of its own
(:func:`tests.e2e.realnode.export_dir`). The real node's kubelet mounts ``nfs`` volumes through
``swa-nfs-mount`` (its ``--experimental-mounter-path``): the kernel's NFS client where the
kernel has one, else the project's FUSE client. It refuses any server that is not an address
of this machine, and logs the refusal; the session fails if anything was refused
(``conftest.no_foreign_mounts``).

The web pods and the real node's backup agent are placed there with the app's own fields
(``nodeSelector``, ``tolerations``, ``backup.tolerations``); the kwok nodes' agents mount
nothing.

Runs on the local cluster only: it reads the export and the agents' hostPath archives on this
machine (on kind the scenario's web pods serve the kind export: test_reference_scenario).
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from statefulwebapp.api.parse import parse as parse_app
from statefulwebapp.specs import names
from tests.e2e.apps import apply, child, explain, get_app, ready_condition, sample, wait_ready
from tests.e2e.cluster import REPO, Cluster, Operator, make_namespace, tools_bin, wait_for
from tests.e2e.realnode import (
    ON_REAL_NODE,
    TOLERATE_REAL_NODE,
    exec_in,
    export_dir,
    http_get,
    images,
    pods,
)

pytestmark = pytest.mark.local_cluster(
    reason="it reads the backup agents' hostPath archives on this machine, which only the "
    "local cluster's real node keeps there (a kind node's hostPath is inside its container); "
    "on kind the scenario's web pods serve the shared export (test_reference_scenario)"
)

REPLICAS = 2
MOUNT_PATH = "/usr/share/nginx/html"


@dataclass
class NfsApp:
    namespace: str
    body: dict[str, Any]
    export: dict[str, Any]
    """``spec.storage.nfs`` of the app."""
    served: Path
    """The exported directory, on this machine (the server's side)."""
    backups: Path
    """The app's archives on the real node (``<backup root>/<namespace>/web``), on this
    machine."""


def selector(component: str) -> str:
    return f"{names.LABEL_INSTANCE}=web,{names.LABEL_COMPONENT}={component}"


def app_body(export: dict[str, Any]) -> dict[str, Any]:
    return sample(
        replicas=REPLICAS,
        image=images()["nginx"],
        **ON_REAL_NODE,
        storage={"nfs": export, "capacity": "100Mi", "request": "10Mi"},
        backup={
            "image": images()["busybox"],
            "intervalSeconds": 10,
            "keep": 3,
            "tolerations": [dict(TOLERATE_REAL_NODE)],
        },
        dateLogger={"enabled": False},
    )


@pytest.fixture(scope="module")
def nfs_app(
    cluster: Cluster, operator: Operator, real_node: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NfsApp]:
    namespace = make_namespace(cluster, "nfs")
    export, served = export_dir(cluster, namespace)
    backups = operator.backups(namespace)
    body = app_body(export)
    apply(cluster, namespace, body)
    try:
        wait_ready(cluster, namespace, timeout=180)
    except BaseException:
        print(cluster.kubectl("get", "swa,pods,events", "-n", namespace, "-o", "wide"))
        raise
    yield NfsApp(namespace, body, export, served, backups)
    cluster.kubectl("delete", "swa", "--all", "-n", namespace, "--wait=true", "--timeout=90s")
    cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s")


def web_pods(cluster: Cluster, app: NfsApp) -> list[dict[str, Any]]:
    found = sorted(
        pods(cluster, app.namespace, selector(names.WEB)), key=lambda p: p["metadata"]["name"]
    )
    return [p for p in found if not p["metadata"].get("deletionTimestamp")]


def test_every_replica_mounts_the_export(cluster: Cluster, nfs_app: NfsApp, real_node: str) -> None:
    running = web_pods(cluster, nfs_app)
    assert len(running) == REPLICAS
    source = f"{nfs_app.export['server']}:{nfs_app.export['path']}"
    for pod in running:
        assert pod["spec"]["nodeName"] == real_node
        mounts = exec_in(cluster, nfs_app.namespace, pod["metadata"]["name"], "cat /proc/mounts")
        at_mount_path = [line.split() for line in mounts.splitlines() if f" {MOUNT_PATH} " in line]
        assert at_mount_path, f"nothing mounted at {MOUNT_PATH} in {pod['metadata']['name']}"
        device, _, fstype, *_ = at_mount_path[-1]
        assert device == source, mounts
        # The kernel's client shows nfs or nfs4; the FUSE client, fuse.nfs.
        assert fstype in {"nfs", "nfs4", "fuse.nfs"}, mounts


def test_replicas_find_each_other_by_name_through_the_cluster_dns(
    cluster: Cluster, nfs_app: NfsApp
) -> None:
    """The real node's pods resolve a peer's stable name as kind's pods do (the kubelet's
    clusterDNS, hack/cluster/node.sh), and the kubelet never reports the DNS missing."""
    first, *others = web_pods(cluster, nfs_app)
    service = nfs_app.body["spec"]["serviceName"]
    for peer in others:
        name = peer["metadata"]["name"]
        full = f"{name}.{service}.{nfs_app.namespace}.svc.cluster.local"
        # The short form goes through the pod's search path: <ns>.svc.cluster.local first.
        for asked in (f"{name}.{service}", full):
            answer = exec_in(
                cluster, nfs_app.namespace, first["metadata"]["name"], f"getent hosts {asked}"
            )
            assert answer.split()[:1] == [peer["status"]["podIP"]], f"{asked}: {answer!r}"
    events = cluster.kubectl(
        "get", "events", "-n", nfs_app.namespace, "--field-selector", "reason=MissingClusterDNS"
    )
    assert "MissingClusterDNS" not in events, events


def test_a_file_written_through_one_replica_is_served_by_every_replica(
    cluster: Cluster, nfs_app: NfsApp
) -> None:
    token = f"shared {uuid.uuid4().hex}\n"
    first, *others = web_pods(cluster, nfs_app)
    exec_in(
        cluster,
        nfs_app.namespace,
        first["metadata"]["name"],
        f"printf %s '{token}' > {MOUNT_PATH}/index.html.tmp && "
        f"mv {MOUNT_PATH}/index.html.tmp {MOUNT_PATH}/index.html",
    )
    assert (nfs_app.served / "index.html").read_text() == token, "not on the server"
    for pod in [first, *others]:
        ip = pod["status"]["podIP"]
        got = wait_for(lambda ip=ip: http_get(ip, 80) == token, 20, f"nginx at {ip} to serve it")
        assert got


def test_the_backup_agent_archives_the_real_content(
    cluster: Cluster, nfs_app: NfsApp, real_node: str
) -> None:
    # Written through a pod, as all content is: the server is not told of changes made
    # beside it on its own disk. Read here, on the server's side, for the bytes to expect.
    first = web_pods(cluster, nfs_app)[0]["metadata"]["name"]
    exec_in(
        cluster, nfs_app.namespace, first, f"head -c 65536 /dev/urandom > {MOUNT_PATH}/blob.bin"
    )
    payload = (nfs_app.served / "blob.bin").read_bytes()
    assert len(payload) == 65536
    digest = hashlib.sha256(payload).hexdigest()
    agents = pods(cluster, nfs_app.namespace, selector(names.BACKUP))
    assert real_node in {a["spec"].get("nodeName") for a in agents}
    prefix = f"{nfs_app.namespace}-web-"

    def archived() -> bool:
        for archive in sorted(nfs_app.backups.glob(f"{prefix}*.tar.gz"), reverse=True):
            try:
                with tarfile.open(archive) as tar:
                    member = tar.extractfile("./blob.bin")
                    data = member.read() if member else b""
            except (KeyError, tarfile.TarError, EOFError, OSError):
                continue
            return hashlib.sha256(data).hexdigest() == digest
        return False

    wait_for(archived, 60, f"an archive in {nfs_app.backups} holding blob.bin byte for byte")


def test_the_data_stay_when_the_app_is_deleted_and_created_again(
    cluster: Cluster, nfs_app: NfsApp
) -> None:
    token = f"kept {uuid.uuid4().hex}\n"
    first = web_pods(cluster, nfs_app)[0]["metadata"]["name"]
    exec_in(cluster, nfs_app.namespace, first, f"printf %s '{token}' > {MOUNT_PATH}/index.html")
    volume = names.volume_of(nfs_app.namespace, "web")
    cluster.kubectl("delete", "swa", "web", "-n", nfs_app.namespace, "--wait=true")
    wait_for(
        lambda: not cluster.kubectl("get", "pv", volume, "--ignore-not-found").strip(),
        90,
        f"volume {volume} to be collected",
    )
    wait_for(lambda: not web_pods(cluster, nfs_app), 90, "the web pods to go")
    assert (nfs_app.served / "index.html").read_text() == token, "Retain: the export keeps it"
    apply(cluster, nfs_app.namespace, nfs_app.body)
    wait_ready(cluster, nfs_app.namespace, timeout=180)
    for pod in web_pods(cluster, nfs_app):
        ip = pod["status"]["podIP"]
        assert wait_for(lambda ip=ip: http_get(ip, 80) == token, 20, f"nginx at {ip}")


def live(cluster: Cluster, app: NfsApp, kind: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        cluster.kubectl("get", kind, name, "-n", app.namespace, "-o", "json")
    )
    return body


def web_pod(cluster: Cluster, app: NfsApp, name: str) -> dict[str, Any]:
    return live(cluster, app, "pod", name)


def statefulset(cluster: Cluster, app: NfsApp) -> dict[str, Any]:
    return live(cluster, app, "statefulset", "web")


def stuck_condition(cluster: Cluster, app: NfsApp, *said: str) -> Any:
    """The Ready condition once it is RolloutStuck for the app's latest spec and says ``said``."""
    live = get_app(cluster, app.namespace)
    condition = ready_condition(live)
    current = live.get("status", {}).get("observedGeneration") == live["metadata"]["generation"]
    message = condition.get("message", "")
    ok = current and condition.get("reason") == "RolloutStuck"
    return condition if ok and all(part in message for part in said) else None


def test_a_rollout_stuck_at_a_failing_check_is_named_and_heals_once_the_spec_changes(
    cluster: Cluster, nfs_app: NfsApp
) -> None:
    """nginx answers 404 for a missing page: the pod rolled with that check never gets ready,
    and the StatefulSet waits for it for ever. The status names it, its revision and the
    kubelet's words; once the spec is fixed the operator deletes it (the forced rollback a
    user would do by hand), unless spec.rollout.replaceStuckPods is false: then the status
    names the pod to delete. Set, turned off, turned on again: each an edit of the live app."""
    last = f"web-{REPLICAS - 1}"
    broken = copy.deepcopy(nfs_app.body)
    broken["spec"]["probes"] = {
        "readiness": {"httpGet": {"path": "/missing.html"}, "periodSeconds": 2}
    }
    apply(cluster, nfs_app.namespace, broken)
    try:
        revision = wait_for(
            lambda: (
                (s := statefulset(cluster, nfs_app)["status"]).get("currentRevision")
                != s.get("updateRevision")
                and s["updateRevision"]
            ),
            60,
            "the StatefulSet to roll to the broken check",
        )
        # The kubelet's own words for the failing check, from its Unhealthy event.
        said = "Readiness probe failed: HTTP probe failed with statuscode: 404"
        condition = wait_for(
            lambda: stuck_condition(
                cluster, nfs_app, f"revision {revision} stopped at web pod {last}", said
            ),
            90,
            f"RolloutStuck naming {last}, revision {revision} and {said!r}",
        )
        print(f"Ready=False RolloutStuck: {condition['message']}")
        stuck = web_pod(cluster, nfs_app, last)
        assert stuck["metadata"]["labels"]["controller-revision-hash"] == revision
        # Fixed, with the replacement turned off: the status names the pod to delete by hand.
        manual = copy.deepcopy(nfs_app.body)
        manual["spec"]["rollout"] = {"replaceStuckPods": False}
        apply(cluster, nfs_app.namespace, manual)
        condition = wait_for(
            lambda: stuck_condition(
                cluster, nfs_app, f"kubectl delete pod -n {nfs_app.namespace} {last}"
            ),
            60,
            f"RolloutStuck naming {last} for the user to delete",
        )
        print(f"Ready=False RolloutStuck: {condition['message']}")
        assert web_pod(cluster, nfs_app, last)["metadata"]["uid"] == stuck["metadata"]["uid"]
        # Turned on again (the field removed: its default): the operator replaces it.
        apply(cluster, nfs_app.namespace, nfs_app.body)
        wait_ready(cluster, nfs_app.namespace, timeout=180)
        assert web_pod(cluster, nfs_app, last)["metadata"]["uid"] != stuck["metadata"]["uid"]
        events = json.loads(
            cluster.kubectl(
                "get",
                "events",
                "-n",
                nfs_app.namespace,
                "-o",
                "json",
                "--field-selector",
                "reason=ReplacedStuckPod",
            )
        )["items"]
        assert [e["involvedObject"]["name"] for e in events] == ["web"], events
        assert f"deleted web pod {last} of revision {revision}" in events[0]["message"]
    except BaseException:
        explain(cluster, nfs_app.namespace)
        # Leave the module's app as the next tests expect it, whatever happened here.
        apply(cluster, nfs_app.namespace, nfs_app.body)
        cluster.kubectl("delete", "pod", last, "-n", nfs_app.namespace, check=False)
        wait_ready(cluster, nfs_app.namespace, timeout=180)
        raise


def evict(cluster: Cluster, namespace: str, pod: str) -> str:
    """Ask the API server to evict ``pod`` as a node drain does; "" if it was, else the refusal."""
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": namespace},
    }
    out = cluster.kubectl(
        "create",
        "--raw",
        f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction",
        "-f",
        "-",
        stdin=json.dumps(eviction),
        check=False,
    )
    return "" if '"status":"Success"' in out.replace(" ", "") else out


def test_the_disruption_budget_lets_a_drain_take_one_web_pod_at_a_time(
    cluster: Cluster, nfs_app: NfsApp
) -> None:
    """The eviction API (what ``kubectl drain`` calls) against the real pods: the first web pod
    goes, the second is refused while the first is back but not yet Ready; with the budget
    turned off, a drain may take both (what the budget is there to prevent)."""
    ns = nfs_app.namespace
    budget = names.disruption_budget(parse_app(nfs_app.body))
    wait_for(
        lambda: (
            cluster.kubectl(
                "get", "pdb", budget, "-n", ns, "-o", "jsonpath={.status.disruptionsAllowed}"
            )
            == "1"
        ),
        60,
        f"PodDisruptionBudget {budget} allowing one disruption",
    )
    assert evict(cluster, ns, "web-0") == ""
    refused = evict(cluster, ns, "web-1")
    assert "disruption budget" in refused, refused
    print(f"second eviction refused: {refused.strip()}")
    wait_ready(cluster, ns, timeout=120)

    body = copy.deepcopy(nfs_app.body)
    body["spec"]["disruptionBudget"] = {"enabled": False}
    apply(cluster, ns, body)
    wait_for(
        lambda: "NotFound" in cluster.kubectl("get", "pdb", budget, "-n", ns, check=False),
        60,
        f"PodDisruptionBudget {budget} removed",
    )
    assert evict(cluster, ns, "web-0") == ""
    assert evict(cluster, ns, "web-1") == ""
    apply(cluster, ns, nfs_app.body)
    wait_ready(cluster, ns, timeout=120)
    assert child(cluster, "PodDisruptionBudget", budget, ns) is not None


def nfs_server(action: str) -> None:
    subprocess.run([REPO / "hack/cluster/nfs.sh", action], check=True, timeout=120)


def test_a_stopped_server_is_told_as_volume_mount_failed_and_recovery_is_seen(
    cluster: Cluster, nfs_app: NfsApp
) -> None:
    """Last of the module: it stops the server."""
    pod = f"web-{REPLICAS - 1}"
    nfs_server("stop")
    try:
        cluster.kubectl("delete", "pod", pod, "-n", nfs_app.namespace, "--wait=true")
        condition = wait_for(
            lambda: (
                (c := ready_condition(get_app(cluster, nfs_app.namespace))).get("reason")
                == "VolumeMountFailed"
                and c
            ),
            90,
            "Ready=False VolumeMountFailed",
        )
    finally:
        started = time.monotonic()
        nfs_server("start")
    assert condition["status"] == "False"
    message = condition["message"]
    print(f"Ready=False VolumeMountFailed: {message}")
    source = f"{nfs_app.export['server']}:{nfs_app.export['path']}"
    assert message.startswith(f"web pod {pod} cannot mount volume"), message
    assert f"(NFS {source})" in message, message
    assert "MountVolume.SetUp failed" in message, message
    # Within the kubelet's own retry backoff (at most about two minutes between tries).
    app = wait_ready(cluster, nfs_app.namespace, timeout=180)
    print(f"Ready again {time.monotonic() - started:.1f} s after the server came back")
    assert ready_condition(app)["reason"] == "Ready"
    mounts = exec_in(cluster, nfs_app.namespace, pod, "cat /proc/mounts")
    assert f"{source} {MOUNT_PATH} " in mounts, mounts
    # The pods that kept running through the outage serve again, on their old mounts: the
    # client reconnects (as the kernel's does with `hard`), no pod has to be recreated.
    expected = (nfs_app.served / "index.html").read_text()
    for running in web_pods(cluster, nfs_app):
        ip = running["status"]["podIP"]
        assert wait_for(lambda ip=ip: http_get(ip, 80) == expected, 30, f"nginx at {ip}")


def test_the_mount_helper_refuses_a_server_of_another_machine(tmp_path: Path) -> None:
    """The guard itself: 203.0.113.1 (a documentation address) is never contacted."""
    log = tmp_path / "guard.log"
    helper = tools_bin()
    target = tmp_path / "mnt"
    target.mkdir()
    out = subprocess.run(
        [
            helper / "swa-nfs-mount",
            "mount",
            "-t",
            "nfs",
            "-o",
            "nfsvers=3",
            "203.0.113.1:/shared",
            str(target),
        ],
        capture_output=True,
        text=True,
        env={"SWA_NFS_GUARD_LOG": str(log), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        timeout=30,
        check=False,
    )
    assert out.returncode == 32, out
    assert "203.0.113.1 is not an address of this machine" in out.stdout + out.stderr
    assert "203.0.113.1:/shared" in log.read_text()
    assert not any(str(target) in line for line in Path("/proc/mounts").read_text().splitlines())
