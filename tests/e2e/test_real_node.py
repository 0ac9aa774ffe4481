"""Real containers: the chart's operator pod, `helm test`, the date logger's Job, the backup
agent's script and the web image, on the local cluster's real node or on kind's workers.

kwok only pretends to run pods. The node ``real`` (``hack/cluster/node.sh``) runs them: its
kubelet starts them through containerd and runc, probes them and serves their logs; kube-proxy
routes the ``kubernetes`` Service to the API server; every image was built on this machine
(``hack/images/build.sh``) and imported, none pulled. The node is tainted, so a pod lands there
only when it asks to (values, tolerations) or when its namespace sends it there (the API
server's PodNodeSelector and PodTolerationRestriction admission).

Here the backup agent and the web server run from their rendered pod templates with an
emptyDir in place of the claim, to test the script and the image on their own; the app's real
NFS volume, mounted by this node's kubelet, is tests/e2e/test_nfs.py's.

Runs on kind, whose workers run every pod for real, except the web image over a volume of
this machine, which runs on the local cluster's real node (its own marker says why).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from statefulwebapp.api.parse import parse
from statefulwebapp.specs import names
from statefulwebapp.specs.render import DATA_VOLUME, render_statefulset
from statefulwebapp.specs.render_backup import render_daemonset
from tests.e2e.apps import REAL_NODE, apply, delete_namespace, get_app, sample, wait_ready
from tests.e2e.cluster import CHART, Cluster, helm, make_namespace, wait_for
from tests.e2e.metrics import Scrape, health, scrape, scrape_through_api
from tests.e2e.realnode import ON_REAL_NODE, Placement, exec_in, export_dir, http_get, images, pods

pytestmark = pytest.mark.kind_cluster(
    reason="the chart's pods, `helm test`, the date logger's Job and the agent's script need "
    "real containers, on kind's kubeadm workers"
)

NODE = "real"
DATE = re.compile(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d UTC (\d{4})$", re.MULTILINE)


@dataclass
class Release:
    name: str
    namespace: str

    @property
    def selector(self) -> str:
        """The operator's pods (not the `helm test` pod, which shares the instance label)."""
        return f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component!=test"


@pytest.fixture(scope="module")
def release(
    cluster: Cluster, placement: Placement, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """The chart installed with the image built here, its pods where pods run for real."""
    namespace = make_namespace(cluster, "swa-system")
    name = f"swa-{uuid.uuid4().hex[:6]}"
    repository, tag = images()["operator"].rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "test": {"image": images()["kubectl"]},
        **placement.spec,
    }
    path = tmp_path_factory.mktemp("chart") / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    helm(cluster, "install", name, str(CHART), "-n", namespace, "-f", str(path), "--wait")
    yield Release(name, namespace)
    helm(cluster, "uninstall", name, "-n", namespace, "--wait")
    delete_namespace(cluster, namespace)


def run_pod(
    cluster: Cluster, namespace: str, placement: Placement, pod: dict[str, Any]
) -> dict[str, Any]:
    """Create ``pod`` where pods run for real; wait until its containers run (or finished)."""
    pod["spec"].update(placement.spec)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(pod))
    name = pod["metadata"]["name"]

    def started() -> Any:
        live = json.loads(cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json"))
        statuses = live["status"].get("containerStatuses") or []
        up = statuses and all(
            "running" in s["state"] or "terminated" in s["state"] for s in statuses
        )
        return up and live

    live: dict[str, Any] = wait_for(started, 90, f"pod {name} to start on the real node")
    return live


def test_chart_pods_run_for_real_under_their_security_context(
    cluster: Cluster, release: Release, placement: Placement
) -> None:
    running = pods(cluster, release.namespace, release.selector)
    assert len(running) == 2
    for pod in running:
        assert pod["spec"]["nodeName"] in placement.nodes
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"], status
        assert "running" in status["state"], status
        # What the process itself sees: the chart's non-root user, no capability at all, a
        # root filesystem it cannot write, and the scratch /tmp it can.
        seen = exec_in(
            cluster,
            release.namespace,
            pod["metadata"]["name"],
            "id -u; id -g; grep ^CapEff /proc/self/status; "
            "touch /probe 2>&1 || true; touch /tmp/probe && echo tmp-writable",
        )
        lines = seen.splitlines()
        assert lines[:2] == ["10001", "10001"], seen
        assert lines[2].split() == ["CapEff:", "0000000000000000"], seen
        assert "Read-only file system" in lines[3], seen
        assert lines[4] == "tmp-writable", seen


def test_chart_pod_authenticates_with_its_projected_token(
    cluster: Cluster, release: Release
) -> None:
    """Inside the pod, through the ``kubernetes`` Service, the API server knows the chart's
    ServiceAccount: a SelfSubjectReview sent with the mounted token and CA."""
    pod = pods(cluster, release.namespace, release.selector)[0]["metadata"]["name"]
    review = cluster.kubectl(
        "exec",
        "-n",
        release.namespace,
        pod,
        "--",
        "python3",
        "-c",
        "import json, pykube\n"
        "api = pykube.HTTPClient(pykube.KubeConfig.from_service_account())\n"
        "r = api.session.post(api.url + '/apis/authentication.k8s.io/v1/selfsubjectreviews',"
        " json={'apiVersion': 'authentication.k8s.io/v1', 'kind': 'SelfSubjectReview'})\n"
        "r.raise_for_status(); print(api.url); print(r.json()['status']['userInfo']['username'])",
    )
    url, username = review.split()
    assert url == "https://10.96.0.1:443", "the client must reach the API server by the Service"
    account = f"{release.name}-statefulwebapp-operator"
    assert username == f"system:serviceaccount:{release.namespace}:{account}"


def test_chart_operator_reconciles_an_app_to_ready(cluster: Cluster, release: Release) -> None:
    """No operator runs outside the cluster in this module: the in-pod leader does it all."""
    leader = json.loads(
        cluster.kubectl(
            "get", "lease", "statefulwebapp-operator", "-n", release.namespace, "-o", "json"
        )
    )["spec"]["holderIdentity"]
    names = {p["metadata"]["name"] for p in pods(cluster, release.namespace, release.selector)}
    assert leader in names
    namespace = make_namespace(cluster, "swa")
    try:
        body = sample()
        apply(cluster, namespace, body)
        app = wait_ready(cluster, namespace, timeout=120)
        assert app["status"]["readyReplicas"] == 3
        log = cluster.kubectl("logs", "-n", release.namespace, leader)
        made = f"[{namespace}/{body['metadata']['name']}] applied"
        assert made in log, "another process made the children"
        serves_metrics(cluster, release, leader)
    finally:
        delete_namespace(cluster, namespace)


def pod_metrics(cluster: Cluster, namespace: str, pod: str, ip: str) -> Scrape:
    """A pod's /metrics: at its IP from this machine on the local cluster (the real node's pod
    network is this machine's), through the API server's proxy on kind (routed inside its
    nodes only)."""
    if cluster.kind == "local":
        return scrape(ip, 8080)
    return scrape_through_api(cluster.api, namespace, f"pods/{pod}:8080")


def serves_metrics(cluster: Cluster, release: Release, leader: str) -> None:
    """Each operator pod's /metrics, scraped at its pod IP: the leader counts the app's passes
    and Ready reason, the standby says 0; the chart's metrics Service routes to both."""
    running = pods(cluster, release.namespace, release.selector)
    seen = {}
    for pod in running:
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        seen[name] = wait_for(
            lambda ip=ip, name=name: (
                (s := pod_metrics(cluster, release.namespace, name, ip)).value(
                    "statefulwebapp_leader"
                )
                is not None
                and s
            ),
            30,
            f"{name}'s /metrics",
        )
    (standby,) = set(seen) - {leader}
    assert seen[leader].value("statefulwebapp_leader") == 1
    assert seen[leader].total("statefulwebapp_reconcile_passes_total", outcome="changed") >= 1
    assert seen[leader].value("statefulwebapp_apps", reason="Ready") == 1
    # In a pod: requests through the kubernetes Service, with the projected token, counted.
    assert seen[leader].total("statefulwebapp_api_requests_total", verb="apply") >= 1
    assert seen[standby].value("statefulwebapp_leader") == 0
    assert seen[standby].total("statefulwebapp_reconcile_passes_total") == 0
    if cluster.kind == "local":
        assert health(running[0]["status"]["podIP"], 8080)[0] == 200
    service = json.loads(
        cluster.kubectl(
            "get",
            "service",
            f"{release.name}-statefulwebapp-operator-metrics",
            "-n",
            release.namespace,
            "-o",
            "json",
        )
    )
    assert service["spec"]["ports"][0]["name"] == "metrics"
    slices = json.loads(
        cluster.kubectl(
            "get",
            "endpointslices",
            "-n",
            release.namespace,
            "-l",
            f"kubernetes.io/service-name={service['metadata']['name']}",
            "-o",
            "json",
        )
    )["items"]
    addresses = {a for s in slices for e in s["endpoints"] for a in e["addresses"]}
    assert addresses == {p["status"]["podIP"] for p in running}
    # Through the Service: its cluster IP by kube-proxy on this machine (local cluster), or the
    # API server's service proxy (kind's Service network is inside its nodes). One answers.
    if cluster.kind == "local":
        through = scrape(service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"])
    else:
        target = f"services/{service['metadata']['name']}:metrics"
        through = scrape_through_api(cluster.api, release.namespace, target)
    assert through.value("statefulwebapp_leader") in (0, 1)


def test_helm_test_runs_a_real_pod(
    cluster: Cluster, release: Release, placement: Placement
) -> None:
    out = helm(cluster, "test", release.name, "-n", release.namespace, "--logs")
    assert "Phase:          Succeeded" in out, out
    assert re.search(r"^statefulwebapps\s", out, re.MULTILINE), out
    (pod,) = pods(
        cluster,
        release.namespace,
        f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=test",
    )
    assert pod["spec"]["nodeName"] in placement.nodes
    assert pod["status"]["phase"] == "Succeeded"


@pytest.fixture
def on_real_node(cluster: Cluster, release: Release, placement: Placement) -> Iterator[str]:
    """A namespace whose pods all go where pods run for real, whatever their spec says (on
    kind, every worker does: nothing to ask)."""
    namespace = make_namespace(cluster, "real")
    if not placement.spec:
        yield namespace
        delete_namespace(cluster, namespace)
        return
    annotations = {
        "scheduler.alpha.kubernetes.io/node-selector": f"{REAL_NODE}=true",
        "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(ON_REAL_NODE["tolerations"]),
    }
    cluster.kubectl(
        "annotate", "namespace", namespace, *(f"{k}={v}" for k, v in annotations.items())
    )
    yield namespace
    delete_namespace(cluster, namespace)


def test_date_logger_job_runs_and_logs_the_date(
    cluster: Cluster, on_real_node: str, placement: Placement
) -> None:
    """The CronJob the operator renders, scheduled by the controller manager every minute,
    runs its Job's pod on the real node, and the pod prints the date."""
    # The namespace sends the web pod to the real node too, whose kubelet mounts its volume
    # for real: the local test export, never the sample's public address.
    export, _ = export_dir(cluster, on_real_node)
    apply(
        cluster,
        on_real_node,
        sample(
            replicas=1,
            image=images()["nginx"],
            storage={"nfs": export, "capacity": "100Mi", "request": "10Mi"},
            backup={"enabled": False},
            dateLogger={"image": images()["busybox"]},
        ),
    )
    app = parse(get_app(cluster, on_real_node))
    cronjob = names.cronjob(app)
    selector = ",".join(f"{k}={v}" for k, v in names.selector(app, names.DATELOG).items())

    def finished_pod() -> Any:
        for pod in pods(cluster, on_real_node, selector):
            if pod["status"]["phase"] == "Succeeded":
                return pod
        return None

    try:
        pod = wait_for(finished_pod, 150, f"a Job of CronJob {cronjob} to succeed")
    except BaseException:
        print(cluster.kubectl("get", "pods,jobs,cronjobs,events", "-n", on_real_node, "-o", "wide"))
        raise
    assert pod["spec"]["nodeName"] in placement.nodes
    log = cluster.kubectl("logs", "-n", on_real_node, pod["metadata"]["name"])
    match = DATE.search(log)
    assert match, f"no date in the Job's log: {log!r}"
    assert int(match.group(1)) == datetime.now(UTC).year


def rendered_pod(template: dict[str, Any], name: str, content: str) -> dict[str, Any]:
    """A Pod from a rendered pod template, with an emptyDir holding ``content`` as
    ``index.html`` in place of the app's NFS claim (which this kernel cannot mount)."""
    spec = template["spec"]
    spec["volumes"] = [
        {"name": DATA_VOLUME, "emptyDir": {}} if v["name"] == DATA_VOLUME else v
        for v in spec["volumes"]
    ]
    spec["initContainers"] = [
        {
            "name": "content",
            "image": images()["busybox"],
            "command": ["sh", "-c", f"printf %s '{content}' > /data/index.html"],
            "volumeMounts": [{"name": DATA_VOLUME, "mountPath": "/data"}],
        }
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template["metadata"]["labels"]},
        "spec": spec,
    }


def app_spec(namespace: str, **spec: Any) -> Any:
    body = sample(**spec)
    body["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()))
    return parse(body)


def test_backup_agent_script_archives_under_busybox(
    cluster: Cluster, namespace: str, placement: Placement
) -> None:
    """The DaemonSet's container as rendered (busybox, the agent script, its environment),
    archiving every 2 seconds and keeping 2."""
    app = app_spec(
        namespace,
        backup={"image": images()["busybox"], "intervalSeconds": 2, "keep": 2},
    )
    daemonset = render_daemonset(app)
    assert daemonset is not None
    pod = rendered_pod(daemonset["spec"]["template"], "backup-agent", "backed up")
    # The host directory of the rendered agent would outlive the test on this machine.
    pod["spec"]["volumes"] = [
        {"name": v["name"], "emptyDir": {}} if "hostPath" in v else v
        for v in pod["spec"]["volumes"]
    ]
    run_pod(cluster, namespace, placement, pod)
    prefix = f"{namespace}-web-"

    def archives() -> list[str]:
        out = exec_in(cluster, namespace, "backup-agent", "ls /backup")
        return sorted(n for n in out.split() if n.startswith(prefix) and n.endswith(".tar.gz"))

    def log() -> str:
        return cluster.kubectl("logs", "-n", namespace, "backup-agent")

    wait_for(lambda: log().count("pruned") >= 2, 60, "four runs, two of them pruning")
    assert len(archives()) == 2, "BACKUP_KEEP=2 keeps the two newest archives"
    newest = archives()[-1]
    listing = exec_in(cluster, namespace, "backup-agent", f"tar -tzf /backup/{newest}")
    assert "index.html" in listing.replace("./", "").split(), listing
    content = exec_in(
        cluster, namespace, "backup-agent", f"tar -xzOf /backup/{newest} ./index.html"
    )
    assert content == "backed up"


@pytest.mark.local_cluster(
    reason="fetches from the pod's IP on this machine; kind's pod network is routed only "
    "inside its nodes (on kind, tests/e2e/test_reference_scenario.py fetches through the "
    "Service from a pod)"
)
def test_web_image_serves_the_volume(
    cluster: Cluster, namespace: str, placement: Placement
) -> None:
    """The StatefulSet's pod as rendered, with the nginx image built here: it serves the
    content of its data volume on the app's port."""
    app = app_spec(namespace, image=images()["nginx"])
    template = render_statefulset(app)["spec"]["template"]
    pod = run_pod(
        cluster, namespace, placement, rendered_pod(template, "web-0", f"hello from {namespace}")
    )
    ip = pod["status"]["podIP"]

    assert (
        wait_for(lambda: http_get(ip, app.port), 30, f"nginx to answer on {ip}")
        == f"hello from {namespace}"
    )
