"""What can go wrong in ``kubectl swa``, said for a person: one line each, no traceback.

The client wrapper (``kube.py``) turns every failure of a request into one of these; the
command line prints its message on stderr and exits with 1. Pure: no request, no client.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


class PluginError(Exception):
    """A failure the user is told about in one message (exit code 1)."""


class UnreachableError(PluginError):
    """No cluster: no kubeconfig, a bad context, or an API server that does not answer."""


class UnauthorizedError(PluginError):
    """The API server did not accept the credentials (401)."""


class NotFoundError(PluginError):
    """An object, or a whole resource type, that is not there (404)."""


class UnservedError(PluginError):
    """A resource type the API server does not serve (404 of a whole type: no such CRD)."""


class ApiError(PluginError):
    """Any other refusal or failure of the API server, in its own words."""


class ExpiredError(ApiError):
    """A watch from a resourceVersion the API server no longer has (410 Gone): read again."""


@dataclass(frozen=True)
class Request:
    """What was asked, for a message that names it."""

    verb: str
    """The RBAC verb: get, list, watch, create."""
    plural: str
    """The resource, such as ``statefulwebapps`` or ``pods``."""
    group: str = ""
    """Its API group; empty for the core group."""
    namespace: str = ""
    """Empty for a cluster-scoped resource, or a request across every namespace."""
    name: str = ""
    """The object's name, for a request of one object."""
    subresource: str = ""
    """``log``, ``exec``, ``status``; empty for the object itself."""

    @property
    def resource(self) -> str:
        """``statefulwebapps.apps.k8slab.io``, ``pods/exec``: as ``kubectl auth can-i`` takes it."""
        base = f"{self.plural}.{self.group}" if self.group else self.plural
        return f"{base}/{self.subresource}" if self.subresource else base

    @property
    def where(self) -> str:
        """`` in namespace "x"``, or `` in every namespace`` / nothing for cluster scope."""
        return f' in namespace "{self.namespace}"' if self.namespace else ""


class DeniedError(PluginError):
    """RBAC said no (403): the message names the verb and the resource to ask for."""

    def __init__(self, request: Request, server: str) -> None:
        self.request = request
        group = request.group or '"" (the core group)'
        plural = (
            f"{request.plural}/{request.subresource}" if request.subresource else request.plural
        )
        scope = (
            f'a Role in namespace "{request.namespace}"'
            if request.namespace
            else "a ClusterRole (cluster-wide)"
        )
        super().__init__(
            f"permission denied: you may not {request.verb} {request.resource}{request.where}"
            f" (the API server said: {server or 'Forbidden'}); ask for {scope} granting "
            f'"{request.verb}" on "{plural}" in API group {group}; '
            f"check with: kubectl auth can-i {request.verb} {request.resource}"
            + (f" -n {request.namespace}" if request.namespace else "")
        )


def server_message(body: str | bytes | None) -> str:
    """The ``message`` of a Status the API server answered with; else the body, shortened."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        status = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300]
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return " ".join(text.split())[:300]


def from_status(status: int, body: str | bytes | None, request: Request) -> PluginError:
    """The error for an HTTP answer ``status`` (not 2xx) to ``request``."""
    said = server_message(body)
    if status == 403:
        return DeniedError(request, said)
    if status == 401:
        return UnauthorizedError(
            f"the API server did not accept your credentials (401 Unauthorized: "
            f"{said or 'no detail'}); log in again or check the kubeconfig's user"
        )
    if status == 404 and (
        not said or "could not find the requested resource" in said or ("page not found" in said)
    ):
        crd = f"{request.plural}.{request.group}" if request.group else request.plural
        return UnservedError(
            f"the API server does not serve {request.resource}: is its CustomResourceDefinition "
            f"installed? (kubectl get crd {crd}; the chart installs it, or kubectl apply "
            "--server-side -f crds/)"
        )
    if status == 404:
        what = f'{request.resource} "{request.name}"' if request.name else request.resource
        return NotFoundError(f"{what} not found{request.where}: {said}" if said else what)
    failure = ExpiredError if status == 410 else ApiError
    return failure(
        f"{request.verb} {request.resource}{request.where} failed: {status} {said}".rstrip()
    )


_HANDSHAKE = re.compile(r"Handshake status (\d{3})")


def handshake(reason: str) -> tuple[int, str]:
    """(HTTP status, the server's message) of a failed exec, from the client's ``reason``.

    The official client reports a refused exec (a websocket upgrade the API server answered
    with an error) as ``ApiException(status=0)`` whose reason reads ``Handshake status 403
    Forbidden -+-+- {headers} -+-+- {Status body}``; 0 and the reason itself when it is not
    one (the connection failed).
    """
    match = _HANDSHAKE.search(reason)
    if not match:
        return 0, " ".join(reason.split())
    body = reason.rsplit("-+-+-", 1)[-1].strip() if "-+-+-" in reason else ""
    return int(match.group(1)), server_message(body) or match.group(0)
