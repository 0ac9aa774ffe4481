"""The children's watches without a server: the store, a relist's changes, one event at a time.

The requests themselves (list pages, the watch stream, 410 Gone) are exercised against the
real API server by the e2e tests (tests/e2e/test_faults.py makes a real watch gap).
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from statefulwebapp.api import kinds
from statefulwebapp.controllers import sources
from statefulwebapp.runtime import informer, kube
from statefulwebapp.specs import drift, names, registry
from tests.unit.fakeapi import FakeApi


def service(uid: str, app: str, version: str = "1", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "nginx",
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": version,
            "labels": {names.LABEL_INSTANCE: app, names.LABEL_MANAGED_BY: names.MANAGER},
            "ownerReferences": [
                {
                    "apiVersion": "apps.k8slab.io/v1alpha1",
                    "kind": "StatefulWebApp",
                    "name": app,
                    "uid": f"uid-of-{app}",
                    "controller": True,
                }
            ],
            "managedFields": [{"manager": "x" * 1000}],
            "annotations": {drift.DIGEST: "abc", "other": "y" * 1000},
            **extra,
        },
        "spec": {"clusterIP": "None"},
        "status": {},
    }


class Told:
    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[str, str], str]] = []

    def __call__(self, child: kube.Resource, key: tuple[str, str], event: str) -> None:
        self.events.append((child.name, key, event))


def make_watch() -> tuple[informer.Informer, Told]:
    told = Told()
    return informer.Informer(
        cast(Any, None), sources.child_source(registry.SERVICE), informer.Store(), told, "ns"
    ), told


def test_pack_keeps_what_a_pass_reads_and_drops_the_rest() -> None:
    packed = json.loads(sources.pack(service("u1", "web")))
    assert packed["metadata"]["annotations"] == {drift.DIGEST: "abc"}
    assert "managedFields" not in packed["metadata"]
    assert packed["spec"] == {"clusterIP": "None"}
    assert packed["kind"] == "Service"


def test_owner_key_of_a_namespaced_child_is_its_controller_reference_in_its_namespace() -> None:
    ref = {"apiVersion": "apps.k8slab.io/v1alpha1", "kind": "StatefulWebApp", "name": "web"}
    owned = {"namespace": "a", "ownerReferences": [{**ref, "uid": "u", "controller": True}]}
    assert sources.owner_key(owned) == ("a", "web")
    # Planted in namespace a with the labels of app b/web: never b's, and without an owner
    # reference, nobody's.
    planted = {
        "namespace": "a",
        "labels": {
            names.LABEL_INSTANCE: "web",
            names.LABEL_APP_NAMESPACE: "b",
            names.LABEL_MANAGED_BY: names.MANAGER,
        },
    }
    assert sources.owner_key(planted) is None
    assert sources.owner_key({**planted, **owned}) == ("a", "web")
    # Owned by something else, or not as its controller: not ours.
    other = {**ref, "kind": "Deployment", "apiVersion": "apps/v1", "controller": True}
    assert sources.owner_key({"namespace": "a", "ownerReferences": [other]}) is None
    assert sources.owner_key({"namespace": "a", "ownerReferences": [ref]}) is None


def test_owner_key_of_a_volume_is_its_labels() -> None:
    labels = {names.LABEL_INSTANCE: "web", names.LABEL_APP_NAMESPACE: "ns"}
    assert sources.owner_key({"labels": labels}) == ("ns", "web")
    assert sources.owner_key({"labels": {names.LABEL_INSTANCE: "web"}}) is None


def test_store_is_a_mapping_of_apps_to_packed_objects() -> None:
    store = informer.Store()
    assert store.put("u1", ("ns", "web"), "a") is None
    assert store.put("u2", ("ns", "web"), "b") is None
    assert sorted(store[("ns", "web")]) == ["a", "b"]
    assert store.get(("ns", "other")) is None
    assert list(store) == [("ns", "web")]
    assert store.put("u1", ("ns", "other"), "a2") == ("ns", "web"), "relabelled: moved"
    assert store[("ns", "web")] == ("b",)
    assert store.pop("u2") == ("ns", "web")
    assert ("ns", "web") not in store
    assert len(store) == 1
    assert store.pop("u2") is None


def test_the_store_finds_an_object_by_name_whoever_owns_it() -> None:
    store = informer.Store()
    store.put("u1", ("ns", "web"), "a", name=("ns", "web-svc"))
    store.put("u2", None, "b", name=("ns", "planted"))
    assert store.named(("ns", "web-svc")) == "a"
    assert store.named(("ns", "planted")) == "b", "held by name though it is no app's"
    assert list(store) == [("ns", "web")], "an object of no app is under no app"
    assert store.pop("u2") is None
    assert store.named(("ns", "planted")) is None
    store.put("u1", ("ns", "web"), "a2", name=("ns", "web-svc"))
    assert store.named(("ns", "web-svc")) == "a2"


def test_a_store_is_synced_once_each_of_its_informers_listed() -> None:
    store = informer.Store(informers=2)
    assert not store.synced
    store.listed()
    assert not store.synced, "one scope of two"
    store.listed()
    assert store.synced


def test_a_relist_reports_what_changed_appeared_and_vanished() -> None:
    def entry(name: str, packed: str) -> informer.Entry:
        return ("ns", name), packed, ("ns", f"{name}-obj"), None

    before = {"same": entry("a", "x"), "edited": entry("b", "1"), "gone": entry("c", "z")}
    after = {"same": entry("a", "x"), "edited": entry("b", "2"), "new": entry("d", "w")}
    assert list(informer.changes(before, after)) == [
        ("DELETED", "gone", None),
        ("MODIFIED", "edited", entry("b", "2")),
        ("ADDED", "new", entry("d", "w")),
    ]
    assert list(informer.changes(after, after)) == []


def test_events_fill_the_store_and_are_told() -> None:
    one, told = make_watch()
    one.event({"type": "ADDED", "object": service("u1", "web", "5")})
    assert one.version == "5"
    (packed,) = one.store[("ns", "web")]
    assert json.loads(packed)["metadata"]["resourceVersion"] == "5"
    one.event({"type": "MODIFIED", "object": service("u1", "other", "6")})
    one.event({"type": "DELETED", "object": service("u1", "other", "7")})
    assert told.events == [
        ("Service", ("ns", "web"), "ADDED"),
        ("Service", ("ns", "web"), "DELETED"),
        ("Service", ("ns", "other"), "MODIFIED"),
        ("Service", ("ns", "other"), "DELETED"),
    ]
    assert len(one.store) == 0


def test_a_deleted_object_never_held_is_told_by_its_labels() -> None:
    one, told = make_watch()
    one.event({"type": "DELETED", "object": service("u9", "web")})
    assert told.events == [("Service", ("ns", "web"), "DELETED")]


def test_a_bookmark_moves_the_version_and_tells_nothing() -> None:
    one, told = make_watch()
    one.event({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}})
    assert one.version == "42"
    assert told.events == []
    assert len(one.store) == 0


def test_an_expired_version_asks_for_a_relist_and_other_errors_fail_the_watch() -> None:
    one, _ = make_watch()
    with pytest.raises(informer.VersionGoneError):
        one.event({"type": "ERROR", "object": {"kind": "Status", "code": 410}})
    with pytest.raises(RuntimeError, match="too many"):
        one.event({"type": "ERROR", "object": {"code": 429, "message": "too many"}})


def failed_mount(pod: str, uid: str = "e1", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{pod}.1", "namespace": "ns", "uid": uid, "resourceVersion": "5"},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": "ns"},
        "reason": "FailedMount",
        "message": "MountVolume.SetUp failed",
        "source": {"component": "kubelet", "host": "real"},
        "lastTimestamp": "2026-11-25T10:00:00Z",
        **extra,
    }


def test_pod_names_tell_their_app_and_component() -> None:
    assert names.pod_owner("web-0") == ("web", names.WEB)
    assert names.pod_owner("web-99") == ("web", names.WEB)
    assert names.pod_owner("web-backup-x7k2p") == ("web", names.BACKUP)
    assert names.pod_owner("web-backup-24567") == ("web", names.BACKUP)
    assert names.pod_owner("shop-1-backup-b4c5d") == ("shop-1", names.BACKUP)
    assert names.pod_owner("web-100") is None
    assert names.pod_owner("web-datelog-29412345-abcde") is None
    assert names.pod_owner("web") is None


def test_a_mount_failure_is_kept_under_its_app_and_others_are_dropped() -> None:
    told = Told()
    one = informer.Informer(cast(Any, None), sources.MOUNT_FAILURES, informer.Store(), told, "ns")
    one.event({"type": "ADDED", "object": failed_mount("web-1")})
    one.event({"type": "ADDED", "object": failed_mount("other", uid="e2")})
    assert told.events == [("Event", ("ns", "web"), "ADDED")]
    (packed,) = one.store[("ns", "web")]
    assert json.loads(packed) == {
        "pod": "web-1",
        "node": "real",
        "message": "MountVolume.SetUp failed",
        "seen": "2026-11-25T10:00:00Z",
    }
    one.event({"type": "DELETED", "object": failed_mount("other", uid="e2")})
    one.event({"type": "DELETED", "object": failed_mount("web-1")})
    assert told.events[1:] == [("Event", ("ns", "web"), "DELETED")]
    assert ("ns", "web") not in one.store


def test_a_mount_failure_series_is_seen_at_its_last_observation() -> None:
    series: dict[str, Any] = {"series": {"lastObservedTime": "2026-11-25T10:09:00.000000Z"}}
    packed = json.loads(sources.pack_pod_event(failed_mount("web-0", **series)))
    assert packed["seen"] == "2026-11-25T10:09:00.000000Z"


def statefulset(uid: str, app: str, namespace: str = "ns") -> dict[str, Any]:
    return {
        "metadata": {
            "name": app,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": "1",
            "ownerReferences": [
                {
                    "apiVersion": "apps.k8slab.io/v1alpha1",
                    "kind": "StatefulWebApp",
                    "name": app,
                    "uid": f"app-{uid}",
                    "controller": True,
                }
            ],
        },
        "spec": {},
        "status": {},
    }


def test_only_events_of_our_apps_pods_are_kept_however_many_foreign_pods_there_are() -> None:
    """The watch of pods' events is cluster-wide and an event names its pod by name alone:
    thousands of other pods named like ours (``x-0``, ``x-backup-abcde``) cost nothing, and
    the events of an app's pods go with them."""
    told = Told()
    stores = {
        registry.STATEFULSET.key: informer.Store(),
        registry.DAEMONSET.key: informer.Store(),
        sources.PROBE_FAILURES.store: informer.Store(),
    }
    workloads = informer.Informer(
        cast(Any, None), sources.child_source(registry.STATEFULSET), stores["StatefulSet"], told
    )
    source = sources.bound(sources.PROBE_FAILURES, stores)
    events = informer.Informer(cast(Any, None), source, stores[source.store], told)
    for round_ in range(3):
        app = f"web{round_}"
        workloads.event({"type": "ADDED", "object": statefulset(f"s{round_}", app)})
        for n in range(2000):
            foreign = failed_mount(f"shop{n}-{n % 3}", uid=f"f{round_}-{n}")
            events.event({"type": "ADDED", "object": foreign})
        # No StatefulSet of an app "web<round>" in another namespace, no DaemonSet here.
        for pod, namespace in ((f"{app}-0", "other"), (f"{app}-backup-x7k2p", "ns")):
            elsewhere = failed_mount(pod, uid=f"x{round_}{namespace}")
            elsewhere["involvedObject"]["namespace"] = namespace
            events.event({"type": "ADDED", "object": elsewhere})
        ours = failed_mount(f"{app}-1", uid=f"o{round_}")
        events.event({"type": "ADDED", "object": ours})
        assert list(events.store) == [("ns", app)]
        assert len(events._uids) == 1
        # The app goes: its StatefulSet, then its pod's event (the kubelet's events expire).
        workloads.event({"type": "DELETED", "object": statefulset(f"s{round_}", app)})
        events.event({"type": "DELETED", "object": ours})
        assert not events.store
        assert not events._uids


def test_the_names_of_others_are_listed_and_watched_as_metadata_alone() -> None:
    """A foreign Service's spec and status never cross the wire: its name and owners are kept,
    by name, and no pass is told of it."""
    api = FakeApi()
    foreign = service("f1", "web")
    foreign["metadata"]["labels"] = {"team": "b"}
    foreign["metadata"].pop("ownerReferences")
    ours = service("o1", "web")
    ours["metadata"]["name"] = "ours"
    api.objects[kube.path(kinds.SERVICE, "nginx", "ns")] = foreign
    api.objects[kube.path(kinds.SERVICE, "ours", "ns")] = ours
    told = Told()
    store = informer.Store(informers=1)
    one = informer.Informer(cast(Any, api), sources.NAMES["Service"], store, told)
    assert not store.synced
    one.list(report=True)
    one.watch()
    assert store.synced
    assert [c.accept for c in api.calls] == [kube.METADATA_LIST, kube.METADATA]
    held = json.loads(store.named(("ns", "nginx")) or "{}")
    assert held["metadata"]["labels"] == {"team": "b"}
    assert held["kind"] == "Service"
    assert held["spec"] is None, "metadata alone"
    assert store.named(("ns", "ours")) is None, "the operator's own are the children's stores'"
    assert told.events == []
    assert list(store) == []


def test_a_child_with_our_labels_and_no_owner_of_ours_is_held_by_its_name() -> None:
    one, told = make_watch()
    planted = service("p1", "web")
    planted["metadata"].pop("ownerReferences")
    one.event({"type": "ADDED", "object": planted})
    assert one.store.named(("ns", "nginx")) is not None
    assert list(one.store) == [], "no app's"
    assert told.events == [], "no pass"
    one.event({"type": "DELETED", "object": planted})
    assert one.store.named(("ns", "nginx")) is None


def datelog(version: int, scheduled: str | None, succeeded: str | None, **meta: Any) -> Any:
    """The date logger's CronJob at ``version``: its last schedule and success, a run active
    while the schedule is the newer."""
    body = service("c1", "web", str(version), **meta)
    body.update(apiVersion="batch/v1", kind="CronJob", spec={"schedule": "* * * * *"})
    body["metadata"].setdefault("generation", 1)
    body["status"] = {"lastScheduleTime": scheduled, "lastSuccessfulTime": succeeded}
    if scheduled is not None and (succeeded is None or succeeded < scheduled):
        body["status"]["active"] = [{"name": "web-datelog-1"}]
    return body


def runs(*states: tuple[str | None, str | None] | str, **meta: Any) -> list[Any]:
    """CronJobs, one per state: (scheduled, succeeded), or "ended" for the run before ended
    without a success."""
    bodies: list[Any] = []
    for version, state in enumerate(states, start=1):
        if state == "ended":
            body = json.loads(json.dumps(bodies[-1]))
            body["metadata"]["resourceVersion"] = str(version)
            body["status"].pop("active")
        else:
            body = datelog(version, *state, **meta)
        bodies.append(body)
    return bodies


M0, M1, M2, M3 = (f"2026-12-07T10:0{m}:00Z" for m in range(4))
S0, S1, S2, S3 = (f"2026-12-07T10:0{m}:02Z" for m in range(4))


def test_a_healthy_date_loggers_runs_are_told_to_no_pass() -> None:
    """The CronJob controller records each run twice (scheduled, ended): nothing a pass reads of
    the CronJob changes while its runs succeed, and no pass hears of them. A failure, the
    recovery after it, a change of its spec or its metadata, and its deletion are told."""
    told = Told()
    store = informer.Store()
    one = informer.Informer(
        cast(Any, None), sources.child_source(registry.CRONJOB), store, told, "ns"
    )
    states, expected = zip(
        ((None, None), ["ADDED"]),  # Created: no run yet.
        ((M0, None), []),  # The first run is scheduled,
        ((M0, S0), []),  # and succeeds.
        ((M1, S0), []),
        ((M1, S1), []),
        ((M2, S1), []),  # A run under way
        ("ended", ["MODIFIED"]),  # ends without a success: failing.
        ((M3, S1), []),  # The next one is under way: failing still,
        ((M3, S3), ["MODIFIED"]),  # until it succeeds.
        strict=True,
    )
    for body, events in zip(runs(*states), expected, strict=True):
        told.events.clear()
        one.event({"type": "MODIFIED" if store.entry("c1") else "ADDED", "object": body})
        assert [event for _, _, event in told.events] == events, body["status"]
        (packed,) = store[("ns", "web")]
        assert json.loads(packed)["status"] == body["status"], "stored, told or not"
    told.events.clear()
    edited = datelog(20, M3, S3, generation=2)
    relabelled = datelog(21, M3, S3, generation=2)
    relabelled["metadata"]["labels"]["team"] = "b"
    for body in (edited, relabelled):
        one.event({"type": "MODIFIED", "object": body})
    one.event({"type": "DELETED", "object": relabelled})
    assert [event for _, _, event in told.events] == ["MODIFIED", "MODIFIED", "DELETED"]


def test_a_run_under_way_keeps_how_the_one_before_went() -> None:
    """A run in progress says nothing of the one before: a failing logger whose next run is
    under way reads as failing still, and its success is told."""
    source = sources.child_source(registry.CRONJOB)
    assert source.reading is not None
    failed, running, succeeded = runs((M0, None), "ended", (M1, None), (M1, S1))[1:]
    after_failure = source.reading(failed, None)
    assert source.reading(running, after_failure) == after_failure
    assert source.reading(succeeded, after_failure) != after_failure
    assert source.reading(running, None) != after_failure, "nothing held: not known"


def test_a_relist_tells_only_what_passes_read() -> None:
    """After a watch gap, a date logger that ran well meanwhile is stored and told to no pass;
    one whose run failed meanwhile is told."""
    api = FakeApi()
    path = kube.path(kinds.CRONJOB, "nginx", "ns")
    healthy, later, failed = runs((M0, S0), (M1, S1), (M2, S1))
    told = Told()
    one = informer.Informer(
        cast(Any, api), sources.child_source(registry.CRONJOB), informer.Store(), told, "ns"
    )
    api.objects[path] = healthy
    one.list(report=False)
    api.objects[path] = later
    one.list(report=True)
    assert told.events == []
    assert json.loads(one.store[("ns", "web")][0])["status"] == later["status"]
    del failed["status"]["active"]
    api.objects[path] = failed
    one.list(report=True)
    assert told.events == [("CronJob", ("ns", "web"), "MODIFIED")]


def node(version: int, ready: str, since: str, heartbeat: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "n2", "uid": "node-n2", "resourceVersion": str(version)},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "lastTransitionTime": since,
                    "lastHeartbeatTime": heartbeat,
                }
            ]
        },
    }


def test_a_node_is_told_only_when_its_ready_condition_changes_and_held_by_it() -> None:
    """The kubelet posts its node's status every few minutes: heartbeats tell no pass. A node
    going NotReady or unreachable, and coming back, is told, and the pass finds the nodes not
    Ready under one key."""
    told = Told()
    store = informer.Store()
    one = informer.Informer(cast(Any, None), sources.NODES, store, told)
    states = [
        (node(1, "True", "T0", "H0"), ["ADDED"]),
        (node(2, "True", "T0", "H1"), []),
        # A move between the keys is told as it is for a child that changed apps.
        (node(3, "Unknown", "T2", "H1"), ["DELETED", "MODIFIED"]),
        (node(4, "Unknown", "T2", "H1"), []),
        (node(5, "True", "T5", "H5"), ["DELETED", "MODIFIED"]),
    ]
    for body, events in states:
        told.events.clear()
        one.event({"type": "MODIFIED" if store.entry("node-n2") else "ADDED", "object": body})
        assert [event for _, _, event in told.events] == events, body["status"]
        lost = store.get(sources.NOT_READY, ())
        ready = body["status"]["conditions"][0]["status"] == "True"
        assert [json.loads(p)["name"] for p in lost] == ([] if ready else ["n2"])


def workload(version: int, generation: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "w1",
            "resourceVersion": str(version),
            "generation": generation,
            "labels": {names.LABEL_MANAGED_BY: names.MANAGER},
            "ownerReferences": [
                {
                    "apiVersion": "apps.k8slab.io/v1",
                    "kind": "StatefulWebApp",
                    "name": "web",
                    "uid": "u",
                    "controller": True,
                }
            ],
        },
        "spec": {"replicas": 3},
        "status": status,
    }


def watching(child: registry.Child, told: Told) -> informer.Informer:
    return informer.Informer(
        cast(Any, None), sources.child_source(child), informer.Store(), told, "ns"
    )


def test_a_childs_status_fields_no_pass_reads_are_told_to_no_pass() -> None:
    """A StatefulSet's availableReplicas follows its readyReplicas a moment later, and a
    disruption budget's counts move with every pod: no pass reads either. What passes read
    (the ready count, the generation, a claim's phase, a Service's spec) is told."""
    told = Told()
    sts = watching(registry.STATEFULSET, told)
    steps = [
        (workload(1, readyReplicas=1), ["ADDED"]),
        (workload(2, readyReplicas=1, availableReplicas=1), []),
        (workload(3, readyReplicas=2, availableReplicas=1), ["MODIFIED"]),
        (workload(4, readyReplicas=2, availableReplicas=2, currentReplicas=2), []),
        (workload(5, generation=2, readyReplicas=2, availableReplicas=2), ["MODIFIED"]),
    ]
    for body, events in steps:
        told.events.clear()
        sts.event({"type": "MODIFIED" if events != ["ADDED"] else "ADDED", "object": body})
        assert [event for _, _, event in told.events] == events, body["status"]
    budget = watching(registry.DISRUPTION_BUDGET, told)
    budget.event({"type": "ADDED", "object": workload(1, currentHealthy=1)})
    told.events.clear()
    budget.event({"type": "MODIFIED", "object": workload(2, currentHealthy=2)})
    assert told.events == []
    claim = watching(registry.PERSISTENT_VOLUME_CLAIM, told)
    pending = workload(1, phase="Pending")
    del pending["metadata"]["generation"]
    claim.event({"type": "ADDED", "object": pending})
    bound = {**pending, "metadata": {**pending["metadata"], "resourceVersion": "2"}}
    bound["status"] = {"phase": "Bound"}
    resized = {**bound, "metadata": {**bound["metadata"], "resourceVersion": "3"}}
    resized["spec"] = {"resources": {"requests": {"storage": "2Gi"}}}
    told.events.clear()
    for body in (bound, resized):
        claim.event({"type": "MODIFIED", "object": body})
    assert [event for _, _, event in told.events] == ["MODIFIED", "MODIFIED"]
