"""Golden manifests: each renderer's output for the reference scenario, pinned in YAML.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 make unit`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from statefulwebapp.api.model import (
    DEFAULT_BUSYBOX_IMAGE,
    DEFAULT_IMAGE,
    DEFAULT_WRITABLE_PATHS,
    AppSpec,
    RestoreSpec,
)
from statefulwebapp.api.parse import parse
from statefulwebapp.specs import names
from statefulwebapp.specs.registry import (
    CHILDREN,
    CRONJOB,
    DAEMONSET,
    STATEFULSET,
    Child,
    render_all,
    spec_field,
)
from statefulwebapp.specs.render import (
    AGENT_CAPABILITIES,
    RESTORE_CAPABILITIES,
    WEB_PORT,
    render_network_policy,
)
from statefulwebapp.specs.render_backup import render_daemonset, render_restore_job
from tests.unit.scenario import ARCHIVED, GOLDEN, SCENARIO


@pytest.fixture
def app() -> AppSpec:
    return parse(SCENARIO)


def _golden(path: Path, rendered: object) -> None:
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(rendered, sort_keys=False))
    assert rendered == yaml.safe_load(path.read_text()), f"differs from {path}"


@pytest.mark.parametrize("child", CHILDREN, ids=[c.key for c in CHILDREN])
def test_renderer_matches_golden(app: AppSpec, child: Child) -> None:
    # A role's child (the archives' volume and claim) exists only with the archives on NFS.
    _golden(
        GOLDEN / f"{child.key.lower()}.yaml", child.render(parse(ARCHIVED) if child.role else app)
    )


def test_archives_on_nfs_match_golden() -> None:
    _golden(GOLDEN / "archived" / "daemonset.yaml", render_all(parse(ARCHIVED))["DaemonSet"])


def test_archives_on_nfs_are_each_nodes_directory_of_the_claim() -> None:
    ds = render_all(parse(ARCHIVED))["DaemonSet"]
    assert ds is not None
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    # The node's name comes first: BACKUP_DEST refers to it.
    assert container["env"][0]["name"] == "NODE_NAME"
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["BACKUP_DEST"] == "/backup/$(NODE_NAME)"
    assert env["BACKUP_CREATE_DEST"] == "true"
    assert {"name": "backups", "persistentVolumeClaim": {"claimName": "web-backups"}} in pod[
        "volumes"
    ]
    plain = render_all(parse(SCENARIO))
    assert plain["BackupVolume"] is None
    assert plain["BackupClaim"] is None
    plain_ds = cast("dict[str, Any]", plain["DaemonSet"])
    plain_env = {e["name"] for e in plain_ds["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "NODE_NAME" not in plain_env
    assert "BACKUP_CREATE_DEST" not in plain_env
    off = {
        **ARCHIVED,
        "spec": {**ARCHIVED["spec"], "backup": {**ARCHIVED["spec"]["backup"], "enabled": False}},
    }
    assert all(
        render_all(parse(off))[k] is None for k in ("DaemonSet", "BackupVolume", "BackupClaim")
    )


def test_every_namespaced_child_is_owned_and_labelled() -> None:
    for kind, manifest in render_all(parse(ARCHIVED)).items():
        assert manifest is not None
        labels = manifest["metadata"]["labels"]
        assert labels[names.LABEL_MANAGED_BY] == names.MANAGER
        assert labels[names.LABEL_INSTANCE] == "web"
        assert {names.LABEL_NAME, names.LABEL_COMPONENT} <= labels.keys()
        refs = manifest["metadata"].get("ownerReferences")
        if kind in ("PersistentVolume", "BackupVolume"):
            assert refs is None  # Cluster-scoped: tied by labels; the operator collects it.
            assert labels[names.LABEL_APP_NAMESPACE] == "default"
        else:
            assert refs == [
                {
                    "apiVersion": "apps.k8slab.io/v1alpha1",
                    "kind": "StatefulWebApp",
                    "name": "web",
                    "uid": "0000-uid",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]


def test_children_names_follow_the_contract(app: AppSpec) -> None:
    got = {k: m["metadata"]["name"] for k, m in render_all(app).items() if m}
    assert got == {
        "PersistentVolume": "default.web-data",
        "PersistentVolumeClaim": "web-data",
        "Service": "nginx",
        "NetworkPolicy": "web-ingress",
        "StatefulSet": "web",
        "PodDisruptionBudget": "web",
        "DaemonSet": "web-backup",
        "CronJob": "web-datelog",
    }


def test_disabled_parts_render_nothing() -> None:
    body = {**SCENARIO, "spec": {**SCENARIO["spec"], "backup": {"enabled": False}}}
    body["spec"]["dateLogger"] = {"enabled": False}
    children = render_all(parse(body))
    assert children["DaemonSet"] is None
    assert children["CronJob"] is None


def test_control_plane_toleration_is_optional() -> None:
    body = {**SCENARIO, "spec": {**SCENARIO["spec"], "backup": {"tolerateControlPlane": False}}}
    ds = render_all(parse(body))["DaemonSet"]
    assert ds is not None
    assert "tolerations" not in ds["spec"]["template"]["spec"]


def test_rendering_is_deterministic(app: AppSpec) -> None:
    assert render_all(app) == render_all(parse(SCENARIO))


PLACED = {
    **SCENARIO,
    "spec": {
        **SCENARIO["spec"],
        "nodeSelector": {"disktype": "ssd"},
        "topologySpread": {"maxSkew": 2, "whenUnsatisfiable": "DoNotSchedule"},
        "probes": {
            "readiness": {"httpGet": {"path": "/index.html"}, "periodSeconds": 5},
            "liveness": {"enabled": True, "failureThreshold": 6, "initialDelaySeconds": 30},
        },
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web"}],
        "storage": {
            "nfs": {
                "server": "nfs.example.com",
                "path": "/shared",
                "mountOptions": ["nfsvers=4.1", "hard"],
            }
        },
        "backup": {
            "tolerations": [
                {"key": "maintenance", "operator": "Exists", "effect": "NoExecute"},
                {"operator": "Exists"},
            ]
        },
    },
}
"""The scenario with every placement, probe and mount field set."""


@pytest.mark.parametrize("kind", ["PersistentVolume", "StatefulSet", "DaemonSet"])
def test_placed_renderer_matches_golden(kind: str) -> None:
    _golden(GOLDEN / "placed" / f"{kind.lower()}.yaml", render_all(parse(PLACED))[kind])


def test_mount_options_go_to_the_volume_in_order_and_only_when_set() -> None:
    placed = render_all(parse(PLACED))["PersistentVolume"]
    assert placed is not None
    assert placed["spec"]["mountOptions"] == ["nfsvers=4.1", "hard"]
    plain = render_all(parse(SCENARIO))["PersistentVolume"]
    assert plain is not None
    assert "mountOptions" not in plain["spec"]


def test_backup_tolerations_come_after_the_control_plane_ones() -> None:
    ds = render_all(parse(PLACED))["DaemonSet"]
    assert ds is not None
    keys = [t.get("key") for t in ds["spec"]["template"]["spec"]["tolerations"]]
    assert keys == [
        "node-role.kubernetes.io/master",
        "node-role.kubernetes.io/control-plane",
        "maintenance",
        None,
    ]
    body = {**PLACED, "spec": {**PLACED["spec"], "backup": {"tolerateControlPlane": False}}}
    alone = render_all(parse(body))["DaemonSet"]
    assert alone is not None
    assert "tolerations" not in alone["spec"]["template"]["spec"]


def test_web_placement_is_rendered_only_when_set() -> None:
    placed = render_all(parse(PLACED))["StatefulSet"]
    plain = render_all(parse(SCENARIO))["StatefulSet"]
    assert placed is not None
    assert plain is not None
    pod = placed["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"disktype": "ssd"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "web"}]
    assert not {"nodeSelector", "tolerations"} & plain["spec"]["template"]["spec"].keys()


def test_probes_name_the_port_so_they_follow_it() -> None:
    body = {**SCENARIO, "spec": {**SCENARIO["spec"], "port": 8080, "podSecurity": "restricted"}}
    sts = render_all(parse(body))["StatefulSet"]
    assert sts is not None
    (web,) = sts["spec"]["template"]["spec"]["containers"]
    assert web["ports"] == [{"name": "http", "containerPort": 8080}]
    assert web["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert "livenessProbe" not in web


def test_a_probe_without_a_delay_renders_none_as_the_api_server_stores_none() -> None:
    """A zero ``initialDelaySeconds`` never shows on the live object: rendered, every new
    operator process would apply the StatefulSet once more (found by tests/e2e/test_metrics)."""
    sts = render_all(parse(SCENARIO))["StatefulSet"]
    assert sts is not None
    (web,) = sts["spec"]["template"]["spec"]["containers"]
    assert "initialDelaySeconds" not in web["readinessProbe"]
    body = {
        **SCENARIO,
        "spec": {**SCENARIO["spec"], "probes": {"readiness": {"initialDelaySeconds": 5}}},
    }
    sts = render_all(parse(body))["StatefulSet"]
    assert sts is not None
    assert (
        sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["initialDelaySeconds"]
        == 5
    )


def test_probes_turned_off_render_nothing() -> None:
    body = {**SCENARIO, "spec": {**SCENARIO["spec"], "probes": {"readiness": {"enabled": False}}}}
    sts = render_all(parse(body))["StatefulSet"]
    assert sts is not None
    (web,) = sts["spec"]["template"]["spec"]["containers"]
    assert not {"readinessProbe", "livenessProbe"} & web.keys()


def test_web_pods_spread_over_nodes_unless_turned_off() -> None:
    sts = render_all(parse(SCENARIO))["StatefulSet"]
    assert sts is not None
    (spread,) = sts["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread == {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": sts["spec"]["selector"]["matchLabels"]},
    }
    body = {**SCENARIO, "spec": {**SCENARIO["spec"], "topologySpread": {"enabled": False}}}
    off = render_all(parse(body))["StatefulSet"]
    assert off is not None
    assert "topologySpreadConstraints" not in off["spec"]["template"]["spec"]


def test_the_disruption_budget_needs_two_replicas_and_can_be_turned_off() -> None:
    cases = [
        (3, True, True),
        (2, True, True),
        (1, True, False),
        (0, True, False),
        (3, False, False),
    ]
    for replicas, enabled, present in cases:
        spec = {**SCENARIO["spec"], "replicas": replicas, "disruptionBudget": {"enabled": enabled}}
        pdb = render_all(parse({**SCENARIO, "spec": spec}))["PodDisruptionBudget"]
        assert (pdb is not None) is present, (replicas, enabled)
    spec = {**SCENARIO["spec"], "disruptionBudget": {"maxUnavailable": "25%"}}
    pdb = render_all(parse({**SCENARIO, "spec": spec}))["PodDisruptionBudget"]
    assert pdb is not None
    assert pdb["spec"]["maxUnavailable"] == "25%"


@pytest.mark.parametrize("security", ["default", "restricted"])
def test_agents_and_restores_run_without_privilege(security: str) -> None:
    """No escalation, the runtime's seccomp profile, a read-only root filesystem and every
    capability dropped but the few named in render.py, in every podSecurity mode."""
    body = {**SCENARIO, "spec": {**SCENARIO["spec"], "podSecurity": security}}
    if security == "restricted":
        body["spec"]["runAsUser"] = 101
    app = parse(body)
    agent = render_daemonset(app)
    assert agent is not None
    job = render_restore_job(app, RestoreSpec("r", "default", "uid-r", "web"))
    added = {"default": AGENT_CAPABILITIES, "restricted": ()}[security]
    for pod, add in ((agent, added), (job, RESTORE_CAPABILITIES)):
        spec = pod["spec"]["template"]["spec"]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        context = spec["containers"][0]["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert tuple(context["capabilities"].get("add", ())) == add


def test_each_app_keeps_its_archives_in_a_directory_of_its_own_under_the_admins_root() -> None:
    """No spec chooses it; two apps whose archive prefixes are alike (namespace a-b, app c and
    namespace a, app b-c: both a-b-c) never share it."""

    def directory(namespace: str, name: str, **spec: object) -> str:
        body = {
            **SCENARIO,
            "metadata": {**SCENARIO["metadata"], "namespace": namespace, "name": name},
            "spec": {**SCENARIO["spec"], **spec},
        }
        agent = render_daemonset(parse(body, backup_root="/srv/archives/"))
        assert agent is not None
        return str(agent["spec"]["template"]["spec"]["volumes"][1]["hostPath"]["path"])

    assert directory("a-b", "c") == "/srv/archives/a-b/c"
    assert directory("a", "b-c") == "/srv/archives/a/b-c"
    # An app stored before the field was refused still carries it: ignored.
    assert directory("a", "web", backup={"hostPath": "/var"}) == "/srv/archives/a/web"


def _pod_templates(app: AppSpec) -> dict[str, dict[str, Any]]:
    """Every pod template the operator renders for ``app``, by the component it runs."""
    children = render_all(app)
    sts, ds, cron = children["StatefulSet"], children["DaemonSet"], children["CronJob"]
    assert sts is not None
    assert ds is not None
    assert cron is not None
    job = render_restore_job(app, RestoreSpec("r", app.namespace, "uid-r", app.name))
    return {
        names.WEB: sts["spec"]["template"],
        names.BACKUP: ds["spec"]["template"],
        names.DATELOG: cron["spec"]["jobTemplate"]["spec"]["template"],
        names.RESTORE: job["spec"]["template"],
    }


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector of ``matchLabels`` and ``In`` expressions, as the API server reads it."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


@pytest.mark.parametrize("body", [SCENARIO, ARCHIVED], ids=["scenario", "archived"])
def test_the_network_policy_covers_every_pod_of_the_app_and_no_other(body: dict[str, Any]) -> None:
    app = parse(body)
    policy = render_network_policy(app)
    assert policy is not None
    selector = policy["spec"]["podSelector"]
    templates = _pod_templates(app)
    assert sorted(templates) == sorted(names.POD_COMPONENTS)
    for component, template in templates.items():
        assert _selects(selector, template["metadata"]["labels"]), component
    other = parse({**body, "metadata": {**body["metadata"], "name": "web2"}})
    for component, template in _pod_templates(other).items():
        assert not _selects(selector, template["metadata"]["labels"]), component


def test_the_network_policy_admits_the_web_port_of_the_web_pods_only() -> None:
    """The rule's port is a name: only the pods whose containers declare it are reachable, and
    only the web container declares a port at all."""
    app = parse(SCENARIO)
    policy = render_network_policy(app)
    assert policy is not None
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": WEB_PORT}]}]
    for component, template in _pod_templates(app).items():
        declared = [
            port["name"]
            for container in template["spec"]["containers"]
            for port in container.get("ports", ())
        ]
        assert declared == ([WEB_PORT] if component == names.WEB else []), component
    # A new port is reached by the same policy: the StatefulSet carries it under the name.
    moved = parse({**SCENARIO, "spec": {**SCENARIO["spec"], "port": 8080}})
    assert render_network_policy(moved) == policy
    web = _pod_templates(moved)[names.WEB]["spec"]["containers"][0]
    assert web["ports"] == [{"name": WEB_PORT, "containerPort": 8080}]


def test_the_network_policy_may_be_turned_off() -> None:
    off = {**SCENARIO, "spec": {**SCENARIO["spec"], "networkPolicy": {"enabled": False}}}
    assert render_all(parse(off))["NetworkPolicy"] is None
    on = {**SCENARIO, "spec": {**SCENARIO["spec"], "networkPolicy": {"enabled": True}}}
    assert render_all(parse(on))["NetworkPolicy"] == render_all(parse(SCENARIO))["NetworkPolicy"]


def _web(**spec: object) -> dict[str, Any]:
    sts = render_all(parse({**SCENARIO, "spec": {**SCENARIO["spec"], **spec}}))["StatefulSet"]
    assert sts is not None
    return dict(sts["spec"]["template"]["spec"])


def _date_logger(**settings: object) -> dict[str, Any]:
    body = {**SCENARIO, "spec": {**SCENARIO["spec"], "dateLogger": settings}}
    cronjob = render_all(parse(body))["CronJob"]
    assert cronjob is not None
    return cronjob


def test_every_container_gets_pinned_images_pulled_only_when_missing() -> None:
    app = parse(SCENARIO)
    job = render_restore_job(app, RestoreSpec("r", "default", "uid-r", "web"))
    pods = [
        _web()["containers"][0],
        render_daemonset(app)["spec"]["template"]["spec"]["containers"][0],  # type: ignore[index]
        _date_logger()["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0],
        job["spec"]["template"]["spec"]["containers"][0],
    ]
    assert [(c["image"], c["imagePullPolicy"]) for c in pods] == [
        (DEFAULT_IMAGE, "IfNotPresent"),
        *[(DEFAULT_BUSYBOX_IMAGE, "IfNotPresent")] * 3,
    ]
    (web,) = _web(imagePullPolicy="Always", image="nginx:latest")["containers"]
    assert (web["image"], web["imagePullPolicy"]) == ("nginx:latest", "Always")


def test_every_container_has_requests_and_limits_unless_emptied() -> None:
    app = parse(SCENARIO)
    job = render_restore_job(app, RestoreSpec("r", "default", "uid-r", "web"))
    containers = {
        "web": _web()["containers"][0],
        "backup": render_daemonset(app)["spec"]["template"]["spec"]["containers"][0],  # type: ignore[index]
        "date": _date_logger()["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0],
        "restore": job["spec"]["template"]["spec"]["containers"][0],
    }
    for name, container in containers.items():
        for half in ("requests", "limits"):
            assert {"memory", "ephemeral-storage"} <= container["resources"][half].keys(), name
        assert "cpu" in container["resources"]["requests"], name
    assert "cpu" not in containers["web"]["resources"]["limits"]
    assert containers["backup"]["resources"]["limits"]["cpu"] == "100m"
    assert containers["restore"]["resources"] == containers["backup"]["resources"]
    # {} is none at all; a given block is rendered as given.
    assert "resources" not in _web(resources={})["containers"][0]
    date = _date_logger(resources={})["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert "resources" not in date["containers"][0]
    date = _date_logger(resources={"limits": {"memory": "64Mi"}})["spec"]["jobTemplate"]["spec"]
    assert date["template"]["spec"]["containers"][0]["resources"] == {"limits": {"memory": "64Mi"}}


def test_web_root_is_read_only_with_an_empty_volume_for_each_writable_path() -> None:
    pod = _web()
    (web,) = pod["containers"]
    assert web["securityContext"] == {"readOnlyRootFilesystem": True}
    writable = {m["name"]: m["mountPath"] for m in web["volumeMounts"][1:]}
    assert list(writable.values()) == list(DEFAULT_WRITABLE_PATHS)
    assert [v for v in pod["volumes"] if v["name"] in writable] == [
        {"name": name, "emptyDir": {}} for name in writable
    ]
    # Paths of the user's own, in their order.
    pod = _web(writablePaths=["/srv/cache", "/tmp"])
    assert [m["mountPath"] for m in pod["containers"][0]["volumeMounts"]] == [
        "/usr/share/nginx/html",
        "/srv/cache",
        "/tmp",
    ]
    assert len(pod["volumes"]) == 3
    # None writable but the shared volume.
    pod = _web(writablePaths=[])
    assert [v["name"] for v in pod["volumes"]] == ["data"]
    assert pod["containers"][0]["securityContext"] == {"readOnlyRootFilesystem": True}


def test_web_root_turned_off_is_writable_and_mounts_no_writable_path() -> None:
    pod = _web(readOnlyRootFilesystem=False)
    (web,) = pod["containers"]
    assert "securityContext" not in web
    assert [m["name"] for m in web["volumeMounts"]] == ["data"]
    assert [v["name"] for v in pod["volumes"]] == ["data"]


def test_a_restricted_web_root_stays_read_only() -> None:
    pod = _web(podSecurity="restricted", runAsUser=101)
    assert pod["containers"][0]["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    pod = _web(podSecurity="restricted", runAsUser=101, readOnlyRootFilesystem=False)
    assert "readOnlyRootFilesystem" not in pod["containers"][0]["securityContext"]


def test_date_logger_root_is_read_only_unless_turned_off() -> None:
    def context(**settings: object) -> dict[str, Any]:
        pod = _date_logger(**settings)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return dict(pod["containers"][0]["securityContext"])

    assert context()["readOnlyRootFilesystem"] is True
    off = context(readOnlyRootFilesystem=False)
    assert "readOnlyRootFilesystem" not in off
    assert off["allowPrivilegeEscalation"] is False  # The rest of "restricted" stays.


def test_starting_deadline_is_rendered_unless_zero() -> None:
    assert _date_logger()["spec"]["startingDeadlineSeconds"] == 300
    assert _date_logger(startingDeadlineSeconds=60)["spec"]["startingDeadlineSeconds"] == 60
    assert "startingDeadlineSeconds" not in _date_logger(startingDeadlineSeconds=0)["spec"]


@pytest.mark.parametrize(
    ("kind", "child_field", "spec"),
    [
        (STATEFULSET, "spec.template.spec.containers[0].imagePullPolicy", "spec.imagePullPolicy"),
        (STATEFULSET, "spec.template.spec.containers[0].image", "spec.image"),
        (
            STATEFULSET,
            "spec.template.spec.containers[0].volumeMounts[0].mountPath",
            "spec.storage.mountPath",
        ),
        (
            STATEFULSET,
            "spec.template.spec.containers[0].volumeMounts[2].mountPath",
            "spec.writablePaths",
        ),
        (
            STATEFULSET,
            "spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem",
            "spec.readOnlyRootFilesystem",
        ),
        (
            CRONJOB,
            "spec.startingDeadlineSeconds",
            "spec.dateLogger.startingDeadlineSeconds",
        ),
        (
            CRONJOB,
            "spec.jobTemplate.spec.template.spec.containers[0].resources.limits",
            "spec.dateLogger.resources",
        ),
        (
            DAEMONSET,
            "spec.template.spec.containers[0].imagePullPolicy",
            "spec.backup.imagePullPolicy",
        ),
    ],
)
def test_an_invalid_new_field_is_reported_against_the_spec_field(
    kind: Child, child_field: str, spec: str
) -> None:
    assert spec_field(kind, child_field) == spec
