"""What the kopf layer keeps of a watched object once it is indexed."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import kopf

from statefulwebapp import handlers, names

CHILD: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {
        "name": "web-backup",
        "namespace": "shop",
        "uid": "u-1",
        "resourceVersion": "42",
        "generation": 3,
        "labels": {names.LABEL_INSTANCE: "web", names.LABEL_COMPONENT: names.BACKUP},
        "annotations": {"deprecated.daemonset.template.generation": "3"},
        "managedFields": [{"manager": "statefulwebapp-operator", "fieldsV1": {"f:spec": {}}}],
    },
    "spec": {"template": {"spec": {"containers": [{"name": "backup", "image": "busybox"}]}}},
    "status": {"numberReady": 4, "desiredNumberScheduled": 4},
}


def test_kopf_body_wraps_the_raw_dict_it_holds() -> None:
    """_lighten relies on it: a kopf upgrade that copies the body must fail here."""
    raw = copy.deepcopy(CHILD)
    assert kopf.Body(raw)._src is raw


def test_an_indexed_child_leaves_kopf_only_what_routes_its_event() -> None:
    raw = copy.deepcopy(CHILD)
    entry = asyncio.run(handlers._index_child(kopf.Body(raw)))
    packed = json.loads(entry[("shop", "web")])
    # The index has what passes read: spec, status, the fields drift and status need.
    assert packed["spec"] == CHILD["spec"]
    assert packed["status"] == CHILD["status"]
    assert packed["metadata"]["generation"] == 3
    # The body kopf holds for the handler: routing only, no managed fields.
    assert raw == {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": "web-backup",
            "namespace": "shop",
            "uid": "u-1",
            "resourceVersion": "42",
            "labels": CHILD["metadata"]["labels"],
        },
    }
    assert handlers._owner_key(raw) == ("shop", "web")


def test_an_indexed_app_keeps_its_body_but_not_its_managed_fields() -> None:
    raw: dict[str, Any] = {
        "apiVersion": "apps.k8slab.io/v1alpha1",
        "kind": "StatefulWebApp",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "managedFields": [{"manager": "kubectl"}],
            "generation": 1,
        },
        "spec": {"replicas": 3},
    }
    asyncio.run(handlers.index_apps(kopf.Body(raw), namespace="shop", name="web"))
    assert "managedFields" not in raw["metadata"]
    assert raw["spec"] == {"replicas": 3}
    assert raw["metadata"]["generation"] == 1
