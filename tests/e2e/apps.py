"""StatefulWebApp helpers shared by the e2e modules: the sample, apply, and readiness waits."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pykube
import yaml

from statefulwebapp.api import kinds
from statefulwebapp.api.model import DEFAULT_BUSYBOX_IMAGE, DEFAULT_IMAGE
from statefulwebapp.api.parse import parse
from statefulwebapp.specs import drift, registry
from statefulwebapp.specs.registry import render_all
from tests.e2e.cluster import BACKUP_ROOT, Cluster, local_images, wait_for
from tests.e2e.fieldsets import owned_paths, rendering_fields

SAMPLE = Path(__file__).resolve().parents[2] / "crds/samples/web.yaml"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
REAL_NODE = "k8slab.io/real-node"
"""Label (and NoSchedule taint) of the local cluster's real node (hack/cluster/node.sh)."""


def scenario_nodes(cluster: Cluster) -> dict[str, bool]:
    """The reference scenario's nodes by name, each with whether it is a control-plane node.

    The real node the local cluster adds for running containers is not one of them: it is
    tainted, so no child of an app lands there unless a test sends it.
    """
    return {
        n.name: CONTROL_PLANE in n.labels
        for n in pykube.Node.objects(cluster.api)
        if REAL_NODE not in n.labels
    }


def sample(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    body["spec"].update(copy.deepcopy(spec))
    return body


def get_app(cluster: Cluster, namespace: str, name: str = "web") -> dict[str, Any]:
    app: dict[str, Any] = json.loads(
        cluster.kubectl("get", "swa", name, "-n", namespace, "-o", "json")
    )
    return app


def ready_condition(app: dict[str, Any]) -> dict[str, Any]:
    conditions = app.get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def explain(cluster: Cluster, namespace: str) -> None:
    """What a failed test saw: the app's condition, its pods and their events, in order."""
    print(json.dumps(ready_condition(get_app(cluster, namespace)), indent=2))
    print(cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False))
    print(
        cluster.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--sort-by=.lastTimestamp",
            "-o",
            "custom-columns=LAST:.lastTimestamp,COUNT:.count,REASON:.reason,"
            "OBJECT:.involvedObject.name,UID:.involvedObject.uid,MESSAGE:.message",
            check=False,
        )
    )


def wait_ready(cluster: Cluster, namespace: str, name: str = "web", timeout: float = 90) -> Any:
    def ready() -> Any:
        app = get_app(cluster, namespace, name)
        status = app.get("status", {})
        fresh = status.get("observedGeneration") == app["metadata"]["generation"]
        return fresh and ready_condition(app).get("status") == "True" and app

    return wait_for(ready, timeout, f"StatefulWebApp {namespace}/{name} to be Ready")


def wait_applied(cluster: Cluster, namespace: str, name: str = "web", timeout: float = 90) -> Any:
    """Wait until the app's status answers its current spec (``observedGeneration``), Ready or
    not: the operator has applied the edit and told what became of it."""

    def applied() -> Any:
        app = get_app(cluster, namespace, name)
        fresh = app.get("status", {}).get("observedGeneration") == app["metadata"]["generation"]
        return fresh and bool(ready_condition(app)) and app

    return wait_for(applied, timeout, f"StatefulWebApp {namespace}/{name} to answer its spec")


def wait_reason(
    cluster: Cluster, namespace: str, reason: str, name: str = "web", timeout: float = 60
) -> Any:
    """The app's Ready condition once its reason is ``reason``, waited for."""
    return wait_for(
        lambda: (
            (c := ready_condition(get_app(cluster, namespace, name))).get("reason") == reason and c
        ),
        timeout,
        f"Ready condition with reason {reason}",
    )


SAMPLE_SERVER, SAMPLE_PATH = "211.183.3.100", "/shared"
"""The sample's NFS export: a public address, never mounted from this machine."""


def runnable(cluster: Cluster, body: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    """``body`` as it can run on ``cluster``, in ``namespace``.

    One export serves one app, so the sample's export becomes a directory of its own for each
    app: ``<export>/<namespace>-<name>``. The local cluster's kwok nodes mount and pull nothing,
    so the sample's public export stays (its directory is never made). On kind every pod runs
    for real on a machine without a registry: the export is the cluster's test export (the
    directory made on its server's side), and the public images the ones built here (tagged,
    so the kubelet never forces a pull). Only what is still the sample's is replaced: a test
    that sets its own export or image keeps it.
    """
    if body.get("kind") != "StatefulWebApp":
        return body
    body = copy.deepcopy(body)
    spec = body.setdefault("spec", {})
    nfs = spec.get("storage", {}).get("nfs", {})
    own = f"{namespace}-{body['metadata']['name']}"
    if (nfs.get("server"), nfs.get("path")) == (SAMPLE_SERVER, SAMPLE_PATH):
        if cluster.nfs is None:
            spec["storage"]["nfs"] = {**nfs, "path": f"{SAMPLE_PATH}/{own}"}
        else:
            served = Path(cluster.nfs["path"]) / own
            served.mkdir(mode=0o777, exist_ok=True)
            served.chmod(0o777)  # Read by pods of any user.
            # Mount options a test sets are its own; the export's are what mounting it needs.
            options = nfs.get("mountOptions", cluster.nfs["mountOptions"])
            spec["storage"]["nfs"] = {
                **nfs,
                **cluster.nfs,
                "path": f"{cluster.nfs['path']}/{own}",
                "mountOptions": options,
            }
    if cluster.nfs is None:
        return body
    built = local_images()
    if spec.get("image", DEFAULT_IMAGE) == DEFAULT_IMAGE:
        spec["image"] = built["nginx"]
    # Only parts the body has: a test that removes one asks for its defaults.
    for part in ("backup", "dateLogger"):
        settings = spec.get(part)
        if (
            isinstance(settings, dict)
            and settings.get("image", DEFAULT_BUSYBOX_IMAGE) == DEFAULT_BUSYBOX_IMAGE
        ):
            spec[part] = {**settings, "image": built["busybox"]}
    return body


def apply(cluster: Cluster, namespace: str, body: dict[str, Any]) -> str:
    body = runnable(cluster, body, namespace)
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(body))


def child(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    """The child ``name`` of ``kind`` (a kind's name, or a child's key such as BackupVolume)."""
    known = registry.BY_KEY.get(kind) or kinds.BY_NAME.get(kind)
    plural = known.plural if known else kind.lower()
    args = ["get", plural, name, "-o", "json", "--ignore-not-found", "--show-managed-fields"]
    if known is None or known.namespaced:
        args += ["-n", namespace]
    out = cluster.kubectl(*args)
    return json.loads(out) if out.strip() else None


def children_match_the_rendering(
    cluster: Cluster, namespace: str
) -> dict[str, dict[str, Any] | None]:
    """Assert each child is exactly what the app renders now; return them by kind."""
    app = parse(get_app(cluster, namespace), backup_root=str(BACKUP_ROOT))
    found: dict[str, dict[str, Any] | None] = {}
    for kind, manifest in render_all(app).items():
        name = (manifest or {}).get("metadata", {}).get("name")
        live = child(cluster, kind, name, namespace) if name else None
        found[kind] = live
        if manifest is None:
            continue
        assert live is not None, f"{kind} {name} is missing"
        stamped = drift.stamp(manifest)
        assert drift.stamp_of(live) == drift.stamp_of(stamped), f"{kind} not applied from now"
        assert owned_paths(live) == rendering_fields(stamped), f"{kind}: owned fields differ"
    return found


def warnings(cluster: Cluster, namespace: str, reason: str) -> list[str]:
    out = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"type=Warning,reason={reason}",
        "-o",
        "jsonpath={range .items[*]}{.message}{'\\n'}{end}",
    )
    return [line for line in out.splitlines() if line]


def delete_namespace(cluster: Cluster, namespace: str) -> None:
    # Apps first, while the operator runs, so that it deletes their volumes.
    cluster.kubectl("delete", "swa", "--all", "-n", namespace, "--wait=true", "--timeout=60s")
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def dry_run(cluster: Cluster, body: dict[str, Any], namespace: str = "default") -> str:
    """What the API server answers to ``body``, without storing anything."""
    return cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump(runnable(cluster, body, namespace)),
        check=False,
    )
