"""``kubectl swa`` against a live app: its status, its archives, a restore followed, a report.

The command runs as a user runs it, a process of its own (``python -m statefulwebapp.plugin``,
what the ``kubectl-swa`` console script runs) with the cluster's kubeconfig. One app, served by
an operator of this module's own (``--namespace``: it touches no other test's apps), its web
pod and one backup agent on the real node, the other agents on kwok's nodes, which run no
container: ``backups`` and ``status`` say they could not ask those, and go on.

Runs on the local cluster only: the archive listed and restored is made by the real node's
agent, and checked on this machine's side of the export.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.e2e.apps import apply, delete_namespace, sample, wait_ready
from tests.e2e.cluster import REPO, Cluster, Operator, make_namespace
from tests.e2e.conftest import start_operator
from tests.e2e.realnode import ON_REAL_NODE, TOLERATE_REAL_NODE, export_dir, images

pytestmark = pytest.mark.local_cluster(
    reason="the archive listed and restored is made by the backup agent on the local cluster's "
    "real node, and the restore is checked on this machine's side of the export"
)

BEFORE = "before the restore"


@dataclass
class App:
    namespace: str
    served: Path
    """The export's directory of the app, on this machine."""
    backups: Path
    """The app's archives on the real node (this machine)."""
    operator: Operator


@pytest.fixture(scope="module")
def app(
    cluster: Cluster, real_node: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    namespace = make_namespace(cluster, "plugin")
    export, served = export_dir(cluster, namespace)
    (served / "index.html").write_text(BEFORE)
    operator = start_operator(cluster, tmp_path_factory, "--namespace", namespace)
    body = sample(
        replicas=1,
        image=images()["nginx"],
        **ON_REAL_NODE,
        storage={"nfs": export, "capacity": "1Gi", "request": "10Mi"},
        # One archive, made when the agent starts: the listing compared below stays put.
        backup={
            "image": images()["busybox"],
            "intervalSeconds": 3600,
            "tolerations": [dict(TOLERATE_REAL_NODE)],
        },
    )
    try:
        apply(cluster, namespace, body)
        # Ready needs every agent ready, and the real node's is ready once it has archived.
        wait_ready(cluster, namespace, timeout=180)
        yield App(namespace, served, operator.backups(namespace), operator)
    finally:
        delete_namespace(cluster, namespace)
        operator.stop()


def swa(
    cluster: Cluster, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``kubectl swa ARGS`` as a user runs it, this checkout's code."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO / "operator"), os.environ.get("PYTHONPATH")])
        ),
    }
    config = kubeconfig or cluster.kubeconfig_path
    return subprocess.run(
        [sys.executable, "-m", "statefulwebapp.plugin", *args, "--kubeconfig", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def archives_on_the_node(app: App) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in app.backups.glob(f"{app.namespace}-web-*.tar.gz")}


def test_status_shows_the_live_app_ready_and_its_agents(
    cluster: Cluster, app: App, real_node: str
) -> None:
    table = swa(cluster, "status", "-n", app.namespace)
    assert table.returncode == 0, table.stderr
    print(table.stdout)  # What README.md shows.
    header, row = table.stdout.splitlines()
    assert header.split()[:7] == ["NAME", "READY", "STORAGE", "BACKUP", "DATE-LOG", "STATUS", "AGE"]
    assert row.split()[:6] == ["web", "1/1", "Bound", "5/5", "ok", "Ready"]
    every = swa(cluster, "status", "-A")
    assert every.returncode == 0, every.stderr
    assert any(line.split()[:2] == [app.namespace, "web"] for line in every.stdout.splitlines())

    one = swa(cluster, "status", "web", "-n", app.namespace)
    assert one.returncode == 0, one.stderr
    print(one.stdout)  # What README.md shows.
    text = one.stdout
    assert f"StatefulWebApp {app.namespace}/web" in text
    assert "Ready:       True (Ready)" in text
    assert "1/1 web pods ready, storage bound" in text
    assert "5/5 agents ready" in text
    (archive,) = archives_on_the_node(app)
    agents = [line.split() for line in text.splitlines() if "web-backup-" in line]
    assert len(agents) == 5, text
    real = [a for a in agents if a[0] == real_node]
    assert len(real) == 1, text
    # NODE AGENT READY STATE LAST-RUN(ok <age> ago) ARCHIVE-AGE NEWEST-ARCHIVE
    assert real[0][2:5] == ["true", "Running", "ok"], real
    assert real[0][-1] == archive
    others = [line for line in text.splitlines() if "web-backup-" in line and real_node not in line]
    assert all("cannot list" in line for line in others), others


def test_errors_are_one_line_and_say_what_to_do(cluster: Cluster, app: App, tmp_path: Path) -> None:
    missing = swa(cluster, "status", "nope", "-n", app.namespace)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.splitlines() == [
        f'kubectl swa: error: no StatefulWebApp "nope" in namespace "{app.namespace}" (apps '
        f"there: web); list them with: kubectl swa status -n {app.namespace} (every namespace: "
        "kubectl swa status -A)"
    ]
    # A user with no role: a ServiceAccount's token.
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", app.namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", app.namespace).strip()
    admin = yaml.safe_load(cluster.kubeconfig_path.read_text())
    nobody = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "nobody", "user": {"token": token}}],
        "contexts": [
            {
                "name": "nobody",
                "context": {
                    "cluster": admin["clusters"][0]["name"],
                    "user": "nobody",
                    "namespace": app.namespace,
                },
            }
        ],
        "current-context": "nobody",
    }
    config = tmp_path / "nobody.kubeconfig"
    config.write_text(yaml.safe_dump(nobody))
    denied = swa(cluster, "status", kubeconfig=config)  # The context's namespace.
    assert denied.returncode == 1
    (line,) = denied.stderr.splitlines()
    assert line.startswith(
        "kubectl swa: error: permission denied: you may not list statefulwebapps.apps.k8slab.io "
        f'in namespace "{app.namespace}"'
    ), line
    assert 'granting "list" on "statefulwebapps" in API group apps.k8slab.io' in line
    # No cluster at all: a kubeconfig whose server does not answer.
    admin["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(admin))
    gone = swa(cluster, "status", kubeconfig=dead)
    assert gone.returncode == 1
    (line,) = gone.stderr.splitlines()
    assert line.startswith("kubectl swa: error: cannot reach the API server at https://127.0.0.1:1")
    for result in (missing, denied, gone):
        assert "Traceback" not in result.stderr


def test_backups_lists_the_archive_the_real_agent_made(
    cluster: Cluster, app: App, real_node: str
) -> None:
    result = swa(cluster, "backups", "web", "-n", app.namespace)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    # NODE ARCHIVE SIZE MADE(date time) AGE
    listed = {r[1]: r for r in rows if r[0] == real_node}
    on_node = archives_on_the_node(app)
    assert set(listed) == set(on_node), result.stdout
    assert len(on_node) == 1
    # The kwok nodes' agents run no container: said on stderr, one line each.
    warnings = result.stderr.splitlines()
    assert len(warnings) == 4, result.stderr
    assert all(w.startswith("warning: agent web-backup-") for w in warnings)
    assert all("cannot list" in w for w in warnings)


def test_restore_follows_to_the_end_and_exits_as_it_ended(cluster: Cluster, app: App) -> None:
    (archive,) = archives_on_the_node(app)
    (app.served / "index.html").write_text("after: overwritten")
    done = swa(cluster, "restore", "web", "-n", app.namespace, "--archive", archive)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"statefulwebapprestore {app.namespace}/web-restore-")
    phases = [line.split("]", 1)[1].split()[0] for line in lines[1:-1]]
    assert "Running" in phases
    assert phases[-1] == "Succeeded"
    assert lines[-1].startswith(f"restored {archive} from node ")
    assert (app.served / "index.html").read_text() == BEFORE

    missing = f"{app.namespace}-web-20200101T000000Z.tar.gz"
    failed = swa(cluster, "restore", "web", "-n", app.namespace, "--archive", missing)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    (line,) = failed.stderr.splitlines()
    assert line.startswith("kubectl swa: error: restore web-restore-"), line
    assert "failed: RestoreFailed: " in line
    assert missing in line
    assert (app.served / "index.html").read_text() == BEFORE
    wait_ready(cluster, app.namespace, timeout=120)


def test_report_holds_the_app_its_children_and_no_secret(
    cluster: Cluster, app: App, tmp_path: Path
) -> None:
    # A Secret the app owns and labelled as its children are: never in a bundle.
    uid = json.loads(cluster.kubectl("get", "swa", "web", "-n", app.namespace, "-o", "json"))[
        "metadata"
    ]["uid"]
    password = f"never-{uuid.uuid4().hex}"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "web-password",
            "labels": {"app.kubernetes.io/instance": "web"},
            "ownerReferences": [
                {
                    "apiVersion": "apps.k8slab.io/v1alpha1",
                    "kind": "StatefulWebApp",
                    "name": "web",
                    "uid": uid,
                    "controller": True,
                }
            ],
        },
        "stringData": {"password": password},
    }
    cluster.kubectl("apply", "-n", app.namespace, "-f", "-", stdin=json.dumps(secret))
    bundle = tmp_path / "report.tar.gz"
    result = swa(cluster, "report", "web", "-n", app.namespace, "-o", str(bundle))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {bundle} (")
    with tarfile.open(bundle) as tar:
        texts = {}
        for member in tar.getmembers():
            data = tar.extractfile(member) if member.isfile() else None
            if data is not None:
                texts[member.name.split("/", 1)[1]] = data.read().decode()
    assert texts["app.yaml"]
    (found,) = yaml.safe_load(texts["app.yaml"])["items"]
    assert found["metadata"]["uid"] == uid
    kinds = {
        name.removeprefix("children/").removesuffix(".yaml")
        for name in texts
        if name.startswith("children/")
    }
    assert {
        "StatefulSet",
        "DaemonSet",
        "CronJob",
        "Service",
        "PersistentVolumeClaim",
        "PersistentVolume",
        "NetworkPolicy",
        "Pod",
    } <= kinds, kinds
    objects = [
        item
        for name, text in texts.items()
        if name.endswith(".yaml")
        for item in yaml.safe_load(text)["items"]
    ]
    assert not [o for o in objects if o.get("kind") == "Secret"]
    assert not [o for o in objects if "managedFields" in o.get("metadata", {})]
    restores = yaml.safe_load(texts["restores.yaml"])["items"]
    made = json.loads(cluster.kubectl("get", "swar", "-n", app.namespace, "-o", "json"))["items"]
    assert {r["metadata"]["name"] for r in restores} == {r["metadata"]["name"] for r in made}
    events = yaml.safe_load(texts["events.yaml"])["items"]
    assert events
    assert {e["involvedObject"]["uid"] for e in events} <= {o["metadata"]["uid"] for o in objects}
    assert any(
        name.startswith("logs/web-backup-") and "backup:" in text for name, text in texts.items()
    )
    everything = "\n".join(texts.values())
    assert password not in everything
    assert base64.b64encode(password.encode()).decode() not in everything
    assert "kind: Secret" not in everything
    assert "operator/" in texts["README.txt"]
    print(texts["README.txt"])
