"""What an app's pods and their nodes show: a rollout stuck at a failing pod, a node lost.

A StatefulSet and a DaemonSet count their pods; they say neither which pod fails, at which
revision, nor on which node. The pass lists the app's pods only when the counts and the
kubelet's reports say something is wrong (:func:`wanted`): a web pod's failure told lately, or a
node that is not Ready. A healthy fleet costs no request. Pure, as ``status.py`` that reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from statefulwebapp.api.model import AppSpec
from statefulwebapp.api.objects import Obj
from statefulwebapp.specs import names

REVISION_LABEL = "controller-revision-hash"
"""The label a StatefulSet puts on each pod: the ControllerRevision it was created from."""

NOT_WAITING = frozenset({"ContainerCreating", "PodInitializing"})
"""A container's waiting reasons that say it is on its way, not that it fails."""


@dataclass(frozen=True)
class Seen:
    """The app's pods as a pass listed them (:func:`view` of each), and the nodes not Ready."""

    pods: tuple[Obj, ...] = ()
    """The pods the app's StatefulSet and DaemonSet own (:func:`ours`)."""
    lost_nodes: tuple[Obj, ...] = ()
    """Every node whose Ready condition is not True (:func:`node_view` of each)."""
    stuck: tuple[Obj, ...] = ()
    """The web pods that fail (:func:`stuck_web_pods`), highest ordinal first."""
    replaced: tuple[str, ...] = ()
    """Stuck web pods this pass deleted (:func:`to_replace`)."""


def view(body: Mapping[str, Any]) -> Obj:
    """What the status reads of a pod: whose it is, its revision, node, readiness, trouble."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or ()}
    ready = conditions.get("Ready") or {}
    owner: Mapping[str, Any] = next(
        (r for r in meta.get("ownerReferences") or () if r.get("controller")), {}
    )
    return {
        "name": str(meta.get("name") or ""),
        "uid": str(meta.get("uid") or ""),
        "component": str((meta.get("labels") or {}).get(names.LABEL_COMPONENT) or ""),
        "owner": str(owner.get("uid") or ""),
        "revision": str((meta.get("labels") or {}).get(REVISION_LABEL) or ""),
        "node": str(spec.get("nodeName") or ""),
        "ready": ready.get("status") == "True",
        "deleting": bool(meta.get("deletionTimestamp")),
        "trouble": _trouble(status, conditions.get("PodScheduled") or {}),
    }


def _trouble(status: Mapping[str, Any], scheduled: Mapping[str, Any]) -> str:
    """What the pod's own status says is wrong: a container waiting in failure, unscheduled."""
    if scheduled.get("status") == "False":
        return _words(scheduled.get("reason"), scheduled.get("message"))
    for container in (
        *status.get("initContainerStatuses", ()),
        *status.get("containerStatuses", ()),
    ):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] not in NOT_WAITING:
            return _words(waiting["reason"], waiting.get("message"))
    return ""


def _words(reason: Any, message: Any, limit: int = 300) -> str:
    said = f"{reason}: {message}" if message else str(reason or "")
    said = " ".join(said.split())
    return said if len(said) <= limit else said[: limit - 3] + "..."


def node_view(body: Mapping[str, Any]) -> Obj:
    """What the status reads of a node: its Ready condition (status, reason, message, since)."""
    meta = body.get("metadata") or {}
    conditions = (body.get("status") or {}).get("conditions") or ()
    ready: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    return {
        "name": str(meta.get("name") or ""),
        "ready": str(ready.get("status") or "Unknown"),
        "reason": str(ready.get("reason") or ""),
        "message": _words("", ready.get("message"), 200).removeprefix(": "),
        "since": str(ready.get("lastTransitionTime") or ""),
    }


def wanted(
    app: AppSpec,
    *,
    web_ready: bool,
    web_failures: Sequence[Obj],
    lost_nodes: Sequence[Obj],
) -> bool:
    """Whether a pass must list the app's pods to say what is wrong.

    While a node is not Ready (any of the app's pods may be on it), or while the web pods are
    not all ready and the kubelet has lately told a failure of one (``web_failures``: its
    failed checks and back-offs, fresh). A restore stops the web pods on purpose.
    """
    if app.restoring:
        return False
    if lost_nodes:
        return True
    return not web_ready and any(
        names.serving_web_pod(app, str(f.get("pod") or "")) for f in web_failures
    )


def ours(pods: Sequence[Obj], workloads: Mapping[str, str]) -> list[Obj]:
    """The pods one of the app's workloads owns (``workloads``: component -> its uid).

    The list is by label, and labels are anyone's to write: a pod counts only when the app's
    StatefulSet or DaemonSet is its controller.
    """
    return [p for p in pods if p["owner"] and workloads.get(p["component"]) == p["owner"]]


def on_lost_nodes(app: AppSpec, pods: Sequence[Obj], lost_nodes: Sequence[Obj]) -> str:
    """Which nodes of the app's pods are not Ready, since when, and which pods; "" if none."""
    lost = {node["name"]: node for node in lost_nodes}
    by_node: dict[str, list[Obj]] = {}
    for pod in pods:
        if pod["node"] in lost and not pod["deleting"]:
            by_node.setdefault(pod["node"], []).append(pod)
    if not by_node:
        return ""
    said = []
    for name in sorted(by_node):
        node = lost[name]
        web = sorted(p["name"] for p in by_node[name] if p["component"] == names.WEB)
        agents = sorted(p["name"] for p in by_node[name] if p["component"] == names.BACKUP)
        on_it = [
            *([f"web pod{'s' if len(web) > 1 else ''} {', '.join(web)}"] if web else []),
            *([f"backup agent {', '.join(agents)}"] if agents else []),
        ]
        said.append(f"node {name} is {_condition(node)}: {' and '.join(on_it)} on it")
    stranded = sorted(
        p["name"] for ps in by_node.values() for p in ps if p["component"] == names.WEB
    )
    return (
        "; ".join(said)
        + "; no archive is made there meanwhile"
        + (
            f". A StatefulSet never runs two pods of one name, so {', '.join(stranded)} "
            f"{'comes' if len(stranded) == 1 else 'come'} back when the node does"
            if stranded
            else ""
        )
        + "; if the node is gone for good, delete it (kubectl delete node "
        + f"{sorted(by_node)[0]}) and its pods are made again elsewhere"
    )


def _condition(node: Obj) -> str:
    since = f" since {node['since']}" if node.get("since") else ""
    if node["ready"] == "Unknown":
        what = "unreachable (its kubelet stopped posting status)"
    else:
        what = "NotReady" + (f" ({node['reason']})" if node.get("reason") else "")
    message = node.get("message")
    return what + since + (f": {message}" if message and node["ready"] != "Unknown" else "")


def stuck_web_pods(app: AppSpec, pods: Sequence[Obj], checks: Mapping[str, str]) -> list[Obj]:
    """The app's web pods that fail (not ready, with the kubelet's words), highest first.

    ``checks``: per pod, the kubelet's last report of it (a failed check, a back-off). Its own
    status (a container waiting in failure, unscheduled) says more and comes first.
    """
    stuck = []
    for pod in pods:
        if pod["component"] != names.WEB or pod["ready"] or pod["deleting"]:
            continue
        if not names.serving_web_pod(app, pod["name"]):
            continue
        why = pod["trouble"] or checks.get(pod["name"], "")
        if why:
            stuck.append({**pod, "why": why})
    return sorted(stuck, key=lambda p: -names.ordinal(p["name"]))


def to_replace(app: AppSpec, sts: Obj | None, stuck: Sequence[Obj]) -> list[Obj]:
    """The stuck web pods the operator deletes: of a revision the StatefulSet has left.

    The StatefulSet waits for a failing pod before it touches any other, its own replacement
    of that pod included (Kubernetes' forced rollback: the user deletes it by hand). Once the
    spec has moved on, deleting it is what that user would do: the StatefulSet makes it anew
    at its update revision. Only with ``rollout.replaceStuckPods``, only once the StatefulSet's
    controller has seen its latest spec, and never a pod of the revision being rolled out:
    that one fails with today's spec, and a new one would fail the same.
    """
    if not app.rollout.replace_stuck_pods or sts is None:
        return []
    status = sts.get("status") or {}
    generation = (sts.get("metadata") or {}).get("generation", 0)
    update = status.get("updateRevision")
    if not update or status.get("observedGeneration", 0) < generation:
        return []
    return [pod for pod in stuck if pod["revision"] and pod["revision"] != update]


def rollout_stuck(
    app: AppSpec, sts: Obj | None, stuck: Sequence[Obj], replaced: Sequence[str] = ()
) -> str:
    """Why the web pods' rollout does not go on; "" when no rollout waits on a failing pod.

    It names the pod, its revision, the kubelet's words, and what to do. ``replaced``: the
    stuck pods this pass deleted.
    """
    if not stuck or sts is None:
        return ""
    status = sts.get("status") or {}
    update = str(status.get("updateRevision") or "")
    current = str(status.get("currentRevision") or "")
    left = [pod for pod in stuck if pod["revision"] and pod["revision"] != update]
    if left:
        pod = left[0]
        where = f" on node {pod['node']}" if pod["node"] else ""
        head = (
            f"web pod {pod['name']} of revision {pod['revision']}{where} fails ({pod['why']}) "
            f"and the spec has moved on to revision {update}: the StatefulSet waits for it for "
            "ever"
        )
        if pod["name"] in replaced:
            return (
                head + f"; the operator deleted it, and the StatefulSet makes it anew at {update}"
            )
        if app.rollout.replace_stuck_pods:
            return head + "; the operator deletes it once the StatefulSet has taken the new spec"
        return (
            head + f"; delete it (kubectl delete pod -n {app.namespace} {pod['name']}) and it is "
            f"made anew at {update} (spec.rollout.replaceStuckPods is false)"
        )
    if update == current:
        return ""
    pod = stuck[0]
    where = f" on node {pod['node']}" if pod["node"] else ""
    then = (
        f"the operator then replaces {pod['name']}"
        if app.rollout.replace_stuck_pods
        else f"then delete {pod['name']} by hand (spec.rollout.replaceStuckPods is false)"
    )
    return (
        f"the rollout to revision {update} stopped at web pod {pod['name']}{where}: "
        f"{pod['why']}; the StatefulSet waits for it for ever: fix the spec (or undo the "
        f"change) and apply it; {then}"
    )
