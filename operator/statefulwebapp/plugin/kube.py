"""``gather.Source`` on the official ``kubernetes`` client: the only module that imports it.

The kubeconfig (``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``; in a pod
without one, the pod's service account) is read by the client's own loader, so its auth
(certificates, tokens, exec plugins) is the client's. Objects are read as the API server's
JSON through the client's ``ApiClient`` (its generated models would drop fields they do not
know: a newer server's, and a support bundle must keep them); a restore is followed with
the client's ``Watch`` over ``CustomObjectsApi``, logs read with ``CoreV1Api``, and commands
run in containers with its websocket ``stream`` of ``connect_get_namespaced_pod_exec``.

Every failure leaves as a :class:`~statefulwebapp.plugin.errors.PluginError`: the client's
exceptions never reach the command line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import stream

from statefulwebapp.api.kinds import Kind
from statefulwebapp.api.objects import Manifest, Obj
from statefulwebapp.plugin.errors import (
    NotFoundError,
    PluginError,
    Request,
    UnreachableError,
    from_status,
    handshake,
    server_message,
)
from statefulwebapp.plugin.gather import Exec

TIMEOUT = (5.0, 60.0)
"""Seconds to connect, and to wait for an answer."""
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
USER_AGENT = f"kubectl-swa/{version('statefulwebapp-operator')}"


def connect(kubeconfig: str | None = None, context: str | None = None) -> Kube:
    """A :class:`Kube` on the kubeconfig's cluster, or :class:`UnreachableError` saying why not."""
    explicit = kubeconfig or os.environ.get("KUBECONFIG")
    in_pod = not explicit and not Path("~/.kube/config").expanduser().exists()
    if in_pod and (SERVICE_ACCOUNT / "token").exists():
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as err:
            raise UnreachableError(f"cannot use this pod's service account: {err}") from None
        namespace = (SERVICE_ACCOUNT / "namespace").read_text().strip() or "default"
        return Kube(client.ApiClient(configuration), namespace)
    where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        api = config.new_client_from_config(config_file=kubeconfig, context=context)
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except ConfigException as err:
        raise UnreachableError(
            f"no cluster to talk to: the kubeconfig ({where}) says: {err}; "
            "point --kubeconfig or $KUBECONFIG at a cluster's kubeconfig"
        ) from None
    except OSError as err:
        raise UnreachableError(f"cannot read the kubeconfig ({where}): {err}") from None
    chosen = next((c for c in contexts or () if c.get("name") == context), None) or active
    namespace = str(((chosen or {}).get("context") or {}).get("namespace") or "default")
    if not isinstance(api, client.ApiClient):
        raise UnreachableError(f"the kubeconfig ({where}) gave no client")
    return Kube(api, namespace)


def _path(kind: Kind, namespace: str, name: str = "") -> str:
    base = kind.api_base
    if kind.namespaced and namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{kind.plural}"
    return f"{base}/{quote(name, safe='')}" if name else base


class Kube:
    """The cluster through the official client (:class:`gather.Source`)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.api.user_agent = USER_AGENT
        self._namespace = namespace

    @property
    def namespace(self) -> str:
        """The kubeconfig context's namespace (``default`` when it names none)."""
        return self._namespace

    @property
    def host(self) -> str:
        """The API server's address."""
        return str(self.api.configuration.host)

    def _unreachable(self, err: BaseException) -> UnreachableError:
        cause = getattr(err, "reason", None) or err
        return UnreachableError(
            f"cannot reach the API server at {self.host}: {' '.join(str(cause).split())}; "
            "is the cluster running, and is the kubeconfig's server address right?"
        )

    def _call(
        self,
        method: str,
        request: Request,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Manifest | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        params = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query) or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(*params, _request_timeout=TIMEOUT)
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise self._unreachable(err) from None
        except ApiException as err:  # TLS failures come as status 0.
            raise self._unreachable(err) from None
        if not 200 <= int(response.status) < 300:
            raise from_status(int(response.status), data, request)
        return json.loads(data)

    def get(self, kind: Kind, name: str, namespace: str = "") -> Obj | None:
        """One object, or None when there is none of that name."""
        request = Request("get", kind.plural, kind.group, namespace, name)
        try:
            found: Obj = self._call("GET", request, _path(kind, namespace, name))
        except PluginError as err:
            if isinstance(err, NotFoundError):
                return None
            raise
        return found

    def list(
        self, kind: Kind, namespace: str = "", selector: str = "", fields: str = ""
    ) -> list[Obj]:
        """Every object of ``kind`` in ``namespace`` (every namespace when empty), page by page."""
        request = Request("list", kind.plural, kind.group, namespace)
        items: list[Obj] = []
        token = ""
        while True:
            query = [("limit", "500")]
            query += [("labelSelector", selector)] if selector else []
            query += [("fieldSelector", fields)] if fields else []
            query += [("continue", token)] if token else []
            page = self._call("GET", request, _path(kind, namespace), query)
            for item in page.get("items") or []:
                # A list's items carry no kind of their own.
                item.setdefault("kind", kind.name)
                item.setdefault("apiVersion", str(page.get("apiVersion") or ""))
                items.append(item)
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return items

    def create(self, kind: Kind, namespace: str, body: Manifest) -> Obj:
        """Create ``body`` in ``namespace``; the object the API server made."""
        request = Request("create", kind.plural, kind.group, namespace)
        made: Obj = self._call("POST", request, _path(kind, namespace), body=body)
        return made

    def watch(
        self, kind: Kind, namespace: str, name: str, resource_version: str, timeout: int
    ) -> Iterator[tuple[str, Obj]]:
        """Events of one custom object (a restore) from ``resource_version`` on."""
        request = Request("watch", kind.plural, kind.group, namespace, name)
        custom = client.CustomObjectsApi(self.api)
        watcher = watch.Watch()
        try:
            events = watcher.stream(
                custom.list_namespaced_custom_object,
                kind.group,
                kind.version,
                namespace,
                kind.plural,
                field_selector=f"metadata.name={name}",
                resource_version=resource_version,
                timeout_seconds=timeout,
                _request_timeout=(TIMEOUT[0], timeout + 10),
            )
            for event in events:
                yield str(event["type"]), dict(event["raw_object"])
        except ApiException as err:
            raise self._failed(err, request) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise self._unreachable(err) from None
        finally:
            watcher.stop()

    def _failed(self, err: ApiException, request: Request) -> PluginError:
        status = int(err.status or 0)
        if not status:
            return self._unreachable(err)
        return from_status(status, err.body or err.reason, request)

    def logs(
        self, namespace: str, pod: str, container: str, tail: int, previous: bool = False
    ) -> str:
        """The last ``tail`` lines of a container's log (its previous run's: ``previous``)."""
        request = Request("get", "pods", "", namespace, pod, "log")
        core = client.CoreV1Api(self.api)
        try:
            text = core.read_namespaced_pod_log(
                pod,
                namespace,
                container=container,
                tail_lines=tail,
                previous=previous,
                _request_timeout=TIMEOUT,
            )
        except ApiException as err:
            raise self._failed(err, request) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise self._unreachable(err) from None
        return str(text)

    def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], timeout: float
    ) -> Exec:
        """Run ``command`` in the container; its output and exit status."""
        request = Request("create", "pods", "", namespace, pod, "exec")
        # A client of its own: stream() swaps its client's call_api while it connects, so two
        # commands at once on one client would cross.
        core = client.CoreV1Api(client.ApiClient(self.api.configuration))
        try:
            ws = stream(
                core.connect_get_namespaced_pod_exec,
                pod,
                namespace,
                command=list(command),
                container=container,
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
            )
        except ApiException as err:
            status, said = handshake(str(err.reason or err))
            if status:
                raise from_status(status, said, request) from None
            raise self._unreachable(err) from None
        try:
            ws.run_forever(timeout=timeout)
            out, errors = str(ws.read_stdout() or ""), str(ws.read_stderr() or "")
            code = None if ws.is_open() else int(ws.returncode)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise PluginError(
                f"exec in pod {pod}: unreadable exit status: {server_message(str(err))}"
            ) from None
        finally:
            ws.close()
        return Exec(out, errors, code)
