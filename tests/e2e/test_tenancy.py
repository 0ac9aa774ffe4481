"""Tenants share one operator and reach nothing past their namespace through it.

Each test is an attack a tenant who may create StatefulWebApps and ordinary objects in one
namespace could try: objects planted in their namespace under another namespace's app's labels
(to freeze that app, or make the operator delete that namespace's objects), an app on another
app's NFS export (or inside or around it), an export the cluster's admin did not allow. The
host directory attack (``backup.hostPath``) is refused at admission (test_admission,
test_operator), and archives named like another app's are never a restore's candidates
(test_restore, on the real node).

Runs on the local cluster only: what is proven is what the operator and the API server decide;
kwok's pods are enough, and no export is mounted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from statefulwebapp.specs import names
from tests.e2e.apps import (
    apply,
    child,
    delete_namespace,
    get_app,
    ready_condition,
    sample,
    wait_applied,
    wait_ready,
    wait_reason,
)
from tests.e2e.cluster import Cluster, Operator, make_namespace
from tests.e2e.conftest import start_operator
from tests.e2e.realnode import nfs_export

pytestmark = pytest.mark.local_cluster(
    reason="the operator's and the API server's decisions: kwok's pods are enough, nothing is "
    "mounted, and kind would prove the same again"
)


@pytest.fixture(scope="module")
def export() -> dict[str, Any]:
    """The local cluster's test export: the tree the admin allows here."""
    return nfs_export()


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, export: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """The operator as an admin of a shared cluster starts it: only the test export allowed."""
    running = start_operator(
        cluster, tmp_path_factory, "--nfs-allow", f"{export['server']}:{export['path']}"
    )
    yield running
    running.stop()


@pytest.fixture
def two_namespaces(cluster: Cluster, operator: Operator) -> Iterator[tuple[str, str]]:
    """The attacker's namespace and the victim's."""
    found = (make_namespace(cluster, "tenant-a"), make_namespace(cluster, "tenant-b"))
    yield found
    for namespace in found:
        delete_namespace(cluster, namespace)


def on(export: dict[str, Any], path: str) -> dict[str, Any]:
    """``storage.nfs`` of a directory of the test export (kwok's pods mount nothing)."""
    return {**export, "path": f"{export['path']}/{path}"}


def create(cluster: Cluster, manifest: dict[str, Any]) -> dict[str, Any]:
    out = cluster.kubectl("create", "-o", "json", "-f", "-", stdin=json.dumps(manifest))
    return dict(json.loads(out))


def uid(cluster: Cluster, kind: str, name: str, namespace: str) -> str | None:
    found = child(cluster, kind, name, namespace)
    return None if found is None else str(found["metadata"]["uid"])


POD: dict[str, Any] = {
    "metadata": {"labels": {"k8slab.io/planted": "yes"}},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
}
SELECTOR = {"matchLabels": {"k8slab.io/planted": "yes"}}


def objects(name: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """A PodDisruptionBudget, a DaemonSet and a CronJob named ``name``-pdb/-dae/-cro."""
    meta = {"namespace": namespace, "labels": labels}
    return [
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {**meta, "name": f"{name}-pod"},
            "spec": {"maxUnavailable": 1, "selector": SELECTOR},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {**meta, "name": f"{name}-dae"},
            # On no node: it only has to exist.
            "spec": {
                "selector": SELECTOR,
                "template": {**POD, "spec": {**POD["spec"], "nodeSelector": {"none": "none"}}},
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {**meta, "name": f"{name}-cro"},
            "spec": {
                "schedule": "0 0 1 1 *",
                "suspend": True,
                "jobTemplate": {
                    "spec": {"template": {**POD, "spec": {**POD["spec"], "restartPolicy": "Never"}}}
                },
            },
        },
    ]


def test_objects_planted_under_another_namespaces_labels_neither_freeze_nor_delete(
    cluster: Cluster, export: dict[str, Any], two_namespaces: tuple[str, str]
) -> None:
    """In namespace A, objects labelled as app B/web's children, named like B's own unrelated
    objects and like B's Service: B's app is made Ready, and B's objects are all still there.

    B/web has one replica (no budget), no backups and no date logger: the operator would delete
    a budget, DaemonSet or CronJob it took for B/web's."""
    attacker, victim = two_namespaces
    own = {kind["kind"]: create(cluster, kind) for kind in objects("important", victim, {})}
    labels = {
        names.LABEL_MANAGED_BY: names.MANAGER,
        names.LABEL_INSTANCE: "web",
        names.LABEL_APP_NAMESPACE: victim,
    }
    for manifest in objects("important", attacker, labels):
        create(cluster, manifest)
    create(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web-svc", "namespace": attacker, "labels": labels},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
        },
    )
    body = sample(
        replicas=1,
        serviceName="web-svc",
        storage={"nfs": on(export, f"{victim}/data")},
        backup={"enabled": False},
        dateLogger={"enabled": False},
    )
    apply(cluster, victim, body)
    wait_ready(cluster, victim)
    assert child(cluster, "Service", "web-svc", victim) is not None
    # A later pass (a spec change) deletes nothing either.
    apply(cluster, victim, {**body, "spec": {**body["spec"], "replicas": 0}})
    wait_ready(cluster, victim)
    for kind, manifest in own.items():
        meta = manifest["metadata"]
        assert uid(cluster, kind, meta["name"], victim) == meta["uid"], f"{kind} was deleted"


def test_an_export_in_use_is_refused_until_its_older_app_is_gone(
    cluster: Cluster, export: dict[str, Any], two_namespaces: tuple[str, str]
) -> None:
    """Two tenants, one export: ``/shared`` and ``/shared/inner``. The second app gets
    ``ExportInUse`` naming the first and nothing created; once the first is deleted, the second
    gets its children."""
    first, second = two_namespaces
    shared = f"{first}-shared"
    apply(cluster, first, sample(storage={"nfs": on(export, shared)}))
    wait_ready(cluster, first)
    apply(cluster, second, sample(storage={"nfs": on(export, f"{shared}/inner")}))
    condition = wait_reason(cluster, second, "ExportInUse")
    assert f"of StatefulWebApp {first}/web, which came first" in condition["message"]
    assert "nothing was created" in condition["message"]
    for kind, name in (("StatefulSet", "web"), ("PersistentVolumeClaim", "web-data")):
        assert child(cluster, kind, name, second) is None, f"{kind} created"
    assert child(cluster, "PersistentVolume", names.volume_of(second, "web"), "") is None
    # The first app keeps its export, untouched by the second's claim.
    assert ready_condition(get_app(cluster, first))["reason"] == "Ready"
    cluster.kubectl("delete", "swa", "web", "-n", first, "--wait=true", "--timeout=60s")
    wait_ready(cluster, second)


def test_an_export_the_admin_did_not_allow_is_refused_as_data_and_as_archives(
    cluster: Cluster, export: dict[str, Any], two_namespaces: tuple[str, str]
) -> None:
    """The data on an export outside ``--nfs-allow``: nothing created. Archives sent to one, as
    an edit of a live app: refused, the agents left as they were; the edit undone:
    Ready again."""
    _, namespace = two_namespaces
    elsewhere = {"server": "nfs.example.com", "path": "/exports/web"}
    apply(cluster, namespace, sample(storage={"nfs": elsewhere}))
    condition = wait_reason(cluster, namespace, "ExportNotAllowed")
    assert "spec.storage.nfs nfs.example.com:/exports/web is not an export" in condition["message"]
    assert f"allowed: {export['server']}:{export['path']}" in condition["message"]
    assert child(cluster, "StatefulSet", "web", namespace) is None
    cluster.kubectl("delete", "swa", "web", "-n", namespace, "--wait=true", "--timeout=60s")

    body = sample(storage={"nfs": on(export, f"{namespace}/data")})
    apply(cluster, namespace, body)
    wait_ready(cluster, namespace)
    agents = child(cluster, "DaemonSet", "web-backup", namespace)
    assert agents is not None
    body["spec"]["backup"] = {"target": {"nfs": {**elsewhere, "path": "/exports/archives"}}}
    apply(cluster, namespace, body)
    app = wait_applied(cluster, namespace)
    assert ready_condition(app)["reason"] == "ExportNotAllowed"
    assert (
        "spec.backup.target.nfs nfs.example.com:/exports/archives"
        in ready_condition(app)["message"]
    )
    assert child(cluster, "PersistentVolumeClaim", "web-backups", namespace) is None
    # The agents would have mounted the archives' claim: their spec is as it was.
    after = child(cluster, "DaemonSet", "web-backup", namespace)
    assert after is not None
    assert after["metadata"]["generation"] == agents["metadata"]["generation"]
    del body["spec"]["backup"]
    apply(cluster, namespace, body)
    wait_ready(cluster, namespace)
