"""The operator's ``/metrics`` from live processes: what a scrape shows after real work.

A leader reconciles an app and its scrape counts the passes, the applies and status writes, the
watches and the app's Ready reason; a standby with the same lease serves its metrics too,
leader state 0 and no pass, until it takes over. The chart's pods are scraped on the real
node (tests/e2e/test_real_node.py).

Runs on the local cluster only: the operators are processes of this machine on either cluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from statefulwebapp.api.parse import parse
from statefulwebapp.controllers import sources
from statefulwebapp.specs import registry
from tests.e2e.apps import apply, get_app, sample, wait_ready
from tests.e2e.cluster import Cluster, Operator, run_operator, wait_for
from tests.e2e.metrics import Scrape, health, scrape

pytestmark = pytest.mark.local_cluster(
    reason="the scrape is of processes on this machine, the same on either cluster (the chart's "
    "pods are scraped on kind in test_real_node)"
)

PASSES = "statefulwebapp_reconcile_passes_total"


def of(operator: Operator) -> Scrape:
    return scrape("127.0.0.1", operator.health_port)


def leads(operator: Operator) -> bool:
    return of(operator).value("statefulwebapp_leader") == 1


def test_a_leader_counts_the_passes_requests_and_ready_apps_of_a_new_app(
    cluster: Cluster, tmp_path: Path, lease: str, apps_ns: str
) -> None:
    operator = run_operator(cluster, tmp_path, "leader", lease, apps_ns)
    try:
        wait_for(lambda: leads(operator), 30, "the operator to lead")
        # kopf starts once the lease is taken: the children's watches list every kind first.
        before = wait_for(
            lambda: (
                (s := of(operator)).total("statefulwebapp_api_requests_total", verb="list")
                >= len(sources.SOURCES)
                and s
            ),
            30,
            "a list of every watched kind",
        )
        assert before.total(PASSES) == 0
        for source in sources.SOURCES:
            assert before.value("statefulwebapp_watch_relists_total", kind=source.store) == 0
        apply(cluster, apps_ns, sample())
        wait_ready(cluster, apps_ns)
        after = wait_for(
            lambda: (s := of(operator)).value("statefulwebapp_apps", reason="Ready") == 1 and s,
            30,
            "the app counted Ready",
        )
        print(after.text)  # What docs/operations.md shows (pytest -s).
        assert after.value(PASSES, outcome="changed") >= 2
        for outcome in ("problem", "retry", "gone", "error"):
            assert after.value(PASSES, outcome=outcome) == 0, outcome
        histogram = "statefulwebapp_reconcile_duration_seconds"
        assert after.value(f"{histogram}_count") == after.total(PASSES)
        assert 0 < after.value(f"{histogram}_sum") < 60
        # Each child created by one apply (three replicas: the disruption budget too), then
        # the status acknowledged and Ready: at least two status writes.
        requests = "statefulwebapp_api_requests_total"
        rendered = [m for m in registry.render_all(parse(get_app(cluster, apps_ns))).values() if m]
        assert after.value(requests, verb="apply", code="201") == len(rendered)
        # Creations are counted exactly (each child created once); how many applies in all
        # a loaded machine needs (a retry after a timeout) is the benchmark's figure.
        assert after.total(requests, verb="apply") >= len(rendered), after.text
        assert after.value(requests, verb="patch", code="200") >= 2
        assert after.total(requests, verb="watch") >= len(sources.SOURCES)
        # The lease: looked for (404), created, then renewed every 2 s.
        assert after.value(requests, verb="create", code="201") == 1
        wait_for(lambda: of(operator).value(requests, verb="update", code="200"), 10, "a renewal")
        wait_for(
            lambda: of(operator).value("statefulwebapp_work_queue_depth") == 0, 10, "no pass due"
        )
        assert after.value("statefulwebapp_leader") == 1
        assert after.value("process_resident_memory_bytes")
        assert health("127.0.0.1", operator.health_port) == (200, "ok\n")
        # Deleted: the app no longer counts.
        cluster.kubectl("delete", "swa", "web", "-n", apps_ns, "--wait=true", "--timeout=60s")
        gone = wait_for(
            lambda: (s := of(operator)).value("statefulwebapp_apps", reason="Ready") == 0 and s,
            30,
            "the deleted app no longer counted",
        )
        assert gone.value("statefulwebapp_leader") == 1
    finally:
        operator.stop()


def test_a_standby_serves_leader_state_0_and_no_pass_until_it_takes_over(
    cluster: Cluster, tmp_path: Path, lease: str, apps_ns: str
) -> None:
    a = run_operator(cluster, tmp_path, "a", lease, apps_ns)
    try:
        wait_for(lambda: leads(a), 30, "a to lead")
        b = run_operator(cluster, tmp_path, "b", lease, apps_ns)
        try:
            apply(cluster, apps_ns, sample())
            wait_ready(cluster, apps_ns)
            leader, standby = of(a), of(b)
            assert leader.value("statefulwebapp_leader") == 1
            assert standby.value("statefulwebapp_leader") == 0
            assert leader.total(PASSES) > 0
            assert standby.total(PASSES) == 0
            assert standby.total("statefulwebapp_apps") == 0
            # The standby reads the lease every 2 s, and sends nothing else.
            requests = {
                verb: standby.total("statefulwebapp_api_requests_total", verb=verb)
                for verb in ("get", "list", "watch", "apply", "patch", "create", "update")
            }
            assert requests["get"] > 0, standby.text
            assert {v for k, v in requests.items() if k != "get"} == {0}, requests
            assert health("127.0.0.1", b.health_port) == (200, "standby\n")
            assert health("127.0.0.1", a.health_port) == (200, "ok\n")

            a.stop()  # Releases the lease: b takes over within a retry.
            wait_for(lambda: leads(b), 15, "b to take over")
            taken = wait_for(
                lambda: (s := of(b)).value("statefulwebapp_apps", reason="Ready") == 1 and s,
                30,
                "b to pass the app",
            )
            # A new leader writes nothing: its pass finds every child as the old one left it.
            assert taken.value(PASSES, outcome="in_sync") >= 1, taken.text
            assert taken.total("statefulwebapp_api_requests_total", verb="apply") == 0, taken.text
            assert health("127.0.0.1", b.health_port) == (200, "ok\n")
        finally:
            b.stop()
    finally:
        a.stop()
