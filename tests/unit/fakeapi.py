"""A stand-in for the API server that records every request ``kube.py`` sends (no network).

Only for unit tests of ``reconcile()``: it keeps objects by URL path, answers server-side
applies by storing the applied object (optionally rewritten, as the API server canonicalises
quantities), and answers with the errors a test scripts for a path. The e2e tests use the real
API server.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

Obj = dict[str, Any]


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(body).encode()
    r.headers.update(headers or {})
    return r


def error(status: int, reason: str, message: str, *fields: str) -> requests.Response:
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


@dataclass
class FakeSession:
    api: FakeApi

    def _path(self, url: str) -> str:
        return url.removeprefix(self.api.url)

    def get(self, url: str, **_: Any) -> requests.Response:
        return self.api.handle("GET", self._path(url), None, {})

    def patch(
        self, url: str, *, data: str, headers: dict[str, str], **kw: Any
    ) -> requests.Response:
        return self.api.handle("PATCH", self._path(url), json.loads(data), headers)

    def delete(self, url: str, **_: Any) -> requests.Response:
        return self.api.handle("DELETE", self._path(url), None, {})

    def post(self, url: str, *, json: Obj, **_: Any) -> requests.Response:
        return self.api.handle("POST", self._path(url), json, {})

    def put(self, url: str, *, json: Obj, **_: Any) -> requests.Response:
        return self.api.handle("PUT", self._path(url), json, {})


@dataclass
class FakeApi:
    """Objects by path; ``requests`` lists (verb, path) in order."""

    url: str = "https://fake"
    timeout: int = 1
    objects: dict[str, Obj] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    answers: dict[tuple[str, str], requests.Response | Exception] = field(default_factory=dict)
    """Scripted answers for (verb, path), returned instead of the normal behaviour."""
    canonical: Callable[[Obj], Obj] = lambda obj: obj
    """How the server rewrites an applied object before storing it."""
    session: FakeSession = field(init=False)
    _version: int = 0
    _contents: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.session = FakeSession(self)

    def handle(self, verb: str, path: str, body: Any, headers: dict[str, str]) -> requests.Response:
        self.requests.append((verb, path))
        scripted = self.answers.get((verb, path))
        if isinstance(scripted, Exception):
            raise scripted
        if scripted is not None:
            return scripted
        if verb in ("GET", "DELETE"):
            obj = self.objects.get(path) if verb == "GET" else self.objects.pop(path, None)
            return response(200, obj) if obj else error(404, "NotFound", "not found")
        if verb == "POST":
            return self._create(f"{path}/{body['metadata']['name']}", body)
        if verb == "PUT":
            return self._replace(path, body)
        if path.endswith("/status"):
            app = self.objects.setdefault(path.removesuffix("/status"), {"metadata": {}})
            app["status"] = body["status"]
            return response(200, self._bump(app))
        assert headers["Content-Type"] == "application/apply-patch+yaml"
        return self._apply(path, body)

    def _create(self, path: str, body: Obj) -> requests.Response:
        if path in self.objects:
            return error(409, "AlreadyExists", "already exists")
        self.objects[path] = copy.deepcopy(body)
        return response(201, self._bump(self.objects[path]))

    def _replace(self, path: str, body: Obj) -> requests.Response:
        current = self.objects.get(path)
        if current is None:
            return error(404, "NotFound", "not found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return error(409, "Conflict", "the object has been modified")
        self.objects[path] = copy.deepcopy(body)
        return response(200, self._bump(self.objects[path]))

    def _apply(self, path: str, body: Obj) -> requests.Response:
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
        return response(200, self._bump(stored))

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
