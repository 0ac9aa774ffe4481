"""The operator's own metrics (prometheus_client), and the one HTTP endpoint serving them.

One :class:`Metrics` per process, made by ``cli.main`` around a ``CollectorRegistry`` of its
own (not the library's global one) and handed to whoever records: the API layer counts every
request it sends (``kube.connect``), the children's watches count their relists, the passes
(``handlers``) count outcomes, time passes and track the apps' Ready reasons, the command sets
the leader state. A scrape only reads counters in memory: it costs no API request.

:class:`Endpoint` serves ``/healthz``, ``/readyz`` and ``/metrics`` on the health port for the
whole life of the process. Why one server of our own and not kopf's liveness endpoint: kopf's
binds the port only once kopf runs, i.e. once this instance leads and its startup listed every child
(seconds at a thousand apps, longer while etcd is down), so a standby needed a server of its
own anyway, and the port was closed for a while at every takeover. kopf's endpoint proved one
thing, that kopf's event loop answers (no probe handlers are registered here); ``/healthz``
keeps that check once kopf runs (:attr:`Endpoint.loop`), and answers ``standby`` before.

Live and ready differ on a standby. Live (``/healthz``, the liveness probe) asks only whether a
restart would help: a standby waiting for the lease is live, and so is one cut off from the API
server, since a restart does not bring the API server back. Ready (``/readyz``, the readiness
probe) asks whether this instance could do the operator's work now: the leader once kopf's
loop answers, a standby if it could take over, i.e. the API server answered its last looks at
the lease (``Elector.unready``). What reads readiness is a rolling update (a new pod that cannot
reach the API server or read leases stops the rollout, the old pods left running) and the
PodDisruptionBudget (a standby that could not take over is no reason to let the leader go).
A standby is not made unready for merely waiting: then no rollout could go on and every
PodDisruptionBudget would block a drain for ever.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import http.server
import threading
import urllib.parse
from collections.abc import Callable, Hashable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    Summary,
)
from prometheus_client.exposition import choose_encoder

OUTCOMES = ("in_sync", "changed", "problem", "retry", "gone", "error")
"""What a reconcile pass ended with (``app_state.Outcome.label``, and ``error`` when it raised):
nothing to write; wrote something (a child, the status); a problem that waits for the user
(InvalidSpec, Refused, NameConflict: not retried); server trouble or RBAC (retried with
backoff); the app was gone; an unexpected exception (a bug, retried with backoff)."""

PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds. A pass in sync reads nothing over the network (milliseconds); one that applies
children waits on the API server; 30 s is a request's timeout."""

READY_PATH = "/readyz"
"""The readiness check's path, beside the health check's (``--health``) on the same port."""


class Metrics:
    """Every metric of the operator, registered in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Register the metrics in ``registry`` (a new one by default) with the process's own."""
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        # Resident memory and CPU from /proc: the chart's memory limit is sized from them.
        ProcessCollector(registry=registry)
        self.passes = Counter(
            "statefulwebapp_reconcile_passes",
            "Reconcile passes of an app, by how they ended.",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.passes.labels(outcome)
        self.pass_seconds = Histogram(
            "statefulwebapp_reconcile_duration_seconds",
            "Seconds one reconcile pass of an app took.",
            buckets=PASS_BUCKETS,
            registry=registry,
        )
        self.work_queue = Gauge(
            "statefulwebapp_work_queue_depth",
            "Apps with a pass waiting to run: for a worker, a coalescing window or a backoff.",
            registry=registry,
        )
        self.apps = Gauge(
            "statefulwebapp_apps",
            "Apps served, by the reason of their Ready condition as the last pass computed it.",
            ["reason"],
            registry=registry,
        )
        self.api_requests = Counter(
            "statefulwebapp_api_requests",
            "Requests sent to the API server, by verb and HTTP status code ('error': no answer).",
            ["verb", "code"],
            registry=registry,
        )
        self.received_bytes = Counter(
            "statefulwebapp_api_received_bytes",
            "Bytes of the API server's answers read and decoded, by verb and resource (a watch's"
            " counted event by event).",
            ["verb", "resource"],
            registry=registry,
        )
        self.relists = Counter(
            "statefulwebapp_watch_relists",
            "Lists of a watched kind after the one at start (410 Gone, or that one failed).",
            ["kind"],
            registry=registry,
        )
        self.full_check_cpu = Summary(
            "statefulwebapp_full_check_cpu_seconds",
            "CPU seconds of the periodic full check (its lists decoded and compared), per check.",
            registry=registry,
        )
        self.leader = Gauge(
            "statefulwebapp_leader",
            "1 while this instance holds the leader-election lease, else 0 (a standby).",
            registry=registry,
        )
        self._lock = threading.Lock()
        self._reasons: dict[Hashable, str] = {}
        self._counts: collections.Counter[str] = collections.Counter()

    def passed(self, outcome: str, seconds: float) -> None:
        """One reconcile pass ended with ``outcome`` (one of :data:`OUTCOMES`)."""
        self.passes.labels(outcome).inc()
        self.pass_seconds.observe(seconds)

    def request(self, verb: str, code: str) -> None:
        """One request sent; ``code`` is the HTTP status, or ``error`` when none came."""
        self.api_requests.labels(verb, code).inc()

    def received(self, verb: str, resource: str, size: int) -> None:
        """``size`` bytes of an answer to a ``verb`` of ``resource`` (its plural) were read."""
        self.received_bytes.labels(verb, resource).inc(size)

    def relisted(self, kind: str) -> None:
        """A watch of ``kind`` listed it again."""
        self.relists.labels(kind).inc()

    def full_check(self, cpu_seconds: float) -> None:
        """One full check (the resync) took ``cpu_seconds`` of its thread's CPU."""
        self.full_check_cpu.observe(cpu_seconds)

    def watch_kind(self, kind: str) -> None:
        """``kind`` is watched: show its relists as 0 until there is one."""
        self.relists.labels(kind)

    def queue(self, depth: Callable[[], float]) -> None:
        """Read the work queue's depth from ``depth()`` at each scrape."""
        self.work_queue.set_function(depth)

    def app_ready(self, key: Hashable, reason: str | None) -> None:
        """The Ready reason a pass computed for app ``key`` (None: it computed none)."""
        if reason is None:
            return
        with self._lock:
            before = self._reasons.get(key)
            if before == reason:
                return
            self._reasons[key] = reason
            self._count(before, reason)

    def forget_app(self, key: Hashable) -> None:
        """App ``key`` is gone (or no longer served)."""
        with self._lock:
            self._count(self._reasons.pop(key, None), None)

    def _count(self, before: str | None, now: str | None) -> None:
        """One app's reason moved from ``before`` to ``now`` (None: none).

        Two gauges set, however many apps there are; a reason no app holds any more shows 0.
        """
        for reason, step in ((before, -1), (now, 1)):
            if reason is not None:
                self._counts[reason] += step
                self.apps.labels(reason).set(self._counts[reason])

    def scrape(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition (the text format, or OpenMetrics if ``accept`` asks) and its type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class Endpoint:
    """``/healthz`` and ``/metrics`` on one port, from before the lease until the process ends."""

    def __init__(self, url: str, metrics: Metrics, *, loop_timeout: float = 3.0) -> None:
        """Listen at ``url``'s host and port; ``url``'s path is the health check's.

        ``loop_timeout``: seconds kopf's event loop has to run a no-op before ``/healthz``
        says it hangs (the chart's probe waits 5 s).
        """
        parsed = urllib.parse.urlparse(url)
        self.health_path = parsed.path or "/"
        self.metrics = metrics
        self.loop_timeout = loop_timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        """kopf's event loop, once kopf runs (set by the command); None on a standby."""
        self.standby: Callable[[], str | None] | None = None
        """Why this instance could not take over now, or None if it could
        (``Elector.unready``, set by the command); None: no check."""
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                if path == "/metrics":
                    body, content_type = endpoint.metrics.scrape(self.headers.get("Accept"))
                    self._answer(200, body, content_type)
                elif path == endpoint.health_path:
                    self._answer(*endpoint.health())
                elif path == READY_PATH:
                    self._answer(*endpoint.ready())
                else:
                    self._answer(404, b"")

            def _answer(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: probes and scrapes every few seconds are not news."""

        self.server = http.server.ThreadingHTTPServer(
            (parsed.hostname or "0.0.0.0", 80 if parsed.port is None else parsed.port), Handler
        )
        self.server.daemon_threads = True

    def health(self) -> tuple[int, bytes]:
        """200 ``standby`` before kopf runs; then 200 ``ok`` if its event loop answers, else 503."""
        loop = self.loop
        if loop is None:
            return 200, b"standby\n"
        answered: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            loop.call_soon_threadsafe(answered.set_result, None)
            answered.result(self.loop_timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):  # Hung, or closed.
            return 503, f"kopf's event loop did not answer in {self.loop_timeout} s\n".encode()
        return 200, b"ok\n"

    def ready(self) -> tuple[int, bytes]:
        """Once kopf runs, as :meth:`health`; before, 200 ``standby`` if it could take over."""
        if self.loop is not None:
            return self.health()
        why = None if self.standby is None else self.standby()
        if why is not None:
            return 503, f"cannot take over: {why}\n".encode()
        return 200, b"standby\n"

    def start(self) -> Endpoint:
        """Serve in a daemon thread."""
        threading.Thread(target=self.server.serve_forever, name="endpoint", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port."""
        self.server.shutdown()
        self.server.server_close()
