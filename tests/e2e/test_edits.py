"""Every edit a user can make to a live app: set, change, remove, turn off, and the children
afterwards.

One app takes the edits in sequence, each applied with ``kubectl apply`` of the whole object
(as users do; a field left out of the file is removed from the app) or a JSON patch. After
each one the app must be Ready at its new generation, and that must be true of the children:
each was applied from the current rendering (its digest), the fields the operator owns on it
are exactly the fields the rendering has (nothing dropped is left behind), and each edit's own
effect is checked on the live child.

Runs on the local cluster only: the proof is in the children the API server stores, and
kwok's pods run whatever a step asks (a restricted pod security context, port 8080), so every
step must become Ready. Drift repaired on real pods is test_operator's, on kind.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pykube
import pytest

from statefulwebapp.api.model import (
    DEFAULT_BUSYBOX_IMAGE,
    DEFAULT_WRITABLE_PATHS,
    backup_resources,
    date_logger_resources,
    web_resources,
)
from statefulwebapp.specs import names
from tests.e2e.apps import (
    CONTROL_PLANE,
    apply,
    child,
    children_match_the_rendering,
    delete_namespace,
    get_app,
    ready_condition,
    sample,
    scenario_nodes,
    wait_ready,
    wait_reason,
    warnings,
)
from tests.e2e.cluster import Cluster, Operator, make_namespace, wait_for

pytestmark = pytest.mark.local_cluster(
    reason="the edits reach the children as the API server stores them; kwok's pods run any "
    "image, so every step can become Ready (drift on real pods: test_operator on kind)"
)

Obj = dict[str, Any]
Check = Callable[[Cluster, str, dict[str, Obj | None]], object]


def container(obj: Obj | None) -> Obj:
    assert obj is not None
    pod = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else None
    pod = pod or obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    first: Obj = pod["containers"][0]
    return first


def pod_spec(obj: Obj | None) -> Obj:
    assert obj is not None
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def backup_nodes(cluster: Cluster, namespace: str) -> list[str]:
    selector = {names.LABEL_INSTANCE: "web", names.LABEL_COMPONENT: names.BACKUP}
    pods = pykube.Pod.objects(cluster.api, namespace=namespace).filter(selector=selector)
    return sorted(p.obj["spec"].get("nodeName", "") for p in pods)


def web_nodes(cluster: Cluster, namespace: str) -> list[str]:
    """The distinct nodes of the web pods, once every pod of the current revision is placed."""
    selector = {names.LABEL_INSTANCE: "web", names.LABEL_COMPONENT: names.WEB}

    def placed() -> list[str] | None:
        pods = list(pykube.Pod.objects(cluster.api, namespace=namespace).filter(selector=selector))
        if any(p.obj["metadata"].get("deletionTimestamp") for p in pods):
            return None
        return sorted({p.obj["spec"].get("nodeName", "") for p in pods})

    found: list[str] = wait_for(placed, 60, "the web pods of the new revision to be placed")
    return found


def pods_of(cluster: Cluster, namespace: str, selector: str) -> list[str]:
    return sorted(
        p.name
        for p in pykube.Pod.objects(cluster.api, namespace=namespace).filter(selector=selector)
    )


def covers_every_pod(cluster: Cluster, namespace: str, policy: Obj | None) -> bool:
    """The live NetworkPolicy's selector, as the API server reads it, selects exactly the app's
    pods: its web pods, its agents and its date logger's (retried: a new Job pod may come
    between the two lists). True once it holds, as :func:`_eq`."""
    assert policy is not None
    selector = policy["spec"]["podSelector"]
    terms = [f"{key}={value}" for key, value in selector.get("matchLabels", {}).items()]
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression  # The only one the operator renders.
        terms.append(f"{expression['key']} in ({','.join(expression['values'])})")

    def same() -> list[str] | None:
        covered = pods_of(cluster, namespace, ",".join(terms))
        every = pods_of(cluster, namespace, f"{names.LABEL_INSTANCE}=web")
        return covered if covered == every else None

    covered = wait_for(same, 30, "the policy to select every pod of the app and no other")
    assert "web-0" in covered, covered
    assert any(pod.startswith("web-backup-") for pod in covered), covered
    return True


def job_container(obj: Obj | None) -> Obj:
    """The date logger's container, as its CronJob's Job template has it."""
    assert obj is not None
    first: Obj = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    return first


def writable(obj: Obj | None) -> list[str]:
    """The web container's mounts besides the shared volume: its writable paths, in order."""
    return [m["mountPath"] for m in container(obj)["volumeMounts"][1:]]


def volume(children: dict[str, Obj | None]) -> Obj:
    pv = children["PersistentVolume"]
    assert pv is not None
    return pv


def nodes(cluster: Cluster, control_plane: bool) -> list[str]:
    return sorted(n for n, cp in scenario_nodes(cluster).items() if cp is control_plane)


MANAGER_TAINTS = [
    {"key": CONTROL_PLANE, "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"},
]
"""Tolerations of both taints of the scenario's control-plane node."""

# Each step: (what the user does, the spec edit, what the children must show).
# An edit is a function of the current spec returning the new one; None removes a key.
Edit = Callable[[Obj], Obj]


def put(path: str, value: Any) -> Edit:
    def edit(spec: Obj) -> Obj:
        new = copy.deepcopy(spec)
        *parents, leaf = path.split(".")
        cur = new
        for key in parents:
            cur = cur.setdefault(key, {})
        if value is None:
            cur.pop(leaf, None)
        else:
            cur[leaf] = value
        return new

    return edit


def both(*edits: Edit) -> Edit:
    def edit(spec: Obj) -> Obj:
        for one in edits:
            spec = one(spec)
        return spec

    return edit


STEPS: list[tuple[str, Edit | list[Obj], Check]] = [
    (
        "set resources (0.5 is stored as 500m)",
        put("resources", {"limits": {"cpu": "0.5", "memory": "128Mi"}}),
        lambda c, ns, ch: _eq(
            container(ch["StatefulSet"])["resources"],
            {"limits": {"cpu": "500m", "memory": "128Mi"}},
        ),
    ),
    (
        "change resources (limits gone, a request instead)",
        put("resources", {"requests": {"cpu": "100m"}}),
        lambda c, ns, ch: _eq(
            container(ch["StatefulSet"])["resources"], {"requests": {"cpu": "100m"}}
        ),
    ),
    (
        # A merge patch (what kubectl apply sends) of {} changes nothing: a JSON patch.
        "empty resources (none at all)",
        [{"op": "replace", "path": "/spec/resources", "value": {}}],
        lambda c, ns, ch: _eq(container(ch["StatefulSet"]).get("resources"), {}),
    ),
    (
        "remove resources (the defaults back)",
        put("resources", None),
        lambda c, ns, ch: _eq(container(ch["StatefulSet"])["resources"], web_resources().to_k8s()),
    ),
    (
        "set the images' pull policies",
        both(
            put("imagePullPolicy", "Always"),
            put("backup.imagePullPolicy", "Never"),
            put("dateLogger.imagePullPolicy", "Always"),
        ),
        lambda c, ns, ch: (
            _eq(container(ch["StatefulSet"])["imagePullPolicy"], "Always"),
            _eq(container(ch["DaemonSet"])["imagePullPolicy"], "Never"),
            _eq(job_container(ch["CronJob"])["imagePullPolicy"], "Always"),
        ),
    ),
    (
        "change the web one",
        put("imagePullPolicy", "Never"),
        lambda c, ns, ch: _eq(container(ch["StatefulSet"])["imagePullPolicy"], "Never"),
    ),
    (
        "remove them (IfNotPresent back)",
        both(put("imagePullPolicy", None), put("backup", None), put("dateLogger", None)),
        lambda c, ns, ch: (
            _eq(container(ch["StatefulSet"])["imagePullPolicy"], "IfNotPresent"),
            _eq(container(ch["DaemonSet"])["imagePullPolicy"], "IfNotPresent"),
            _eq(job_container(ch["CronJob"])["imagePullPolicy"], "IfNotPresent"),
        ),
    ),
    (
        "set writable paths of the web container's own",
        put("writablePaths", ["/tmp", "/srv/cache"]),
        lambda c, ns, ch: (
            _eq(writable(ch["StatefulSet"]), ["/tmp", "/srv/cache"]),
            _eq(container(ch["StatefulSet"])["securityContext"], {"readOnlyRootFilesystem": True}),
        ),
    ),
    (
        "change them to none (the root read-only, only the shared volume writable)",
        put("writablePaths", []),
        lambda c, ns, ch: (
            _eq(writable(ch["StatefulSet"]), []),
            _eq([v["name"] for v in pod_spec(ch["StatefulSet"])["volumes"]], ["data"]),
        ),
    ),
    (
        "turn the read-only root off",
        both(put("writablePaths", None), put("readOnlyRootFilesystem", False)),
        lambda c, ns, ch: (
            _eq(container(ch["StatefulSet"]).get("securityContext"), None),
            _eq(writable(ch["StatefulSet"]), []),
        ),
    ),
    (
        "remove it (read-only, the default writable paths)",
        put("readOnlyRootFilesystem", None),
        lambda c, ns, ch: (
            _eq(container(ch["StatefulSet"])["securityContext"], {"readOnlyRootFilesystem": True}),
            _eq(writable(ch["StatefulSet"]), list(DEFAULT_WRITABLE_PATHS)),
        ),
    ),
    (
        "turn off the control-plane toleration",
        put("backup.tolerateControlPlane", False),
        lambda c, ns, ch: (
            _eq(pod_spec(ch["DaemonSet"]).get("tolerations"), None),
            _eq(backup_nodes(c, ns), nodes(c, control_plane=False)),
        ),
    ),
    (
        "turn it back on",
        put("backup.tolerateControlPlane", True),
        lambda c, ns, ch: (
            _eq(len(pod_spec(ch["DaemonSet"])["tolerations"]), 2),
            _eq(backup_nodes(c, ns), sorted(nodes(c, True) + nodes(c, False))),
        ),
    ),
    (
        "set podSecurity restricted with a runAsUser",
        both(put("podSecurity", "restricted"), put("runAsUser", 1000)),
        lambda c, ns, ch: (
            _eq(pod_spec(ch["StatefulSet"])["securityContext"]["runAsUser"], 1000),
            _eq(pod_spec(ch["DaemonSet"])["volumes"][1], {"name": "backups", "emptyDir": {}}),
        ),
    ),
    (
        "remove runAsUser (the default user, 101)",
        put("runAsUser", None),
        lambda c, ns, ch: _eq(pod_spec(ch["StatefulSet"])["securityContext"]["runAsUser"], 101),
    ),
    (
        "podSecurity back to default",
        put("podSecurity", "default"),
        lambda c, ns, ch: (
            _eq(pod_spec(ch["StatefulSet"]).get("securityContext"), {}),
            _eq(container(ch["StatefulSet"])["securityContext"], {"readOnlyRootFilesystem": True}),
            _eq("hostPath" in pod_spec(ch["DaemonSet"])["volumes"][1], True),
        ),
    ),
    (
        "turn off backups",
        put("backup.enabled", False),
        lambda c, ns, ch: (
            _eq(ch["DaemonSet"], None),
            _eq(get_app(c, ns)["status"]["backup"], "disabled"),
        ),
    ),
    (
        "turn backups on with other settings",
        put("backup", {"keep": 5, "intervalSeconds": 60}),
        # The app's own directory under the admin's root, whatever the spec.
        lambda c, ns, ch: (
            _eq(
                pod_spec(ch["DaemonSet"])["volumes"][1]["hostPath"]["path"].endswith(f"/{ns}/web"),
                True,
            ),
            _eq(
                {e["name"]: e.get("value") for e in container(ch["DaemonSet"])["env"]}[
                    "BACKUP_KEEP"
                ],
                "5",
            ),
        ),
    ),
    (
        # A merge patch (what kubectl apply sends) of {} changes nothing, so an empty block
        # needs a JSON patch: docs/api.md says so.
        "turn off the backup container's resources (an empty block)",
        [{"op": "replace", "path": "/spec/backup/resources", "value": {}}],
        lambda c, ns, ch: _eq(container(ch["DaemonSet"]).get("resources"), {}),
    ),
    (
        "remove backup settings (defaults back)",
        put("backup", None),
        lambda c, ns, ch: _eq(container(ch["DaemonSet"])["resources"], backup_resources().to_k8s()),
    ),
    (
        "suspend the date logger and change its schedule",
        put("dateLogger", {"suspend": True, "schedule": "0 3 * * 1-5"}),
        lambda c, ns, ch: (
            _eq(ch["CronJob"]["spec"]["suspend"], True),  # type: ignore[index]
            _eq(ch["CronJob"]["spec"]["schedule"], "0 3 * * 1-5"),  # type: ignore[index]
            _eq(get_app(c, ns)["status"]["dateLog"], "suspended"),
        ),
    ),
    (
        "turn off the date logger",
        put("dateLogger.enabled", False),
        lambda c, ns, ch: (
            _eq(ch["CronJob"], None),
            _eq(get_app(c, ns)["status"]["dateLog"], "disabled"),
        ),
    ),
    (
        "remove the date logger settings (on, every minute, not suspended)",
        put("dateLogger", None),
        lambda c, ns, ch: (
            _eq(ch["CronJob"]["spec"]["suspend"], False),  # type: ignore[index]
            _eq(ch["CronJob"]["spec"]["schedule"], "*/1 * * * *"),  # type: ignore[index]
            # Running again: no run has finished since it came back, or one has and succeeded.
            _eq(get_app(c, ns)["status"]["dateLog"], "ok"),
        ),
    ),
    (
        "set the date logger's deadline and resources, and a writable root",
        put(
            "dateLogger",
            {
                "startingDeadlineSeconds": 60,
                "resources": {"limits": {"memory": "64Mi"}},
                "readOnlyRootFilesystem": False,
            },
        ),
        lambda c, ns, ch: (
            _eq(ch["CronJob"]["spec"]["startingDeadlineSeconds"], 60),  # type: ignore[index]
            _eq(job_container(ch["CronJob"])["resources"], {"limits": {"memory": "64Mi"}}),
            _eq("readOnlyRootFilesystem" in job_container(ch["CronJob"])["securityContext"], False),
        ),
    ),
    (
        "change them: no deadline (0), other resources",
        put(
            "dateLogger",
            {"startingDeadlineSeconds": 0, "resources": {"requests": {"cpu": "20m"}}},
        ),
        lambda c, ns, ch: (
            _eq(ch["CronJob"]["spec"].get("startingDeadlineSeconds"), None),  # type: ignore[index]
            _eq(job_container(ch["CronJob"])["resources"], {"requests": {"cpu": "20m"}}),
            _eq(job_container(ch["CronJob"])["securityContext"]["readOnlyRootFilesystem"], True),
        ),
    ),
    (
        "empty the date logger's resources (a JSON patch of {})",
        [{"op": "replace", "path": "/spec/dateLogger/resources", "value": {}}],
        lambda c, ns, ch: _eq(job_container(ch["CronJob"]).get("resources"), {}),
    ),
    (
        "remove the date logger settings again (300 s, the default resources)",
        put("dateLogger", None),
        lambda c, ns, ch: (
            _eq(ch["CronJob"]["spec"]["startingDeadlineSeconds"], 300),  # type: ignore[index]
            _eq(job_container(ch["CronJob"])["resources"], date_logger_resources().to_k8s()),
        ),
    ),
    (
        "set the agents' and the date logger's images and history limits",
        both(
            put("backup", {"image": "busybox:1.37"}),
            put(
                "dateLogger",
                {
                    "image": "busybox:1.37",
                    "successfulJobsHistoryLimit": 1,
                    "failedJobsHistoryLimit": 0,
                },
            ),
        ),
        lambda c, ns, ch: (
            _eq(container(ch["DaemonSet"])["image"], "busybox:1.37"),
            _eq(container(ch["CronJob"])["image"], "busybox:1.37"),
            _eq(ch["CronJob"]["spec"]["successfulJobsHistoryLimit"], 1),  # type: ignore[index]
            _eq(ch["CronJob"]["spec"]["failedJobsHistoryLimit"], 0),  # type: ignore[index]
        ),
    ),
    (
        "remove them (defaults back)",
        both(put("backup", None), put("dateLogger", None)),
        lambda c, ns, ch: (
            _eq(container(ch["DaemonSet"])["image"], DEFAULT_BUSYBOX_IMAGE),
            _eq(container(ch["CronJob"])["image"], DEFAULT_BUSYBOX_IMAGE),
            _eq(ch["CronJob"]["spec"]["successfulJobsHistoryLimit"], 3),  # type: ignore[index]
            _eq(ch["CronJob"]["spec"]["failedJobsHistoryLimit"], 1),  # type: ignore[index]
        ),
    ),
    (
        "check readiness with an HTTP GET and turn liveness on",
        put(
            "probes",
            {
                "readiness": {"httpGet": {"path": "/"}, "periodSeconds": 5},
                "liveness": {"enabled": True},
            },
        ),
        lambda c, ns, ch: (
            _eq(container(ch["StatefulSet"])["readinessProbe"]["httpGet"]["path"], "/"),
            _eq(container(ch["StatefulSet"])["readinessProbe"]["periodSeconds"], 5),
            _eq(container(ch["StatefulSet"])["livenessProbe"]["tcpSocket"], {"port": "http"}),
        ),
    ),
    (
        "change them (a threshold; liveness off again)",
        put("probes", {"readiness": {"httpGet": {"path": "/"}, "failureThreshold": 5}}),
        lambda c, ns, ch: (
            _eq(container(ch["StatefulSet"])["readinessProbe"]["failureThreshold"], 5),
            _eq(container(ch["StatefulSet"])["readinessProbe"]["periodSeconds"], 10),
            _eq(container(ch["StatefulSet"]).get("livenessProbe"), None),
        ),
    ),
    (
        "turn the readiness check off",
        put("probes", {"readiness": {"enabled": False}}),
        lambda c, ns, ch: _eq(container(ch["StatefulSet"]).get("readinessProbe"), None),
    ),
    (
        "remove the probes (the TCP readiness check back)",
        put("probes", None),
        lambda c, ns, ch: _eq(
            container(ch["StatefulSet"])["readinessProbe"]["tcpSocket"], {"port": "http"}
        ),
    ),
    (
        "spread the web pods as a rule (DoNotSchedule): one per worker",
        put("topologySpread", {"whenUnsatisfiable": "DoNotSchedule"}),
        lambda c, ns, ch: (
            _eq(
                pod_spec(ch["StatefulSet"])["topologySpreadConstraints"][0]["whenUnsatisfiable"],
                "DoNotSchedule",
            ),
            _eq(web_nodes(c, ns), nodes(c, control_plane=False)),
        ),
    ),
    (
        "allow a skew of 2",
        put("topologySpread", {"whenUnsatisfiable": "DoNotSchedule", "maxSkew": 2}),
        lambda c, ns, ch: _eq(
            pod_spec(ch["StatefulSet"])["topologySpreadConstraints"][0]["maxSkew"], 2
        ),
    ),
    (
        "turn the spread off",
        put("topologySpread", {"enabled": False}),
        lambda c, ns, ch: _eq(pod_spec(ch["StatefulSet"]).get("topologySpreadConstraints"), None),
    ),
    (
        "remove it (a preference with skew 1 again)",
        put("topologySpread", None),
        lambda c, ns, ch: _eq(
            pod_spec(ch["StatefulSet"])["topologySpreadConstraints"][0],
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {
                    "matchLabels": {names.LABEL_INSTANCE: "web", names.LABEL_COMPONENT: names.WEB}
                },
            },
        ),
    ),
    (
        "set NFS mount options",
        put("storage.nfs.mountOptions", ["nfsvers=4.1", "hard"]),
        lambda c, ns, ch: _eq(volume(ch)["spec"]["mountOptions"], ["nfsvers=4.1", "hard"]),
    ),
    (
        "change them (same volume, same claim: the PV's mountOptions may change)",
        put("storage.nfs.mountOptions", ["nfsvers=3", "soft", "timeo=50"]),
        lambda c, ns, ch: (
            _eq(volume(ch)["spec"]["mountOptions"], ["nfsvers=3", "soft", "timeo=50"]),
            _eq(ch["PersistentVolumeClaim"]["status"]["phase"], "Bound"),  # type: ignore[index]
        ),
    ),
    (
        "remove them",
        put("storage.nfs.mountOptions", None),
        lambda c, ns, ch: _eq(volume(ch)["spec"].get("mountOptions"), None),
    ),
    (
        "place the web pods on the control plane (nodeSelector and a toleration)",
        both(
            put("nodeSelector", {"kubernetes.io/hostname": "manager"}),
            put("tolerations", MANAGER_TAINTS),
        ),
        lambda c, ns, ch: (
            _eq(pod_spec(ch["StatefulSet"])["tolerations"], MANAGER_TAINTS),
            _eq(web_nodes(c, ns), ["manager"]),
        ),
    ),
    (
        "move them to one worker (toleration removed)",
        both(put("nodeSelector", {"kubernetes.io/hostname": "worker2"}), put("tolerations", None)),
        lambda c, ns, ch: (
            _eq(pod_spec(ch["StatefulSet"]).get("tolerations"), None),
            _eq(web_nodes(c, ns), ["worker2"]),
        ),
    ),
    (
        "remove the placement",
        put("nodeSelector", None),
        lambda c, ns, ch: _eq(pod_spec(ch["StatefulSet"]).get("nodeSelector"), None),
    ),
    (
        "let the backup agents tolerate one more taint",
        put("backup.tolerations", [{"key": "example.com/maintenance", "operator": "Exists"}]),
        lambda c, ns, ch: _eq(
            pod_spec(ch["DaemonSet"])["tolerations"][2:],
            [{"key": "example.com/maintenance", "operator": "Exists"}],
        ),
    ),
    (
        "change it (NoExecute, for 60 s)",
        put(
            "backup.tolerations",
            [
                {
                    "key": "example.com/maintenance",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 60,
                }
            ],
        ),
        lambda c, ns, ch: _eq(pod_spec(ch["DaemonSet"])["tolerations"][2]["tolerationSeconds"], 60),
    ),
    (
        "remove it",
        put("backup.tolerations", None),
        lambda c, ns, ch: _eq(len(pod_spec(ch["DaemonSet"])["tolerations"]), 2),
    ),
    (
        "let a drain take a quarter of the web pods (maxUnavailable 25%)",
        put("disruptionBudget", {"maxUnavailable": "25%"}),
        lambda c, ns, ch: _eq(
            ch["PodDisruptionBudget"]["spec"]["maxUnavailable"],  # type: ignore[index]
            "25%",
        ),
    ),
    (
        "turn the disruption budget off",
        put("disruptionBudget", {"enabled": False}),
        lambda c, ns, ch: _eq(ch["PodDisruptionBudget"], None),
    ),
    (
        "remove it (on, one at a time)",
        put("disruptionBudget", None),
        lambda c, ns, ch: (
            _eq(ch["PodDisruptionBudget"]["spec"]["maxUnavailable"], 1),  # type: ignore[index]
            # The disruption controller counts the web pods the budget covers.
            _eq(
                wait_for(
                    lambda: child(c, "PodDisruptionBudget", "web", ns)["status"].get(  # type: ignore[index]
                        "expectedPods"
                    ),
                    30,
                    "the budget's status",
                ),
                3,
            ),
        ),
    ),
    (
        "scale to one replica: no budget (it would block every drain)",
        put("replicas", 1),
        lambda c, ns, ch: _eq(ch["PodDisruptionBudget"], None),
    ),
    (
        "change replicas, image, port and mount path",
        both(
            put("replicas", 2),
            put("image", "nginx:1.27"),
            put("port", 8080),
            put("storage.mountPath", "/srv/www"),
        ),
        lambda c, ns, ch: (
            _eq(ch["StatefulSet"]["spec"]["replicas"], 2),  # type: ignore[index]
            _eq(ch["PodDisruptionBudget"]["spec"]["maxUnavailable"], 1),  # type: ignore[index]
            _eq(container(ch["StatefulSet"])["image"], "nginx:1.27"),
            _eq(container(ch["StatefulSet"])["volumeMounts"][0]["mountPath"], "/srv/www"),
            _eq(ch["Service"]["spec"]["ports"][0]["port"], 8080),  # type: ignore[index]
        ),
    ),
    (
        "turn the network policy off",
        put("networkPolicy", {"enabled": False}),
        lambda c, ns, ch: _eq(ch["NetworkPolicy"], None),
    ),
    (
        "remove it (on: the web port by its name, so 8080 now, over every pod of the app)",
        put("networkPolicy", None),
        lambda c, ns, ch: (
            _eq(
                ch["NetworkPolicy"]["spec"]["ingress"],  # type: ignore[index]
                [{"ports": [{"protocol": "TCP", "port": "http"}]}],
            ),
            _eq(
                [(p["name"], p["containerPort"]) for p in container(ch["StatefulSet"])["ports"]],
                [("http", 8080)],
            ),
            covers_every_pod(c, ns, ch["NetworkPolicy"]),
        ),
    ),
]


def _eq(got: Any, want: Any) -> bool:
    # True once it holds: a step's check runs several in one lambda, as a tuple of their values.
    assert got == want, f"got {got!r}, want {want!r}"
    return True


@pytest.fixture(scope="module")
def live_app(cluster: Cluster, operator: Operator) -> Iterator[tuple[str, Obj]]:
    namespace = make_namespace(cluster, "edit")
    body = sample()
    apply(cluster, namespace, body)
    wait_ready(cluster, namespace)
    yield namespace, body
    delete_namespace(cluster, namespace)


def settled(cluster: Cluster, namespace: str, timeout: float = 90) -> Any:
    """The app Ready at its current generation: every step here must get there (kwok's pods
    run whatever they are given), and a step that does not is a failure, never settled."""
    return wait_ready(cluster, namespace, timeout=timeout)


def test_each_edit_reaches_the_children(cluster: Cluster, live_app: tuple[str, Obj]) -> None:
    namespace, body = live_app
    children_match_the_rendering(cluster, namespace)
    for what, edit, check in STEPS:
        if isinstance(edit, list):
            patch = json.dumps(edit)
            cluster.kubectl("patch", "swa", "web", "-n", namespace, "--type=json", "-p", patch)
            body["spec"] = get_app(cluster, namespace)["spec"]
        else:
            body["spec"] = edit(body["spec"])
            apply(cluster, namespace, body)
        try:
            settled(cluster, namespace, timeout=120)
            check(cluster, namespace, children_match_the_rendering(cluster, namespace))
        except (AssertionError, pytest.fail.Exception) as err:
            status = get_app(cluster, namespace).get("status")
            raise AssertionError(f"after '{what}': {err}; the app's status: {status}") from err


def test_json_patch_removal_reaches_the_children(
    cluster: Cluster, live_app: tuple[str, Obj]
) -> None:
    namespace, body = live_app
    body["spec"]["resources"] = {"limits": {"memory": "64Mi"}}
    apply(cluster, namespace, body)
    settled(cluster, namespace)
    assert container(child(cluster, "StatefulSet", "web", namespace))["resources"]
    patch = [{"op": "remove", "path": "/spec/resources"}]
    cluster.kubectl("patch", "swa", "web", "-n", namespace, "--type=json", "-p", json.dumps(patch))
    del body["spec"]["resources"]
    settled(cluster, namespace)
    found = children_match_the_rendering(cluster, namespace)
    # Removed is not emptied: the API server gives the app its default back.
    assert container(found["StatefulSet"])["resources"] == web_resources().to_k8s()


# -- refusals -------------------------------------------------------------------------------


def test_a_refused_child_freezes_no_other(cluster: Cluster, fresh_ns: str) -> None:
    # A quota refuses any DaemonSet here: an admission refusal (403), not RBAC.
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-daemonsets"},
        "spec": {"hard": {"count/daemonsets.apps": "0"}},
    }
    apply(cluster, fresh_ns, quota)
    wait_for(
        lambda: (
            "hard"
            in json.loads(
                cluster.kubectl("get", "quota", "no-daemonsets", "-n", fresh_ns, "-o", "json")
            ).get("status", {})
        ),
        30,
        "the quota to be counted",
    )
    apply(cluster, fresh_ns, sample())
    condition = wait_reason(cluster, fresh_ns, "Refused")
    assert condition["message"].startswith(
        f"DaemonSet {fresh_ns}/web-backup was refused by the API server:"
    )
    assert "exceeded quota" in condition["message"]
    assert "grant" not in condition["message"]  # Not an RBAC problem.
    assert child(cluster, "DaemonSet", "web-backup", fresh_ns) is None
    # Every other child is there, and an edit still reaches them.
    for kind, name in [("StatefulSet", "web"), ("Service", "nginx"), ("CronJob", "web-datelog")]:
        assert child(cluster, kind, name, fresh_ns) is not None, kind
    apply(cluster, fresh_ns, sample(replicas=2))
    wait_for(
        lambda: (
            (s := child(cluster, "StatefulSet", "web", fresh_ns)) and s["spec"]["replicas"] == 2
        ),
        30,
        "the replicas change to reach the StatefulSet",
    )
    app = wait_for(
        lambda: (
            (a := get_app(cluster, fresh_ns))["status"]["observedGeneration"]
            == a["metadata"]["generation"]
            and a
        ),
        30,
        "the new generation acknowledged",
    )
    assert ready_condition(app)["reason"] == "Refused"
    assert warnings(cluster, fresh_ns, "Refused")
    # What refused it is gone; the refusal waits for the next spec change, which applies it.
    cluster.kubectl("delete", "quota", "no-daemonsets", "-n", fresh_ns)
    apply(cluster, fresh_ns, sample(replicas=2, backup={"keep": 5}))
    wait_ready(cluster, fresh_ns)
    children_match_the_rendering(cluster, fresh_ns)


def test_invalid_schedule_on_a_live_app_writes_nothing(cluster: Cluster, fresh_ns: str) -> None:
    apply(cluster, fresh_ns, sample())
    wait_ready(cluster, fresh_ns)
    apply(cluster, fresh_ns, sample(replicas=2, dateLogger={"schedule": "* * * * 7"}))
    condition = wait_reason(cluster, fresh_ns, "InvalidSpec")
    assert "spec.dateLogger.schedule" in condition["message"]
    assert "above maximum (6)" in condition["message"]
    # An invalid spec is never half applied: the replicas change waits with it.
    sts = child(cluster, "StatefulSet", "web", fresh_ns)
    assert sts is not None
    assert sts["spec"]["replicas"] == 3
    apply(cluster, fresh_ns, sample(replicas=2, dateLogger={"schedule": "* * * * 6"}))
    wait_ready(cluster, fresh_ns)
    found = children_match_the_rendering(cluster, fresh_ns)
    assert found["StatefulSet"]["spec"]["replicas"] == 2  # type: ignore[index]
