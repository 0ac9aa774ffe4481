"""The spec model: defaults, and a clear SpecError for a stored object of the wrong type.

What values are valid is the CRD's to say (tests/e2e/test_admission.py asks the API server);
the model only reads.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from statefulwebapp.model import SpecError, parse


def body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
        "spec": {"storage": {"nfs": {"server": "nfs.example", "path": "/shared"}}},
    }
    base["spec"].update(copy.deepcopy(spec))
    return base


def test_defaults_match_the_api_contract() -> None:
    app = parse(body())
    assert (app.replicas, app.image, app.service_name, app.port) == (1, "nginx", "web", 80)
    assert (app.storage.capacity, app.storage.request) == ("100Mi", "100Mi")
    assert app.storage.mount_path == "/usr/share/nginx/html"
    assert app.backup.enabled
    assert app.backup.image == "busybox"
    assert app.backup.tolerate_control_plane
    assert app.backup.resources.to_k8s() == {"limits": {"cpu": "100m", "memory": "200Mi"}}
    assert app.date_logger.schedule == "*/1 * * * *"
    assert app.date_logger.successful_jobs_history_limit == 3
    assert app.date_logger.failed_jobs_history_limit == 1
    assert not app.restricted
    assert app.run_as_user == 101


def test_request_defaults_to_capacity() -> None:
    spec = body(storage={"nfs": {"server": "a", "path": "/x"}, "capacity": "1Gi"})
    assert parse(spec).storage.request == "1Gi"


def test_quantities_may_be_integers() -> None:
    app = parse(body(resources={"limits": {"cpu": 2, "memory": "1Gi"}}))
    assert app.resources.to_k8s() == {"limits": {"cpu": "2", "memory": "1Gi"}}


def test_removed_resources_render_none() -> None:
    assert parse(body()).resources.to_k8s() == {}
    assert parse(body(backup={"resources": {}})).backup.resources.to_k8s() == {}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"replicas": "3"}, "spec.replicas"),
        ({"replicas": True}, "spec.replicas"),
        ({"image": 5}, "spec.image"),
        ({"storage": "nfs"}, "spec.storage"),
        ({"storage": {"nfs": {"server": 1, "path": "/x"}}}, "spec.storage.nfs.server"),
        ({"backup": {"enabled": "yes"}}, "spec.backup.enabled"),
        ({"backup": {"resources": {"limits": []}}}, "spec.backup.resources.limits"),
        ({"dateLogger": []}, "spec.dateLogger"),
        (
            {"storage": {"nfs": {"server": "s", "path": "/x", "mountOptions": "hard"}}},
            "spec.storage.nfs.mountOptions",
        ),
        (
            {"storage": {"nfs": {"server": "s", "path": "/x", "mountOptions": ["hard", 4]}}},
            "spec.storage.nfs.mountOptions[1]",
        ),
        ({"nodeSelector": {"disktype": 1}}, "spec.nodeSelector.disktype"),
        ({"probes": {"readiness": {"enabled": "no"}}}, "spec.probes.readiness.enabled"),
        ({"probes": {"liveness": {"httpGet": {"path": 1}}}}, "spec.probes.liveness.httpGet.path"),
        ({"probes": {"liveness": {"periodSeconds": "5"}}}, "spec.probes.liveness.periodSeconds"),
        ({"tolerations": {"key": "a"}}, "spec.tolerations"),
        ({"tolerations": ["a"]}, "spec.tolerations[0]"),
        ({"backup": {"tolerations": [{"key": 3}]}}, "spec.backup.tolerations[0].key"),
        (
            {"tolerations": [{"key": "a", "tolerationSeconds": "5"}]},
            "spec.tolerations[0].tolerationSeconds",
        ),
    ],
)
def test_wrong_types_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse(body(**spec))
    assert err.value.field == field


def test_placement_and_mount_options_parse_into_the_model() -> None:
    app = parse(
        body(
            nodeSelector={"disktype": "ssd"},
            tolerations=[{"key": "dedicated", "value": "web", "effect": "NoSchedule"}],
            storage={"nfs": {"server": "s", "path": "/x", "mountOptions": ["nfsvers=3", "hard"]}},
            backup={"tolerations": [{"operator": "Exists", "tolerationSeconds": 60}]},
        )
    )
    assert app.node_selector == {"disktype": "ssd"}
    (web,) = app.tolerations
    assert web.to_k8s() == {
        "key": "dedicated",
        "operator": "Equal",
        "value": "web",
        "effect": "NoSchedule",
    }
    assert app.storage.nfs.mount_options == ("nfsvers=3", "hard")
    (agent,) = app.backup.tolerations
    assert agent.to_k8s() == {"operator": "Exists", "tolerationSeconds": 60}


def test_network_policy_is_on_by_default_and_may_be_turned_off() -> None:
    default = parse(body())
    assert default.network_policy.enabled
    assert parse(body(networkPolicy={})) == default
    assert parse(body(networkPolicy={"enabled": True})) == default
    off = parse(body(networkPolicy={"enabled": False}))
    assert not off.network_policy.enabled
    # Only the policy changes: everything else the app renders stays as it was.
    assert off != default
    assert dataclasses.replace(off, network_policy=default.network_policy) == default


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"networkPolicy": {"enabled": "no"}}, "spec.networkPolicy.enabled"),
        ({"networkPolicy": True}, "spec.networkPolicy"),
    ],
)
def test_a_network_policy_of_the_wrong_type_names_the_field(
    spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse(body(**spec))
    assert err.value.field == field
