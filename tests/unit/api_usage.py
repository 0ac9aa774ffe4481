"""What the operator asks of the API server, found by running its code against the fake one.

The chart's RBAC must grant exactly this (test_chart.py): a request the operator starts sending
without a rule for it is refused in a real cluster, and a rule it no longer needs is privilege
for nothing. Writing that list by hand let the two drift apart silently; here the operator's own
code sends the requests (:func:`drive`), the fake API server records them (``FakeApi.calls``),
and :func:`needs` names the RBAC verb the API server would authorize each with.

:func:`drive` walks, once each, the paths that send a kind of request the operator sends: the
informers' lists and watches, the search for orphaned volumes at start, a new app's passes
(apply, status), a child deleted (the app read before it is made again), optional
children turned off (deleted), an invalid spec (a Warning event), the full check's metadata
lists, a deleted app's volume collected, a restore from acceptance to its
result (its owner reference, its status, its Job, the Job's pods), and leader election's lease
(read, created, renewed, released). A new kind of request needs a step here; until it has one,
the chart test says which rule is granted but never used, or missing.

Only kopf's own requests are out of reach (its client is not pykube's session): they are
:data:`KOPF`, and the events the operator asks kopf to post (:data:`EVENT_POST`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, cast

from statefulwebapp import handlers
from statefulwebapp.api import kinds
from statefulwebapp.api.parse import parse, parse_restore
from statefulwebapp.controllers import restore, sources
from statefulwebapp.runtime import informer, kube
from statefulwebapp.specs import names, registry, restoring
from tests.unit.fakeapi import APPLY, Call, FakeApi, Obj
from tests.unit.harness import (
    APP,
    KEY,
    Clock,
    Fixture,
    Pass,
    app,
    candidate,
    failing,
    put_pod,
    ready,
    rolled,
)
from tests.unit.scenario import pod_body

Rule = tuple[str, str, str]
"""(apiGroup, resource or resource/subresource, verb), as a Role's rules name them."""

# kopf lists, then watches, each resource handlers.py gives it handlers for (the restores: their
# index and event handler), with its own client, which the fake API server cannot stand in for.
# Nothing more: with event handlers and indexes only, kopf keeps no state on the objects (no
# finalizer, no annotation, so no patch), and handlers.configure turns off its scanning of CRDs
# and namespaces. The apps are listed and watched by an informer, driven below.
KOPF: frozenset[Rule] = frozenset(
    (group, plural, verb)
    for group, _version, plural in (handlers.RESTORE,)
    for verb in ("list", "watch")
)
EVENT_POST: Rule = ("", kinds.EVENT.plural, "create")
"""The operator posts each event (``EventRecorder``: a pass's Warning, a restore's result) with a
POST to the core events API; it never updates one."""

OPTIONAL = ("backup", "dateLogger", "disruptionBudget", "networkPolicy")
"""The spec's parts that turn an optional child off (the DaemonSet, CronJob, budget,
NetworkPolicy) when disabled."""


@dataclass
class Usage:
    """What :func:`drive` saw the operator do."""

    calls: list[Call]
    """Every request the fake API server received, in order."""
    events: list[tuple[str, str]]
    """(type, reason) of each event the operator asked kopf to post."""


def needs(call: Call) -> set[Rule]:
    """The rules the API server checks ``call`` against.

    GET is ``watch`` with ``watch=true``, ``list`` on a collection, else ``get``; POST
    ``create``, PUT ``update``, PATCH ``patch``, DELETE ``delete`` (``deletecollection`` on a
    collection). A server-side apply that creates its object is authorized as a ``create`` too.
    """
    where = call.target
    resource = "/".join(filter(None, (where.resource, where.subresource)))
    if call.method == "GET":
        verb = "get" if where.name else "list"
        if call.params.get("watch") in {"true", "1"}:
            verb = "watch"
    elif call.method == "DELETE":
        verb = "delete" if where.name else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[call.method]
    rules = {(where.group, resource, verb)}
    if call.method == "PATCH" and call.content_type == APPLY and call.status == 201:
        rules.add((where.group, resource, "create"))
    return rules


def used() -> set[Rule]:
    """Every rule the operator needs: its requests', kopf's, and the events it posts'."""
    usage = drive()
    found = {rule for call in usage.calls for rule in needs(call)} | KOPF
    return found | {EVENT_POST} if usage.events else found


def drive() -> Usage:
    """Run each path of the operator that sends a kind of request, against one fake API."""
    fx = Fixture()
    api, controller = fx.api, fx.controller
    client = cast(Any, api)  # The fake stands in for a pykube.HTTPClient.
    events: list[tuple[str, str]] = []

    # Start (Controller.start, sources.start): every source listed, then watched once (the fake
    # ends a watch at once, where Informer.run would watch again for ever); then the volumes of
    # apps deleted while the operator was down are looked for.
    watches = [
        informer.Informer(
            client, source, controller.children[source.store], controller.on_child_event
        )
        for source in sources.SOURCES
    ]
    for one in watches:
        one.list(report=False)
        one.watch()
    controller.collect_orphans()

    # A new app: each child applied (which creates it; the caches say no name is taken, and
    # the app's event that it exists), then its status written.
    controller.app_changed(KEY, fx.index(app()))
    fx.settle()

    # The watches show the children (a relist). A child deleted: the app is read before it is
    # made again (an index entry can outlive a watch gap), its name found free in the caches.
    for one in watches:
        one.list(report=True)
    fx.settle()
    del api.objects[kube.path(registry.SERVICE, parse(app()).service_name, KEY[0])]
    # Only the Service's watch lists again: the pass it tells of runs in a worker thread, and
    # the fake API server is not to be read by a list while that pass writes to it.
    next(w for w in watches if w.source.store == registry.SERVICE.key).list(report=True)
    fx.settle()

    # The optional children turned off are deleted.
    off = app()
    off["metadata"]["generation"] += 1
    off["spec"].update({part: {"enabled": False} for part in OPTIONAL})
    controller.app_changed(KEY, fx.index(off))
    fx.settle()

    # An invalid spec: a Warning event (reconcile's ``warn``, which the controller hands to
    # kopf.warn) and the status saying why.
    invalid = Pass(api)
    invalid.edit(replicas="many")
    invalid.run()
    events += [("Warning", reason) for reason, _message in invalid.warnings]

    # The full check, once the watches show the deletions: metadata-only lists of the apps and
    # of each child, nothing to repair.
    for one in watches:
        one.list(report=True)
    fx.settle()
    plan = controller.resync()
    assert plan is not None
    assert not plan, plan

    # A web pod a rollout left failing, once the spec moved on: the app's pods listed, the
    # stuck one deleted (specs/pods.py).
    stuck = Pass(api)
    stuck.body = app()
    ready(stuck)
    put_pod(stuck, pod_body("web-2", revision="web-bbb", ready=False, owner=rolled(stuck, "c")))
    stuck.run(probe_failures=failing("web-2"))
    assert stuck.api.sent("DELETE") == [kube.path(kinds.POD, "web-2", KEY[0])]

    # A restore, pass by pass as the controller's work queue runs them.
    _restore(api, events)

    # The app deleted: read again to confirm, its volume read, then deleted.
    del fx.apps[KEY], api.objects[APP]
    controller.app_deleted(KEY)
    fx.settle(("volume", *KEY))

    # Leader election: the lease read, created the first time, renewed, released.
    elector = candidate(api, Clock(), "a")
    elector.try_acquire()
    elector.try_acquire()
    elector.release()
    return Usage(calls=list(api.calls), events=events)


def _restore(api: FakeApi, events: list[tuple[str, str]]) -> None:
    """Accepted (its owner reference and status), its Job applied once the web pods are gone,
    then its result read from the finished Job's pods."""
    namespace, name = KEY
    body: Obj = {
        "apiVersion": f"{kinds.RESTORE.group}/{kinds.RESTORE.version}",
        "kind": kinds.RESTORE.name,
        "metadata": {"name": "back", "namespace": namespace, "uid": "uid-restore"},
        "spec": {"appName": name},
    }
    path = kube.path(kinds.RESTORE, "back", namespace)
    job = kube.path(kinds.JOB, names.restore_job(parse_restore(body)), namespace)
    api.objects[path] = body
    # The app's own StatefulSet, stopped: owned by its uid, as the restore checks.
    owner = {"kind": kinds.APP.name, "apiVersion": f"{kinds.APP.group}/{kinds.APP.version}"}
    stopped = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "ownerReferences": [
                {**owner, "name": name, "uid": app()["metadata"]["uid"], "controller": True}
            ],
        },
        "spec": {"replicas": 0},
        "status": {"replicas": 0},
    }

    def step() -> None:
        current = copy.deepcopy(api.objects[path])
        restore.reconcile_restore(
            cast(Any, api),
            current,
            app=app(),
            apps=[name],
            siblings=[current],
            statefulset=stopped,
            post_event=lambda kind, reason, _message: events.append((kind, reason)),
        )

    step()  # Accepted: Pending.
    step()  # No web pod left: the Job applied, Running.
    api.objects[job]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    message = "result=restored\narchive=default-web-20261202T010203Z.tar.gz\nnode=n1\n"
    terminated = {"finishedAt": "2026-12-02T03:00:00Z", "message": message}
    api.objects[kube.path(kinds.POD, "back-x7k2p", namespace)] = {
        "metadata": {
            "name": "back-x7k2p",
            "namespace": namespace,
            "labels": {names.LABEL_RESTORE: "back"},
        },
        "status": {"containerStatuses": [{"state": {"terminated": terminated}}]},
    }
    step()  # The Job complete: its pod's result read, Succeeded.
    assert restoring.phase(api.objects[path]) == restoring.SUCCEEDED, api.objects[path]["status"]
    # Another restore, past its deadline with its Job not finished: the Job is suspended.
    api.objects[job]["status"] = {}
    api.objects[path]["status"] = {
        "phase": restoring.RUNNING,
        "startTime": "2026-01-01T00:00:00Z",
        "message": "restoring latest",
    }
    step()
    assert restoring.phase(api.objects[path]) == restoring.FAILED, api.objects[path]["status"]
    assert api.objects[job]["spec"]["suspend"] is True, "the late restore's Job still runs"
