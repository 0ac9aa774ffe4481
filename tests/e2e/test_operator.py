"""The operator, for real: one StatefulWebApp becomes the reference scenario and stays that way.

Expectations come from the project's own renderers (``render_all``), so these tests check
that the cluster shows what the operator promised, not a second hand-written copy of it.

Where they run: what needs real pods on several kubeadm nodes (the sample Ready with its pods
really serving, stable DNS names from CoreDNS, an agent on every node including the tainted
control plane, the date logger's Jobs, children deleted or edited by hand and put back while
pods run, archives on an export of their own) runs on kind; what the API server and the
operator decide alone (deletion, a name taken, bad input, invalid schedules, a part turned off,
the scale subresource) runs on the local cluster, whose kwok pods are Ready at once.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pykube
import pytest
import yaml

from statefulwebapp.api.parse import parse
from statefulwebapp.specs import names
from statefulwebapp.specs.registry import BACKUP_CLAIM, BACKUP_VOLUME, render_all
from tests.e2e.apps import (
    apply,
    child,
    children_match_the_rendering,
    dry_run,
    get_app,
    ready_condition,
    runnable,
    sample,
    scenario_nodes,
    wait_ready,
    wait_reason,
    warnings,
)
from tests.e2e.cluster import Cluster, Operator, wait_for
from tests.e2e.realnode import export_dir

pytestmark = pytest.mark.local_cluster(
    reason="what the API server and the operator decide without a running container: the "
    "same Kubernetes build serves kind, so one cluster proves it"
)

ON_REAL_PODS = pytest.mark.kind_cluster(
    reason="it needs real pods on several kubeadm nodes (readiness, DNS, every node's agent)"
)


def pods(cluster: Cluster, namespace: str, component: str) -> list[dict[str, Any]]:
    selector = {names.LABEL_INSTANCE: "web", names.LABEL_COMPONENT: component}
    return [
        p.obj
        for p in pykube.Pod.objects(cluster.api, namespace=namespace).filter(selector=selector)
    ]


# -- the reference scenario through one StatefulWebApp ------------------------------------


@ON_REAL_PODS
def test_every_child_matches_its_rendering(cluster: Cluster, app_ns: str) -> None:
    found = children_match_the_rendering(cluster, app_ns)
    # The sample keeps its archives on the nodes: only backup.target.nfs renders their volume.
    absent = {kind for kind, live in found.items() if live is None}
    assert absent == {BACKUP_VOLUME.key, BACKUP_CLAIM.key}, found


@ON_REAL_PODS
def test_sample_status_reads_three_of_three(cluster: Cluster, app_ns: str) -> None:
    status = get_app(cluster, app_ns)["status"]
    assert status["ready"] == "3/3"
    assert status["readyReplicas"] == 3
    assert status["storage"] == "Bound"
    nodes = scenario_nodes(cluster)
    assert status["backup"] == f"{len(nodes)}/{len(nodes)}"
    row = cluster.kubectl("get", "swa", "web", "-n", app_ns, "--no-headers")
    assert row.split()[1:4] == ["3/3", "Bound", f"{len(nodes)}/{len(nodes)}"]


@ON_REAL_PODS
def test_web_pods_have_stable_names_and_dns(cluster: Cluster, app_ns: str) -> None:
    web = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods(cluster, app_ns, names.WEB)}
    assert sorted(web) == ["web-0", "web-1", "web-2"]
    svc = child(cluster, "Service", "nginx", app_ns)
    assert svc is not None
    assert svc["spec"]["clusterIP"] == "None"
    one = f"web-1.nginx.{app_ns}.svc.cluster.local"
    wait_for(lambda: cluster.resolve(one) == [web["web-1"]], 30, f"{one} -> {web['web-1']}")
    every = f"nginx.{app_ns}.svc.cluster.local"
    wait_for(lambda: cluster.resolve(every) == sorted(web.values()), 30, f"{every} -> all three")


@ON_REAL_PODS
def test_backup_agent_on_every_node_including_the_control_plane(
    cluster: Cluster, app_ns: str
) -> None:
    nodes = set(scenario_nodes(cluster))
    placed = sorted(p["spec"]["nodeName"] for p in pods(cluster, app_ns, names.BACKUP))
    assert placed == sorted(nodes)
    agent = pods(cluster, app_ns, names.BACKUP)[0]
    mounts = {m["mountPath"]: m for m in agent["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["/data"].get("readOnly") is True


@ON_REAL_PODS
def test_date_logger_jobs_complete(cluster: Cluster, app_ns: str) -> None:
    """One run proves it (the history of several is the scenario's CronJob test): up to a
    minute for the schedule, then the Job's pod."""

    def completed() -> list[str]:
        jobs = pykube.Job.objects(cluster.api, namespace=app_ns)
        return sorted(j.name for j in jobs if j.obj.get("status", {}).get("succeeded") == 1)

    done = wait_for(completed, 150, "a completed Job")
    assert all(name.startswith("web-datelog-") for name in done)
    wait_for(lambda: get_app(cluster, app_ns)["status"].get("dateLog") == "ok", 60, "dateLog ok")


# -- drift, scale, update ------------------------------------------------------------------


@ON_REAL_PODS
def test_deleted_children_come_back(cluster: Cluster, fresh_ns: str) -> None:
    apply(cluster, fresh_ns, sample())
    wait_ready(cluster, fresh_ns)
    for kind, name in [("service", "nginx"), ("statefulset", "web"), ("cronjob", "web-datelog")]:
        old = json.loads(cluster.kubectl("get", kind, name, "-n", fresh_ns, "-o", "json"))
        cluster.kubectl("delete", kind, name, "-n", fresh_ns, "--wait=true")
        wait_for(
            lambda k=kind, n=name, uid=old["metadata"]["uid"]: (
                (c := child(cluster, k, n, fresh_ns)) and c["metadata"]["uid"] != uid
            ),
            30,
            f"{kind} {name} to be recreated",
        )
    wait_ready(cluster, fresh_ns)


@ON_REAL_PODS
def test_hand_edits_of_managed_fields_are_reverted_others_kept(
    cluster: Cluster, fresh_ns: str
) -> None:
    apply(cluster, fresh_ns, sample())
    wait_ready(cluster, fresh_ns)
    cluster.kubectl("annotate", "statefulset", "web", "-n", fresh_ns, "team=web-ops")
    cluster.kubectl("scale", "statefulset", "web", "-n", fresh_ns, "--replicas=1")
    wait_for(
        lambda: (
            (s := child(cluster, "StatefulSet", "web", fresh_ns)) and s["spec"]["replicas"] == 3
        ),
        30,
        "StatefulSet replicas set back to 3",
    )
    sts = child(cluster, "StatefulSet", "web", fresh_ns)
    assert sts is not None
    assert sts["metadata"]["annotations"]["team"] == "web-ops"
    wait_ready(cluster, fresh_ns)


@pytest.mark.local_cluster(
    reason="it rolls the web pods to a public image (nginx:1.27), which a cluster without a "
    "registry cannot pull (kwok's nodes pull nothing); on kind every image is one built here"
)
def test_scale_subresource_and_image_update_roll_through(cluster: Cluster, fresh_ns: str) -> None:
    apply(cluster, fresh_ns, sample())
    wait_ready(cluster, fresh_ns)
    cluster.kubectl("scale", "swa", "web", "-n", fresh_ns, "--replicas=5")
    wait_ready(cluster, fresh_ns)
    assert sorted(p["metadata"]["name"] for p in pods(cluster, fresh_ns, names.WEB)) == [
        f"web-{i}" for i in range(5)
    ]
    apply(cluster, fresh_ns, sample(replicas=5, image="nginx:1.27"))
    wait_ready(cluster, fresh_ns, timeout=120)
    images = {p["spec"]["containers"][0]["image"] for p in pods(cluster, fresh_ns, names.WEB)}
    assert images == {"nginx:1.27"}


@ON_REAL_PODS
def test_backup_can_skip_the_control_plane(cluster: Cluster, fresh_ns: str) -> None:
    body = sample(backup={"tolerateControlPlane": False})
    apply(cluster, fresh_ns, body)
    wait_ready(cluster, fresh_ns)
    workers = sorted(n for n, control_plane in scenario_nodes(cluster).items() if not control_plane)
    assert sorted(p["spec"]["nodeName"] for p in pods(cluster, fresh_ns, names.BACKUP)) == workers


def test_disabling_a_part_removes_its_child(cluster: Cluster, fresh_ns: str) -> None:
    apply(cluster, fresh_ns, sample())
    wait_ready(cluster, fresh_ns)
    apply(cluster, fresh_ns, sample(dateLogger={"enabled": False}))
    wait_for(lambda: child(cluster, "CronJob", "web-datelog", fresh_ns) is None, 30, "CronJob gone")
    wait_ready(cluster, fresh_ns)


@ON_REAL_PODS
def test_archives_go_to_an_export_of_their_own_and_come_back_to_the_nodes(
    cluster: Cluster, fresh_ns: str
) -> None:
    """``backup.target.nfs`` set, then removed, on a live app: every node's agent really
    archives, each into its node's directory of the export (the local cluster's real node's
    agent is tests/e2e/test_restore.py's)."""
    target, shared = export_dir(cluster, f"{fresh_ns}-archives")
    apply(cluster, fresh_ns, sample())
    wait_ready(cluster, fresh_ns)
    apply(cluster, fresh_ns, sample(backup={"target": {"nfs": target}}))
    wait_ready(cluster, fresh_ns, timeout=180)
    found = children_match_the_rendering(cluster, fresh_ns)
    claim = found["BackupClaim"]
    assert claim is not None
    assert claim["status"]["phase"] == "Bound"
    agents = pods(cluster, fresh_ns, names.BACKUP)
    volumes = {v["name"]: v for v in agents[0]["spec"]["volumes"]}
    assert volumes["backups"]["persistentVolumeClaim"]["claimName"] == names.backup_claim(
        parse(get_app(cluster, fresh_ns))
    )
    archiving = set(scenario_nodes(cluster))
    assert len(archiving) == 4, f"the scenario's four nodes, each with an agent: {archiving}"

    def every_node_archived() -> bool:
        made = {d.name for d in shared.iterdir() if list(d.glob(f"{fresh_ns}-web-*.tar.gz"))}
        return made == archiving

    wait_for(every_node_archived, 120, f"one directory with an archive per node in {shared}")
    kept = sorted(shared.rglob("*.tar.gz"))
    apply(cluster, fresh_ns, sample())
    wait_ready(cluster, fresh_ns, timeout=180)
    found = children_match_the_rendering(cluster, fresh_ns)
    assert found["BackupVolume"] is None
    assert found["BackupClaim"] is None
    # Deleted by the pass; the claim goes once no agent mounts it, the volume after it.
    wait_for(
        lambda: (
            child(cluster, "PersistentVolume", names.backup_volume_of(fresh_ns, "web"), "") is None
            and child(cluster, "PersistentVolumeClaim", "web-backups", fresh_ns) is None
        ),
        90,
        "the archives' volume and claim gone",
    )
    assert set(kept) <= set(shared.rglob("*.tar.gz")), "archives on the export were deleted"


# -- deletion, conflicts, bad input -------------------------------------------------------


def test_deletion_removes_every_child_and_recreation_sees_the_same_export(
    cluster: Cluster, fresh_ns: str
) -> None:
    apply(cluster, fresh_ns, sample())
    wait_ready(cluster, fresh_ns)
    app = parse(get_app(cluster, fresh_ns))
    rendered = {k: m for k, m in render_all(app).items() if m}
    cluster.kubectl("delete", "swa", "web", "-n", fresh_ns, "--wait=true", "--timeout=60s")
    for kind, manifest in rendered.items():
        name = manifest["metadata"]["name"]
        wait_for(
            lambda k=kind, n=name: child(cluster, k, n, fresh_ns) is None, 60, f"{kind} {name} gone"
        )
    apply(cluster, fresh_ns, sample())
    wait_ready(cluster, fresh_ns)
    pv = child(cluster, "PersistentVolume", names.volume(app), fresh_ns)
    assert pv is not None
    export = runnable(cluster, sample(), fresh_ns)["spec"]["storage"]["nfs"]
    assert pv["spec"]["nfs"] == {"server": export["server"], "path": export["path"]}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"


def test_foreign_object_in_the_way_is_reported_not_overwritten(
    cluster: Cluster, fresh_ns: str
) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nginx", "labels": {"owner": "someone-else"}},
        "spec": {"selector": {"app": "other"}, "ports": [{"port": 8080}]},
    }
    apply(cluster, fresh_ns, foreign)
    apply(cluster, fresh_ns, sample())
    condition = wait_reason(cluster, fresh_ns, "NameConflict")
    assert condition["status"] == "False"
    assert f"Service {fresh_ns}/nginx" in condition["message"]
    wait_for(
        lambda: warnings(cluster, fresh_ns, "NameConflict"), 30, "a NameConflict Warning event"
    )
    svc = child(cluster, "Service", "nginx", fresh_ns)
    assert svc is not None
    assert svc["spec"]["ports"][0]["port"] == 8080
    assert svc["metadata"]["labels"] == {"owner": "someone-else"}
    assert child(cluster, "StatefulSet", "web", fresh_ns) is None  # Nothing half-applied.


INVALID_SCHEDULES = ["*/5 25 * * *", "* * * * 7", "5-1 * * * *", "1-/2 * * * *", "@HOURLY"]
"""Schedules the CRD lets through (five fields, or a macro) and the API server's cron parser
refuses."""


@pytest.fixture(scope="module")
def cron_answers(cluster: Cluster) -> dict[str, str]:
    """The API server's answer to the CronJob the operator renders for each invalid schedule,
    all asked in one server-side dry run (a List): the parser is the API server's, one call
    exercises it for every string."""
    cronjobs = []
    for i, schedule in enumerate(INVALID_SCHEDULES):
        body = sample(dateLogger={"schedule": schedule})
        body["metadata"]["namespace"] = "default"
        cronjob = render_all(parse(body))["CronJob"]
        assert cronjob is not None
        cronjob["metadata"] = {"name": f"cron-{i}"}
        cronjobs.append(cronjob)
    out = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        "default",
        "-f",
        "-",
        stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": cronjobs}),
        check=False,
    )
    return {
        schedule: "\n".join(line for line in out.splitlines() if f'"cron-{i}"' in line)
        for i, schedule in enumerate(INVALID_SCHEDULES)
    }


@pytest.mark.parametrize("schedule", INVALID_SCHEDULES)
def test_the_api_servers_cron_parser_refuses_the_schedule(
    cron_answers: dict[str, str], schedule: str
) -> None:
    answer = cron_answers[schedule]
    assert "is invalid" in answer, answer
    assert "spec.schedule" in answer, answer


def test_invalid_schedule_is_reported_and_nothing_is_created(
    cluster: Cluster, fresh_ns: str
) -> None:
    # The CRD lets it through; the API server's own cron parser, asked by applying the
    # CronJob first, refuses it (each string's refusal: the test above).
    schedule = INVALID_SCHEDULES[0]
    apply(cluster, fresh_ns, sample(dateLogger={"schedule": schedule}))
    condition = wait_reason(cluster, fresh_ns, "InvalidSpec")
    assert condition["message"].startswith("spec.dateLogger.schedule: the API server refused")
    assert schedule in condition["message"]
    wait_for(lambda: warnings(cluster, fresh_ns, "InvalidSpec"), 30, "an InvalidSpec Warning event")
    for kind, name in [
        ("CronJob", "web-datelog"),
        ("StatefulSet", "web"),
        ("Service", "nginx"),
        ("PersistentVolumeClaim", "web-data"),
    ]:
        assert child(cluster, kind, name, fresh_ns) is None
    apply(cluster, fresh_ns, sample())  # Fixing the field is all it takes.
    wait_ready(cluster, fresh_ns)


def test_nfs_change_is_refused_at_admission(cluster: Cluster, fresh_ns: str) -> None:
    apply(cluster, fresh_ns, sample())
    body = sample()
    body["spec"]["storage"]["nfs"]["path"] = "/elsewhere"
    out = cluster.kubectl(
        "apply", "-n", fresh_ns, "-f", "-", stdin=yaml.safe_dump(body), check=False
    )
    assert "storage.nfs.server and storage.nfs.path are immutable" in out
    kept = runnable(cluster, sample(), fresh_ns)["spec"]["storage"]["nfs"]["path"]
    assert get_app(cluster, fresh_ns)["spec"]["storage"]["nfs"]["path"] == kept


def test_service_name_change_is_refused_at_admission(cluster: Cluster, fresh_ns: str) -> None:
    apply(cluster, fresh_ns, sample())
    out = cluster.kubectl(
        "apply",
        "-n",
        fresh_ns,
        "-f",
        "-",
        stdin=yaml.safe_dump(sample(serviceName="web2")),
        check=False,
    )
    assert "serviceName is immutable" in out
    assert get_app(cluster, fresh_ns)["spec"]["serviceName"] == "nginx"


BAD_INPUT = [
    ("negative replicas", {"replicas": -1}, "spec.replicas"),
    ("absurd replicas", {"replicas": 100000}, "spec.replicas"),
    ("missing nfs server", {"storage": {"nfs": {"path": "/shared"}}}, "server"),
    ("missing nfs path", {"storage": {"nfs": {"server": "nfs.local"}}}, "path"),
    (
        "relative nfs path",
        {"storage": {"nfs": {"server": "nfs.local", "path": "shared"}}},
        "not absolute",
    ),
    ("dotdot nfs path", {"storage": {"nfs": {"server": "nfs.local", "path": "/a/../etc"}}}, ".."),
    (
        "malformed server",
        {"storage": {"nfs": {"server": "nfs server!", "path": "/x"}}},
        "storage.nfs.server",
    ),
    (
        "request above capacity",
        {"storage": {"nfs": {"server": "a", "path": "/x"}, "capacity": "10Mi", "request": "1Gi"}},
        "larger than storage.capacity",
    ),
    ("invalid port", {"port": 70000}, "spec.port"),
    ("bad serviceName", {"serviceName": "Nginx_Svc"}, "serviceName"),
    ("empty image", {"image": ""}, "spec.image"),
    ("malformed quantity", {"resources": {"limits": {"memory": "lots"}}}, "quantity"),
    ("a host directory", {"backup": {"hostPath": "/var"}}, "cannot be chosen by an app"),
    (
        "malformed capacity",
        {"storage": {"nfs": {"server": "a", "path": "/x"}, "capacity": "big"}},
        "quantity",
    ),
]


@pytest.mark.parametrize(("case", "spec", "words"), BAD_INPUT, ids=[c for c, _, _ in BAD_INPUT])
def test_bad_input_is_rejected_with_a_clear_message(
    cluster: Cluster, operator: Operator, case: str, spec: dict[str, Any], words: str
) -> None:
    body = sample()
    storage = spec.pop("storage", None)
    if storage is not None:
        body["spec"]["storage"] = storage
    body["spec"].update(spec)
    body["metadata"]["name"] = "bad"
    out = dry_run(cluster, body)
    assert "is invalid" in out or "Invalid value" in out, f"{case} was accepted: {out}"
    assert words in out, f"{case}: the message does not mention {words!r}: {out}"


@pytest.mark.parametrize("name", ["a" * 45, "Web", "9web"])
def test_app_names_that_break_a_child_are_rejected(
    cluster: Cluster, operator: Operator, name: str
) -> None:
    body = sample()
    body["metadata"]["name"] = name
    out = dry_run(cluster, body)
    assert "metadata.name" in out, out
    assert "created" not in out


# -- a node lost --------------------------------------------------------------------------


def node_container(action: str, node: str) -> None:
    """Freeze (``pause``) or thaw (``unpause``) a kind node's container: its kubelet stops
    posting status, as a machine that hangs or is cut off from the network does.

    Not ``stop``: a stopped node's container comes back with another address on podman's
    network, which the test export's allow-list (the nodes' addresses at kind.sh ready) does
    not follow, so its pods could not mount their volume again.
    """
    subprocess.run(["podman", action, node], check=True, capture_output=True, timeout=120)


def node_ready(cluster: Cluster, node: str) -> bool:
    body = json.loads(cluster.kubectl("get", "node", node, "-o", "json"))
    return any(c["type"] == "Ready" and c["status"] == "True" for c in body["status"]["conditions"])


@ON_REAL_PODS
def test_a_lost_node_is_named_with_the_pods_on_it_and_ready_comes_back_with_it(
    cluster: Cluster, fresh_ns: str
) -> None:
    """A worker lost (its container frozen): the status names that node, its condition and
    since when, and the app's web pod and agent on it, never a healthy pod's old probe
    failure. Back, the app is Ready by itself."""
    apply(cluster, fresh_ns, sample())
    wait_ready(cluster, fresh_ns, timeout=180)
    web = {p["spec"]["nodeName"]: p["metadata"]["name"] for p in pods(cluster, fresh_ns, names.WEB)}
    node, pod = sorted(web.items())[-1]
    agent = next(
        p["metadata"]["name"]
        for p in pods(cluster, fresh_ns, names.BACKUP)
        if p["spec"]["nodeName"] == node
    )
    node_container("pause", node)
    try:
        condition = wait_for(
            lambda: (
                (c := ready_condition(get_app(cluster, fresh_ns))).get("reason") == "NodeNotReady"
                and c
            ),
            180,
            f"NodeNotReady once node {node} is lost",
        )
        message = condition["message"]
        print(f"Ready=False NodeNotReady: {message}")
        assert message.startswith(f"node {node} is unreachable"), message
        assert f"web pod {pod} and backup agent {agent} on it" in message
        others = sorted(set(web.values()) - {pod})
        assert not any(other in message for other in others), message
    finally:
        node_container("unpause", node)
    back = time.monotonic()
    wait_for(lambda: node_ready(cluster, node), 180, f"node {node} Ready again")
    wait_ready(cluster, fresh_ns, timeout=240)
    print(f"Ready again {time.monotonic() - back:.1f} s after node {node} came back")
