"""The spec model: defaults, and a clear SpecError for a stored object of the wrong type.

What values are valid is the CRD's to say (tests/e2e/test_admission.py asks the API server);
the model only reads.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from statefulwebapp.api.model import (
    DEFAULT_BUSYBOX_IMAGE,
    DEFAULT_IMAGE,
    DEFAULT_WRITABLE_PATHS,
    SpecError,
)
from statefulwebapp.api.parse import parse


def body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
        "spec": {"storage": {"nfs": {"server": "nfs.example", "path": "/shared"}}},
    }
    base["spec"].update(copy.deepcopy(spec))
    return base


def test_defaults_match_the_api_contract() -> None:
    app = parse(body())
    assert (app.replicas, app.image, app.service_name, app.port) == (1, DEFAULT_IMAGE, "web", 80)
    assert (DEFAULT_IMAGE, DEFAULT_BUSYBOX_IMAGE) == ("nginx:1.27.5", "busybox:1.37.0")
    assert app.image_pull_policy == "IfNotPresent"
    assert app.resources.to_k8s() == {
        "requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "64Mi"},
        "limits": {"memory": "256Mi", "ephemeral-storage": "256Mi"},
    }
    assert app.read_only_root_filesystem
    assert (
        app.writable_paths
        == DEFAULT_WRITABLE_PATHS
        == (
            "/var/cache/nginx",
            "/var/lib/nginx",
            "/run",
            "/tmp",
        )
    )
    assert (app.storage.capacity, app.storage.request) == ("100Mi", "100Mi")
    assert app.storage.mount_path == "/usr/share/nginx/html"
    assert app.backup.enabled
    assert app.backup.image == DEFAULT_BUSYBOX_IMAGE
    assert app.backup.image_pull_policy == "IfNotPresent"
    assert app.backup.tolerate_control_plane
    assert app.backup.resources.to_k8s() == {
        "requests": {"cpu": "10m", "memory": "32Mi", "ephemeral-storage": "16Mi"},
        "limits": {"cpu": "100m", "memory": "200Mi", "ephemeral-storage": "1Gi"},
    }
    assert app.date_logger.image == DEFAULT_BUSYBOX_IMAGE
    assert app.date_logger.image_pull_policy == "IfNotPresent"
    assert app.date_logger.resources.to_k8s() == {
        "requests": {"cpu": "10m", "memory": "16Mi", "ephemeral-storage": "8Mi"},
        "limits": {"cpu": "100m", "memory": "32Mi", "ephemeral-storage": "16Mi"},
    }
    assert app.date_logger.read_only_root_filesystem
    assert app.date_logger.starting_deadline_seconds == 300
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


def test_an_empty_resources_block_means_none_and_a_missing_one_the_default() -> None:
    app = parse(body(resources={}, backup={"resources": {}}, dateLogger={"resources": {}}))
    assert app.resources.to_k8s() == {}
    assert app.backup.resources.to_k8s() == {}
    assert app.date_logger.resources.to_k8s() == {}
    # A null is read as an absent key: the default.
    app = parse(body(resources=None, backup={"resources": None}, dateLogger={"resources": None}))
    default = parse(body())
    assert app.resources == default.resources
    assert app.backup.resources == default.backup.resources
    assert app.date_logger.resources == default.date_logger.resources


@pytest.mark.parametrize("part", ["", "backup", "dateLogger"])
def test_resources_are_set_and_changed_whole(part: str) -> None:
    def parsed(resources: dict[str, Any]) -> dict[str, dict[str, str]]:
        app = parse(
            body(**({part: {"resources": resources}} if part else {"resources": resources}))
        )
        which = {"": app.resources, "backup": app.backup.resources}.get(
            part, app.date_logger.resources
        )
        return which.to_k8s()

    assert parsed({"limits": {"memory": "1Gi"}}) == {"limits": {"memory": "1Gi"}}
    # The given block replaces the whole default: no default request is left behind.
    assert parsed({"requests": {"cpu": "1", "ephemeral-storage": "2Gi"}}) == {
        "requests": {"cpu": "1", "ephemeral-storage": "2Gi"}
    }


def test_image_pull_policies_are_read_where_set() -> None:
    app = parse(
        body(
            imagePullPolicy="Always",
            backup={"imagePullPolicy": "Never"},
            dateLogger={"imagePullPolicy": "Always"},
        )
    )
    assert app.image_pull_policy == "Always"
    assert app.backup.image_pull_policy == "Never"
    assert app.date_logger.image_pull_policy == "Always"


def test_read_only_root_and_writable_paths_set_changed_and_turned_off() -> None:
    app = parse(body(writablePaths=["/tmp", "/var/run/app"]))
    assert app.read_only_root_filesystem
    assert app.writable_paths == ("/tmp", "/var/run/app")
    assert parse(body(writablePaths=[])).writable_paths == ()
    assert parse(body(writablePaths=None)).writable_paths == DEFAULT_WRITABLE_PATHS
    off = parse(body(readOnlyRootFilesystem=False, dateLogger={"readOnlyRootFilesystem": False}))
    assert not off.read_only_root_filesystem
    assert not off.date_logger.read_only_root_filesystem
    assert off.writable_paths == DEFAULT_WRITABLE_PATHS


def test_starting_deadline_set_changed_and_turned_off() -> None:
    assert (
        parse(
            body(dateLogger={"startingDeadlineSeconds": 60})
        ).date_logger.starting_deadline_seconds
        == 60
    )
    assert (
        parse(body(dateLogger={"startingDeadlineSeconds": 0})).date_logger.starting_deadline_seconds
        == 0
    )


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
        ({"imagePullPolicy": 1}, "spec.imagePullPolicy"),
        ({"readOnlyRootFilesystem": "true"}, "spec.readOnlyRootFilesystem"),
        ({"writablePaths": "/tmp"}, "spec.writablePaths"),
        ({"writablePaths": ["/tmp", 3]}, "spec.writablePaths[1]"),
        ({"backup": {"imagePullPolicy": []}}, "spec.backup.imagePullPolicy"),
        ({"dateLogger": {"resources": {"requests": []}}}, "spec.dateLogger.resources.requests"),
        ({"dateLogger": {"readOnlyRootFilesystem": 1}}, "spec.dateLogger.readOnlyRootFilesystem"),
        (
            {"dateLogger": {"startingDeadlineSeconds": "300"}},
            "spec.dateLogger.startingDeadlineSeconds",
        ),
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
