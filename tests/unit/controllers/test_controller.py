"""The controller without a cluster: kopf's indexes as dicts, empty informer caches, the fake API
server of ``fakeapi.py``; what each event leads to, as the requests it sends."""

from __future__ import annotations

import copy
import json
import time
from typing import Any, cast

import pytest

from statefulwebapp import manager as controller
from statefulwebapp.api import kinds
from statefulwebapp.api.parse import parse
from statefulwebapp.controllers import sources
from statefulwebapp.runtime import informer, kube
from statefulwebapp.runtime.workqueue import WorkQueue
from statefulwebapp.specs import names, registry, render
from tests.unit import fakeapi
from tests.unit.harness import APP, KEY, STATUS, Fixture, app
from tests.unit.scenario import APPLY_ORDER, PATHS, RENDERED, SCENARIO, healthy


@pytest.fixture
def fx() -> Fixture:
    return Fixture()


def test_an_app_event_applies_every_child_then_writes_the_status(fx: Fixture) -> None:
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    assert fx.api.sent() == [*APPLY_ORDER, STATUS]


def test_its_own_status_write_is_not_written_again_before_the_watch_shows_it(
    fx: Fixture,
) -> None:
    """The index still holds the app without the status just written (its watch event has not
    come): the next pass compares with what was written, not with the older status."""
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    fx.api.requests.clear()
    fx.controller.enqueue(KEY)
    fx.settle()
    assert STATUS not in fx.api.sent()


def test_the_watch_showing_the_operators_own_status_write_brings_no_pass(fx: Fixture) -> None:
    """Each status write comes back as an event of the app: no pass needs it. Any other change
    of the app, a status written by someone else included, brings one."""
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    passes = "statefulwebapp_reconcile_duration_seconds_count"
    samples = fx.controller.metrics.registry
    before = samples.get_sample_value(passes) or 0
    echo = fx.index(copy.deepcopy(fx.api.objects[APP]))
    assert echo["status"], "the first pass wrote a status"
    fx.controller.app_changed(KEY, echo)
    fx.settle()
    assert (samples.get_sample_value(passes) or 0) == before
    assert KEY not in fx.controller.reconciler.last_status, "the write is seen: forgotten"
    edited = copy.deepcopy(echo)
    edited["status"]["dateLog"] = "failing"
    fx.api.objects[APP] = edited
    fx.api.versioned()
    fx.controller.app_changed(KEY, fx.index(copy.deepcopy(fx.api.objects[APP])))
    fx.settle()
    assert (samples.get_sample_value(passes) or 0) == before + 1
    assert fx.api.objects[APP]["status"]["dateLog"] == "ok", "written back"


def test_child_events_before_kopf_lists_the_apps_wait_for_it(fx: Fixture) -> None:
    fx.index(app())
    fx.controller.on_child_event(registry.STATEFULSET, KEY, "DELETED")
    time.sleep(0.1)
    assert fx.api.requests == [], "a pass ran before kopf had listed the apps"
    fx.controller.caches_synced()
    fx.settle()
    assert PATHS["StatefulSet"] in fx.api.sent()


def test_a_volume_whose_app_is_gone_is_collected(fx: Fixture) -> None:
    fx.controller.caches_synced()
    volume = PATHS["PersistentVolume"]
    fx.api.objects[volume] = render.render_volume(parse(SCENARIO))
    fx.controller.on_child_event(registry.PERSISTENT_VOLUME, KEY, "ADDED")
    fx.settle(("volume", *KEY))
    assert ("DELETE", volume) in fx.api.requests
    assert volume not in fx.api.objects


def test_a_deleted_app_is_forgotten_and_its_volume_collected(fx: Fixture) -> None:
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    assert fx.controller.reconciler.last_status
    del fx.apps[KEY], fx.api.objects[APP]
    fx.controller.app_deleted(KEY)
    fx.settle(("volume", *KEY))
    assert ("DELETE", PATHS["PersistentVolume"]) in fx.api.requests
    assert KEY not in fx.controller.reconciler.last_status


def test_an_app_found_gone_after_a_watch_gap_gets_no_pass(fx: Fixture) -> None:
    body = fx.index(app())
    fx.controller.caches_synced()
    fx.controller.reconciler.gone[KEY] = body["metadata"]["uid"]
    fx.controller.enqueue(KEY)
    fx.settle()
    assert fx.api.sent() == []
    # Created again (a new uid): it is the user's new app.
    fx.controller.app_changed(KEY, fx.index({**body, "metadata": {**body["metadata"], "uid": "2"}}))
    fx.settle()
    assert STATUS in fx.api.sent()


def test_objects_planted_in_another_namespace_under_an_apps_labels_are_never_its(
    fx: Fixture,
) -> None:
    """A tenant of namespace ``a`` labels objects as app default/web's children, each named like
    one of default's own objects (or its Service): the app is neither frozen nor made to delete."""
    body = app()
    body["spec"] = {
        **body["spec"],
        "replicas": 1,
        "backup": {"enabled": False},
        "dateLogger": {"enabled": False},
    }
    spec = parse(body)
    victims = {
        registry.DISRUPTION_BUDGET: "important-pod",
        registry.DAEMONSET: "important-dae",
        registry.CRONJOB: "important-cro",
        registry.SERVICE: spec.service_name,
    }
    for child, name in victims.items():
        labels = {
            "app.kubernetes.io/managed-by": "statefulwebapp-operator",
            "app.kubernetes.io/instance": "web",
            "apps.k8slab.io/app-namespace": "default",
        }
        planted = {
            "apiVersion": f"{child.group}/{child.version}".lstrip("/"),
            "kind": child.name,
            "metadata": {"name": name, "namespace": "a", "uid": f"a-{name}", "labels": labels},
        }
        victim = {**planted, "metadata": {"name": name, "namespace": "default", "uid": name}}
        if child is not registry.SERVICE:
            fx.api.objects[kube.path(child, name, "default")] = victim
        # As the informer would keep it: by the owner it names (none), so not at all.
        key = sources.child_source(child).key(planted)
        if key is not None:
            fx.controller.children[child.key].put(f"a-{name}", key, json.dumps(planted))
    fx.controller.app_changed(KEY, fx.index(body))
    fx.settle()
    assert [path for verb, path in fx.api.requests if verb == "DELETE"] == []
    for child, name in victims.items():
        if child is not registry.SERVICE:
            assert kube.path(child, name, "default") in fx.api.objects
    status = fx.api.objects[APP]["status"]
    reasons = [c["reason"] for c in status["conditions"] if c["type"] == "Ready"]
    assert reasons
    assert reasons[0] != "NameConflict"


def test_a_child_is_deleted_only_with_the_uid_it_was_seen_with(fx: Fixture) -> None:
    """Turned off, the date logger's CronJob goes; one made again meanwhile (another uid) stays."""
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    cronjob = PATHS["CronJob"]
    seen = fx.api.objects[cronjob]
    fx.controller.children[registry.CRONJOB.key].put(
        seen["metadata"]["uid"], KEY, sources.pack(seen)
    )
    fx.api.objects[cronjob] = {**seen, "metadata": {**seen["metadata"], "uid": "a-new-one"}}
    body = app()
    body["spec"] = {**body["spec"], "dateLogger": {"enabled": False}}
    fx.controller.app_changed(KEY, fx.index(body))
    fx.settle()
    assert ("DELETE", cronjob) in fx.api.requests
    assert fx.api.objects[cronjob]["metadata"]["uid"] == "a-new-one"


def test_a_daemonset_counting_up_to_ready_costs_the_ready_write_alone() -> None:
    """0/4 ... 4/4, each report passed at once (one app: the short window), costs one status
    write, Ready's: the counts between are progress, held (``status.urgent``)."""
    fx = Fixture(WorkQueue(workers=8, coalesce=0.5, coalesce_idle=0.01))
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    observed = healthy()
    for child in RENDERED:  # Every child as the cluster reports it: what was applied, healthy.
        body = fx.api.objects[PATHS[child.key]]
        body["status"] = copy.deepcopy(observed.get(child.key, {}).get("status", {}))
        if "observedGeneration" in body["status"]:
            body["status"]["observedGeneration"] = body["metadata"]["generation"]
        fx.controller.children[child.key].put(body["metadata"]["uid"], KEY, sources.pack(body))
    daemonset = fx.api.objects[PATHS["DaemonSet"]]
    fx.api.requests.clear()
    samples = fx.controller.metrics.registry
    count = "statefulwebapp_reconcile_duration_seconds_count"
    before = samples.get_sample_value(count) or 0
    for ready in range(5):
        daemonset["status"]["numberReady"] = ready
        store = fx.controller.children[registry.DAEMONSET.key]
        store.put(daemonset["metadata"]["uid"], KEY, sources.pack(daemonset))
        fx.controller.on_child_event(registry.DAEMONSET, KEY, "MODIFIED")
        fx.settle()
        time.sleep(0.05)  # Past the short window: the next report gets a pass of its own.
        fx.settle()
    assert (samples.get_sample_value(count) or 0) - before == 5, "a report waited for another"
    assert fx.api.sent().count(STATUS) == 1, fx.api.requests
    written = fx.api.objects[APP]["status"]
    assert next(c for c in written["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_the_full_check_waits_longer_when_it_costs_more_than_its_share() -> None:
    period = controller.RESYNC_SECONDS
    # A check cheaper than its share keeps the period; a dearer one stretches it so that it
    # takes RESYNC_CPU_SHARE of a core, no more.
    assert controller.resync_wait(period, 0.05) == period
    assert controller.resync_wait(period, period * controller.RESYNC_CPU_SHARE) == period
    dear = 3 * period * controller.RESYNC_CPU_SHARE  # CPU seconds: three times its share.
    assert controller.resync_wait(period, dear) == pytest.approx(dear / controller.RESYNC_CPU_SHARE)
    assert controller.resync_wait(period, dear) > period


def test_each_full_check_reports_its_cpu_and_keeps_the_period_when_cheap(fx: Fixture) -> None:
    """What a full check cost is a metric (the benchmark projects it to larger fleets)."""
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    samples = fx.controller.metrics.registry
    for checks in (1, 2):
        assert fx.controller.full_check(controller.RESYNC_SECONDS) == controller.RESYNC_SECONDS
        count = samples.get_sample_value("statefulwebapp_full_check_cpu_seconds_count")
        assert count == checks
    assert (samples.get_sample_value("statefulwebapp_full_check_cpu_seconds_sum") or 0) > 0


def test_the_full_checks_pages_are_half_the_informers(fx: Fixture) -> None:
    """Its metadata lists carry every child's managed fields: a page is parsed whole, and what
    the first check allocates the operator keeps (kube.METADATA_PAGE has the figures)."""
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    fx.api.calls.clear()
    fx.controller.full_check(controller.RESYNC_SECONDS)
    limits = [int(call.params["limit"]) for call in fx.api.calls if "limit" in call.params]
    assert len(limits) == 1 + len(registry.CHILDREN), fx.api.calls
    assert max(limits) <= informer.PAGE // 2


def test_a_new_app_reads_nothing_before_creating_its_children(fx: Fixture) -> None:
    """The caches are listed and hold none of its children's names; its own event says it
    exists: no GET, one apply per child, one status write."""
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    assert fx.api.sent("GET") == []
    assert fx.api.sent() == [*APPLY_ORDER, STATUS]


def _foreign_service(fx: Fixture, labels: dict[str, str]) -> informer.Store:
    """A Service named as the app's, of nobody's (``labels``), as the watches would hold it."""
    name = parse(app()).service_name
    meta = {"name": name, "namespace": KEY[0], "uid": "theirs", "labels": labels}
    body = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"ports": []}}
    fx.api.objects[kube.path(registry.SERVICE, name, KEY[0])] = body
    ours = labels.get(names.LABEL_MANAGED_BY) == names.MANAGER
    source = sources.child_source(registry.SERVICE) if ours else sources.NAMES["Service"]
    store = fx.controller.children[source.store]
    informer.Informer(cast(Any, fx.api), source, store, fx.controller.on_child_event).event(
        {"type": "ADDED", "object": body}
    )
    return store


@pytest.mark.parametrize(
    "labels",
    [{"team": "b"}, {names.LABEL_MANAGED_BY: names.MANAGER, names.LABEL_INSTANCE: "web"}],
    ids=["another team's", "our labels, no owner"],
)
def test_a_name_taken_is_found_in_the_caches_and_nothing_is_written(
    fx: Fixture, labels: dict[str, str]
) -> None:
    _foreign_service(fx, labels)
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    assert fx.api.sent("GET") == []
    assert fx.api.sent() == [STATUS], "no child applied: one conflict freezes the app"
    ready = fx.api.objects[APP]["status"]["conditions"][0]
    assert ready["reason"] == "NameConflict"
    assert fx.api.objects[PATHS["Service"]]["metadata"]["uid"] == "theirs"


def test_a_missing_child_after_the_apps_event_was_used_costs_a_read_of_the_app_alone(
    fx: Fixture,
) -> None:
    """An index entry can outlive a watch gap: a pass not following the app's own event reads
    the app before creating anything; the names come from the caches still."""
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    fx.api.requests.clear()
    fx.controller.on_child_event(registry.SERVICE, KEY, "DELETED")
    fx.settle()
    assert fx.api.sent("GET") == [APP]


def test_nothing_is_created_while_a_cache_of_names_is_not_listed() -> None:
    """Its list failed (RBAC, the server down): no name of that kind is known to be free."""
    fx = Fixture(WorkQueue(coalesce=0.01, retry=3600.0))  # No retry within the tests' run.
    stores = cast(dict[str, informer.Store], fx.controller.children)
    stores[sources.NAMES["Service"].store] = informer.Store(informers=1)
    fx.controller.app_changed(KEY, fx.index(app()))
    deadline = time.monotonic() + 10
    while STATUS not in fx.api.sent():
        assert time.monotonic() < deadline, "no status written"
        time.sleep(0.01)
    assert set(fx.api.sent()) == {STATUS}, "nothing but the status"
    ready = fx.api.objects[APP]["status"]["conditions"][0]
    assert ready["reason"] == "NotListed"
    assert "Service" in ready["message"]


def test_a_child_a_full_check_found_gone_is_created_again(fx: Fixture) -> None:
    """Its store still shows it: only the other names are asked, and the app read."""
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    service = fx.api.objects.pop(PATHS["Service"])
    store = fx.controller.children[registry.SERVICE.key]
    store.put(service["metadata"]["uid"], KEY, sources.pack(service), name=(KEY[0], "nginx"))
    fx.api.requests.clear()
    fx.controller.enqueue(KEY, missing=frozenset({registry.SERVICE.key}))
    fx.settle()
    assert fx.api.sent("GET") == [APP]
    assert PATHS["Service"] in fx.api.sent()


def test_a_child_the_caches_do_not_show_is_created_without_force(fx: Fixture) -> None:
    fx.controller.app_changed(KEY, fx.index(app()))
    fx.settle()
    applies = [c for c in fx.api.calls if c.method == "PATCH" and c.path != STATUS]
    assert [c.params["force"] for c in applies] == ["false"] * len(APPLY_ORDER)


def test_a_name_taken_after_the_caches_were_filled_refuses_the_create_and_is_left_alone() -> None:
    """The Service appeared too late for the watches: its owner's fields refuse the apply
    without force (409); nothing takes it over, and the pass is retried, by when the caches
    say whose it is."""
    fx = Fixture(WorkQueue(coalesce=0.01, retry=3600.0))  # No retry within the tests' run.
    service = PATHS["Service"]
    theirs = {"apiVersion": "v1", "kind": "Service", "metadata": {"uid": "theirs"}}
    fx.api.objects[service] = theirs
    fx.api.answers[("PATCH", service)] = fakeapi.error(409, "Conflict", "Apply failed")
    fx.controller.app_changed(KEY, fx.index(app()))
    deadline = time.monotonic() + 10
    while STATUS not in fx.api.sent():
        assert time.monotonic() < deadline, "no status written"
        time.sleep(0.01)
    applied = [c for c in fx.api.calls if c.path == service and c.method == "PATCH"]
    assert [c.params["force"] for c in applied] == ["false"], "never applied with force"
    assert PATHS["StatefulSet"] not in fx.api.sent(), "no child after it"
    assert fx.api.objects[service] == theirs
    ready = fx.api.objects[APP]["status"]["conditions"][0]
    assert ready["reason"] == "Conflict"
    assert "retrying" in ready["message"]


def test_an_apps_watch_event_passes_it_and_its_deletion_collects_its_volume() -> None:
    """The apps' informer (not kopf) tells the controller: listed, then watched."""
    fx = Fixture()
    apps = informer.Store()
    watched = controller.Controller(
        fx.api,
        apps=apps,
        restores={},
        metrics=fx.controller.metrics,
        queue=fx.queue,
        children={source.store: informer.Store() for source in sources.SOURCES},
    )
    watch = informer.Informer(cast(Any, fx.api), sources.APPS, apps, watched.on_child_event)
    body = app()
    body["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    watch.event({"type": "ADDED", "object": fx.index(body)})
    time.sleep(0.05)
    assert fx.api.requests == [], "told before the apps were listed: held"
    watched.caches_synced()
    fx.settle()
    assert STATUS in fx.api.sent()
    kept = json.loads(apps[KEY][0])["metadata"]
    assert kept["creationTimestamp"] == "2026-01-01T00:00:00Z", "the older app keeps an export"
    del fx.api.objects[APP]
    watch.event({"type": "DELETED", "object": body})
    fx.settle(("volume", *KEY))
    assert KEY not in apps
    assert ("DELETE", "/api/v1/persistentvolumes/default.web-data") in fx.api.requests


def test_a_node_changing_readiness_brings_every_app_a_pass(fx: Fixture) -> None:
    """Any app may have a pod or an agent on a node that goes away or comes back."""
    fx.index(app())
    fx.controller.caches_synced()
    fx.controller.on_child_event(kinds.NODE, sources.NOT_READY, "MODIFIED")
    fx.settle()
    passes = fx.controller.metrics.registry.get_sample_value(
        "statefulwebapp_reconcile_duration_seconds_count"
    )
    assert passes == 1
    assert STATUS in fx.api.sent()
