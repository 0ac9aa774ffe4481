"""The thin API layer: the only module that sends requests for children and status.

Every request a client from :func:`connect` sends (these functions', the children's watches',
the lease's) is counted by verb and status code when it is given the process's
:class:`~statefulwebapp.runtime.metrics.Metrics`: below the session, in its HTTP adapter, so a
request that got no answer (refused, timed out) counts too, as ``error``.

Children are written with server-side apply under one field manager, so a field someone else
owns is left alone, a field we own is set back, and a field we no longer send is removed. Paths
come from the caller's :class:`Resource` (``api/kinds.py`` has one for each kind the operator
talks to) instead of discovery: the operator only ever touches those kinds, and skipping
discovery saves requests at start-up. This module knows no resource of ours: which kinds, which
field manager and which user agent are the caller's to say.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pykube
import requests

from statefulwebapp.runtime.metrics import Metrics


class ApiError(RuntimeError):
    """A request the API server answered with an error.

    Keeps what the server said (its HTTP status, message, the fields it named) so
    that the status can tell the user exactly why, not only that a write failed.
    """

    def __init__(self, verb: str, path: str, response: requests.Response) -> None:
        """Read the Status object the API server sent back, or its text if it sent none."""
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        detail = str(body.get("message") or response.text or response.reason)
        self.status = response.status_code
        self.message = detail
        self.fields = tuple(
            str(cause.get("field"))
            for cause in (body.get("details") or {}).get("causes") or []
            if cause.get("field")
        )
        self.retry_after = _seconds(response.headers.get("Retry-After"))
        # A namespace being deleted answers 403 too; that is no missing permission.
        self.terminating = "is being terminated" in detail
        super().__init__(f"{verb} {path}: HTTP {response.status_code}: {detail}")


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


class Resource(Protocol):
    """Where a kind lives in the API: what its URLs are made of (a client-go REST mapping)."""

    @property
    def name(self) -> str:
        """The kind, such as ``StatefulSet``."""

    @property
    def group(self) -> str:
        """API group; empty for the core group."""

    @property
    def version(self) -> str:
        """API version within the group."""

    @property
    def plural(self) -> str:
        """Resource name in URLs."""

    @property
    def namespaced(self) -> bool:
        """Whether objects of the kind live in a namespace."""

    @property
    def api_base(self) -> str:
        """``/api/v1`` or ``/apis/<group>/<version>``."""


POOL_SIZE = 16
"""Kept connections: more than the pass workers (controller.new_queue), the only threads that send
requests, so a burst reuses connections instead of opening (and discarding) TLS sessions."""


def connect(
    timeout: float = 30,
    pool: int = POOL_SIZE,
    metrics: Metrics | None = None,
    *,
    user_agent: str = "",
) -> pykube.HTTPClient:
    """A client for the in-cluster service account, else ``$KUBECONFIG`` or ~/.kube/config.

    With ``metrics``, each request it sends is counted (``statefulwebapp_api_requests_total``).
    ``user_agent``: sent with every request (the API server's audit log tells them apart by it).
    """
    config = pykube.KubeConfig.from_env()
    adapter = (
        pykube.http.KubernetesHTTPAdapter(config, pool_maxsize=pool)
        if metrics is None
        else CountingAdapter(metrics, config, pool_maxsize=pool)
    )
    api = pykube.HTTPClient(config, timeout=timeout, http_adapter=adapter)
    if user_agent:
        api.session.headers["User-Agent"] = user_agent
    settle_environment(api.session, api.url)
    if SERVICE_ACCOUNT_TOKEN.is_file() and config.user.get("token"):
        ProjectedToken(config.user, SERVICE_ACCOUNT_TOKEN).install(api.session)
    return api


def settle_environment(session: requests.Session, url: str) -> None:
    """Read the proxy settings of the environment once, not on every request.

    requests looks at the environment (proxies, no_proxy, ~/.netrc, a CA bundle) on every
    request, a share of the operator's CPU that grows with its requests (CHANGELOG.md has the
    profile). Every request goes to the one API server, so the proxy chosen for it now (none
    when ``no_proxy`` covers it) serves them all. The token and the CA come from the
    kubeconfig or the service account, never from ~/.netrc or ``REQUESTS_CA_BUNDLE``.
    """
    session.proxies = dict(requests.utils.get_environ_proxies(url))
    session.trust_env = False


class CountingAdapter(pykube.http.KubernetesHTTPAdapter):  # type: ignore[misc]
    """pykube's adapter, counting each request it sends by verb and status code."""

    def __init__(self, metrics: Metrics, config: pykube.KubeConfig, **kwargs: Any) -> None:
        """Count into ``metrics``; the rest as pykube's adapter."""
        super().__init__(config, **kwargs)
        self.metrics = metrics

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send, then count it (``error`` when it got no answer) and its answer's bytes.

        A streamed answer (a watch) is not read here: the informer counts its events.
        """
        what, target = route(
            request.method or "GET", request.url or "", request.headers.get("Content-Type")
        )
        try:
            response: requests.Response = super().send(request, **kwargs)
        except Exception:
            self.metrics.request(what, "error")
            raise
        self.metrics.request(what, str(response.status_code))
        if not kwargs.get("stream"):
            self.metrics.received(what, target, len(response.content))
        return response


def route(method: str, url: str, content_type: str | None = None) -> tuple[str, str]:
    """The API verb of a request and the resource it names, from one parse of its URL.

    The verb as the API server's audit log names it (lowercase): GET is ``watch`` with
    ``watch=true``, ``list`` on a collection, else ``get``; PATCH is ``apply`` when it is a
    server-side apply; POST ``create``, PUT ``update``. The resource: its plural, with its
    subresource (``statefulwebapps/status``).
    """
    parts = urllib.parse.urlsplit(url)
    rest = _route(parts.path)
    target = "/".join(rest[:1] + rest[2:3])
    collection = len(rest) == 1
    method = method.upper()
    if method == "GET":
        if urllib.parse.parse_qs(parts.query).get("watch") in (["true"], ["1"]):
            return "watch", target
        return ("list" if collection else "get"), target
    if method == "PATCH":
        return ("apply" if "apply-patch" in (content_type or "") else "patch"), target
    if method == "DELETE":
        return ("deletecollection" if collection else "delete"), target
    return {"POST": "create", "PUT": "update"}.get(method, method.lower()), target


def _route(path: str) -> list[str]:
    """The segments of an API path after its group and version, and its namespace if any."""
    segments = [s for s in path.split("/") if s]
    # After /api/v1 or /apis/<group>/<version> (a server URL may have a path of its own).
    rest = segments
    for i, segment in enumerate(segments):
        if segment in ("api", "apis"):
            rest = segments[i + (2 if segment == "api" else 3) :]
            break
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    return rest


SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class ProjectedToken:
    """Keeps a client's bearer token in step with the projected service-account token file.

    The kubelet rewrites the file before the token expires (bound tokens live an hour by
    default); a token read once at start would be refused after that while the liveness probe
    stays green. The file is looked at (its mtime) at most every ``check_every`` seconds before
    a request, and re-read at once when the API server answers 401, the request then sent
    again once.
    """

    def __init__(self, user: dict[str, Any], path: Path, check_every: float = 10.0) -> None:
        """Update ``user["token"]`` (pykube's user entry, read on every request) from ``path``."""
        self.user = user
        self.path = path
        self.check_every = check_every
        self._mtime = self._stat()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _stat(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the token if the file changed (or ``force``); True if the token changed."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._checked < self.check_every:
                return False
            self._checked = now
            mtime = self._stat()
            if not force and mtime == self._mtime:
                return False
            self._mtime = mtime
            try:
                token = self.path.read_text().strip()
            except OSError:
                return False
            if not token or token == self.user.get("token"):
                return False
            self.user["token"] = token
            return True

    def install(self, session: requests.Session) -> None:
        """Check before each request; on a 401, re-read and send the request again once."""

        def before(request: requests.PreparedRequest) -> requests.PreparedRequest:
            self.refresh()
            return request

        def after(response: requests.Response, *_: Any, **kwargs: Any) -> requests.Response:
            if response.status_code != 401 or not self.refresh(force=True):
                return response
            again = response.request.copy()
            again.headers.pop("Authorization", None)  # pykube sets the new one.
            return session.send(again, **kwargs)

        session.auth = before
        session.hooks["response"].append(after)


def path(kind: Resource, name: str, namespace: str = "") -> str:
    """The URL path of one object."""
    scope = f"/namespaces/{namespace}" if kind.namespaced else ""
    return f"{kind.api_base}{scope}/{kind.plural}/{name}"


def _url(api: pykube.HTTPClient, p: str) -> str:
    return f"{api.url.rstrip('/')}{p}"


def get(
    api: pykube.HTTPClient, kind: Resource, name: str, namespace: str = "", *, cached: bool = False
) -> dict[str, Any] | None:
    """The live object, or None when it does not exist.

    ``cached``: as the API server's watch cache has it (``resourceVersion=0``), which spares
    etcd a read and answers sooner under load, at the price of a lag of milliseconds: for
    checks that the watches themselves could have made, never before deleting.
    """
    p = path(kind, name, namespace)
    params = {"resourceVersion": "0"} if cached else None
    response = api.session.get(_url(api, p), params=params, timeout=api.timeout)
    if response.status_code == 404:
        return None
    if not response.ok:
        raise ApiError("get", p, response)
    result: dict[str, Any] = response.json()
    return result


METADATA_PAGE = 100
"""Objects per page of a metadata list (the full check's). Their managed fields come too (no
list leaves them out), and a page is held as the answer, its text and its parse at once, while
the watches go on packing events: what the first check allocates, the process keeps. At a
thousand apps, pages of 500 raised the operator's resident memory from 118.9 to 137.9 MiB at
the check's peak (132.5 kept); pages of 200, from 118.7 to 124.8 (125.1 kept)."""


def list_metadata(
    api: pykube.HTTPClient, kind: Resource, *, namespace: str = "", selector: str = ""
) -> Iterator[dict[str, Any]]:
    """The metadata of every object of ``kind`` (in ``namespace``, or all), page by page.

    Asks for PartialObjectMetadata: no specs or statuses cross the wire, so a full check of a
    thousand apps' children stays a few small requests.
    """
    scope = f"/namespaces/{namespace}" if kind.namespaced and namespace else ""
    p = f"{kind.api_base}{scope}/{kind.plural}"
    for page in pages(api, p, selector=selector, limit=METADATA_PAGE, accept=METADATA_LIST):
        for item in page.get("items") or []:
            yield item.get("metadata") or {}


def selectors(labels: str = "", fields: str = "") -> dict[str, str]:
    """The query parameters of a label and a field selector, leaving out empty ones."""
    return ({"labelSelector": labels} if labels else {}) | (
        {"fieldSelector": fields} if fields else {}
    )


def pages(
    api: pykube.HTTPClient,
    p: str,
    *,
    selector: str = "",
    fields: str = "",
    limit: int,
    accept: str | None = None,
    timeout: float | tuple[float, float] | None = None,
) -> Iterator[dict[str, Any]]:
    """The pages of a list of ``p`` (a collection's path), each as the API server sent it.

    ``selector`` and ``fields`` are the label and field selectors. Every page carries the
    list's resourceVersion; a 410 (the continue token expired) is raised as an
    :class:`ApiError` with ``status`` 410.
    """
    params = {"limit": str(limit)} | selectors(selector, fields)
    while True:
        response = api.session.get(
            _url(api, p),
            params=params,
            headers={"Accept": accept} if accept else None,
            timeout=timeout or api.timeout,
        )
        if not response.ok:
            raise ApiError("list", p, response)
        page: dict[str, Any] = response.json()
        yield page
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return
        params = {**params, "continue": token}


METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
"""The Accept header of a metadata-only list."""
METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
"""The Accept header of a metadata-only watch (its events carry PartialObjectMetadata)."""


def apply(
    api: pykube.HTTPClient,
    kind: Resource,
    manifest: Mapping[str, Any],
    *,
    manager: str,
    force: bool = True,
) -> dict[str, Any]:
    """Server-side apply ``manifest`` (a ``kind``) as ``manager``.

    ``force``: take over the fields another manager set; without it, such a field with another
    value is a conflict (409), and nothing is written.
    """
    meta = manifest["metadata"]
    p = path(kind, meta["name"], meta.get("namespace", ""))
    response = api.session.patch(
        _url(api, p),
        params={"fieldManager": manager, "force": "true" if force else "false"},
        data=json.dumps(manifest),
        headers={"Content-Type": "application/apply-patch+yaml"},
        timeout=api.timeout,
    )
    return _answer("apply", p, response)


def create(api: pykube.HTTPClient, kind: Resource, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Create ``manifest`` (a ``kind``; POST); a 409 if it exists."""
    meta = manifest["metadata"]
    p = path(kind, meta["name"], meta.get("namespace", "")).rsplit("/", 1)[0]
    return _answer("create", p, api.session.post(_url(api, p), json=manifest, timeout=api.timeout))


def replace(api: pykube.HTTPClient, kind: Resource, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Replace ``manifest`` (a ``kind``; PUT); a 409 if its resourceVersion is not current."""
    meta = manifest["metadata"]
    p = path(kind, meta["name"], meta.get("namespace", ""))
    return _answer("replace", p, api.session.put(_url(api, p), json=manifest, timeout=api.timeout))


def _answer(verb: str, p: str, response: requests.Response) -> dict[str, Any]:
    """The object the API server answered with, or its refusal as an :class:`ApiError`."""
    if not response.ok:
        raise ApiError(verb, p, response)
    result: dict[str, Any] = response.json()
    return result


def delete(
    api: pykube.HTTPClient, kind: Resource, name: str, namespace: str = "", *, uid: str = ""
) -> bool:
    """Delete an object in the background; True if this request deleted it.

    ``uid``: delete only the object with that uid (a precondition); another object of the
    name, or none, is not an error and is left alone.
    """
    p = path(kind, name, namespace)
    options: dict[str, Any] = {"propagationPolicy": "Background"}
    if uid:
        options["preconditions"] = {"uid": uid}
    response = api.session.delete(_url(api, p), json=options, timeout=api.timeout)
    if response.status_code == 404 or (uid and response.status_code == 409):
        return False
    if not response.ok:
        raise ApiError("delete", p, response)
    return True


def merge_patch(
    api: pykube.HTTPClient, kind: Resource, name: str, namespace: str, patch: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Merge-patch an object (not its status); None if it is gone."""
    p = path(kind, name, namespace)
    response = api.session.patch(
        _url(api, p),
        data=json.dumps(patch),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=api.timeout,
    )
    if response.status_code == 404:
        return None
    return _answer("patch", p, response)


def patch_status(
    api: pykube.HTTPClient,
    namespace: str,
    name: str,
    status: Mapping[str, Any],
    kind: Resource,
) -> dict[str, Any] | None:
    """Merge-patch the status subresource of an object of ``kind``; lists are replaced whole.

    Returns the object as the write left it, or None if it is gone.
    """
    p = path(kind, name, namespace) + "/status"
    response = api.session.patch(
        _url(api, p),
        data=json.dumps({"status": status}),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=api.timeout,
    )
    if response.status_code == 404:
        return None  # The object is gone; there is no status left to tell.
    if not response.ok:
        raise ApiError("patch status", p, response)
    written: dict[str, Any] = response.json()
    return written
