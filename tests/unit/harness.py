"""What the unit tests of the running operator share: a Controller on a fake API server, a pass
runner, a leader-election candidate with a clock the test moves.

Plain classes and helpers (no pytest fixture): test modules import them from here, not from each
other.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from statefulwebapp.api import kinds
from statefulwebapp.controllers import sources
from statefulwebapp.controllers.app_state import Memory, Outcome
from statefulwebapp.controllers.events import EventRecorder, Log
from statefulwebapp.controllers.policy import NO_POLICY, ExportClaims, Policy
from statefulwebapp.controllers.reconcile import AppReconciler, Observation
from statefulwebapp.manager import Controller
from statefulwebapp.runtime import informer, kube
from statefulwebapp.runtime.lease import Elector, Timing
from statefulwebapp.runtime.metrics import Metrics
from statefulwebapp.runtime.workqueue import WorkQueue
from tests.unit.fakeapi import FakeApi, Obj
from tests.unit.scenario import NS, PATHS, SCENARIO

KEY = ("default", "web")
APP = kube.path(kinds.APP, "web", "default")
STATUS = APP + "/status"
TIMEOUT = 10.0


class Fixture:
    def __init__(self, queue: WorkQueue | None = None) -> None:
        self.api = FakeApi()
        self.apps: dict[tuple[str, str], list[str]] = {}
        self.queue = queue or WorkQueue(coalesce=0.01)
        self.controller = Controller(
            self.api,
            apps=self.apps,
            restores={},
            metrics=Metrics(),
            queue=self.queue,
            children={source.store: informer.Store() for source in sources.SOURCES},
        )

    def index(self, body: Obj) -> Obj:
        """The app on the server and in kopf's index, as after its event."""
        self.api.objects[APP] = copy.deepcopy(body)
        self.apps[KEY] = [json.dumps(body)]
        return body

    def settle(self, *keys: Any) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not all(self.queue.idle(key) for key in keys or (KEY,)):
            assert time.monotonic() < deadline, "passes still running"
            time.sleep(0.01)


def app() -> Obj:
    body = copy.deepcopy(SCENARIO)
    body["metadata"].update(uid="uid-app", resourceVersion="1")
    return body


class Recorded(EventRecorder):
    """Keeps the app's Warning events instead of posting them."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, str]] = []
        self.normals: list[tuple[str, str]] = []

    def event(
        self, app: Mapping[str, Any], kind: str, reason: str, message: str, logger: Log
    ) -> None:
        assert kind in ("Warning", "Normal"), (kind, reason, message)
        (self.warnings if kind == "Warning" else self.normals).append((reason, message))


class Budgets(WorkQueue):
    """A work queue whose rollout budget the test sets; progress writes always due."""

    def __init__(self) -> None:
        super().__init__(coalesce=0.01)
        self.rollouts = True

    def rollout_due(self) -> bool:
        return self.rollouts

    def progress_due(self, key: Any) -> bool:
        return True


class Pass:
    """Runs passes of one app the way ``AppReconciler.reconcile`` does: observed children from
    the server's store, the app with the status last written, one Memory across passes."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self.memory = Memory()
        self.recorded = Recorded()
        self.warnings = self.recorded.warnings
        self.body: Obj = copy.deepcopy(SCENARIO)
        self.caches = {source.store: informer.Store() for source in sources.SOURCES}
        """The informers' caches, listed (empty: no name in use but the server's children)."""

    def edit(self, **spec: Any) -> None:
        self.body = copy.deepcopy(self.body)
        for key, value in spec.items():
            if value is None:
                self.body["spec"].pop(key, None)
            else:
                self.body["spec"][key] = value
        self.body["metadata"]["generation"] += 1

    def run(
        self,
        rollout_due: bool = True,
        policy: Policy = NO_POLICY,
        claims: ExportClaims | None = None,
        **seen: Any,
    ) -> Outcome:
        """One pass; ``seen``: more of the :class:`Observation` (the kubelet's reports, nodes)."""
        self.api.requests.clear()
        self.api.versioned()
        observed = {kind: self.api.objects.get(path) for kind, path in PATHS.items()}
        budgets = Budgets()
        budgets.rollouts = rollout_due
        reconciler = AppReconciler(
            self.api,
            budgets,
            recorder=self.recorded,
            memory=self.memory,
            cache=self.caches,
            policy=policy,
            claims=claims,
        )
        outcome = reconciler.converge(
            Observation(body=self.body, children=observed, **seen), logging.getLogger("test")
        )
        if outcome.written_status is not None:
            self.body = {**self.body, "status": outcome.written_status}
        return outcome


TIMING = Timing(duration=15.0, deadline=10.0, retry=0.01)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def candidate(api: FakeApi, clock: Clock, identity: str) -> Elector:
    return Elector(api, "ns", "op", identity, kind=kinds.LEASE, timing=TIMING, clock=clock)


def ready_children(api: FakeApi) -> None:
    """What the controllers would report once the children are up."""
    for path, obj in api.objects.items():
        kind = obj.get("kind")
        gen = obj["metadata"].setdefault("generation", 1)
        if kind == "PersistentVolumeClaim":
            obj["status"] = {"phase": "Bound"}
        elif kind == "StatefulSet":
            n = obj["spec"]["replicas"]
            obj["status"] = {
                "observedGeneration": gen,
                "replicas": n,
                "readyReplicas": n,
                "updatedReplicas": n,
            }
        elif kind == "DaemonSet":
            obj["status"] = {
                "observedGeneration": gen,
                "desiredNumberScheduled": 4,
                "numberReady": 4,
                "updatedNumberScheduled": 4,
            }
        assert path


def ready(app: Pass) -> None:
    """Two passes around the children coming up: the app is Ready."""
    app.run()
    ready_children(app.api)
    app.run()
    assert app.body["status"]["conditions"][0]["reason"] == "Ready"


NOW_ISH = "2999-01-01T00:00:00Z"
"""When the kubelet told a failure: later than any pass's now, so it is fresh."""


def rolled(app: Pass, update: str, *, ready_replicas: int = 2) -> str:
    """The StatefulSet rolls to ``update`` and waits; returns its uid."""
    sts = app.api.objects[PATHS["StatefulSet"]]
    sts["status"].update(
        readyReplicas=ready_replicas,
        updatedReplicas=1,
        currentRevision="web-aaa",
        updateRevision=update,
    )
    return str(sts["metadata"]["uid"])


def put_pod(app: Pass, body: dict[str, Any]) -> None:
    """``body`` (a pod of the app) on the fake API server, as the StatefulSet made it."""
    body["metadata"]["namespace"] = NS
    body["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "statefulwebapp-operator"
    app.api.objects[kube.path(kinds.POD, body["metadata"]["name"], NS)] = body


def failing(pod: str) -> list[dict[str, Any]]:
    """A fresh Unhealthy report of ``pod``, as ``sources.pack_pod_event`` keeps it."""
    return [{"pod": pod, "node": "n1", "message": "Readiness probe failed: 404", "seen": NOW_ISH}]
