"""Per-app timelines from the API server's audit log: where a slow app's seconds went.

For each app of a fleet: when it was created, when the operator applied each child and wrote the
app's status, and when the cluster's own components (the controller manager, the scheduler,
kwok's kubelets) reported on the children and their pods, each as seconds since the app's
creation. The audit log is metadata only (``hack/cluster/audit-policy.yaml``): it tells who
wrote what when, not what a status said, so "the children ready" reads as the cluster's last
status write of each child before the app's Ready.

Pure: it reads lines and returns dicts; ``bench/fleet.py`` feeds it the run's audit files.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from typing import Any

from statefulwebapp.api import kinds
from statefulwebapp.api.parse import parse
from statefulwebapp.specs import registry
from statefulwebapp.specs.registry import render_all

WORKLOADS = ("statefulsets", "daemonsets")
"""The kinds whose pods are the app's: a pod's name is its workload's and a suffix."""

ACTORS = (
    ("kube-controller-manager", "controller-manager"),
    ("kube-scheduler", "scheduler"),
    ("kwok", "kwok"),
    ("kubelet", "kubelet"),
)


def actor(user_agent: str, operator_agents: tuple[str, ...]) -> str:
    """Who made a request, in one word."""
    if user_agent.startswith(operator_agents):
        return "operator"
    for needle, name in ACTORS:
        if needle in user_agent:
            return name
    return "client"


def owners(bodies: Mapping[str, dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str]]:
    """(resource, name) of every object of the apps, the apps included -> (app, kind)."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for app, body in bodies.items():
        found[(kinds.APP.plural, app)] = (app, kinds.APP.name)
        for key, manifest in render_all(parse(body)).items():
            if manifest is not None:
                child = registry.BY_KEY[key]
                found[(child.plural, manifest["metadata"]["name"])] = (app, child.name)
    return found


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def timelines(
    lines: Iterable[bytes],
    bodies: Mapping[str, dict[str, Any]],
    created: Mapping[str, float],
    operator_agents: tuple[str, ...],
) -> dict[str, list[dict[str, Any]]]:
    """Each app's requests, grouped by who did what to which of its objects.

    ``bodies``: each app's manifest (to name its children); ``created``: when each app's
    create was sent (epoch seconds). A group is ``{"t": first, "last_t": last, "count": n,
    "event": "operator patch StatefulSet/status"}``, times in seconds since the app's creation,
    in order of first appearance.
    """
    objects = owners(bodies)
    workloads = {
        name: app for (resource, name), (app, _) in objects.items() if resource in WORKLOADS
    }
    namespaces = {body["metadata"]["namespace"] for body in bodies.values()}
    groups: dict[str, dict[str, dict[str, Any]]] = {app: {} for app in bodies}
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("stage") != "ResponseComplete" or event.get("verb") in ("watch", "list"):
            continue
        ref = event.get("objectRef") or {}
        if ref.get("namespace") not in (*namespaces, None):
            continue
        resource, name = ref.get("resource", ""), ref.get("name", "")
        owner = objects.get((resource, name))
        if owner is None and resource == "pods":
            # A web pod (<StatefulSet>-<ordinal>) or an agent (<DaemonSet>-<suffix>).
            app = workloads.get(name.rsplit("-", 1)[0])
            owner = (app, "Pod") if app else None
        if owner is None:
            continue
        app, kind = owner
        what = kind + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        label = f"{actor(str(event.get('userAgent', '')), operator_agents)} {event['verb']} {what}"
        t = _seconds(event["stageTimestamp"]) - created[app]
        group = groups[app].setdefault(label, {"t": t, "last_t": t, "count": 0, "event": label})
        group["t"], group["last_t"] = min(group["t"], t), max(group["last_t"], t)
        group["count"] += 1
    return {
        app: [
            {**g, "t": round(g["t"], 3), "last_t": round(g["last_t"], 3)}
            for g in sorted(found.values(), key=lambda g: g["t"])
        ]
        for app, found in groups.items()
    }


def tail_timeline(
    latencies: Mapping[str, float], lines: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """The median app's timeline and the slowest 1 %'s (at least one app)."""
    ranked = sorted(latencies, key=lambda app: latencies[app])
    slowest = ranked[-max(1, len(ranked) // 100) :]
    median = ranked[len(ranked) // 2]

    def one(app: str) -> dict[str, Any]:
        return {"app": app, "ready_s": round(latencies[app], 3), "events": lines.get(app, [])}

    return {"median": one(median), "slowest_1pct": [one(app) for app in reversed(slowest)]}
