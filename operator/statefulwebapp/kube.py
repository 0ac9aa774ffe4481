"""The thin API layer: the only module that sends requests for children and status.

Children are written with server-side apply under one field manager, so a field someone else
owns is left alone and a field we own is set back. Paths come from a fixed table instead of
discovery: the operator only ever touches these kinds, and skipping discovery saves requests
at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pykube
import requests

from statefulwebapp import names
from statefulwebapp.model import GROUP, PLURAL, VERSION


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the API."""

    api_base: str
    """``/api/v1`` or ``/apis/<group>/<version>``."""
    plural: str
    """Resource name in URLs."""
    namespaced: bool
    """Whether objects of the kind live in a namespace."""


KINDS: dict[str, Kind] = {
    "PersistentVolume": Kind("/api/v1", "persistentvolumes", namespaced=False),
    "PersistentVolumeClaim": Kind("/api/v1", "persistentvolumeclaims", namespaced=True),
    "Service": Kind("/api/v1", "services", namespaced=True),
    "StatefulSet": Kind("/apis/apps/v1", "statefulsets", namespaced=True),
    "DaemonSet": Kind("/apis/apps/v1", "daemonsets", namespaced=True),
    "CronJob": Kind("/apis/batch/v1", "cronjobs", namespaced=True),
    "StatefulWebApp": Kind(f"/apis/{GROUP}/{VERSION}", PLURAL, namespaced=True),
}


class ApiError(RuntimeError):
    """A request the API server refused; ``status`` is its HTTP status code."""

    def __init__(self, verb: str, path: str, response: requests.Response) -> None:
        try:
            detail = response.json().get("message", response.text)
        except ValueError:
            detail = response.text
        self.status = response.status_code
        # A namespace being deleted answers 403 too; that is no missing permission.
        self.terminating = "is being terminated" in str(detail)
        self.forbidden = response.status_code == 403 and not self.terminating
        super().__init__(f"{verb} {path}: HTTP {response.status_code}: {detail}")


USER_AGENT = f"{names.MANAGER}/{version('statefulwebapp-operator')}"
"""Sent with every request, so the API server's audit log tells our requests apart."""


POOL_SIZE = 16
"""Kept connections: more than the pass workers (handlers.PASSES), the only threads that send
requests, so a burst reuses connections instead of opening (and discarding) TLS sessions."""


def connect() -> pykube.HTTPClient:
    """A client for the in-cluster service account, else ``$KUBECONFIG`` or ~/.kube/config."""
    config = pykube.KubeConfig.from_env()
    adapter = pykube.http.KubernetesHTTPAdapter(config, pool_maxsize=POOL_SIZE)
    api = pykube.HTTPClient(config, timeout=30, http_adapter=adapter)
    api.session.headers["User-Agent"] = USER_AGENT
    return api


def path(kind: str, name: str, namespace: str = "") -> str:
    """The URL path of one object."""
    info = KINDS[kind]
    scope = f"/namespaces/{namespace}" if info.namespaced else ""
    return f"{info.api_base}{scope}/{info.plural}/{name}"


def _url(api: pykube.HTTPClient, p: str) -> str:
    return f"{api.url.rstrip('/')}{p}"


def get(api: pykube.HTTPClient, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
    """The live object, or None when it does not exist."""
    p = path(kind, name, namespace)
    response = api.session.get(_url(api, p), timeout=api.timeout)
    if response.status_code == 404:
        return None
    if not response.ok:
        raise ApiError("get", p, response)
    result: dict[str, Any] = response.json()
    return result


def apply(api: pykube.HTTPClient, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Server-side apply ``manifest`` as the operator's field manager, taking over conflicts."""
    meta = manifest["metadata"]
    p = path(manifest["kind"], meta["name"], meta.get("namespace", ""))
    response = api.session.patch(
        _url(api, p),
        params={"fieldManager": names.MANAGER, "force": "true"},
        data=json.dumps(manifest),
        headers={"Content-Type": "application/apply-patch+yaml"},
        timeout=api.timeout,
    )
    if not response.ok:
        raise ApiError("apply", p, response)
    result: dict[str, Any] = response.json()
    return result


def delete(api: pykube.HTTPClient, kind: str, name: str, namespace: str = "") -> None:
    """Delete an object in the background; a missing object is not an error."""
    p = path(kind, name, namespace)
    response = api.session.delete(
        _url(api, p),
        json={"propagationPolicy": "Background"},
        timeout=api.timeout,
    )
    if response.status_code != 404 and not response.ok:
        raise ApiError("delete", p, response)


def patch_status(
    api: pykube.HTTPClient, namespace: str, name: str, status: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Merge-patch the app's status subresource (conditions are replaced as a whole).

    Returns the app as the write left it, or None if the app is gone.
    """
    p = path("StatefulWebApp", name, namespace) + "/status"
    response = api.session.patch(
        _url(api, p),
        data=json.dumps({"status": status}),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=api.timeout,
    )
    if response.status_code == 404:
        return None  # The app is gone; there is no status left to tell.
    if not response.ok:
        raise ApiError("patch status", p, response)
    written: dict[str, Any] = response.json()
    return written
