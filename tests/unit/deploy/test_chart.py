"""The Helm chart in deploy/statefulwebapp-operator, checked by ``helm lint`` and ``helm template``.

No cluster is needed: every test renders the chart locally (a few tens of milliseconds each).
What is pinned here is what matters operationally: the CRD copy matches crds/, kopf runs as a
single instance with the restricted Pod Security settings, the RBAC is least-privilege (no
wildcards, exactly the verbs the operator uses as its own code shows against the fake API server
of fakeapi.py, persistentvolumes the only cluster-scoped write), watchNamespaces turns the
namespaced grant into RoleBindings, the PrometheusRule is the rule file with the release filled
in and the dashboard's ConfigMap holds the dashboard file (each only when enabled), and bad
values fail with the field named in the message.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from statefulwebapp.api import kinds
from tests.unit import api_usage
from tests.unit.api_usage import Rule
from tests.unit.deploy import monitoring

pytestmark = pytest.mark.helm

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy/statefulwebapp-operator"
CRD_NAME = "statefulwebapps.apps.k8slab.io.yaml"
RELEASE = "swa"
NAMESPACE = "operators"
FULLNAME = f"{RELEASE}-statefulwebapp-operator"

Manifest = dict[str, Any]

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}

# The helm test hook's own role (`kubectl get crd`, `kubectl api-resources`), not the operator's.
TEST_RULES = {("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list"}}


@cache
def helm() -> str:
    """The pinned helm from the tools cache; missing tools fail the test, never skip it."""
    out = subprocess.run(
        [REPO / "hack/tools/build.sh", "--dir"], check=False, capture_output=True, text=True
    )
    path = Path(out.stdout.strip()) / "helm"
    if out.returncode != 0 or not out.stdout.strip() or not path.is_file():
        pytest.fail(f"helm is missing ({path}): run `make tools` first. {out.stderr.strip()}")
    return str(path)


@cache
def kube_version() -> str:
    """The cluster version the project pins.

    ``helm template`` checks Chart.yaml's kubeVersion against its built-in default, which is
    v1.20 for a helm built with ``go install``; tell it the version we actually run.
    """
    for line in (REPO / "hack/tools/versions.env").read_text().splitlines():
        if line.startswith("KUBE_VERSION="):
            return line.split("=", 1)[1].strip()
    pytest.fail("KUBE_VERSION is missing from hack/tools/versions.env")


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], check=False, capture_output=True, text=True, timeout=60)


def template_result(*sets: str) -> subprocess.CompletedProcess[str]:
    args = ["template", RELEASE, str(CHART), "-n", NAMESPACE, "--kube-version", kube_version()]
    for item in sets:
        args += ["--set", item]
    return run_helm(*args)


@cache
def render(*sets: str) -> tuple[Manifest, ...]:
    """The chart's objects rendered with these ``--set`` values (cached: they never change)."""
    result = template_result(*sets)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(docs: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def operator_container(docs: tuple[Manifest, ...]) -> Manifest:
    (deployment,) = of_kind(docs, "Deployment")
    container: Manifest
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def rule_table(role: Manifest) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


def test_chart_crds_are_byte_identical_copies() -> None:
    top = sorted(path.name for path in (REPO / "crds").glob("*.yaml"))
    assert top == sorted(path.name for path in (CHART / "crds").glob("*.yaml"))
    assert CRD_NAME in top
    for name in top:
        copy = (CHART / "crds" / name).read_bytes()
        assert copy == (REPO / "crds" / name).read_bytes(), (
            f"run: cp crds/{name} deploy/statefulwebapp-operator/crds/"
        )


def test_helm_lint_strict_passes() -> None:
    result = run_helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_deployment_two_replicas_one_lease() -> None:
    deployments = of_kind(render(), "Deployment")
    assert len(deployments) == 1
    spec = deployments[0]["spec"]
    # Two replicas, one active: the lease makes a rolling update's overlap safe.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    args = operator_container(render())["args"]
    assert args[args.index("--lease") + 1] == f"{NAMESPACE}/statefulwebapp-operator"
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_restricted_security_context() -> None:
    (deployment,) = of_kind(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == FULLNAME
    context = operator_container(render())["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]


def test_probes_and_default_args() -> None:
    container = operator_container(render())
    assert container["command"] == ["statefulwebapp-operator"]
    assert container["args"] == [
        "--health",
        "http://0.0.0.0:8080/healthz",
        "--lease",
        f"{NAMESPACE}/statefulwebapp-operator",
        "--log-format",
        "full",
        "--backup-root",
        "/var/backups/statefulwebapp",
    ]
    assert container["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    probe = container["livenessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    assert probe["periodSeconds"] >= 10
    assert probe["timeoutSeconds"] >= 1
    assert container["image"] == "statefulwebapp-operator:0.1.0"


def test_readiness_is_its_own_probe_on_the_same_port() -> None:
    """/readyz: a standby that could not take over is not ready; live all the same."""
    container = operator_container(render())
    ready, live = container["readinessProbe"], container["livenessProbe"]
    assert ready["httpGet"] == {"path": "/readyz", "port": "health"}
    assert ready != live
    # Readiness is asked more often than liveness: it gates rollouts and drains, not restarts.
    assert ready["periodSeconds"] < live["periodSeconds"]
    # Not-ready pods stay behind the metrics Service: their metrics say why.
    (service,) = of_kind(render(), "Service")
    assert service["spec"]["publishNotReadyAddresses"] is True


def test_resources_cover_the_measured_peak_by_a_quarter() -> None:
    """138.6 MiB: the operator restarted at 1000 apps (`make bench`, bench/results/)."""
    resources = operator_container(render())["resources"]
    mib = {"Mi": 1, "Gi": 1024}
    limit = resources["limits"]["memory"]
    assert int(limit[:-2]) * mib[limit[-2:]] >= 138.6 * 1.25
    assert resources == {
        "requests": {"cpu": "50m", "memory": "192Mi", "ephemeral-storage": "32Mi"},
        "limits": {"cpu": "500m", "memory": "192Mi", "ephemeral-storage": "128Mi"},
    }


def test_standbys_prefer_another_node_unless_affinity_is_given() -> None:
    (deployment,) = of_kind(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert term["podAffinityTerm"]["labelSelector"] == {"matchLabels": selector}
    given = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    (deployment,) = of_kind(
        render(f"{given}.nodeSelectorTerms[0].matchFields[0].key=x"), "Deployment"
    )
    assert list(deployment["spec"]["template"]["spec"]["affinity"]) == ["nodeAffinity"]


def test_a_disruption_budget_for_more_than_one_replica() -> None:
    docs = render()
    (budget,) = of_kind(docs, "PodDisruptionBudget")
    assert budget["metadata"]["name"] == FULLNAME
    assert budget["metadata"]["namespace"] == NAMESPACE
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    (deployment,) = of_kind(docs, "Deployment")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    # One replica: no budget (it would block every drain, or protect nothing); off: none.
    assert of_kind(render("replicas=1"), "PodDisruptionBudget") == []
    assert of_kind(render("podDisruptionBudget.enabled=false"), "PodDisruptionBudget") == []
    assert len(of_kind(render("replicas=3"), "PodDisruptionBudget")) == 1


def test_the_network_policy_is_off_by_default() -> None:
    assert of_kind(render(), "NetworkPolicy") == []


def test_the_network_policy_lets_in_only_the_health_port_from_the_peers_given() -> None:
    docs = render(
        "networkPolicy.enabled=true",
        "networkPolicy.from[0].namespaceSelector.matchLabels.team=monitoring",
        "networkPolicy.from[0].podSelector.matchLabels.app=prometheus",
        "healthPort=9090",
    )
    (policy,) = of_kind(docs, "NetworkPolicy")
    assert policy["metadata"]["namespace"] == NAMESPACE
    (deployment,) = of_kind(docs, "Deployment")
    assert policy["spec"]["podSelector"] == deployment["spec"]["selector"]
    # Ingress only: the operator's one peer, the API server, has no address the chart knows.
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [
        {
            "ports": [{"port": "health", "protocol": "TCP"}],
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"team": "monitoring"}},
                    "podSelector": {"matchLabels": {"app": "prometheus"}},
                }
            ],
        }
    ]
    # The named port follows healthPort in the container.
    assert operator_container(docs)["ports"][0] == {
        "name": "health",
        "containerPort": 9090,
        "protocol": "TCP",
    }
    # No peers given: any source, still the health port only.
    (policy,) = of_kind(render("networkPolicy.enabled=true"), "NetworkPolicy")
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "health", "protocol": "TCP"}]}]


def test_values_reach_the_args() -> None:
    container = operator_container(
        render(
            "logFormat=json",
            "verbose=true",
            "healthPort=9090",
            "backup.root=/srv/archives",
            "nfs.allow={nfs.example.com:/exports,10.0.0.9}",
        )
    )
    assert container["args"] == [
        "--health",
        "http://0.0.0.0:9090/healthz",
        "--lease",
        f"{NAMESPACE}/statefulwebapp-operator",
        "--log-format",
        "json",
        "--verbose",
        "--backup-root",
        "/srv/archives",
        "--nfs-allow",
        "nfs.example.com:/exports",
        "--nfs-allow",
        "10.0.0.9",
    ]
    assert container["ports"][0]["containerPort"] == 9090


def test_a_metrics_service_exposes_every_replica_and_no_servicemonitor_by_default() -> None:
    docs = render()
    (service,) = of_kind(docs, "Service")
    assert service["metadata"]["name"] == f"{FULLNAME}-metrics"
    assert service["metadata"]["namespace"] == NAMESPACE
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "metrics"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "health", "protocol": "TCP"}
    ]
    # Leader and standbys alike: the Deployment's own selector, so every replica is scraped.
    (deployment,) = of_kind(docs, "Deployment")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert "annotations" not in service["metadata"]
    assert of_kind(docs, "ServiceMonitor") == []
    # The port follows healthPort; annotations reach the Service.
    docs = render("healthPort=9090", "metrics.service.annotations.example\\.com/team=web")
    (service,) = of_kind(docs, "Service")
    assert service["spec"]["ports"][0]["port"] == 9090
    assert service["metadata"]["annotations"] == {"example.com/team": "web"}


def test_a_long_release_name_still_makes_a_valid_service_name() -> None:
    (service,) = of_kind(render(f"fullnameOverride={'x' * 63}"), "Service")
    name = service["metadata"]["name"]
    assert len(name) <= 63
    assert name.endswith("-metrics")


def test_the_servicemonitor_when_enabled_selects_the_metrics_service() -> None:
    docs = render(
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.interval=15s",
        "metrics.serviceMonitor.scrapeTimeout=5s",
        "metrics.serviceMonitor.labels.release=prometheus",
    )
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (service,) = of_kind(docs, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}
    ]
    # The selector picks the metrics Service only, never a pod-less other one of the chart.
    (deployment,) = of_kind(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # Defaults: every 30 s, Prometheus's own timeout; a user label cannot replace the chart's.
    docs = render(
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.app\\.kubernetes\\.io/component=other",
    )
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    assert monitor["metadata"]["labels"]["app.kubernetes.io/component"] == "metrics"


def test_no_prometheus_rule_and_no_dashboard_by_default() -> None:
    docs = render()
    assert of_kind(docs, "PrometheusRule") == []
    assert of_kind(docs, "ConfigMap") == []


RUNBOOKS_URL = "https://runbooks.example.org/ops/statefulwebapp.md"


def test_the_prometheus_rule_is_the_rule_file_with_the_release_filled_in(tmp_path: Path) -> None:
    docs = render(
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.labels.release=prometheus",
        f"metrics.prometheusRule.runbookBaseURL={RUNBOOKS_URL}",
    )
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == FULLNAME
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    # The ServiceMonitor's job is the metrics Service's name: `up` is selected by it.
    (service,) = of_kind(docs, "Service")
    up = f'up{{job="{service["metadata"]["name"]}",namespace="{NAMESPACE}"}}'
    expected = (
        monitoring.ALERTS.read_text()
        .replace(monitoring.UP_PLACEHOLDER, up)
        .replace(f"{monitoring.RUNBOOK_BASE}#", f"{RUNBOOKS_URL}#")
    )
    assert rule["spec"] == yaml.safe_load(expected)
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(rules) == len(monitoring.alerts())
    for alert in rules:
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOKS_URL}#{alert['alert'].lower()}"
    (down,) = [r["expr"] for r in rules if r["alert"] == "StatefulWebAppOperatorDown"]
    assert down.count(up) == 2
    assert monitoring.UP_PLACEHOLDER not in json.dumps(rule)
    # What the Prometheus Operator hands Prometheus is still a valid rule file.
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    result = monitoring.check_rules(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_prometheus_rule_takes_an_up_selector_and_keeps_the_chart_labels() -> None:
    docs = render(
        "metrics.prometheusRule.enabled=true",
        'metrics.prometheusRule.upSelector=job="kubernetes-pods"\\,namespace="ops"',
        "metrics.prometheusRule.labels.app\\.kubernetes\\.io/component=other",
    )
    (rule,) = of_kind(docs, "PrometheusRule")
    (down,) = [
        r["expr"]
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if r["alert"] == "StatefulWebAppOperatorDown"
    ]
    assert down.count('up{job="kubernetes-pods",namespace="ops"}') == 2
    assert rule["metadata"]["labels"]["app.kubernetes.io/component"] == "metrics"
    # The default base URL, the placeholder's, stays when none is given.
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            assert alert["annotations"]["runbook_url"].startswith(f"{monitoring.RUNBOOK_BASE}#")


def test_the_dashboard_configmap_for_grafanas_sidecar() -> None:
    docs = render(
        "metrics.grafanaDashboard.enabled=true",
        "metrics.grafanaDashboard.labels.team=platform",
        "metrics.grafanaDashboard.annotations.grafana_folder=Operators",
    )
    (dashboard,) = of_kind(docs, "ConfigMap")
    assert dashboard["metadata"]["name"] == f"{FULLNAME}-dashboard"
    assert dashboard["metadata"]["namespace"] == NAMESPACE
    labels = dashboard["metadata"]["labels"]
    assert labels["grafana_dashboard"] == "1"
    assert labels["team"] == "platform"
    assert labels["app.kubernetes.io/instance"] == RELEASE
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Operators"}
    (board,) = dashboard["data"].values()
    assert json.loads(board) == json.loads(monitoring.DASHBOARD.read_text())
    assert list(dashboard["data"]) == ["statefulwebapp-operator.json"]
    # Another namespace (a sidecar watching Grafana's own), another label value.
    docs = render(
        "metrics.grafanaDashboard.enabled=true",
        "metrics.grafanaDashboard.namespace=monitoring",
        "metrics.grafanaDashboard.labels.grafana_dashboard=yes",
    )
    (dashboard,) = of_kind(docs, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "yes"
    assert "annotations" not in dashboard["metadata"]
    assert of_kind(docs, "PrometheusRule") == []


def test_helm_lint_strict_passes_with_the_rules_and_the_dashboard() -> None:
    sets = [
        "metrics.serviceMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "metrics.grafanaDashboard.enabled=true",
    ]
    result = run_helm("lint", "--strict", str(CHART), *[a for s in sets for a in ("--set", s)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rbac_has_no_wildcards() -> None:
    roles = [doc for doc in render() if doc["kind"] in {"Role", "ClusterRole"}]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), f"{role['metadata']['name']}: {rule}"
                assert not any("*" in item for item in rule.get(field, []))
            assert "nonResourceURLs" not in rule
            assert "resourceNames" not in rule or rule["resourceNames"]


def grants(role: Manifest) -> set[Rule]:
    return {
        (group, resource, verb)
        for (group, resource), verbs in rule_table(role).items()
        for verb in verbs
    }


NAMESPACED = {(kind.group, kind.plural): kind.namespaced for kind in kinds.BY_NAME.values()}
"""Whether each kind the operator knows is namespaced, by (apiGroup, resource)."""


def role_for(rule: Rule) -> str:
    """The chart's role that must grant ``rule``: the chart's layout, which no request tells.

    The lease lives in the release's namespace only: a Role there. Cluster-scoped kinds: the
    "-cluster" ClusterRole, always bound cluster-wide. The rest: the "-namespaced" ClusterRole,
    bound once per watched namespace when watchNamespaces is set.
    """
    group, resource, _verb = rule
    if (group, resource) == (kinds.LEASE.group, kinds.LEASE.plural):
        return f"{FULLNAME}-lease"
    namespaced = NAMESPACED[group, resource.split("/", 1)[0]]
    return f"{FULLNAME}-namespaced" if namespaced else f"{FULLNAME}-cluster"


def differences(role: str, needed: set[Rule], granted: set[Rule]) -> list[str]:
    """What ``role`` lacks and what it grants for nothing, a line each; empty when equal."""
    lines = []
    for title, rules in (
        (
            "missing from the chart (the operator sends it: a cluster would refuse it)",
            needed - granted,
        ),
        (
            "granted but never used (drop it, or drive its request in api_usage.py)",
            granted - needed,
        ),
    ):
        if rules:
            lines.append(f"{role}: {title}:")
            lines += [
                f'    {verb} {resource} (apiGroup "{group}")'
                for group, resource, verb in sorted(rules)
            ]
    return lines


def test_rbac_is_exactly_what_the_operator_uses() -> None:
    """Each rule of the operator's roles is one its requests need, and each need has its rule.

    The needs come from running the operator's code against the fake API server (api_usage.py),
    plus kopf's own requests: a new request without its rule, or a rule left after the operator
    stopped needing it, fails here, named.
    """
    docs = render()
    (lease,) = of_kind(docs, "Role")
    assert lease["metadata"]["name"] == f"{FULLNAME}-lease"
    assert lease["metadata"]["namespace"] == NAMESPACE
    roles = {
        f"{FULLNAME}-cluster": named(docs, "ClusterRole", f"{FULLNAME}-cluster"),
        f"{FULLNAME}-namespaced": named(docs, "ClusterRole", f"{FULLNAME}-namespaced"),
        f"{FULLNAME}-lease": lease,
    }
    needed: dict[str, set[Rule]] = {name: set() for name in roles}
    for rule in api_usage.used():
        needed[role_for(rule)].add(rule)
    report = [
        line
        for name, role in roles.items()
        for line in differences(name, needed[name], grants(role))
    ]
    if report:
        pytest.fail("the chart's RBAC differs from what the operator uses:\n" + "\n".join(report))
    assert rule_table(named(docs, "ClusterRole", f"{FULLNAME}-test-crd")) == TEST_RULES


def test_only_cluster_scoped_write_is_persistentvolumes() -> None:
    docs = render()
    cluster = named(docs, "ClusterRole", f"{FULLNAME}-cluster")
    writes = {
        resource for (_group, resource), verbs in rule_table(cluster).items() if verbs & WRITE_VERBS
    }
    assert writes == {"persistentvolumes"}
    # And nothing cluster-scoped hides in the namespaced role.
    namespaced = rule_table(named(docs, "ClusterRole", f"{FULLNAME}-namespaced"))
    assert not {resource for _group, resource in namespaced} & {
        "persistentvolumes",
        "customresourcedefinitions",
        "namespaces",
    }


def test_default_binds_both_roles_cluster_wide() -> None:
    docs = render()
    bindings = {doc["roleRef"]["name"]: doc for doc in of_kind(docs, "ClusterRoleBinding")}
    for role in (f"{FULLNAME}-cluster", f"{FULLNAME}-namespaced"):
        assert bindings[role]["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]
    (lease_binding,) = of_kind(docs, "RoleBinding")
    assert lease_binding["roleRef"]["name"] == f"{FULLNAME}-lease"
    (account,) = [d for d in of_kind(docs, "ServiceAccount") if d["metadata"]["name"] == FULLNAME]
    assert account["metadata"]["namespace"] == NAMESPACE


def test_watch_namespaces_uses_rolebindings_and_args() -> None:
    docs = render("watchNamespaces={a,b}")
    rolebindings = [
        rb for rb in of_kind(docs, "RoleBinding") if rb["roleRef"]["kind"] == "ClusterRole"
    ]
    assert sorted(rb["metadata"]["namespace"] for rb in rolebindings) == ["a", "b"]
    for rb in rolebindings:
        assert rb["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"{FULLNAME}-namespaced",
        }
        assert rb["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]
    cluster_refs = [crb["roleRef"]["name"] for crb in of_kind(docs, "ClusterRoleBinding")]
    assert f"{FULLNAME}-namespaced" not in cluster_refs
    assert f"{FULLNAME}-cluster" in cluster_refs
    args = operator_container(docs)["args"]
    assert args[-6:-2] == ["--namespace", "a", "--namespace", "b"]


def test_rbac_create_false_renders_no_operator_rbac() -> None:
    docs = render("rbac.create=false")
    operator_rbac = [
        doc
        for doc in docs
        if doc["kind"] in {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
        and "helm.sh/hook" not in doc["metadata"].get("annotations", {})
    ]
    assert operator_rbac == []


def test_helm_test_hook() -> None:
    docs = render("test.image=example.org/kubectl:1")
    hooks = [d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert sorted(d["kind"] for d in hooks) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Pod",
        "ServiceAccount",
    ]
    for hook in hooks:
        policy = hook["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
        assert "before-hook-creation" in policy.split(",")
    # A Pod, not a Job: `helm test --logs` reads the logs of Pod hooks only.
    (test_pod,) = of_kind(tuple(hooks), "Pod")
    pod = test_pod["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "example.org/kubectl:1"
    script = " ".join(container["command"])
    assert "kubectl get crd statefulwebapps.apps.k8slab.io" in script
    assert "kubectl api-resources --api-group=apps.k8slab.io | grep" in script
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # The test pod must never match the operator Deployment's selector.
    (deployment,) = of_kind(docs, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= test_pod["metadata"]["labels"].items()


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("logFormat=xml", "/logFormat"),
        ("rbac.create=yes", "/rbac/create"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("watchNamespaces=ns1", "/watchNamespaces"),
        ("watchNamespces={a}", "watchNamespces"),
        ("metrics.serviceMonitor.enabled=yes", "/metrics/serviceMonitor/enabled"),
        ("metrics.serviceMonitor.interval=soon", "/metrics/serviceMonitor/interval"),
        ("metrics.serviceMonitor.scrapeTimeout=5", "/metrics/serviceMonitor/scrapeTimeout"),
        ("metrics.serviceMonitr.enabled=true", "serviceMonitr"),
        ("podDisruptionBudget.enabled=yes", "/podDisruptionBudget/enabled"),
        ("networkPolicy.enabled=1", "/networkPolicy/enabled"),
        ("networkPolicy.from[0].podSelectr.a=b", "podSelectr"),
        ("metrics.prometheusRule.enabled=yes", "/metrics/prometheusRule/enabled"),
        ("metrics.prometheusRule.runbookBaseURL=docs/runbooks.md", "runbookBaseURL"),
        ("metrics.prometheusRule.runbookBaseURL=https://x.org/r.md#a", "runbookBaseURL"),
        ("metrics.prometheusRule.upSelector={}", "/metrics/prometheusRule/upSelector"),
        ("metrics.prometheusRul.enabled=true", "prometheusRul"),
        ("metrics.grafanaDashboard.enabled=1", "/metrics/grafanaDashboard/enabled"),
        ("metrics.grafanaDashboard.namespace=Monitoring", "/metrics/grafanaDashboard/namespace"),
        ("metrics.grafanaDashbord.enabled=true", "grafanaDashbord"),
    ],
)
def test_bad_values_fail_naming_the_field(value: str, field: str) -> None:
    result = template_result(value)
    assert result.returncode != 0, f"--set {value} rendered without error"
    assert "schema" in result.stderr
    assert field in result.stderr, result.stderr


def test_bad_values_fail_lint() -> None:
    result = run_helm("lint", "--strict", str(CHART), "--set", "logFormat=xml")
    assert result.returncode != 0
    assert "/logFormat" in result.stdout + result.stderr
