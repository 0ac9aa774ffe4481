"""StatefulWebApp helpers shared by the e2e modules: the sample, apply, and readiness waits."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.cluster import Cluster, wait_for

SAMPLE = Path(__file__).resolve().parents[2] / "crds/samples/web.yaml"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


def sample(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    body["spec"].update(copy.deepcopy(spec))
    return body


def get_app(cluster: Cluster, namespace: str, name: str = "web") -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", "swa", name, "-n", namespace, "-o", "json"))


def ready_condition(app: dict[str, Any]) -> dict[str, Any]:
    conditions = app.get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def wait_ready(cluster: Cluster, namespace: str, name: str = "web", timeout: float = 90) -> Any:
    def ready() -> Any:
        app = get_app(cluster, namespace, name)
        status = app.get("status", {})
        fresh = status.get("observedGeneration") == app["metadata"]["generation"]
        return fresh and ready_condition(app).get("status") == "True" and app

    return wait_for(ready, timeout, f"StatefulWebApp {namespace}/{name} to be Ready")


def wait_reason(cluster: Cluster, namespace: str, reason: str, name: str = "web") -> Any:
    return wait_for(
        lambda: (
            (c := ready_condition(get_app(cluster, namespace, name))).get("reason") == reason and c
        ),
        60,
        f"Ready condition with reason {reason}",
    )


def apply(cluster: Cluster, namespace: str, body: dict[str, Any]) -> str:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(body))


def child(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    plural = {"persistentvolume": "pv", "persistentvolumeclaim": "pvc"}.get(
        kind.lower(), kind.lower()
    )
    args = ["get", plural, name, "-o", "json", "--ignore-not-found", "--show-managed-fields"]
    if plural != "pv":
        args += ["-n", namespace]
    out = cluster.kubectl(*args)
    return json.loads(out) if out.strip() else None
