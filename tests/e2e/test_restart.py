"""What happens while the operator is not running, and what it does when it comes back.

The operator keeps no state on the apps (no finalizer), so an app deleted while it is down goes
at once, children included (owner references), except its cluster-scoped volume: that one the
operator must collect when it starts again. An app re-created meanwhile finds its old volume
Released, which never binds again, and must get a fresh one.

Runs on the local cluster only: volumes, claims and owner references are API objects, and
the operator is a process of this machine on either cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from statefulwebapp.api.parse import parse
from statefulwebapp.specs import names
from tests.e2e.apps import apply, child, get_app, sample, wait_ready
from tests.e2e.cluster import CRD_NAMES, CRDS, Cluster, Operator, make_namespace, wait_for

pytestmark = pytest.mark.local_cluster(
    reason="what the operator does about objects while it is stopped and started is API-level: "
    "one cluster proves it"
)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    cluster.kubectl("wait", "--for=condition=Established", *CRD_NAMES)
    namespace = make_namespace(cluster, "restart")
    yield namespace
    cluster.kubectl("delete", "swa", "--all", "-n", namespace, "--wait=true", "--timeout=60s")
    cluster.kubectl(
        "delete", "pv", names.volume_of(namespace, "web"), "--ignore-not-found", "--wait=false"
    )
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def ready_app_then_stop(cluster: Cluster, namespace: str, log: Path) -> str:
    """Create the sample app with an operator running, stop it; the app's volume name."""
    operator = Operator.start(cluster, log)
    try:
        apply(cluster, namespace, sample())
        wait_ready(cluster, namespace)
    finally:
        operator.stop()
    return names.volume(parse(get_app(cluster, namespace)))


def delete_app_and_wait_for_released_volume(cluster: Cluster, namespace: str, pv: str) -> None:
    cluster.kubectl("delete", "swa", "web", "-n", namespace, "--wait=true", "--timeout=30s")
    # The garbage collector removes the StatefulSet, its pods, then the claim: the volume is
    # left Released, and stays so without the operator.
    wait_for(
        lambda: (
            (v := child(cluster, "PersistentVolume", pv, namespace))
            and v.get("status", {}).get("phase") == "Released"
        ),
        60,
        f"{pv} to be Released",
    )


def test_volume_of_an_app_deleted_while_down_is_collected_at_start(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    pv = ready_app_then_stop(cluster, namespace, tmp_path / "before.log")
    delete_app_and_wait_for_released_volume(cluster, namespace, pv)
    operator = Operator.start(cluster, tmp_path / "after.log")
    try:
        wait_for(
            lambda: child(cluster, "PersistentVolume", pv, namespace) is None,
            30,
            f"{pv} collected (log: {operator.log})",
        )
    finally:
        operator.stop()


def test_app_recreated_while_down_gets_a_volume_that_binds(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    pv = ready_app_then_stop(cluster, namespace, tmp_path / "before.log")
    old = child(cluster, "PersistentVolume", pv, namespace)
    assert old is not None
    delete_app_and_wait_for_released_volume(cluster, namespace, pv)
    apply(cluster, namespace, sample())
    operator = Operator.start(cluster, tmp_path / "after.log")
    try:
        wait_ready(cluster, namespace)
        new = child(cluster, "PersistentVolume", pv, namespace)
        assert new is not None
        assert new["metadata"]["uid"] != old["metadata"]["uid"]
        assert new["status"]["phase"] == "Bound"
        assert new["spec"]["nfs"] == old["spec"]["nfs"]  # Same export, same data.
    finally:
        operator.stop()
