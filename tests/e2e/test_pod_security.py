"""Which children meet the Pod Security "restricted" profile, checked by the API server itself.

The rendered children (from the project's renderers) are sent with a server-side dry-run into
a namespace labelled ``pod-security.kubernetes.io/warn=restricted``: the API server's own Pod
Security admission answers with a warning for each pod template that violates the profile.

With ``podSecurity: default`` (the reference scenario), two children cannot meet it:
- the web StatefulSet: nginx runs as root (no runAsNonRoot, no seccomp profile, capabilities
  and privilege escalation left as the image wants);
- the backup DaemonSet: its archives go to a hostPath directory on the node, which
  "restricted" (and even "baseline") never admits, and it runs as root to write there.
The date-logger CronJob always meets it. ``podSecurity: restricted`` makes every child meet
it: the web container runs as ``runAsUser`` (use a non-root image), and the backup agents keep
their archives in an emptyDir that lives as long as the agent pod.

Runs on the local cluster only: the answers are the API server's, to dry runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from statefulwebapp.api.parse import parse
from statefulwebapp.specs.registry import render_all
from tests.e2e.cluster import Cluster, make_namespace

pytestmark = pytest.mark.local_cluster(
    reason="Pod Security admission is the API server's, asked with dry runs: one cluster proves it"
)


@pytest.fixture(scope="module")
def restricted_ns(cluster: Cluster) -> Iterator[str]:
    namespace = make_namespace(cluster, "psa")
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted")
    yield namespace
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def violations(cluster: Cluster, namespace: str, pod_security: str) -> dict[str, str]:
    """Pod Security warnings per child kind, for an app in ``namespace``."""
    app = parse(
        {
            "metadata": {"name": "web", "namespace": namespace, "uid": "dry-run"},
            "spec": {
                "podSecurity": pod_security,
                "storage": {"nfs": {"server": "nfs.local", "path": "/shared"}},
            },
        }
    )
    found: dict[str, str] = {}
    for kind, manifest in render_all(app).items():
        if manifest is None or kind == "PersistentVolume":
            continue
        manifest["metadata"].pop("ownerReferences")  # The dry-run app does not exist.
        out = cluster.kubectl(
            "apply", "--dry-run=server", "-f", "-", stdin=json.dumps(manifest), check=False
        )
        warnings = [line for line in out.splitlines() if "violate PodSecurity" in line]
        if warnings:
            found[kind] = " ".join(warnings)
    return found


def test_default_pods_report_exactly_the_known_violations(
    cluster: Cluster, restricted_ns: str
) -> None:
    found = violations(cluster, restricted_ns, "default")
    assert set(found) == {"StatefulSet", "DaemonSet"}, found
    assert 'restricted volume type "hostPath"' in found["DaemonSet"]
    assert "runAsNonRoot" in found["StatefulSet"]
    assert "seccompProfile" in found["StatefulSet"]


def test_restricted_pods_meet_the_profile(cluster: Cluster, restricted_ns: str) -> None:
    assert violations(cluster, restricted_ns, "restricted") == {}


def test_enforced_namespace_admits_restricted_pods(cluster: Cluster, restricted_ns: str) -> None:
    """The same verdict where it is enforced: a restricted pod is admitted, a default one not."""
    cluster.kubectl(
        "label",
        "--overwrite",
        "namespace",
        restricted_ns,
        "pod-security.kubernetes.io/enforce=restricted",
    )
    results: dict[str, str] = {}
    for level in ("default", "restricted"):
        app = parse(
            {
                "metadata": {"name": f"web-{level}", "namespace": restricted_ns, "uid": "x"},
                "spec": {
                    "podSecurity": level,
                    "storage": {"nfs": {"server": "nfs.local", "path": "/shared"}},
                },
            }
        )
        sts = render_all(app)["StatefulSet"]
        assert sts is not None
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"probe-{level}", "namespace": restricted_ns},
            "spec": sts["spec"]["template"]["spec"],
        }
        results[level] = cluster.kubectl(
            "apply", "--dry-run=server", "-f", "-", stdin=json.dumps(pod), check=False
        )
    assert "created (server dry run)" in results["restricted"], results["restricted"]
    assert 'violates PodSecurity "restricted' in results["default"], results["default"]
