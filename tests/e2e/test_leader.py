"""Two operators, one lease: exactly one writes; the standby takes over when the leader dies.

Real processes against the real API server: the leader is killed with SIGKILL (no release),
stopped cleanly (released), and robbed of its lease (it must stop writing at once).

Runs on the local cluster only: leases are API objects and the operators are processes of
this machine on either cluster.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.apps import apply, sample, wait_ready
from tests.e2e.cluster import Cluster, Operator, run_operator, wait_for

pytestmark = pytest.mark.local_cluster(
    reason="leases are API objects and the operators run on this machine on either cluster: "
    "one proves it"
)

FAILOVER_LIMIT = 30.0
"""The issue's bound; the design gives duration (15 s) + retry (2 s)."""


def log_has(operator: Operator, pattern: str) -> re.Match[str] | None:
    return re.search(pattern, operator.log.read_text(errors="replace"))


def leading(operator: Operator) -> bool:
    return bool(log_has(operator, r"leader: took the lease"))


def leader_and_standby(
    cluster: Cluster, tmp_path: Path, lease: str, namespace: str
) -> tuple[Operator, Operator]:
    """``a`` started first and leading, then ``b`` started."""
    a = run_operator(cluster, tmp_path, "a", lease, namespace)
    wait_for(lambda: leading(a), 30, "a to lead")
    return a, run_operator(cluster, tmp_path, "b", lease, namespace)


def test_one_leader_and_a_standby_that_takes_over_after_kill_9(
    cluster: Cluster, tmp_path: Path, lease: str, apps_ns: str
) -> None:
    a, b = leader_and_standby(cluster, tmp_path, lease, apps_ns)
    try:
        holder = wait_for(
            lambda: log_has(b, r"standby: the lease \S+ is held by (\S+);"), 30, "b to wait"
        )
        assert holder.group(1).split("_")[1] == str(a.process.pid)
        apply(cluster, apps_ns, sample())
        wait_ready(cluster, apps_ns)
        assert log_has(a, r"applied \[")
        assert not log_has(b, r"applied \["), "the standby wrote"
        assert not leading(b)

        a.process.kill()  # SIGKILL: no release, the lease must run out.
        killed = time.monotonic()
        a.process.wait()
        # The bound is the design's (duration + retry) with room for a loaded machine: the
        # outcome is that b takes over; how fast is make faults' figure.
        wait_for(lambda: leading(b), 4 * FAILOVER_LIMIT, "b to take over")
        print(f"failover took {time.monotonic() - killed:.1f}s")
        second = sample(serviceName="second")
        second["metadata"]["name"] = "second"
        apply(cluster, apps_ns, second)
        wait_ready(cluster, apps_ns, "second")
    finally:
        b.stop()
        a.stop()


def test_clean_stop_hands_over_at_once_and_a_robbed_leader_stops(
    cluster: Cluster, tmp_path: Path, lease: str, apps_ns: str
) -> None:
    a, b = leader_and_standby(cluster, tmp_path, lease, apps_ns)
    try:
        wait_for(lambda: log_has(b, r"standby: "), 30, "b to wait")
        a.stop()  # SIGINT: kopf stops, the lease is released.
        assert log_has(a, r"released the lease")
        stopped = time.monotonic()
        # A released lease is taken at b's next retry, not after the lease's duration.
        wait_for(lambda: leading(b), 60, "b to take over")
        print(f"the released lease was taken in {time.monotonic() - stopped:.1f}s")

        # Someone else takes the lease (here: by hand): b must stop writing at once.
        name = lease.split("/")[1]
        cluster.kubectl(
            "patch",
            "lease",
            name,
            "-n",
            "default",
            "--type=merge",
            "-p",
            '{"spec":{"holderIdentity":"intruder","leaseDurationSeconds":60}}',
        )
        wait_for(lambda: b.process.poll() is not None, 15, "b to exit")
        assert b.process.returncode == 3
        assert log_has(b, r"lost leadership \(the lease \S+ was taken by intruder\)")
    finally:
        b.stop()
        a.stop()


def test_a_lease_in_a_missing_namespace_stops_the_operator_at_once(cluster: Cluster) -> None:
    """Started by hand on a fresh cluster (no swa-system), it must not wait as a standby."""
    missing = f"absent-{uuid.uuid4().hex[:6]}"
    exe = Path(sys.executable).with_name("statefulwebapp-operator")
    started = time.monotonic()
    out = subprocess.run(
        [exe, "--health", "none", "--lease", f"{missing}/statefulwebapp-operator"],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1, out  # Within the run's timeout: it did not wait as a standby.
    print(f"stopped after {time.monotonic() - started:.1f}s")
    assert (
        f"the namespace '{missing}' of the leader-election lease does not exist: create it "
        f"(kubectl create namespace {missing}) or choose another with --lease NAMESPACE/NAME"
    ) in out.stderr, out.stderr
