"""Fast fault tests for ``make test``: a watch gap repaired, an API server outage.

The long versions, with figures, are ``make faults`` (bench/faults.py).

A watch gap, made for real: the operator is frozen (SIGSTOP), the API server restarted (its
watch connections die), a child and an app deleted, and etcd compacted past the deletions, so
the watches cannot resume where they stopped: they get 410 Gone and list again. The apps' and
the children's watches (informer.py) compare their relist with what they held: they report the
deleted app and the deleted child. The operator must repair the child and collect the volume.

Runs on the local cluster only: it stops and starts the API server and etcd, processes of this
machine there.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from statefulwebapp.specs import names
from tests.e2e.apps import apply, child, delete_namespace, get_app, sample, wait_ready
from tests.e2e.cluster import (
    CRDS,
    REPO,
    Cluster,
    Operator,
    compact_etcd,
    make_namespace,
    wait_for,
)

RESYNC = 5
"""Seconds between full checks in these tests (the default is 300)."""

pytestmark = pytest.mark.local_cluster(
    reason="they stop and start the local cluster's API server and etcd processes "
    "(hack/cluster/component.sh) and compact its etcd"
)


def component(action: str, name: str) -> None:
    subprocess.run([REPO / "hack/cluster/component.sh", action, name], check=True, timeout=60)


def api_up(cluster: Cluster) -> bool:
    return "ok" in cluster.kubectl("get", "--raw", "/readyz", check=False)


@pytest.fixture
def gap_ns(cluster: Cluster) -> Iterator[str]:
    cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    namespace = make_namespace(cluster, "gap")
    yield namespace
    delete_namespace(cluster, namespace)


@pytest.fixture
def operator(cluster: Cluster, gap_ns: str, tmp_path: Path) -> Iterator[Operator]:
    running = Operator.start(
        cluster, tmp_path / "operator.log", "--namespace", gap_ns, "--resync-seconds", str(RESYNC)
    )
    yield running
    os.kill(running.process.pid, signal.SIGCONT)
    running.stop()


def test_watch_gap_is_repaired(cluster: Cluster, gap_ns: str, operator: Operator) -> None:
    apply(cluster, gap_ns, sample())
    other = sample(serviceName="other")
    other["metadata"]["name"] = "other"
    apply(cluster, gap_ns, other)
    wait_ready(cluster, gap_ns)
    wait_ready(cluster, gap_ns, "other")
    volume = names.volume_of(gap_ns, "other")
    assert child(cluster, "PersistentVolume", volume, gap_ns)

    os.kill(operator.process.pid, signal.SIGSTOP)
    try:
        # The API server first: the operator's watch connections die with it, so the
        # deletions never reach its sockets; then etcd is compacted past them.
        component("stop", "kube-apiserver")
        component("start", "kube-apiserver")
        wait_for(lambda: api_up(cluster), 60, "the API server back")
        cluster.kubectl("delete", "service", "nginx", "-n", gap_ns, "--wait=true")
        cluster.kubectl("delete", "swa", "other", "-n", gap_ns, "--wait=true")
        compact_etcd()
    finally:
        os.kill(operator.process.pid, signal.SIGCONT)
    resumed = time.monotonic()

    wait_for(lambda: child(cluster, "Service", "nginx", gap_ns), 60, "the Service recreated")
    wait_for(
        lambda: child(cluster, "PersistentVolume", volume, gap_ns) is None,
        60,
        "the deleted app's volume collected",
    )
    took = time.monotonic() - resumed
    log = operator.log.read_text(errors="replace")
    # The apps' watch lists again after the 410 and tells the deletion it missed; failing
    # that, the resync finds the app gone, or a pass that an event of its children started
    # does, whichever comes first.
    found_gone = (
        re.search(
            r"watch of statefulwebapps: the server no longer had version \S+; listed again: "
            r"[1-9]",
            log,
        )
        or re.search(
            r"resync: the watches missed .*deleted apps \[[^]]*" + re.escape(f"{gap_ns}/other"), log
        )
        or f"[{gap_ns}/other] the app is gone (deleted while unwatched)" in log
    )
    assert found_gone, "the deleted app was collected without a gap: not a gap test"
    # Two watches of Services: the operator's own (which saw the deletion) and the other names.
    relisted = re.findall(
        r"watch of services: the server no longer had version \S+; listed again: (\d+)", log
    )
    assert relisted, "the Service watch resumed without a 410: not a gap test"
    assert max(int(n) for n in relisted) >= 1
    print(f"repaired {took:.1f}s after the operator resumed")
    wait_ready(cluster, gap_ns)
    assert get_app(cluster, gap_ns)["status"]["conditions"][0]["reason"] == "Ready"


def test_operator_rides_out_an_api_server_outage(
    cluster: Cluster, gap_ns: str, operator: Operator
) -> None:
    component("stop", "kube-apiserver")
    time.sleep(5)
    component("start", "kube-apiserver")
    wait_for(lambda: api_up(cluster), 60, "the API server back")
    apply(cluster, gap_ns, sample())
    # The controller manager's informers take up to a minute to resume after the API server
    # is back (client-go's backoff); the operator's own part takes seconds.
    wait_ready(cluster, gap_ns, timeout=180)
    assert operator.process.poll() is None, operator.tail()
