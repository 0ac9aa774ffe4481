"""The client wrapper on the official client, against a small API server of this test's own."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from statefulwebapp.api import kinds
from statefulwebapp.plugin import errors, kube

APPS = "/apis/apps.k8slab.io/v1alpha1/namespaces/shop/statefulwebapps"


def status(code: int, message: str, reason: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "message": message,
        "reason": reason,
    }


class Server:
    """Answers by path: a JSON object, (status, JSON), or lines of a watch."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.seen.append(
                    (self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                url = urlparse(self.path)
                query = parse_qs(url.query)
                key = url.path
                if "continue" in query:
                    key += "?continue=" + query["continue"][0]
                if query.get("watch") == ["true"]:
                    key += "?watch"
                found = server.routes.get(key, (404, "404 page not found"))
                code, payload = found if isinstance(found, tuple) else (200, found)
                if isinstance(payload, list):  # a watch: one event a line
                    data = b"".join(json.dumps(e).encode() + b"\n" for e in payload)
                    kind = "application/json"
                elif isinstance(payload, str):
                    data, kind = payload.encode(), "text/plain"
                else:
                    data, kind = json.dumps(payload).encode(), "application/json"
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.httpd.shutdown()


def kubeconfig(tmp_path: Path, port: int, namespace: str = "shop") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "sesame"}}],
        "contexts": [
            {"name": "here", "context": {"cluster": "c", "user": "u", "namespace": namespace}},
            {"name": "bare", "context": {"cluster": "c", "user": "u"}},
        ],
        "current-context": "here",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_reads_lists_page_by_page_and_creates_with_the_kubeconfigs_token(
    server: Server, tmp_path: Path
) -> None:
    client = kube.connect(str(kubeconfig(tmp_path, server.port)))
    assert client.namespace == "shop"
    assert kube.connect(str(kubeconfig(tmp_path, server.port)), "bare").namespace == "default"
    server.routes[f"{APPS}/web"] = {"kind": "StatefulWebApp", "metadata": {"name": "web"}}
    server.routes[f"{APPS}/gone"] = (
        404,
        status(404, 'statefulwebapps "gone" not found', "NotFound"),
    )
    server.routes[APPS] = {
        "apiVersion": "apps.k8slab.io/v1alpha1",
        "items": [{"metadata": {"name": "a"}}],
        "metadata": {"continue": "next"},
    }
    server.routes[f"{APPS}?continue=next"] = {
        "items": [{"metadata": {"name": "b"}}],
        "metadata": {},
    }
    assert client.get(kinds.APP, "web", "shop") == {
        "kind": "StatefulWebApp",
        "metadata": {"name": "web"},
    }
    assert client.get(kinds.APP, "gone", "shop") is None
    listed = client.list(kinds.APP, "shop", "a=b")
    assert [(o["metadata"]["name"], o["kind"]) for o in listed] == [
        ("a", "StatefulWebApp"),
        ("b", "StatefulWebApp"),
    ]
    _, path, headers, _ = server.seen[-2]
    assert path.startswith(f"{APPS}?")
    assert "labelSelector=a%3Db" in path
    assert headers["authorization"] == "Bearer sesame"
    assert headers["user-agent"].startswith("kubectl-swa/")
    server.routes[APPS] = (201, {"metadata": {"name": "web-restore-x"}})
    made = client.create(kinds.APP, "shop", {"metadata": {"generateName": "web-restore-"}})
    assert made == {"metadata": {"name": "web-restore-x"}}
    assert server.seen[-1][0] == "POST"
    assert json.loads(server.seen[-1][3]) == {"metadata": {"generateName": "web-restore-"}}


@pytest.mark.parametrize(
    ("answer", "error", "said"),
    [
        (
            (403, status(403, "forbidden: cannot list", "Forbidden")),
            errors.DeniedError,
            "permission denied: you may not list statefulwebapps.apps.k8slab.io in namespace "
            '"shop"',
        ),
        (
            (401, status(401, "Unauthorized", "Unauthorized")),
            errors.UnauthorizedError,
            "did not accept",
        ),
        (
            (404, "404 page not found"),
            errors.UnservedError,
            "is its CustomResourceDefinition installed?",
        ),
        (
            (500, status(500, "etcd timed out", "InternalError")),
            errors.ApiError,
            "failed: 500 etcd timed out",
        ),
    ],
)
def test_a_refusal_becomes_its_error(
    server: Server, tmp_path: Path, answer: Any, error: type[Exception], said: str
) -> None:
    server.routes[APPS] = answer
    client = kube.connect(str(kubeconfig(tmp_path, server.port)))
    with pytest.raises(error) as raised:
        client.list(kinds.APP, "shop")
    assert said in str(raised.value)


def test_a_watch_yields_the_events_and_a_410_is_expired(server: Server, tmp_path: Path) -> None:
    client = kube.connect(str(kubeconfig(tmp_path, server.port)))
    restores = "/apis/apps.k8slab.io/v1alpha1/namespaces/shop/statefulwebapprestores"
    restore = {"metadata": {"name": "r", "resourceVersion": "8"}, "status": {"phase": "Running"}}
    server.routes[f"{restores}?watch"] = [{"type": "MODIFIED", "object": restore}]
    assert list(client.watch(kinds.RESTORE, "shop", "r", "7", 5)) == [("MODIFIED", restore)]
    _, path, _, _ = server.seen[-1]
    assert "fieldSelector=metadata.name%3Dr" in path
    assert "resourceVersion=7" in path
    server.routes[f"{restores}?watch"] = [
        {"type": "ERROR", "object": status(410, "too old resource version", "Expired")}
    ]
    with pytest.raises(errors.ExpiredError):
        list(client.watch(kinds.RESTORE, "shop", "r", "7", 5))


def test_logs_are_read_with_the_typed_api(server: Server, tmp_path: Path) -> None:
    client = kube.connect(str(kubeconfig(tmp_path, server.port)))
    server.routes["/api/v1/namespaces/shop/pods/web-0/log"] = "line 1\nline 2\n"
    assert client.logs("shop", "web-0", "web", 2) == "line 1\nline 2\n"
    assert "tailLines=2" in server.seen[-1][1]
    assert "container=web" in server.seen[-1][1]


def test_no_cluster_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(errors.UnreachableError, match="no cluster to talk to: the kubeconfig"):
        kube.connect(str(tmp_path / "absent"))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = kube.connect(str(kubeconfig(tmp_path, port)))
    with pytest.raises(errors.UnreachableError) as err:
        client.list(kinds.APP, "shop")
    assert str(err.value).startswith(f"cannot reach the API server at http://127.0.0.1:{port}: ")
    assert "is the cluster running" in str(err.value)
