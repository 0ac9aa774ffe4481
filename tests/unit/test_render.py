"""Golden manifests: each renderer's output for the reference scenario, pinned in YAML.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 make unit`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from statefulwebapp import names
from statefulwebapp.kinds import CHILDREN, Child, render_all
from statefulwebapp.model import AppSpec, parse

GOLDEN = Path(__file__).parent / "golden"

SCENARIO = {
    "apiVersion": "apps.k8slab.io/v1alpha1",
    "kind": "StatefulWebApp",
    "metadata": {"name": "web", "namespace": "default", "uid": "0000-uid", "generation": 1},
    "spec": {
        "replicas": 3,
        "serviceName": "nginx",
        "storage": {
            "nfs": {"server": "211.183.3.100", "path": "/shared"},
            "capacity": "100Mi",
            "request": "10Mi",
        },
    },
}


@pytest.fixture
def app() -> AppSpec:
    return parse(SCENARIO)


@pytest.mark.parametrize("child", CHILDREN, ids=[c.name for c in CHILDREN])
def test_renderer_matches_golden(app: AppSpec, child: Child) -> None:
    rendered = child.render(app)
    kind = child.name
    path = GOLDEN / f"{kind.lower()}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(yaml.safe_dump(rendered, sort_keys=False))
    assert rendered == yaml.safe_load(path.read_text()), f"{kind} differs from {path}"


def test_every_namespaced_child_is_owned_and_labelled(app: AppSpec) -> None:
    for kind, manifest in render_all(app).items():
        assert manifest is not None
        labels = manifest["metadata"]["labels"]
        assert labels[names.LABEL_MANAGED_BY] == names.MANAGER
        assert labels[names.LABEL_INSTANCE] == "web"
        assert {names.LABEL_NAME, names.LABEL_COMPONENT} <= labels.keys()
        refs = manifest["metadata"].get("ownerReferences")
        if kind == "PersistentVolume":
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
        "PersistentVolume": "default-web-data",
        "PersistentVolumeClaim": "web-data",
        "Service": "nginx",
        "StatefulSet": "web",
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
