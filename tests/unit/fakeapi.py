"""A stand-in for the API server that records every request ``kube.py`` sends (no network).

For unit tests of the code that sends requests (reconcile, the controller, the lease, the
informers, restores): it keeps objects by URL path, answers server-side applies by storing the
applied object (optionally rewritten, as the API server canonicalises quantities), and answers
with the errors a test scripts for a path. A list answers in one page (label selectors of
``=``, ``!=`` and existence; field selectors of ``=``) and a watch ends at once with no event, as
at the server's timeout: enough for the requests to be made and recorded (``calls``, what
test_chart.py derives the chart's RBAC from). The e2e tests use the real API server.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests import Response

Obj = dict[str, Any]

JSON = "application/json"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(body).encode()
    r.headers.update(headers or {})
    return r


def stream(*events: Obj) -> Response:
    """A watch's answer: ``events``, one JSON line each, then the end of the stream."""
    r = requests.Response()
    r.status_code = 200
    r.raw = io.BytesIO(b"".join(json.dumps(event).encode() + b"\n" for event in events))
    return r


def error(status: int, reason: str, message: str, *fields: str) -> Response:
    """An error answer shaped like the API server's Status object."""
    causes = [{"field": f, "message": message} for f in fields]
    return response(
        status,
        {
            "kind": "Status",
            "status": "Failure",
            "reason": reason,
            "message": message,
            "details": {"causes": causes},
            "code": status,
        },
    )


@dataclass(frozen=True)
class Target:
    """What a URL path names: a collection (no ``name``), an object, or its subresource."""

    group: str
    """API group; empty for the core group."""
    resource: str
    """The plural, such as ``statefulsets``."""
    namespace: str
    """Empty for a cluster-scoped object or a list across every namespace."""
    name: str
    """The object's name; empty for a collection."""
    subresource: str
    """Such as ``status``; empty for the object itself."""


def target(path: str) -> Target:
    """Read ``/api/v1/...`` or ``/apis/<group>/<version>/...``."""
    segments = path.strip("/").split("/")
    group, rest = ("", segments[2:]) if segments[0] == "api" else (segments[1], segments[3:])
    namespace = ""
    if len(rest) > 2 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    resource, name, subresource = (*rest, "", "")[:3]
    return Target(group, resource, namespace, name, subresource)


@dataclass(frozen=True)
class Call:
    """One request as the fake API server received it: enough to tell its RBAC verb."""

    method: str
    """The HTTP method."""
    path: str
    """The URL path, without the query."""
    params: Mapping[str, str]
    """The query parameters (``watch``, ``limit``, selectors...)."""
    content_type: str
    """The body's Content-Type; empty when none was sent."""
    status: int
    """The fake's answer; 0 when a scripted exception was raised instead."""
    accept: str = ""
    """The Accept header; empty when none was sent (a metadata-only list or watch names
    PartialObjectMetadata)."""

    @property
    def target(self) -> Target:
        """What the path names."""
        return target(self.path)


@dataclass
class FakeSession:
    api: FakeApi

    def _path(self, url: str) -> str:
        return url.removeprefix(self.api.url)

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        **_: Any,
    ) -> Response:
        return self.api.handle("GET", self._path(url), None, dict(headers or {}), params)

    def patch(
        self,
        url: str,
        *,
        data: str,
        headers: dict[str, str],
        params: Mapping[str, str] | None = None,
        **_: Any,
    ) -> Response:
        return self.api.handle("PATCH", self._path(url), json.loads(data), headers, params)

    def delete(self, url: str, *, json: Obj | None = None, **_: Any) -> Response:
        return self.api.handle("DELETE", self._path(url), json, {})

    def post(self, url: str, *, json: Obj, **_: Any) -> Response:
        return self.api.handle("POST", self._path(url), json, {"Content-Type": JSON})

    def put(self, url: str, *, json: Obj, **_: Any) -> Response:
        return self.api.handle("PUT", self._path(url), json, {"Content-Type": JSON})


def member(path: str, of: Target) -> bool:
    """Whether the object at ``path`` is listed by the collection ``of`` (one namespace or all)."""
    obj = target(path)
    same = (obj.group, obj.resource) == (of.group, of.resource)
    return same and of.namespace in {"", obj.namespace}


def selected(obj: Obj, labels: str, fields: str) -> bool:
    """Whether ``obj`` matches a label and a field selector (each may be empty)."""
    have = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, labels.split(",")):
        key, op, value = term.partition("!=") if "!=" in term else term.partition("=")
        if op == "!=" and have.get(key) == value:
            return False
        if op == "=" and have.get(key) != value.removeprefix("="):  # "=" or "=="
            return False
        if not op and (key.removeprefix("!") in have) == key.startswith("!"):
            return False  # "key": it must be there; "!key": it must not.
    for term in filter(None, fields.split(",")):
        dotted, _, value = term.partition("=")
        found: Any = obj
        for part in dotted.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if str(found) != value:
            return False
    return True


def _metadata_only(answer: Obj) -> Obj:
    """A list as the API server sends it to a client asking for PartialObjectMetadataList."""
    items = [
        {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": i["metadata"]}
        for i in answer.get("items") or []
    ]
    return {**answer, "kind": "PartialObjectMetadataList", "items": items}


def merged(obj: Any, patch: Any) -> Any:
    """``obj`` with the JSON merge patch ``patch`` (RFC 7386) applied."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(obj) if isinstance(obj, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result


@dataclass
class FakeApi:
    """Objects by path; ``requests`` lists (verb, path) in order, ``calls`` every detail."""

    url: str = "https://fake"
    timeout: int = 1
    objects: dict[str, Obj] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    """Every request, in order, never cleared by the tests that clear ``requests``."""
    answers: dict[tuple[str, str], Response | Exception] = field(default_factory=dict)
    """Scripted answers for (verb, path), returned instead of the normal behaviour."""
    canonical: Callable[[Obj], Obj] = lambda obj: obj
    """How the server rewrites an applied object before storing it."""
    session: FakeSession = field(init=False)
    _version: int = 0
    _contents: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.session = FakeSession(self)

    def handle(
        self,
        verb: str,
        path: str,
        body: Any,
        headers: dict[str, str],
        params: Mapping[str, str] | None = None,
    ) -> Response:
        self.requests.append((verb, path))
        query = dict(params or {})
        content_type, accept = headers.get("Content-Type", ""), headers.get("Accept", "")
        scripted = self.answers.get((verb, path))
        if isinstance(scripted, Exception):
            self.calls.append(Call(verb, path, query, content_type, 0, accept))
            raise scripted
        # Not ``scripted or ...``: a Response that is an error is falsy.
        answer = (
            self._serve(verb, path, body, content_type, query) if scripted is None else scripted
        )
        if "as=PartialObjectMetadataList" in accept and answer.ok and "watch" not in query:
            answer = response(answer.status_code, _metadata_only(answer.json()))
        self.calls.append(Call(verb, path, query, content_type, answer.status_code, accept))
        return answer

    def _serve(
        self, verb: str, path: str, body: Any, content_type: str, params: Mapping[str, str]
    ) -> Response:
        if verb == "GET" and not target(path).name:
            return self._list(target(path), params)
        if verb == "GET":
            obj = self.objects.get(path)
            return response(200, obj) if obj else error(404, "NotFound", "not found")
        if verb == "DELETE":
            return self._delete(path, body)
        if verb == "POST":
            return self._create(f"{path}/{body['metadata']['name']}", body)
        if verb == "PUT":
            return self._replace(path, body)
        return self._patch(path, body, content_type)

    def _delete(self, path: str, options: Obj | None) -> Response:
        """Delete, with the API server's uid precondition (409 when another object has the name)."""
        obj = self.objects.get(path)
        if not obj:
            return error(404, "NotFound", "not found")
        uid = ((options or {}).get("preconditions") or {}).get("uid")
        if uid and uid != obj.get("metadata", {}).get("uid"):
            return error(409, "Conflict", "Precondition failed: UID in precondition")
        return response(200, self.objects.pop(path))

    def _patch(self, path: str, body: Obj, content_type: str) -> Response:
        if path.endswith("/status"):
            app = self.objects.setdefault(path.removesuffix("/status"), {"metadata": {}})
            app["status"] = body["status"]
            return response(200, self._bump(app))
        if content_type == MERGE:
            return self._merge(path, body)
        assert content_type == APPLY
        return self._apply(path, body)

    def _merge(self, path: str, body: Obj) -> Response:
        if path not in self.objects:
            return error(404, "NotFound", "not found")
        self.objects[path] = merged(self.objects[path], body)
        return response(200, self._bump(self.objects[path]))

    def _list(self, of: Target, params: Mapping[str, str]) -> Response:
        if params.get("watch") == "true":
            return stream()  # No event, ended at once: as at the server's timeout.
        labels, fields = params.get("labelSelector", ""), params.get("fieldSelector", "")
        items = [
            copy.deepcopy(obj)
            for path, obj in self.objects.items()
            if member(path, of) and selected(obj, labels, fields)
        ]
        return response(200, {"metadata": {"resourceVersion": str(self._version)}, "items": items})

    def _create(self, path: str, body: Obj) -> Response:
        if path in self.objects:
            return error(409, "AlreadyExists", "already exists")
        self.objects[path] = copy.deepcopy(body)
        return response(201, self._bump(self.objects[path]))

    def _replace(self, path: str, body: Obj) -> Response:
        current = self.objects.get(path)
        if current is None:
            return error(404, "NotFound", "not found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return error(409, "Conflict", "the object has been modified")
        self.objects[path] = copy.deepcopy(body)
        return response(200, self._bump(self.objects[path]))

    def _apply(self, path: str, body: Obj) -> Response:
        """Store the applied object: 201 when that created it, as the API server answers."""
        stored = self.canonical(copy.deepcopy(body))
        before = self.objects.get(path)
        if before is None:
            stored["metadata"].update(uid=f"uid-{len(self.objects)}", generation=1)
        else:
            # Like the API server: status is kept, the generation moves when the spec does.
            changed = before.get("spec") != stored.get("spec")
            stored["metadata"]["uid"] = before["metadata"]["uid"]
            stored["metadata"]["generation"] = before["metadata"]["generation"] + changed
            if "status" in before:
                stored["status"] = before["status"]
        self.objects[path] = stored
        return response(201 if before is None else 200, self._bump(stored))

    def _bump(self, obj: Obj) -> Obj:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        return obj

    def versioned(self) -> None:
        """Give each object changed in place since the last call a new resourceVersion.

        Tests play the other writers (controllers, users) by editing ``objects`` directly; the
        API server gives every write a new resourceVersion, which the operator relies on.
        """
        for path, obj in self.objects.items():
            meta = obj.setdefault("metadata", {})
            content = json.dumps({**obj, "metadata": {**meta, "resourceVersion": None}})
            version, before = meta.get("resourceVersion"), self._contents.get(path)
            edited = before is not None and before[0] == version and before[1] != content
            if version is not None and edited:
                self._bump(obj)  # Changed in place by a test, not by a request.
            self._contents[path] = (meta.get("resourceVersion"), content)

    def sent(self, verb: str = "PATCH") -> list[str]:
        """Paths of the requests of ``verb``, in order."""
        return [path for v, path in self.requests if v == verb]
