"""What the API server's answers become: one message each, naming what to do."""

from __future__ import annotations

import json

import pytest

from statefulwebapp.plugin import errors
from statefulwebapp.plugin.errors import Request

APPS = Request("list", "statefulwebapps", "apps.k8slab.io", "shop")


def status(code: int, message: str, reason: str = "") -> str:
    return json.dumps({"kind": "Status", "code": code, "message": message, "reason": reason})


def test_403_names_the_verb_the_resource_and_the_role_to_ask_for() -> None:
    said = (
        'statefulwebapps.apps.k8slab.io is forbidden: User "system:serviceaccount:shop:nobody" '
        'cannot list resource "statefulwebapps" in API group "apps.k8slab.io" in the namespace '
        '"shop"'
    )
    err = errors.from_status(403, status(403, said, "Forbidden"), APPS)
    assert isinstance(err, errors.DeniedError)
    assert str(err) == (
        'permission denied: you may not list statefulwebapps.apps.k8slab.io in namespace "shop" '
        f'(the API server said: {said}); ask for a Role in namespace "shop" granting "list" '
        'on "statefulwebapps" in API group apps.k8slab.io; check with: kubectl auth can-i list '
        "statefulwebapps.apps.k8slab.io -n shop"
    )


def test_403_of_a_subresource_and_of_a_cluster_wide_list() -> None:
    exec_ = errors.from_status(403, "", Request("create", "pods", "", "shop", "web-0", "exec"))
    assert "you may not create pods/exec in namespace" in str(exec_)
    assert 'granting "create" on "pods/exec" in API group "" (the core group)' in str(exec_)
    volumes = errors.from_status(403, "", Request("list", "persistentvolumes"))
    assert "you may not list persistentvolumes (the API server said: Forbidden)" in str(volumes)
    assert "ask for a ClusterRole (cluster-wide)" in str(volumes)


def test_401_404_410_and_the_rest() -> None:
    assert isinstance(errors.from_status(401, "", APPS), errors.UnauthorizedError)
    gone = errors.from_status(
        404,
        status(404, 'statefulwebapps.apps.k8slab.io "web" not found', "NotFound"),
        Request("get", "statefulwebapps", "apps.k8slab.io", "shop", "web"),
    )
    assert isinstance(gone, errors.NotFoundError)
    unserved = errors.from_status(404, "404 page not found", APPS)
    assert isinstance(unserved, errors.UnservedError)
    assert "is its CustomResourceDefinition installed?" in str(unserved)
    assert "kubectl get crd statefulwebapps.apps.k8slab.io" in str(unserved)
    expired = errors.from_status(410, status(410, "too old resource version"), APPS)
    assert isinstance(expired, errors.ExpiredError)
    failed = errors.from_status(500, status(500, "etcdserver: request timed out"), APPS)
    assert type(failed) is errors.ApiError
    assert str(failed) == (
        'list statefulwebapps.apps.k8slab.io in namespace "shop" failed: 500 etcdserver: '
        "request timed out"
    )


# What the official client raised for an exec the API server refused (recorded).
REFUSED = (
    "Handshake status 403 Forbidden -+-+- {'audit-id': 'a', 'content-type': 'application/json'}"
    ' -+-+- {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods'
    ' \\"web-0\\" is forbidden: User \\"x\\" cannot create resource \\"pods/exec\\"","code":403}'
)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (REFUSED, (403, 'pods "web-0" is forbidden: User "x" cannot create resource "pods/exec"')),
        ("Handshake status 500 Internal Server Error", (500, "Handshake status 500")),
        ("[Errno 111] Connection refused", (0, "[Errno 111] Connection refused")),
    ],
)
def test_a_refused_exec_is_read_from_the_clients_reason(
    reason: str, expected: tuple[int, str]
) -> None:
    assert errors.handshake(reason) == expected


def test_a_body_that_is_not_a_status_is_quoted_shortened() -> None:
    assert (
        errors.server_message(b"<html>\n  bad   gateway\n</html>") == "<html> bad gateway </html>"
    )
    assert errors.server_message("x" * 400) == "x" * 300
    assert errors.server_message(None) == ""
