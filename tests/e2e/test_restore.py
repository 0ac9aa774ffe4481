"""Backups you can restore and trust, with real data on the real node and the real NFS mount.

Content is written through a web pod, archived by the real node's backup agent (every 10 s
here), overwritten, and put back by a StatefulWebAppRestore; the volume is compared byte for
byte on the server's side of the export. A restore of a missing archive fails and changes
nothing; a restore whose pod is killed mid-way loses nothing and finishes on its retry; one
deleted mid-way is named on the app until a new one finishes; an agent that cannot archive
turns the app to ``BackupFailing`` and back; an archive dated in the future does not stop new
ones being kept.

Each app's archives are its own: another tenant's app naming its archives alike is never a
candidate of a restore (they shared one directory of each node once).

Runs on the local cluster only: it reads the export and the real node's hostPath archives on
this machine. The agents' CPU limit is the test's own (``AGENT_LIMITS``): what a run does is
the proof, not how long the default limit makes it take.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from statefulwebapp.specs import names, render
from tests.e2e.apps import (
    apply,
    children_match_the_rendering,
    explain,
    get_app,
    ready_condition,
    sample,
    wait_ready,
    wait_reason,
)
from tests.e2e.cluster import Cluster, Operator, make_namespace, wait_for
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
    reason="it reads the backup agents' hostPath archives and the export on this machine, "
    "which only the local cluster's real node keeps here"
)

MOUNT_PATH = "/usr/share/nginx/html"
INTERVAL = 10
AGENT_LIMITS = {"cpu": "500m", "memory": "200Mi"}
"""The agents' and the restore Job's limits here: a run of the killed restore's 200 MiB takes
about two minutes at the default 100m, and the tests prove what a run does, not how fast."""
BIG_MIB = 200
"""The killed restore's site: big enough that its extraction is caught half-way."""
UNWRITABLE = "cannot create a file in /backup (BACKUP_DEST)"
"""What the agent says of a destination that takes no file (``scripts/backup.sh``)."""


@dataclass
class App:
    namespace: str
    body: dict[str, Any]
    served: Path
    """The exported directory, on the server's side."""
    backups: Path
    """The app's archives on the real node (``<backup root>/<namespace>/web``), on this
    machine."""

    @property
    def prefix(self) -> str:
        return f"{self.namespace}-web-"


@pytest.fixture(scope="module")
def app(
    cluster: Cluster, operator: Operator, real_node: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    # "restore-x-<hex>": a tenant's namespace "restore" with an app "x-<hex>-web" names its
    # archives alike (test_a_named_older_archive_and_the_default_latest).
    namespace = make_namespace(cluster, "restore-x")
    export, served = export_dir(cluster, namespace)
    backups = operator.backups(namespace)
    body = sample(
        replicas=2,
        image=images()["nginx"],
        **ON_REAL_NODE,
        storage={"nfs": export, "capacity": "1Gi", "request": "10Mi"},
        backup={
            "image": images()["busybox"],
            "intervalSeconds": INTERVAL,
            "keep": 50,
            "tolerations": [dict(TOLERATE_REAL_NODE)],
            "resources": {"limits": AGENT_LIMITS},
        },
        dateLogger={"enabled": False},
    )
    apply(cluster, namespace, body)
    try:
        wait_ready(cluster, namespace, timeout=180)
    except BaseException:
        print(cluster.kubectl("get", "swa,pods,events", "-n", namespace, "-o", "wide"))
        raise
    yield App(namespace, body, served, backups)
    cluster.kubectl("delete", "swa", "--all", "-n", namespace, "--wait=true", "--timeout=90s")
    cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s")
    subprocess.run(["chattr", "-i", str(backups)], check=False)


def running_web_pods(cluster: Cluster, app: App) -> list[str]:
    selector = f"{names.LABEL_INSTANCE}=web,{names.LABEL_COMPONENT}={names.WEB}"
    return sorted(
        p["metadata"]["name"]
        for p in pods(cluster, app.namespace, selector)
        if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"
    )


def web_pod(cluster: Cluster, app: App) -> str:
    running = running_web_pods(cluster, app)
    assert running, "no web pod running"
    return running[0]


def write_site(
    cluster: Cluster, app: App, token: str, blob_kib: int = 64, *, ready: bool = True
) -> None:
    """A small site through a web pod: a page, a subdirectory, a hidden file, a random blob.

    ``ready=False``: through any running web pod, the app Ready or not.
    """
    if ready:
        wait_ready(cluster, app.namespace, timeout=180)  # After a restore: the web pods are back.
    else:
        wait_for(lambda: running_web_pods(cluster, app), 180, "a running web pod")
    exec_in(
        cluster,
        app.namespace,
        web_pod(cluster, app),
        f"cd {MOUNT_PATH} && rm -rf ./* ./.[!.]* && mkdir -p docs/deep && "
        f"printf %s '{token}' > index.html && printf %s 'deep {token}' > docs/deep/page.html && "
        f"printf %s 'hidden {token}' > .hidden && : > empty && "
        f"head -c {blob_kib * 1024} /dev/urandom > blob.bin",
    )


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones included, the restore's own work files not):
    relative path -> sha256."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(".swa-restore-"):
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def archive_tree(archive: Path) -> dict[str, str]:
    found = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile():
                data = tar.extractfile(member)
                rel = member.name.removeprefix("./")
                found[rel] = hashlib.sha256(data.read() if data else b"").hexdigest()
    return found


def archives(app: App, directory: Path | None = None) -> list[Path]:
    """The app's archives in ``directory`` (default: its directory on the real node)."""
    return sorted((directory or app.backups).glob(f"{app.prefix}*.tar.gz"))


def archive_of(
    app: App, expected: dict[str, str], timeout: float = 90, directory: Path | None = None
) -> Path:
    """The newest archive in ``directory`` (as :func:`archives`) holding exactly ``expected``,
    waited for."""
    # Each finished archive is read once: reading a 200 MiB one again on every poll takes
    # the CPU the agent needs to make the next.
    checked: dict[tuple[Path, int, float], bool] = {}

    def holds(archive: Path) -> bool:
        stat = archive.stat()
        key = (archive, stat.st_size, stat.st_mtime)
        if key not in checked:
            try:
                checked[key] = archive_tree(archive) == expected
            except (tarfile.TarError, EOFError, OSError):
                return False
        return checked[key]

    def found() -> Path | None:
        for archive in reversed(archives(app, directory)):
            try:
                if holds(archive):
                    return archive
            except OSError:  # Rotated away meanwhile.
                continue
        return None

    where = directory or app.backups
    return Path(wait_for(found, timeout, f"an archive in {where} of the content written"))


def restore(cluster: Cluster, app: App, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": "apps.k8slab.io/v1alpha1",
        "kind": "StatefulWebAppRestore",
        "metadata": {"name": name},
        "spec": {"appName": "web", **spec},
    }
    cluster.kubectl("apply", "-n", app.namespace, "-f", "-", stdin=json.dumps(body))


def get_restore(cluster: Cluster, app: App, name: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", "swar", name, "-n", app.namespace, "-o", "json")))


def finished(cluster: Cluster, app: App, name: str, timeout: float = 180) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        swar = get_restore(cluster, app, name)
        return swar if swar.get("status", {}).get("phase") in {"Succeeded", "Failed"} else None

    try:
        return dict(wait_for(done, timeout, f"restore {name} to finish"))
    except BaseException:
        print(
            cluster.kubectl("get", "swar,swa,jobs,pods,events", "-n", app.namespace, "-o", "wide")
        )
        raise


def serves(cluster: Cluster, app: App, token: str) -> None:
    """Every web pod serves ``token`` as its index page."""
    wait_ready(cluster, app.namespace, timeout=180)
    selector = f"{names.LABEL_INSTANCE}=web,{names.LABEL_COMPONENT}={names.WEB}"
    for pod in pods(cluster, app.namespace, selector):
        ip = pod["status"]["podIP"]
        assert wait_for(lambda ip=ip: http_get(ip, 80) == token, 30, f"nginx at {ip} serving it")


def test_a_restore_puts_the_archived_content_back_byte_for_byte(cluster: Cluster, app: App) -> None:
    token = f"before {uuid.uuid4().hex}"
    write_site(cluster, app, token)
    written = tree(app.served)
    assert set(written) == {"index.html", "docs/deep/page.html", ".hidden", "empty", "blob.bin"}
    archive = archive_of(app, written)
    write_site(cluster, app, f"after {uuid.uuid4().hex}", blob_kib=8)
    exec_in(cluster, app.namespace, web_pod(cluster, app), f"echo extra > {MOUNT_PATH}/extra")
    # The agent goes on archiving (the overwritten content too), so the archive is named.
    restore(cluster, app, "exact", archive=archive.name)

    saw_restoring = wait_for(
        lambda: ready_condition(get_app(cluster, app.namespace)).get("reason") == "Restoring",
        60,
        "the app to say Restoring",
    )
    assert saw_restoring
    swar = finished(cluster, app, "exact")
    status = swar["status"]
    assert status["phase"] == "Succeeded", status
    assert status["archive"]["file"] == archive.name
    assert status["archive"]["node"]
    assert f"{status['archive']['node']}/{archive.name}" in status["candidates"]
    assert status["conditions"][0]["status"] == "True"
    assert tree(app.served) == written, "the volume is not the archive's content"
    assert not list(app.served.glob(".swa-restore-*")), "work files left in the volume"
    serves(cluster, app, token)
    owners = swar["metadata"]["ownerReferences"]
    assert [o["kind"] for o in owners] == ["StatefulWebApp"]
    events = cluster.kubectl(
        "get",
        "events",
        "-n",
        app.namespace,
        "--field-selector",
        "involvedObject.kind=StatefulWebApp,reason=Restored",
    )
    assert "restore exact" in events, events


@contextmanager
def alike_archives(cluster: Cluster, operator: Operator, app: App) -> Iterator[Path]:
    """A tenant's app whose archives are named like ``app``'s, with one of them made.

    Namespace ``restore`` and app ``x-<hex>-web`` give the prefix ``restore-x-<hex>-web``,
    ``app``'s own. When every app's archives shared one directory on a node, the newest of the
    two apps' was the victim's "latest". Yields the tenant's directory of archives.
    """
    namespace, name = "restore", app.namespace.removeprefix("restore-") + "-web"
    assert f"{namespace}-{name}-" == app.prefix
    if not cluster.kubectl("get", "namespace", namespace, "--ignore-not-found", "-o", "name"):
        cluster.kubectl("create", "namespace", namespace)
    export, served = export_dir(cluster, f"{app.namespace}-tenant")
    (served / "index.html").write_text("planted by another tenant")
    body = sample(
        replicas=0,
        **ON_REAL_NODE,
        storage={"nfs": export, "capacity": "1Gi", "request": "10Mi"},
        backup={
            "image": images()["busybox"],
            "intervalSeconds": INTERVAL,
            "tolerations": [dict(TOLERATE_REAL_NODE)],
        },
        dateLogger={"enabled": False},
    )
    body["metadata"]["name"] = name
    apply(cluster, namespace, body)
    theirs = operator.backups(namespace, name)
    try:
        wait_for(lambda: list(theirs.glob(f"{app.prefix}*.tar.gz")), 120, f"an archive in {theirs}")
        yield theirs
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s")


def test_a_named_older_archive_and_the_default_latest(
    cluster: Cluster, operator: Operator, app: App
) -> None:
    first = f"first {uuid.uuid4().hex}"
    write_site(cluster, app, first)
    old_content = tree(app.served)
    old = archive_of(app, old_content)
    second = f"second {uuid.uuid4().hex}"
    write_site(cluster, app, second)
    new_content = tree(app.served)
    archive_of(app, new_content)

    restore(cluster, app, "named", archive=old.name)
    status = finished(cluster, app, "named")["status"]
    assert status["phase"] == "Succeeded", status
    assert status["archive"]["file"] == old.name
    assert tree(app.served) == old_content
    serves(cluster, app, first)

    # The default, "latest": the newest archive there is, whatever it holds by now; taken
    # while nothing is written, so it holds the named restore's content or the second's.
    # Another tenant's app names its archives alike and makes newer ones: never candidates.
    # Their archive names can be the very names of the app's own (same prefix, same second):
    # what tells them apart is what they hold.
    with alike_archives(cluster, operator, app) as theirs:
        planted = sorted(theirs.glob("*.tar.gz"))
        assert archive_tree(planted[-1]) != archive_tree(archives(app)[-1])
        restore(cluster, app, "newest")
        status = finished(cluster, app, "newest")["status"]
    assert status["phase"] == "Succeeded", status
    assert status["archive"]["file"] == status["candidates"][0].split("/", 1)[1]
    restored = app.backups / status["archive"]["file"]
    assert tree(app.served) == archive_tree(restored)
    assert "planted" not in (app.served / "index.html").read_text()
    wait_ready(cluster, app.namespace, timeout=180)
    print(cluster.kubectl("get", "swar", "-n", app.namespace))  # What docs/backup-restore.md shows.


def test_a_missing_archive_fails_naming_what_exists_and_changes_nothing(
    cluster: Cluster, app: App
) -> None:
    token = f"untouched {uuid.uuid4().hex}"
    write_site(cluster, app, token)
    before = tree(app.served)
    missing = f"{app.prefix}20200101T000000Z.tar.gz"
    restore(cluster, app, "missing", archive=missing)
    status = finished(cluster, app, "missing")["status"]
    assert status["phase"] == "Failed", status
    assert missing in status["message"], status["message"]
    assert status["candidates"], "the candidates are listed"
    existing = {a.name for a in archives(app)}
    # Newest first; the agent may have made (not yet pruned) one more since.
    assert status["candidates"][0].split("/", 1)[1] in existing
    assert f"newest {status['candidates'][0].split('/', 1)[1]}" in status["message"]
    assert tree(app.served) == before
    serves(cluster, app, token)
    # The spec is a record: it cannot change.
    out = cluster.kubectl(
        "patch",
        "swar",
        "missing",
        "-n",
        app.namespace,
        "--type=merge",
        "-p",
        '{"spec":{"archive":"latest"}}',
        check=False,
    )
    assert "a restore's spec cannot change" in out, out
    # No such app: failed at once, naming the apps there are.
    body = {
        "apiVersion": "apps.k8slab.io/v1alpha1",
        "kind": "StatefulWebAppRestore",
        "metadata": {"name": "nosuch"},
        "spec": {"appName": "shop"},
    }
    cluster.kubectl("apply", "-n", app.namespace, "-f", "-", stdin=json.dumps(body))
    status = finished(cluster, app, "nosuch", timeout=30)["status"]
    assert status["phase"] == "Failed"
    assert "no StatefulWebApp 'shop'" in status["message"]
    assert "apps there: web" in status["message"]


def test_a_restore_to_a_node_that_does_not_exist_ends_at_its_deadline(
    cluster: Cluster, app: App
) -> None:
    """A valid node name of 100 characters that no node has: the Job is made (a hostname
    label would have been refused, 422), its pod never runs, and at ``timeoutSeconds`` the
    restore fails saying what it waited for, its Job is suspended (its pod goes), and the
    app serves again, its
    content untouched."""
    token = f"kept {uuid.uuid4().hex}"
    write_site(cluster, app, token)
    before = tree(app.served)
    node = "no-such-node-" + "x" * 87
    restore(cluster, app, "nowhere", nodeName=node, timeoutSeconds=45)
    wait_for(
        lambda: cluster.kubectl("get", "job", "nowhere", "-n", app.namespace, check=False),
        120,
        "the restore's Job",
    )
    status = finished(cluster, app, "nowhere")["status"]
    assert status["phase"] == "Failed", status
    assert status["conditions"][0]["reason"] == "DeadlineExceeded", status
    assert "within timeoutSeconds (45 s) while restoring" in status["message"], status
    assert "Job nowhere was stopped" in status["message"], status
    job = json.loads(cluster.kubectl("get", "job", "nowhere", "-n", app.namespace, "-o", "json"))
    assert job["spec"]["suspend"] is True, "the Job was not stopped"
    wait_for(
        lambda: not pods(cluster, app.namespace, f"{names.LABEL_RESTORE}=nowhere"),
        60,
        "the Job's pod gone",
    )
    serves(cluster, app, token)
    assert tree(app.served) == before


def test_a_killed_restore_loses_nothing_and_its_retry_finishes(
    cluster: Cluster, app: App, real_node: str
) -> None:
    big = f"big {uuid.uuid4().hex}"
    write_site(cluster, app, big, blob_kib=BIG_MIB * 1024)
    try:
        killed_restore(cluster, app, real_node, big)
    finally:
        # The next tests start from a small site whatever happened: an agent archiving
        # the big one is not ready meanwhile.
        write_site(cluster, app, f"small again {uuid.uuid4().hex}", ready=False)


def extracting(cluster: Cluster, app: App, name: str) -> str:
    """The pod of restore ``name``, waited for until it runs with its extraction under way."""

    def found() -> str | None:
        partial = list(app.served.glob(".swa-restore-*.partial"))
        running = [
            p["metadata"]["name"]
            for p in pods(cluster, app.namespace, f"{names.LABEL_RESTORE}={name}")
            if p["status"].get("phase") == "Running"
        ]
        return running[0] if partial and running else None

    return str(wait_for(found, 120, f"restore {name}'s pod extracting", interval=0.2))


def killed_restore(cluster: Cluster, app: App, real_node: str, big: str) -> None:
    big_content = tree(app.served)
    # A run that began while the content was still being written holds part of it, so the
    # archive wanted can be the second run's.
    archive = archive_of(app, big_content, timeout=240)
    current = f"current {uuid.uuid4().hex}"
    write_site(cluster, app, current)
    current_content = tree(app.served)

    began = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 1))
    restore(cluster, app, "killed", archive=archive.name)
    victim = extracting(cluster, app, "killed")
    cluster.kubectl("delete", "pod", victim, "-n", app.namespace, "--grace-period=0", "--force")
    time.sleep(2)
    # Killed mid-way: the volume still holds what it held.
    visible = {k: v for k, v in tree(app.served).items() if not k.startswith(".swa-restore-")}
    assert visible == current_content
    status = finished(cluster, app, "killed", timeout=300)["status"]
    assert status["phase"] == "Succeeded", status
    assert tree(app.served) == big_content
    assert not list(app.served.glob(".swa-restore-*")), "work files left in the volume"
    serves(cluster, app, big)
    # No archive was made of the volume while it was being swapped (the newest, it would be
    # what a restore of "latest" takes): each one made since holds the content before the
    # restore or after it, whole. The agent paused its runs meanwhile, and said so.
    made_since = [a for a in archives(app) if a.name.removeprefix(app.prefix) >= began]
    for made in made_since:
        assert archive_tree(made) in (current_content, big_content), f"{made.name} is half-swapped"
    agent = next(
        p["metadata"]["name"]
        for p in pods(
            cluster,
            app.namespace,
            f"{names.LABEL_INSTANCE}=web,{names.LABEL_COMPONENT}={names.BACKUP}",
        )
        if p["spec"].get("nodeName") == real_node
    )
    logs = cluster.kubectl("logs", "-n", app.namespace, agent)
    assert f"paused: a restore is writing {render.BACKUP_SOURCE}" in logs, logs[-2000:]


MANY = 1500
"""Top-level entries of the site a restore is deleted in the middle of swapping in: one rename
each, so the swap lasts seconds."""


def test_a_restore_deleted_mid_swap_is_named_on_the_app_until_a_new_one_finishes(
    cluster: Cluster, app: App
) -> None:
    """Deleting a restore stops its pod (the garbage collector takes its Job): caught while it
    swaps the volume's content, it leaves the swap to the next restore. The web pods start
    again on what the volume holds; the agents find the work files at once, and the app says
    what the volume holds and how to finish (``RestoreInterrupted``) until a new restore has."""
    token = f"many {uuid.uuid4().hex}"
    write_site(cluster, app, token, blob_kib=1)
    exec_in(
        cluster,
        app.namespace,
        web_pod(cluster, app),
        f"cd {MOUNT_PATH} && i=0 && while [ $i -lt {MANY} ]; do : > f$i; i=$((i + 1)); done",
    )
    many = tree(app.served)
    archive = archive_of(app, many, timeout=120)
    write_site(cluster, app, f"current {uuid.uuid4().hex}")
    restore(cluster, app, "deleted", archive=archive.name)
    wait_for(
        lambda: list(app.served.glob(".swa-restore-*.swap")),
        240,
        "the restore swapping the content",
        interval=0.1,
    )
    cluster.kubectl("delete", "swar", "deleted", "-n", app.namespace)
    wait_for(
        lambda: not pods(cluster, app.namespace, f"{names.LABEL_RESTORE}=deleted"),
        120,
        "the deleted restore's pod gone",
    )
    assert list(app.served.glob(".swa-restore-*.swap")), "the swap finished before the deletion"
    try:
        condition = wait_reason(cluster, app.namespace, "RestoreInterrupted", timeout=120)
    except BaseException:
        explain(cluster, app.namespace)
        raise
    print(f"RestoreInterrupted: {condition['message']}")
    assert condition["message"].startswith(f"volume {app.namespace}.web-data (NFS "), condition
    assert "holds the work files of a restore that did not finish" in condition["message"]
    assert "create a StatefulWebAppRestore with appName web" in condition["message"]
    # What it says to do finishes it: the stopped swap first, then the archive named.
    restore(cluster, app, "finish", archive=archive.name)
    status = finished(cluster, app, "finish", timeout=300)["status"]
    assert status["phase"] == "Succeeded", status
    assert tree(app.served) == many
    assert not list(app.served.glob(".swa-restore-*")), "work files left in the volume"
    serves(cluster, app, token)
    write_site(cluster, app, f"small again {uuid.uuid4().hex}")


def test_an_agent_that_cannot_archive_turns_the_app_backup_failing_and_back(
    cluster: Cluster, app: App, real_node: str
) -> None:
    # From a healthy start: a run that overlapped the previous test's restore may have failed.
    wait_ready(cluster, app.namespace, timeout=120)
    subprocess.run(["chattr", "+i", str(app.backups)], check=True)
    try:
        # A run still going when the directory froze ends in "no archive made in two
        # intervals" first; the failed runs after it say why.
        condition = wait_for(
            lambda: (
                (c := ready_condition(get_app(cluster, app.namespace))).get("reason")
                == "BackupFailing"
                and UNWRITABLE in c.get("message", "")
                and c
            ),
            180,
            f"Ready=False BackupFailing: {UNWRITABLE}",
        )
        # A failure that lasts is no news: over two more checks and several failed runs
        # (each a kubelet event, each a pass) the app's status is not written again.
        before = get_app(cluster, app.namespace)
        time.sleep(2.5 * 30)
        after = get_app(cluster, app.namespace)
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], (
            f"the app was written again: {json.dumps(before.get('status'))} became "
            f"{json.dumps(after.get('status'))}"
        )
        assert ready_condition(after) == condition
    except BaseException:
        explain(cluster, app.namespace)
        raise
    finally:
        subprocess.run(["chattr", "-i", str(app.backups)], check=True)
    print(f"BackupFailing: {condition['message']}")
    assert condition["status"] == "False"
    assert condition["message"].startswith(f"backup agent on node {real_node}: "), condition
    assert "last archive run failed" in condition["message"]
    wait_ready(cluster, app.namespace, timeout=120)


def test_archives_move_to_an_nfs_export_and_back_as_live_edits(
    cluster: Cluster, app: App, real_node: str
) -> None:
    """``backup.target.nfs`` set on the live app: the agents write to the export, each node in
    its own directory, and a restore reads from there; removed: back to the node directory,
    the export's archives kept."""
    target, shared = export_dir(cluster, f"{app.namespace}-archives")
    wait_ready(cluster, app.namespace, timeout=120)
    token = f"shared {uuid.uuid4().hex}"
    write_site(cluster, app, token)
    written = tree(app.served)
    patch = {"spec": {"backup": {"target": {"nfs": target}}}}
    cluster.kubectl(
        "patch", "swa", "web", "-n", app.namespace, "--type=merge", "-p", json.dumps(patch)
    )
    try:
        wait_ready(cluster, app.namespace, timeout=180)
        children = children_match_the_rendering(cluster, app.namespace)
        volume, claim = children["BackupVolume"], children["BackupClaim"]
        assert volume is not None
        assert claim is not None
        assert volume["spec"]["nfs"] == {"server": target["server"], "path": target["path"]}
        assert claim["status"]["phase"] == "Bound"
        # The real node's agent makes its directory on the export and archives there.
        node_dir = shared / real_node
        archive = archive_of(app, written, timeout=120, directory=node_dir)
        on_node = set(archives(app))  # The node's agent writes there no more.
        assert sorted(p.name for p in shared.iterdir()) == [real_node], "one directory per node"
        write_site(cluster, app, f"overwritten {uuid.uuid4().hex}", blob_kib=8)
        restore(cluster, app, "from-export")
        status = finished(cluster, app, "from-export")["status"]
        assert status["phase"] == "Succeeded", status
        assert status["archive"]["node"] == real_node
        # "latest": the agent may have archived the overwritten content since; the restore
        # took the newest, whichever it was, and the volume holds exactly that archive.
        restored = node_dir / status["archive"]["file"]
        assert restored.name >= archive.name
        assert tree(app.served) == archive_tree(restored)
        assert f"{real_node}/{restored.name}" in status["candidates"]
    except BaseException:
        explain(cluster, app.namespace)
        raise
    finally:
        cluster.kubectl(
            "patch",
            "swa",
            "web",
            "-n",
            app.namespace,
            "--type=json",
            "-p",
            json.dumps([{"op": "remove", "path": "/spec/backup/target"}]),
        )
    on_export = archives(app, shared / real_node)
    wait_ready(cluster, app.namespace, timeout=180)
    children = children_match_the_rendering(cluster, app.namespace)
    assert children["BackupVolume"] is None
    assert children["BackupClaim"] is None
    # The pass deleted them (the volume and the claim go once no pod uses the claim: the
    # finished restore's pod still does, until the restore is deleted).
    # Back on the node: a new archive there, of the content as it is now.
    now = tree(app.served)
    wait_for(
        lambda: any(archive_tree(a) == now for a in archives(app) if a not in on_node),
        120,
        f"a new archive in {app.backups}",
    )
    # The export's archives stay where they are (Retain: nothing on the export is deleted).
    assert set(on_export) <= set(archives(app, shared / real_node))


def test_an_archive_dated_in_the_future_does_not_stop_new_ones_being_kept(
    cluster: Cluster, app: App
) -> None:
    """Archives named after the clock in the node's directory (a clock set back since, files
    put there by hand), as many as the app keeps: by name they outranked every new archive, so
    each new one was pruned right after it was made while the agent stayed Ready. Now they
    count as the oldest and go first."""
    wait_ready(cluster, app.namespace, timeout=120)
    keep = int(app.body["spec"]["backup"]["keep"])
    planted = [
        app.backups / f"{app.prefix}2999{n // 28 + 1:02d}{n % 28 + 1:02d}T000000Z.tar.gz"
        for n in range(keep)
    ]
    for path in planted:
        with tarfile.open(path, "w:gz") as tar:
            tar.addfile(tarfile.TarInfo("stale"))
    since = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 1))

    def new_ones_kept() -> list[str] | None:
        new = [a.name for a in archives(app) if since <= a.name.removeprefix(app.prefix) < "2999"]
        return new if len(new) >= 2 else None

    try:
        made = wait_for(new_ones_kept, 4 * INTERVAL + 30, "two new archives kept")
    except BaseException:
        explain(cluster, app.namespace)
        raise
    # The planted ones went first: as many as the new ones took the place of.
    left = [p for p in planted if p.exists()]
    assert len(left) <= keep - len(made), f"{len(left)} planted archives left"
    assert set(made) <= {a.name for a in archives(app)}
    # A run moves its archive into place, then prunes: between the two there is one more.
    wait_for(lambda: len(archives(app)) <= keep, INTERVAL, f"at most {keep} archives kept")
    wait_ready(cluster, app.namespace, timeout=60)
