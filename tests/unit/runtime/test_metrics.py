"""The operator's metrics: what each records, the endpoint serving them, the requests counted.

No cluster: the registry is read directly, a scrape is parsed with prometheus_client's own text
parser, and requests go to a small HTTP server on loopback standing in for the API server.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, cast

import prometheus_client
import pykube
import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from statefulwebapp.api import kinds
from statefulwebapp.controllers import sources
from statefulwebapp.runtime import informer, kube, workqueue
from statefulwebapp.runtime.metrics import OUTCOMES, PASS_BUCKETS, Endpoint, Metrics
from statefulwebapp.specs import registry


@pytest.fixture(autouse=True)
def as_the_command_serves_them() -> Iterator[None]:
    """Counters without their ``_created`` twins, as ``cli.main`` sets it for the process."""
    prometheus_client.disable_created_metrics()
    yield
    prometheus_client.enable_created_metrics()


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_pass_is_counted_by_its_outcome_and_every_outcome_shows_from_the_start() -> None:
    metrics = Metrics()
    for outcome in OUTCOMES:
        assert value(metrics, "statefulwebapp_reconcile_passes_total", outcome=outcome) == 0
    metrics.passed("changed", 0.2)
    metrics.passed("changed", 0.3)
    metrics.passed("in_sync", 0.001)
    assert value(metrics, "statefulwebapp_reconcile_passes_total", outcome="changed") == 2
    assert value(metrics, "statefulwebapp_reconcile_passes_total", outcome="in_sync") == 1
    assert value(metrics, "statefulwebapp_reconcile_passes_total", outcome="retry") == 0


def test_pass_durations_fill_the_histogram_buckets() -> None:
    metrics = Metrics()
    for seconds in (0.003, 0.02, 0.02, 0.7, 45.0, 90.0):
        metrics.passed("in_sync", seconds)
    name = "statefulwebapp_reconcile_duration_seconds"
    # Buckets are cumulative: each counts the passes at or under its bound.
    assert value(metrics, f"{name}_bucket", le="0.005") == 1
    assert value(metrics, f"{name}_bucket", le="0.025") == 3
    assert value(metrics, f"{name}_bucket", le="1.0") == 4
    assert value(metrics, f"{name}_bucket", le="60.0") == 5
    assert value(metrics, f"{name}_bucket", le="+Inf") == 6
    assert value(metrics, f"{name}_count") == 6
    assert value(metrics, f"{name}_sum") == pytest.approx(135.743)
    assert tuple(sorted(PASS_BUCKETS)) == PASS_BUCKETS


def test_the_ready_reason_gauge_is_recomputed_from_every_apps_last_pass() -> None:
    metrics = Metrics()

    def apps() -> dict[str, float]:
        family = next(f for f in metrics.registry.collect() if f.name == "statefulwebapp_apps")
        return {s.labels["reason"]: s.value for s in family.samples}

    assert apps() == {}
    metrics.app_ready(("ns", "a"), "StorageNotBound")
    metrics.app_ready(("ns", "b"), "StorageNotBound")
    metrics.app_ready(("ns", "c"), "InvalidSpec")
    assert apps() == {"StorageNotBound": 2, "InvalidSpec": 1}
    metrics.app_ready(("ns", "a"), "Ready")
    metrics.app_ready(("ns", "b"), "Ready")
    # A reason no app holds any more stays at 0, so an alert on it resolves.
    assert apps() == {"StorageNotBound": 0, "InvalidSpec": 1, "Ready": 2}
    metrics.app_ready(("ns", "b"), None)  # A pass that computed no status changes nothing.
    metrics.forget_app(("ns", "c"))
    metrics.forget_app(("ns", "unknown"))
    assert apps() == {"StorageNotBound": 0, "InvalidSpec": 0, "Ready": 2}


def test_a_scrape_parses_with_the_prometheus_text_parser() -> None:
    metrics = Metrics()
    metrics.passed("changed", 0.04)
    metrics.app_ready(("ns", "web"), "Ready")
    metrics.request("apply", "200")
    metrics.request("get", "404")
    metrics.received("watch", "statefulsets", 1234)
    metrics.watch_kind("StatefulSet")
    metrics.relisted("Service")
    metrics.full_check(0.25)
    metrics.queue(lambda: 3)
    metrics.leader.set(1)
    body, content_type = metrics.scrape()
    assert content_type.startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    ours = {name for name in families if name.startswith("statefulwebapp_")}
    assert ours == {
        "statefulwebapp_reconcile_passes",
        "statefulwebapp_reconcile_duration_seconds",
        "statefulwebapp_work_queue_depth",
        "statefulwebapp_apps",
        "statefulwebapp_api_requests",
        "statefulwebapp_api_received_bytes",
        "statefulwebapp_watch_relists",
        "statefulwebapp_full_check_cpu_seconds",
        "statefulwebapp_leader",
    }
    assert families["statefulwebapp_reconcile_passes"].type == "counter"
    assert families["statefulwebapp_reconcile_duration_seconds"].type == "histogram"
    assert families["statefulwebapp_apps"].type == "gauge"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families.values()
        for s in family.samples
    }
    assert samples["statefulwebapp_reconcile_passes_total", (("outcome", "changed"),)] == 1
    assert samples["statefulwebapp_work_queue_depth", ()] == 3
    assert samples["statefulwebapp_apps", (("reason", "Ready"),)] == 1
    assert samples["statefulwebapp_api_requests_total", (("code", "404"), ("verb", "get"))] == 1
    assert samples["statefulwebapp_watch_relists_total", (("kind", "StatefulSet"),)] == 0
    assert samples["statefulwebapp_watch_relists_total", (("kind", "Service"),)] == 1
    assert samples["statefulwebapp_full_check_cpu_seconds_sum", ()] == 0.25
    assert samples["statefulwebapp_leader", ()] == 1
    # The process's own figures (from /proc), for the memory limit.
    assert "process_resident_memory_bytes" in families
    # OpenMetrics when the scraper asks for it, from the same registry.
    om, om_type = metrics.scrape("application/openmetrics-text; version=1.0.0")
    assert om_type.startswith("application/openmetrics-text")
    assert om.endswith(b"# EOF\n")


def test_two_metrics_objects_share_nothing() -> None:
    one, two = Metrics(), Metrics(CollectorRegistry())
    one.passed("error", 1.0)
    assert value(two, "statefulwebapp_reconcile_passes_total", outcome="error") == 0


# -- the endpoint ---------------------------------------------------------------------------


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    served = Endpoint("http://127.0.0.1:0/healthz", Metrics(), loop_timeout=0.2).start()
    yield served
    served.stop()


def get(endpoint: Endpoint, path: str, accept: str = "") -> tuple[int, str, str]:
    port = endpoint.server.server_address[1]
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_a_standby_serves_health_and_metrics_with_leader_state_0(endpoint: Endpoint) -> None:
    assert get(endpoint, "/healthz")[::2] == (200, "standby\n")
    status, content_type, body = get(endpoint, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    (leader,) = (f for f in text_string_to_metric_families(body) if f.name.endswith("_leader"))
    assert leader.samples[0].value == 0
    assert get(endpoint, "/metrics?name[]=x")[0] == 200
    assert get(endpoint, "/other")[0] == 404


def test_once_kopf_runs_health_checks_that_its_event_loop_answers(endpoint: Endpoint) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        endpoint.loop = loop
        assert get(endpoint, "/healthz")[::2] == (200, "ok\n")
        # A loop that no longer runs its callbacks (hung, or stopped) fails the probe.
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        status, _, body = get(endpoint, "/healthz")
        assert status == 503
        assert "did not answer" in body
        loop.close()
        assert get(endpoint, "/healthz")[0] == 503
    finally:
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()


def test_readiness_of_a_standby_is_whether_it_could_take_over(endpoint: Endpoint) -> None:
    """/readyz differs from /healthz on a standby only: live, but cut off, it is not ready."""
    assert get(endpoint, "/readyz")[::2] == (200, "standby\n")  # No check given: ready.
    why: list[str | None] = ["the lease ns/op could not be read for 15s"]
    endpoint.standby = lambda: why[0]
    assert get(endpoint, "/readyz")[::2] == (
        503,
        "cannot take over: the lease ns/op could not be read for 15s\n",
    )
    assert get(endpoint, "/healthz")[::2] == (200, "standby\n")  # A restart would not help.
    why[0] = None
    assert get(endpoint, "/readyz")[::2] == (200, "standby\n")


def test_once_kopf_runs_readiness_is_its_event_loop_answering(endpoint: Endpoint) -> None:
    endpoint.standby = lambda: "never asked of a leader"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        endpoint.loop = loop
        assert get(endpoint, "/readyz")[::2] == (200, "ok\n")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        assert get(endpoint, "/readyz")[0] == 503
    finally:
        loop.close()


# -- the requests counted -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "content_type", "verb"),
    [
        ("GET", "https://k/api/v1/namespaces/ns/services/nginx", None, "get"),
        ("GET", "https://k/api/v1/namespaces/ns/services?limit=200", None, "list"),
        ("GET", "https://k/api/v1/services?limit=200", None, "list"),
        ("GET", "https://k/api/v1/persistentvolumes/ns-web-data", None, "get"),
        ("GET", "https://k/api/v1/namespaces", None, "list"),
        ("GET", "https://k/api/v1/namespaces/ns", None, "get"),
        ("GET", "https://k/apis/apps/v1/statefulsets?watch=true&resourceVersion=5", None, "watch"),
        ("GET", "https://k/apis/apps/v1/namespaces/a/statefulsets?watch=1", None, "watch"),
        (
            "PATCH",
            "https://k/apis/apps/v1/namespaces/ns/statefulsets/web?fieldManager=x&force=true",
            "application/apply-patch+yaml",
            "apply",
        ),
        (
            "PATCH",
            "https://k/apis/apps.k8slab.io/v1alpha1/namespaces/ns/statefulwebapps/web/status",
            "application/merge-patch+json",
            "patch",
        ),
        ("POST", "https://k/apis/coordination.k8s.io/v1/namespaces/ns/leases", None, "create"),
        ("PUT", "https://k/apis/coordination.k8s.io/v1/namespaces/ns/leases/op", None, "update"),
        ("DELETE", "https://k/api/v1/persistentvolumes/ns-web-data", None, "delete"),
        ("DELETE", "https://k/apis/batch/v1/namespaces/ns/cronjobs", None, "deletecollection"),
        # A server URL with a path of its own (a proxy in front of the API server).
        ("GET", "https://proxy/k8s/clusters/c-1/api/v1/namespaces/ns/pods/p", None, "get"),
    ],
)
def test_the_verb_of_a_request(method: str, url: str, content_type: str | None, verb: str) -> None:
    assert kube.route(method, url, content_type)[0] == verb


class FakeServer(http.server.BaseHTTPRequestHandler):
    """Answers 200 with an empty list or object for any path but ``/missing``: 404."""

    def do_GET(self) -> None:
        self._answer({"items": [], "metadata": {}} if "limit=" in self.path else {})

    def do_PATCH(self) -> None:
        self._answer({})

    def _answer(self, body: object) -> None:
        missing = "/missing" in self.path
        data = json.dumps({"message": "not found"} if missing else body).encode()
        self.send_response(404 if missing else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def client(url: str, metrics: Metrics) -> pykube.HTTPClient:
    config = pykube.KubeConfig(
        {
            "clusters": [{"name": "c", "cluster": {"server": url}}],
            "users": [{"name": "u", "user": {}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    adapter = kube.CountingAdapter(metrics, config)
    return pykube.HTTPClient(config, timeout=2, http_adapter=adapter)


def test_every_request_of_a_counting_client_is_counted_by_verb_and_code() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    metrics = Metrics()
    try:
        api = client(f"http://127.0.0.1:{server.server_address[1]}", metrics)
        assert kube.get(api, kinds.SERVICE, "nginx", "ns") == {}
        assert kube.get(api, kinds.SERVICE, "missing", "ns") is None
        assert list(kube.list_metadata(api, kinds.SERVICE)) == []
        service = {"kind": "Service", "metadata": {"name": "nginx", "namespace": "ns"}}
        kube.apply(api, kinds.SERVICE, service, manager="test")
    finally:
        server.shutdown()
        server.server_close()
    counted = "statefulwebapp_api_requests_total"
    assert value(metrics, counted, verb="get", code="200") == 1
    assert value(metrics, counted, verb="get", code="404") == 1
    assert value(metrics, counted, verb="list", code="200") == 1
    assert value(metrics, counted, verb="apply", code="200") == 1
    # No answer at all (nothing listens any more): counted as an error, and still raised.
    with pytest.raises(requests.ConnectionError):
        kube.get(api, kinds.SERVICE, "nginx", "ns")
    assert value(metrics, counted, verb="get", code="error") == 1
    # The bytes of each answer read, by verb and resource: {} is 2, the empty list 29, the
    # 404's message 24.
    received = "statefulwebapp_api_received_bytes_total"
    assert value(metrics, received, verb="get", resource="services") == 2 + 24
    assert value(metrics, received, verb="list", resource="services") == 29
    assert value(metrics, received, verb="apply", resource="services") == 2


@pytest.mark.parametrize(
    ("url", "resource"),
    [
        ("https://k/api/v1/namespaces/ns/services/nginx", "services"),
        ("https://k/api/v1/services?limit=200", "services"),
        ("https://k/api/v1/persistentvolumes/ns-web-data", "persistentvolumes"),
        (
            "https://k/apis/apps.k8slab.io/v1alpha1/namespaces/ns/statefulwebapps/web/status",
            "statefulwebapps/status",
        ),
        ("https://proxy/k8s/clusters/c-1/api/v1/namespaces/ns/pods/p", "pods"),
    ],
)
def test_the_resource_a_request_names(url: str, resource: str) -> None:
    assert kube.route("GET", url)[1] == resource


# -- the work queue ---------------------------------------------------------------------------


def test_queue_depth_counts_passes_waiting_not_those_running() -> None:
    scheduler = workqueue.WorkQueue(workers=1, coalesce=0.05, retry=0.05)
    release = threading.Event()
    running = threading.Event()

    def slow() -> workqueue.Result:
        running.set()
        release.wait(5)
        return workqueue.Result()

    assert scheduler.depth() == 0
    scheduler.add("a", slow)
    assert running.wait(5)
    assert scheduler.depth() == 0  # "a" runs.
    scheduler.add("b", workqueue.Result)  # Waits for the one worker.
    scheduler.add("a", workqueue.Result)  # Waits for a's pass to end.
    assert scheduler.depth() == 2
    release.set()

    def drained() -> bool:
        return scheduler.depth() == 0 and scheduler.idle("a") and scheduler.idle("b")

    for _ in range(100):
        if drained():
            break
        threading.Event().wait(0.05)
    assert drained()


# -- the watches' relists ---------------------------------------------------------------------


class Stop(BaseException):
    """Ends a watch's endless loop (which retries any Exception)."""


def test_a_relist_after_410_gone_is_counted_by_kind_and_the_start_list_is_not() -> None:
    metrics = Metrics()
    one = informer.Informer(
        cast(Any, None),
        sources.child_source(registry.SERVICE),
        informer.Store(),
        lambda *_: None,
        metrics=metrics,
    )
    relists = "statefulwebapp_watch_relists_total"
    assert value(metrics, relists, kind="Service") == 0
    answers: list[BaseException] = [informer.VersionGoneError(), Stop()]

    def watched() -> None:
        raise answers.pop(0)

    one.watch = watched  # type: ignore[method-assign]
    one.list = lambda *, report: 0  # type: ignore[method-assign]
    with pytest.raises(Stop):
        one.run()
    assert value(metrics, relists, kind="Service") == 1
