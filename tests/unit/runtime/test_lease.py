"""Leader election (lease.py) against the fake API server, with a clock the test moves.

The real-process version (two operators, ``kill -9``, take-over time) is
tests/e2e/test_leader.py.
"""

from __future__ import annotations

import threading

import pytest

from statefulwebapp.api import kinds
from statefulwebapp.runtime import kube
from statefulwebapp.runtime.lease import NoLeaseNamespaceError
from tests.unit.fakeapi import FakeApi, error
from tests.unit.harness import Clock, candidate

PATH = kube.path(kinds.LEASE, "op", "ns")


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


def test_first_candidate_creates_the_lease_second_waits(api: FakeApi) -> None:
    clock = Clock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    assert a.try_acquire()
    assert api.objects[PATH]["spec"]["holderIdentity"] == "a"
    assert api.objects[PATH]["spec"]["leaseDurationSeconds"] == 15
    assert not b.try_acquire()
    assert b.holder == "a"
    # The leader renews; the standby keeps waiting while the record moves.
    for _ in range(5):
        clock.now += 5
        assert a.try_acquire()
        assert not b.try_acquire()


def test_a_dead_leader_is_replaced_after_the_duration_by_the_standbys_clock(api: FakeApi) -> None:
    clock = Clock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    assert a.try_acquire()
    assert not b.try_acquire()  # b first sees the record now.
    clock.now += 14.9
    assert not b.try_acquire()
    clock.now += 0.2
    assert b.try_acquire()
    assert api.objects[PATH]["spec"]["holderIdentity"] == "b"
    assert api.objects[PATH]["spec"]["leaseTransitions"] == 1
    # The old leader, back from a pause, finds it taken.
    assert not a.try_acquire()
    assert a.holder == "b"


def test_two_candidates_racing_for_a_free_lease_one_wins(api: FakeApi) -> None:
    clock = Clock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    assert a.try_acquire()
    a.release()
    assert api.objects[PATH]["spec"]["holderIdentity"] is None
    # Both read the released lease; the second write carries a stale resourceVersion.
    stale = api.objects[PATH]["metadata"]["resourceVersion"]
    assert b.try_acquire()
    api.objects[PATH]["metadata"]["resourceVersion"] = stale
    api.objects[PATH]["spec"]["holderIdentity"] = None
    api.answers[("PUT", PATH)] = error(409, "Conflict", "the object has been modified")
    assert not a.try_acquire()


def test_released_lease_is_taken_without_waiting(api: FakeApi) -> None:
    clock = Clock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    assert a.try_acquire()
    assert not b.try_acquire()
    a.release()
    assert b.try_acquire()


def test_leader_that_cannot_renew_gives_up_before_the_duration(api: FakeApi) -> None:
    clock = Clock()
    a = candidate(api, clock, "a")
    assert a.try_acquire()
    api.answers[("GET", PATH)] = error(503, "ServiceUnavailable", "etcd is down")
    lost = threading.Event()
    reasons: list[str] = []

    def on_lost(reason: str) -> None:
        reasons.append(reason)
        lost.set()

    a.keep(on_lost)
    clock.now += 5  # Failing renewals within the deadline: keep trying.
    assert not lost.wait(0.2)
    clock.now += 5  # 10 s without a renewal: the deadline, 5 s before anyone may take over.
    assert lost.wait(5)
    assert reasons == ["the lease ns/op was not renewed for 10.0s"]


def test_leader_whose_lease_was_taken_stops_at_once(api: FakeApi) -> None:
    clock = Clock()
    a = candidate(api, clock, "a")
    assert a.try_acquire()
    api.objects[PATH]["spec"]["holderIdentity"] = "intruder"
    api.objects[PATH]["metadata"]["resourceVersion"] = "999"
    lost = threading.Event()
    a.keep(lambda reason: lost.set())
    assert lost.wait(5)


def test_a_restarted_instance_with_the_same_identity_takes_its_lease_back_at_once(
    api: FakeApi,
) -> None:
    clock = Clock()
    assert candidate(api, clock, "pod-a").try_acquire()
    # The container restarts (same pod name), the old process gone: no need to wait it out.
    assert candidate(api, clock, "pod-a").try_acquire()
    assert not candidate(api, clock, "pod-b").try_acquire()


def test_a_missing_namespace_stops_the_candidate_at_once_naming_it(api: FakeApi) -> None:
    """No lease can ever be created there: a standby would wait for ever."""
    api.answers["POST", PATH.rsplit("/", 1)[0]] = error(
        404, "NotFound", 'namespaces "ns" not found'
    )
    elector = candidate(api, Clock(), "a")
    with pytest.raises(NoLeaseNamespaceError) as err:
        elector.acquire()
    assert "the namespace 'ns' of the leader-election lease does not exist" in str(err.value)
    assert "kubectl create namespace ns" in str(err.value)
    assert "--lease NAMESPACE/NAME" in str(err.value)


def test_a_standby_is_ready_while_the_api_server_shows_it_the_lease(api: FakeApi) -> None:
    """Readiness (/readyz): a standby that could not read the lease could not take over."""
    clock = Clock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    assert b.unready() == "the lease ns/op has not been read yet"
    assert a.try_acquire()
    assert not b.try_acquire()
    assert b.unready() is None
    api.answers[("GET", PATH)] = error(403, "Forbidden", "leases is forbidden")
    with pytest.raises(kube.ApiError):
        b.try_acquire()
    clock.now += 14.9  # A few failed looks within the lease's duration are no reason yet.
    assert b.unready() is None
    clock.now += 0.1
    assert b.unready() == "the lease ns/op could not be read for 15s"
    del api.answers[("GET", PATH)]
    assert a.try_acquire()  # The leader renews: the standby sees a live lease again.
    assert not b.try_acquire()
    assert b.unready() is None
