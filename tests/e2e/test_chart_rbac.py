"""The Helm chart installs into the cluster, and its RBAC is exactly enough.

The chart is installed with real helm. The operator then runs as a local process under the
chart's ServiceAccount (a token from the TokenRequest API, so the API server authorizes every
request against the chart's roles), and an app's whole lifecycle passes. Then each rule of the
chart's ClusterRoles is removed in turn: some step must fail with a Forbidden the operator
reports (in the app's Ready condition or its log), or the rule is not needed.

Here kwok plays the chart's operator pods (nothing runs inside them), so the Deployment is
checked for shape and readiness only and the identity is exercised by the local process; the
pod itself runs for real on the real node in tests/e2e/test_real_node.py.

Runs on the local cluster only: the evidence must come from the operator under test, and on
the local cluster no other operator runs (the chart's is also installed serving only its own
namespace). The chart's pods running for real are tests/e2e/test_real_node.py's, on kind.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from statefulwebapp.specs import names
from tests.e2e.apps import apply, child, get_app, ready_condition, sample
from tests.e2e.cluster import (
    CHART,
    CRDS,
    Cluster,
    Operator,
    helm,
    make_namespace,
    tools_bin,
    wait_for,
)

pytestmark = pytest.mark.local_cluster(
    reason="RBAC is the API server's decision; here the chart's pods are kwok's (nothing runs "
    "in them), so the only operator serving the namespace under test is the one under test"
)


KWOK_NODE = "kwok.x-k8s.io/node"
"""The annotation of a node kwok plays: its pods are Running, but no container runs."""


@dataclass
class Release:
    """An installed chart and a kubeconfig that authenticates as its ServiceAccount."""

    name: str
    namespace: str
    kubeconfig: Path
    roles: dict[str, dict[str, Any]]
    """The chart's ClusterRoles and its lease Role by name suffix, as installed."""


def service_account_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig for the ServiceAccount: the admin's cluster entry, the account's token."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=2h").strip()
    admin = yaml.safe_load(cluster.kubeconfig_path.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    entry = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [entry],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {"name": account, "context": {"cluster": entry["name"], "user": account}}
                ],
                "current-context": account,
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    namespace = make_namespace(cluster, "swa-system")
    name = f"swa-{uuid.uuid4().hex[:6]}"
    helm(cluster, "install", name, str(CHART), "-n", namespace, "--wait", "--timeout", "120s")
    # The evidence of each test must come from the operator under test: the chart's own pods
    # must be kwok's (nothing runs in them), or its operator would serve every namespace too.
    pods = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}", "-o", "json"
        )
    )["items"]
    nodes = {
        n["metadata"]["name"]: n
        for n in json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    }
    placed = {p["metadata"]["name"]: nodes[p["spec"]["nodeName"]] for p in pods}
    assert placed, "the chart made no operator pod"
    running = [
        pod
        for pod, node in placed.items()
        if KWOK_NODE not in node["metadata"].get("annotations", {})
    ]
    assert not running, (
        f"the chart's operator runs for real ({running}): it would serve the namespaces under test"
    )
    account = f"{name}-statefulwebapp-operator"
    roles = {
        suffix: json.loads(cluster.kubectl("get", kind, f"{account}{suffix}", "-o", "json", *where))
        for kind, suffix, where in (
            ("clusterrole", "-cluster", ()),
            ("clusterrole", "-namespaced", ()),
            ("role", "-lease", ("-n", namespace)),
        )
    }
    path = tmp_path_factory.mktemp("rbac") / "kubeconfig"
    kubeconfig = service_account_kubeconfig(cluster, namespace, account, path)
    yield Release(name, namespace, kubeconfig, roles)
    helm(cluster, "uninstall", name, "-n", namespace, "--wait")
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def start_operator(release: Release, log: Path, namespace: str) -> Operator:
    """The operator as the chart's ServiceAccount, serving only the test's namespace.

    Other modules' apps may still be going away elsewhere; one namespace keeps their events
    out of this test's evidence.
    """
    lease = f"{release.namespace}/lease-{uuid.uuid4().hex[:6]}"  # New: its create is needed.
    return Operator.start(
        Cluster("existing", release.kubeconfig), log, "--namespace", namespace, "--lease", lease
    )


def test_chart_installs_the_crd_and_a_ready_operator_deployment(
    cluster: Cluster, release: Release
) -> None:
    for path in sorted(CRDS.glob("*.yaml")):
        shipped = yaml.safe_load(path.read_text())
        name = shipped["metadata"]["name"]
        crd = json.loads(cluster.kubectl("get", "crd", name, "-o", "json"))
        assert {k: crd["spec"][k] for k in shipped["spec"]} == shipped["spec"], name
    deployment = json.loads(
        cluster.kubectl(
            "get",
            "deployment",
            "-n",
            release.namespace,
            "-l",
            f"app.kubernetes.io/instance={release.name}",
            "-o",
            "json",
        )
    )["items"][0]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["status"].get("readyReplicas") == 2
    # `helm test` runs its pod for real on the real node: tests/e2e/test_real_node.py.


SERVICE_MONITOR_CRD = Path(__file__).parent / "data/servicemonitor-crd.yaml"


@pytest.fixture(scope="module")
def service_monitor_crd(cluster: Cluster) -> Iterator[None]:
    """The ServiceMonitor kind: the cluster's own CRD if it has one, else a stand-in for it."""
    name = "servicemonitors.monitoring.coreos.com"
    if cluster.kubectl("get", "crd", name, "--ignore-not-found", "-o", "name").strip():
        yield
        return
    cluster.kubectl("apply", "--server-side", "-f", str(SERVICE_MONITOR_CRD))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}")
    yield
    cluster.kubectl("delete", "crd", name, "--ignore-not-found", "--wait=false")


@pytest.mark.parametrize(
    ("values", "monitored"),
    [
        ([], False),
        (["--set", "watchNamespaces={team-a,team-b}", "--set", "logFormat=json"], False),
        (
            [
                "--set",
                "metrics.serviceMonitor.enabled=true",
                "--set",
                "metrics.serviceMonitor.scrapeTimeout=10s",
                "--set",
                "metrics.serviceMonitor.labels.release=prometheus",
            ],
            True,
        ),
    ],
    ids=["defaults", "watch-namespaces", "service-monitor"],
)
def test_rendered_chart_passes_server_side_validation(
    cluster: Cluster, service_monitor_crd: None, values: list[str], monitored: bool
) -> None:
    """Every object the chart renders is accepted by the real API server (dry-run, strict).

    The `helm test` Pod is left out: admission refuses a Pod whose ServiceAccount does not exist
    yet, which a dry run cannot create; it runs for real in tests/e2e/test_real_node.py.
    """
    helm_template: list[str | Path] = [
        tools_bin() / "helm",
        "template",
        "dry",
        str(CHART),
        "--skip-tests",
    ]
    rendered = subprocess.run(
        [*helm_template, "-n", "default", *values],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for namespace in ("team-a", "team-b"):
        cluster.kubectl("create", "namespace", namespace, check=False)
    # Objects carry their namespaces (RoleBindings live in the watched ones), so no -n.
    out = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=rendered
    )
    kinds = {line.split("/")[0] for line in out.splitlines() if "(server dry run)" in line}
    assert {
        "deployment.apps",
        "serviceaccount",
        "clusterrole.rbac.authorization.k8s.io",
        "service",
    } <= kinds
    assert ("servicemonitor.monitoring.coreos.com" in kinds) is monitored, out


class Forbidden(Exception):  # noqa: N818  (it carries the evidence, not an error of ours)
    """The operator reported a Forbidden; ``args[0]`` says where."""


def lifecycle(cluster: Cluster, namespace: str, operator: Operator) -> None:
    """Every kind of request the operator makes: create, drift, disable, warn, delete.

    Each wait also watches for a reported Forbidden and stops at the first one.
    """

    def until(check: Callable[[], Any], what: str, timeout: float = 60) -> None:
        def done() -> Any:
            evidence = forbidden_reported(cluster, namespace, operator)
            if evidence:
                raise Forbidden(evidence)
            return check()

        wait_for(done, timeout, what)

    def ready() -> bool:
        app = get_app(cluster, namespace)
        fresh = app.get("status", {}).get("observedGeneration") == app["metadata"]["generation"]
        return fresh and ready_condition(app).get("status") == "True"

    apply(cluster, namespace, sample())
    until(ready, "the app to be Ready")
    cluster.kubectl("delete", "service", "nginx", "-n", namespace)
    until(lambda: child(cluster, "Service", "nginx", namespace), "the Service back")
    until(
        lambda: child(cluster, "PodDisruptionBudget", "web", namespace),
        "the disruption budget (three replicas)",
    )
    # A rollout to a new image finds web-2 failing: the StatefulSet waits for it for ever, and
    # the operator deletes it (spec.rollout.replaceStuckPods).
    stuck = leave_stuck(cluster, namespace, "web-2")
    apply(cluster, namespace, sample(image="nginx:1.27.4"))
    until(lambda: pod_uid(cluster, namespace, "web-2") != stuck, "the stuck web pod replaced")
    apply(
        cluster,
        namespace,
        sample(
            backup={"enabled": False},
            dateLogger={"enabled": False},
            disruptionBudget={"enabled": False},
            networkPolicy={"enabled": False},
        ),
    )
    until(
        lambda: (
            child(cluster, "DaemonSet", "web-backup", namespace) is None
            and child(cluster, "CronJob", "web-datelog", namespace) is None
            and child(cluster, "PodDisruptionBudget", "web", namespace) is None
            and child(cluster, "NetworkPolicy", "web-ingress", namespace) is None
        ),
        "the disabled children to go",
    )
    # A restore: its owner reference and status, its Job, the Job's pods' result. It fails
    # (no archive: backups are off) or, on kwok, finds no result: either way every request
    # of a restore is made, and the app gets its web pods back.
    restore = {
        "apiVersion": "apps.k8slab.io/v1alpha1",
        "kind": "StatefulWebAppRestore",
        "metadata": {"name": "back"},
        "spec": {"appName": "web"},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(restore))

    def restore_over() -> bool:
        swar = json.loads(cluster.kubectl("get", "swar", "back", "-n", namespace, "-o", "json"))
        owned = any(
            o.get("kind") == "StatefulWebApp" for o in swar["metadata"].get("ownerReferences") or []
        )
        return owned and swar.get("status", {}).get("phase") in {"Succeeded", "Failed"}

    until(restore_over, "the restore to finish", timeout=120)
    until(ready, "the app Ready again after the restore", timeout=120)
    apply(cluster, namespace, sample(dateLogger={"schedule": "*/5 25 * * *"}))
    until(
        lambda: ready_condition(get_app(cluster, namespace)).get("reason") == "InvalidSpec",
        "InvalidSpec",
    )
    until(
        lambda: "InvalidSpec" in cluster.kubectl("get", "events", "-n", namespace),
        "the InvalidSpec event",
    )
    pv = names.volume_of(namespace, "web")
    cluster.kubectl("delete", "swa", "web", "-n", namespace, "--wait=false")
    until(lambda: child(cluster, "PersistentVolume", pv, namespace) is None, f"{pv} gone")
    until(lambda: not cluster.kubectl("get", "swa", "-n", namespace, "-o", "name"), "app gone")


def pod_uid(cluster: Cluster, namespace: str, name: str) -> str:
    pod = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", "--ignore-not-found")
    return str(json.loads(pod)["metadata"]["uid"]) if pod.strip() else ""


def leave_stuck(cluster: Cluster, namespace: str, pod: str) -> str:
    """Make ``pod`` fail as a crashing container does; returns its uid.

    kwok starts no container, so the test plays the kubelet: the pod is not ready, its
    container waits in CrashLoopBackOff, and its back-off is told in an event.
    """
    failing = {
        "status": {
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [
                {
                    "name": "nginx",
                    "ready": False,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                }
            ],
        }
    }
    cluster.kubectl(
        "patch",
        "pod",
        pod,
        "-n",
        namespace,
        "--subresource=status",
        "--type=strategic",
        "-p",
        json.dumps(failing),
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pod}.backoff", "namespace": namespace},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
        "reason": "BackOff",
        "message": "Back-off restarting failed container nginx",
        "type": "Warning",
        "source": {"component": "kubelet", "host": "worker1"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(event))
    return pod_uid(cluster, namespace, pod)


def forbidden_reported(cluster: Cluster, namespace: str, operator: Operator) -> str | None:
    """Where the operator said it was forbidden something, if it did."""
    apps = json.loads(cluster.kubectl("get", "swa", "-n", namespace, "-o", "json"))["items"]
    for app in apps:
        condition = ready_condition(app)
        if condition.get("reason") == "Forbidden":
            return f"Ready condition: {condition['message']}"
    for line in operator.log.read_text(errors="replace").splitlines():
        # An RBAC denial names the user and what it "cannot" do; a namespace being
        # terminated also answers 403, but that is not a missing permission.
        if "forbidden" in line.lower() and "cannot" in line:
            return f"operator log: {line}"
    return None


@pytest.fixture
def rbac_ns(cluster: Cluster) -> Iterator[str]:
    namespace = make_namespace(cluster, "rbac")
    yield namespace
    # Without some permission the operator may have been unable to delete the volume.
    cluster.kubectl(
        "delete", "pv", names.volume_of(namespace, "web"), "--ignore-not-found", "--wait=false"
    )
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_whole_lifecycle_passes_under_the_charts_service_account(
    cluster: Cluster, release: Release, rbac_ns: str, tmp_path: Path
) -> None:
    operator = start_operator(release, tmp_path / "operator.log", rbac_ns)
    try:
        lifecycle(cluster, rbac_ns, operator)
    finally:
        operator.stop()


def chart_grants() -> list[tuple[str, int, str, str]]:
    """(role suffix, rule index, verb, label) for every verb of every rule of the chart's roles."""
    rendered = subprocess.run(
        [tools_bin() / "helm", "template", "r", str(CHART), "--show-only", "templates/rbac.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    out = []
    for doc in yaml.safe_load_all(rendered):
        if doc and doc["kind"] in {"ClusterRole", "Role"}:
            suffix = doc["metadata"]["name"].removeprefix("r-statefulwebapp-operator")
            for i, rule in enumerate(doc["rules"]):
                for verb in rule["verbs"]:
                    out.append((suffix, i, verb, f"{verb} {','.join(rule['resources'])}"))
    return out


GRANTS = chart_grants()


def replace_role(cluster: Cluster, role: dict[str, Any]) -> None:
    clean = json.loads(json.dumps(role))
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        clean["metadata"].pop(key, None)
    cluster.kubectl("replace", "-f", "-", stdin=json.dumps(clean))


@pytest.mark.parametrize(("role", "index", "verb", "label"), GRANTS, ids=[g[3] for g in GRANTS])
def test_removing_any_granted_verb_breaks_a_step_with_a_reported_forbidden(
    cluster: Cluster,
    release: Release,
    rbac_ns: str,
    tmp_path: Path,
    role: str,
    index: int,
    verb: str,
    label: str,
) -> None:
    """Stricter than removing whole rules: every single verb the chart grants is needed."""
    original = release.roles[role]
    reduced = json.loads(json.dumps(original))
    rule = reduced["rules"][index]
    rule["verbs"].remove(verb)
    if not rule["verbs"]:
        reduced["rules"].pop(index)
    replace_role(cluster, reduced)
    operator = start_operator(release, tmp_path / "operator.log", rbac_ns)
    try:
        with pytest.raises(Forbidden) as reported:
            lifecycle(cluster, rbac_ns, operator)
        named = [r.split("/")[0] for r in rule["resources"]]
        assert any(r in str(reported.value) for r in named), f"without {label}: {reported.value}"
    finally:
        operator.stop()
        replace_role(cluster, original)
