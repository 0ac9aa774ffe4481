"""What the API server accepts, asked of the real one (server-side dry runs and real edits).

The CRD's schema and CEL rules are the only statement of a valid spec; these cases pin the
harmful inputs they close (a host directory chosen by a tenant, archives inside the data, a
mount hiding the whole image, resources a container refuses) and that each refusal says what to
write instead, next to look-alikes that must still pass.

Runs on the local cluster only: every case is the API server's answer, and kind runs the same
Kubernetes build.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.apps import dry_run, get_app, sample
from tests.e2e.cluster import Cluster, Operator

pytestmark = pytest.mark.local_cluster(
    reason="the API server decides (schema, CEL, admission): kind serves the same build, so "
    "one cluster proves it"
)


def with_spec(**spec: Any) -> dict[str, Any]:
    body = sample(**spec)
    body["metadata"]["name"] = "admission"
    return body


def nfs_options(options: list[str]) -> dict[str, Any]:
    return {"storage": {"nfs": {"server": "a", "path": "/x", "mountOptions": options}}}


def archives_at(path: str, server: str = "a") -> dict[str, Any]:
    """The data on a:/x, the archives on ``server``:``path``."""
    return {
        "storage": {"nfs": {"server": "a", "path": "/x"}},
        "backup": {"target": {"nfs": {"server": server, "path": path}}},
    }


def tolerations(**toleration: Any) -> dict[str, Any]:
    return {"tolerations": [{"key": "dedicated", **toleration}]}


REFUSED = [
    # The admin chooses the nodes' directory: no app names one, harmless-looking or not.
    ("hostPath /var", {"backup": {"hostPath": "/var"}}, "cannot be chosen by an app"),
    ("hostPath default", {"backup": {"hostPath": "/var/backups/statefulwebapp"}}, "Remove backup"),
    ("archives in the data export", archives_at("/x/archives"), "shares a directory with"),
    ("archives on the data export", archives_at("/x/"), "shares a directory with"),
    ("archives around the data export", archives_at("/"), "every archive would hold"),
    (
        "mountPath root",
        {"storage": {"nfs": {"server": "a", "path": "/x"}, "mountPath": "/"}},
        "must not be the container's root directory",
    ),
    (
        "mountPath dotdot",
        {"storage": {"nfs": {"server": "a", "path": "/x"}, "mountPath": "/srv/../etc"}},
        'contains a ".." segment',
    ),
    (
        "resources gpu",
        {"resources": {"limits": {"gpu": "1"}}},
        "resources.limits may only name cpu, memory, ephemeral-storage or",
    ),
    (
        "backup resources gpu",
        {"backup": {"resources": {"requests": {"nvidia": "1"}}}},
        "backup.resources.requests may only name",
    ),
    ("runAsUser without restricted", {"runAsUser": 1000}, "Set podSecurity: restricted"),
    ("mount options in one entry", nfs_options(["nfsvers=4.1,hard"]), "one option per list entry"),
    ("mount option with a space", nfs_options(["hard soft"]), "holds a comma or a space"),
    ("empty mount option", nfs_options([""]), "should be at least 1 chars long"),
    ("too many mount options", nfs_options(["hard"] * 33), "must have at most 32 items"),
    ("toleration Exists with a value", tolerations(operator="Exists", value="x"), "remove value"),
    (
        "toleration without key",
        {"tolerations": [{"operator": "Equal", "value": "x"}]},
        "give the taint's key",
    ),
    ("toleration bad operator", tolerations(operator="In"), 'supported values: "Equal", "Exists"'),
    (
        "tolerationSeconds without NoExecute",
        tolerations(tolerationSeconds=5, effect="NoSchedule"),
        "applies only to effect NoExecute",
    ),
    ("toleration bad key", tolerations(key="a b"), "is not a label key"),
    (
        "backup toleration without key",
        {"backup": {"tolerations": [{"value": "x"}]}},
        "give the taint's key",
    ),
    ("probe path relative", {"probes": {"readiness": {"httpGet": {"path": "x"}}}}, "absolute URL"),
    (
        "probe period 0",
        {"probes": {"liveness": {"periodSeconds": 0}}},
        "greater than or equal to 1",
    ),
    (
        "probe threshold 0",
        {"probes": {"readiness": {"failureThreshold": 0}}},
        "greater than or equal to 1",
    ),
    ("budget of 0", {"disruptionBudget": {"maxUnavailable": 0}}, "0 would block every drain"),
    ("budget of 0%", {"disruptionBudget": {"maxUnavailable": "0%"}}, "0 would block every drain"),
    ("budget of 150%", {"disruptionBudget": {"maxUnavailable": "150%"}}, "percentage from 1%"),
    ("spread skew 0", {"topologySpread": {"maxSkew": 0}}, "greater than or equal to 1"),
    (
        "spread unknown policy",
        {"topologySpread": {"whenUnsatisfiable": "Never"}},
        'supported values: "ScheduleAnyway", "DoNotSchedule"',
    ),
    ("nodeSelector bad key", {"nodeSelector": {"-x": "ssd"}}, "must be a label key"),
    ("nodeSelector bad value", {"nodeSelector": {"disk": "s s"}}, "is not a label value"),
    ("TZ in schedule", {"dateLogger": {"schedule": "TZ=UTC * * * * *"}}, "time zone"),
]

ACCEPTED = [
    ("archives beside the data export", archives_at("/x-archives")),
    ("archives on another server", archives_at("/x/archives", server="b")),
    ("mountPath", {"storage": {"nfs": {"server": "a", "path": "/x"}, "mountPath": "/srv/www"}}),
    ("resources all kinds", {"resources": {"limits": {"cpu": 1, "hugepages-2Mi": "4Mi"}}}),
    ("resources ephemeral", {"resources": {"requests": {"ephemeral-storage": "1Gi"}}}),
    ("runAsUser restricted", {"podSecurity": "restricted", "runAsUser": 1000}),
    ("mount options", nfs_options(["nfsvers=4.1", "hard", "port=2049", "sec=krb5p"])),
    ("toleration of every taint", {"tolerations": [{"operator": "Exists"}]}),
    ("toleration NoExecute for a while", tolerations(effect="NoExecute", tolerationSeconds=30)),
    ("budget percentage", {"disruptionBudget": {"maxUnavailable": "25%"}}),
    ("budget number", {"disruptionBudget": {"maxUnavailable": 2}}),
    ("probes set", {"probes": {"liveness": {"enabled": True, "httpGet": {"path": "/ok"}}}}),
    ("nodeSelector prefixed key", {"nodeSelector": {"kubernetes.io/hostname": "worker1"}}),
    ("nodeSelector empty value", {"nodeSelector": {"disk": ""}}),
]


@pytest.mark.parametrize(("case", "spec", "words"), REFUSED, ids=[c for c, _, _ in REFUSED])
def test_harmful_input_is_refused_saying_what_to_write(
    cluster: Cluster, operator: Operator, case: str, spec: dict[str, Any], words: str
) -> None:
    out = dry_run(cluster, with_spec(**spec))
    assert "is invalid" in out, f"{case} was accepted: {out}"
    assert words in out, f"{case}: the message does not say {words!r}: {out}"


@pytest.mark.parametrize(("case", "spec"), ACCEPTED, ids=[c for c, _ in ACCEPTED])
def test_lookalikes_are_accepted(
    cluster: Cluster, operator: Operator, case: str, spec: dict[str, Any]
) -> None:
    out = dry_run(cluster, with_spec(**spec))
    assert "created (server dry run)" in out, f"{case} was refused: {out}"


@pytest.mark.parametrize(
    "storage",
    [
        {"capacity": "300Mi"},
        {"request": "20Mi"},
        {"capacity": "300Mi", "request": "300Mi"},
        {"request": None},  # Removing it means "the same as capacity": 100Mi, not 10Mi.
    ],
    ids=["capacity", "request", "both", "request-removed"],
)
def test_storage_size_is_immutable_and_says_how_to_move(
    cluster: Cluster, app_ns: str, storage: dict[str, Any]
) -> None:
    body = sample()
    for key, value in storage.items():
        if value is None:
            body["spec"]["storage"].pop(key)
        else:
            body["spec"]["storage"][key] = value
    out = dry_run(cluster, body, app_ns)
    assert "storage.capacity and storage.request are immutable" in out, out
    assert "delete the StatefulWebApp and apply it again" in out
    kept = get_app(cluster, app_ns)["spec"]["storage"]
    assert (kept["capacity"], kept["request"]) == ("100Mi", "10Mi")


def test_same_storage_size_is_no_edit(cluster: Cluster, app_ns: str) -> None:
    out = dry_run(cluster, sample(replicas=2), app_ns)
    assert "configured (server dry run)" in out, out


def test_the_export_is_immutable_but_its_mount_options_are_not(
    cluster: Cluster, app_ns: str
) -> None:
    moved = sample()
    moved["spec"]["storage"]["nfs"]["path"] = "/elsewhere"
    out = dry_run(cluster, moved, app_ns)
    assert "storage.nfs.server and storage.nfs.path are immutable" in out, out
    assert "mountOptions may change" in out
    tuned = sample()
    tuned["spec"]["storage"]["nfs"]["mountOptions"] = ["nfsvers=4.1", "hard"]
    out = dry_run(cluster, tuned, app_ns)
    assert "configured (server dry run)" in out, out
