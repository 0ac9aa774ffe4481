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
from tests.unit.scenario import PATHS, SCENARIO

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
