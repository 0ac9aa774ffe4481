"""A cluster in memory for the plugin's tests: what ``gather.Source`` answers, from dicts."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from statefulwebapp.api.kinds import Kind
from statefulwebapp.api.objects import Manifest, Obj
from statefulwebapp.plugin.gather import Exec
from statefulwebapp.specs import names

UID = "uid-app"
NS = "shop"


API_VERSIONS = {
    "StatefulWebApp": "apps.k8slab.io/v1alpha1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "CronJob": "batch/v1",
    "Job": "batch/v1",
}


def owner(kind: str, name: str, uid: str, *, controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSIONS.get(kind, "v1"),
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": controller,
    }


def obj(
    kind: str,
    name: str,
    *,
    namespace: str = NS,
    uid: str = "",
    owners: Sequence[dict[str, Any]] = (),
    labels: dict[str, str] | None = None,
    **body: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": uid or f"uid-{kind.lower()}-{name}",
        "labels": labels if labels is not None else {names.LABEL_INSTANCE: "web"},
        "creationTimestamp": "2026-12-07T20:00:00Z",
        "resourceVersion": "1",
        "managedFields": [{"manager": "statefulwebapp-operator", "operation": "Apply"}],
    }
    if namespace:
        meta["namespace"] = namespace
    if owners:
        meta["ownerReferences"] = list(owners)
    return {"kind": kind, "metadata": meta, **body}


def app(**status: Any) -> dict[str, Any]:
    body = obj(
        "StatefulWebApp",
        "web",
        uid=UID,
        spec={
            "replicas": 2,
            "storage": {"nfs": {"server": "10.0.0.9", "path": "/srv/web"}},
            "backup": {"intervalSeconds": 600, "keep": 5},
        },
        status=status
        or {
            "observedGeneration": 1,
            "ready": "2/2",
            "storage": "Bound",
            "backup": "2/2",
            "dateLog": "ok",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "2/2 web pods ready, storage bound",
                    "lastTransitionTime": "2026-12-07T20:01:00Z",
                }
            ],
        },
    ) | {"apiVersion": "apps.k8slab.io/v1alpha1"}
    body["metadata"]["generation"] = 1
    return body


@dataclass
class FakeSource:
    """``gather.Source`` over a list of objects; failures and exec answers given by the test."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    namespace: str = NS
    fail: dict[str, Exception] = field(default_factory=dict)
    """By ``<verb> <plural>``: the error that request raises."""
    execs: dict[str, Exec | Exception] = field(default_factory=dict)
    """By pod name: what running a command there gives."""
    logs_of: dict[str, str | Exception] = field(default_factory=dict)
    """By ``<pod>/<container>``."""
    events: list[list[tuple[str, Obj]] | Exception] = field(default_factory=list)
    """What each watch yields, in turn (an exception raised instead)."""
    on_create: Callable[[Manifest], dict[str, Any]] | None = None
    calls: list[str] = field(default_factory=list)

    def _check(self, verb: str, kind: Kind) -> None:
        self.calls.append(f"{verb} {kind.plural}")
        if f"{verb} {kind.plural}" in self.fail:
            raise self.fail[f"{verb} {kind.plural}"]

    def get(self, kind: Kind, name: str, namespace: str = "") -> Obj | None:
        self._check("get", kind)
        for o in self.objects:
            m = o["metadata"]
            if o["kind"] == kind.name and m["name"] == name and m.get("namespace", "") == namespace:
                return copy.deepcopy(o)
        return None

    def list(
        self, kind: Kind, namespace: str = "", selector: str = "", fields: str = ""
    ) -> list[Obj]:
        self._check("list", kind)
        wanted = dict(s.split("=", 1) for s in selector.split(",") if s)
        return [
            copy.deepcopy(o)
            for o in self.objects
            if o["kind"] == kind.name
            and (not namespace or o["metadata"].get("namespace") == namespace)
            and all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]

    def create(self, kind: Kind, namespace: str, body: Manifest) -> Obj:
        self._check("create", kind)
        made = self.on_create(body) if self.on_create else copy.deepcopy(body)
        self.objects.append(made)
        return made

    def watch(
        self, kind: Kind, namespace: str, name: str, resource_version: str, timeout: int
    ) -> Iterator[tuple[str, Obj]]:
        self._check("watch", kind)
        batch = self.events.pop(0) if self.events else []
        if isinstance(batch, Exception):
            raise batch
        for event in batch:
            if event[0] != "DELETED":
                self.objects = [
                    o for o in self.objects if o["metadata"]["name"] != event[1]["metadata"]["name"]
                ] + [copy.deepcopy(dict(event[1]))]
            yield event

    def logs(
        self, namespace: str, pod: str, container: str, tail: int, previous: bool = False
    ) -> str:
        key = f"{pod}/{container}" + (".previous" if previous else "")
        found = self.logs_of.get(key, f"log of {key}\n")
        if isinstance(found, Exception):
            raise found
        return found

    def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], timeout: float
    ) -> Exec:
        found = self.execs.get(pod, Exec("", "", 0))
        if isinstance(found, Exception):
            raise found
        return found


def pod(
    name: str, node: str, owner_kind: str, owner_uid: str, component: str, *, ready: bool = True
) -> dict[str, Any]:
    return obj(
        "Pod",
        name,
        owners=[owner(owner_kind, "x", owner_uid)],
        labels={names.LABEL_INSTANCE: "web", names.LABEL_COMPONENT: component},
        spec={"nodeName": node},
        status={
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {"name": component, "restartCount": 0 if ready else 2, "state": {"running": {}}}
            ],
        },
    )


def world() -> list[dict[str, Any]]:
    """An app with its children, pods, a restore, and objects that are not its own."""
    mine = [owner("StatefulWebApp", "web", UID)]
    child = {names.LABEL_INSTANCE: "web", names.LABEL_MANAGED_BY: names.MANAGER}
    return [
        app(),
        obj("StatefulSet", "web", uid="uid-sts", owners=mine, labels=child),
        obj("DaemonSet", "web-backup", uid="uid-ds", owners=mine, labels=child),
        obj(
            "CronJob",
            "web-datelog",
            uid="uid-cron",
            owners=mine,
            labels=child,
            spec={"schedule": "*/1 * * * *"},
            status={"lastScheduleTime": "2026-12-07T20:59:00Z"},
        ),
        obj(
            "PersistentVolumeClaim",
            "web-data",
            owners=mine,
            labels=child,
            spec={"volumeName": "shop.web-data"},
        ),
        obj("Service", "web", owners=mine, labels=child),
        pod("web-0", "worker1", "StatefulSet", "uid-sts", names.WEB),
        pod("web-1", "worker2", "StatefulSet", "uid-sts", names.WEB, ready=False),
        pod("web-backup-b2c4d", "real", "DaemonSet", "uid-ds", names.BACKUP),
        pod("web-backup-f6g7h", "worker1", "DaemonSet", "uid-ds", names.BACKUP),
        obj(
            "Job",
            "web-datelog-123",
            uid="uid-job",
            owners=[owner("CronJob", "web-datelog", "uid-cron")],
        ),
        pod("web-datelog-123-xyz", "worker3", "Job", "uid-job", names.DATELOG),
        obj(
            "StatefulWebAppRestore",
            "web-restore-abcde",
            uid="uid-restore",
            spec={"appName": "web", "archive": "latest"},
            status={"phase": "Succeeded", "archive": {"file": "a.tar.gz", "node": "real"}},
        ),
        # Not the app's: another app's restore, a pod labelled alike owned by nothing of it,
        # a StatefulSet of the same name owned by someone else.
        obj("StatefulWebAppRestore", "other", spec={"appName": "shop"}),
        pod("web-9", "worker1", "StatefulSet", "uid-impostor", names.WEB),
        obj("StatefulSet", "web-copy", owners=[owner("StatefulWebApp", "web", "uid-other")]),
        # Never in a report, though owned and labelled as a child.
        obj("Secret", "web-password", owners=mine, labels=child, data={"password": "c2VjcmV0"}),
        obj(
            "Event",
            "web-0.1",
            involvedObject={"kind": "Pod", "name": "web-0", "uid": "uid-pod-web-0"},
            reason="Started",
            lastTimestamp="2026-12-07T20:00:05Z",
        ),
        obj(
            "Event",
            "elsewhere.1",
            involvedObject={"kind": "Pod", "name": "x", "uid": "uid-else"},
            reason="Started",
        ),
    ]
