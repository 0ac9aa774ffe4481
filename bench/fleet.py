"""Fleet benchmark: the operator against the API server's own floor, on the local cluster.

For each N, each side on a cluster of its own, freshly started (empty etcd, nothing left of a
previous run): first the floor, the very objects the operator would make, with no operator
running: N apps created, each followed at once by its children (the project's own renderers,
server-side apply, owner references to the app included), each app timed to the operator's
readiness gates; then, on the next fresh cluster, a fresh operator and N StatefulWebApps
created at once, each timed to Ready (observedGeneration equal to its generation) through a
watch. A fresh cluster takes seconds; deleting a thousand apps' objects took minutes and left
etcd larger for the side that came second. The apps use the defaults (the date logger fires
every minute). Smaller N are repeated (``--repeats``) for their spread. The operator's requests
are counted in the API server's audit log (by User-Agent), its memory read from /proc. At the
largest N it also measures a quiet minute (a whole date-logger period), soaks (RSS growth,
steady-state requests) and restarts the operator (time to resume, writes made doing so).

Run it with ``make bench``; options: ``--help``.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pykube
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.profile import Recording
from bench.timeline import tail_timeline, timelines
from statefulwebapp.api.parse import parse
from statefulwebapp.runtime.kube import apply
from statefulwebapp.specs import names
from statefulwebapp.specs.names import MANAGER, USER_AGENT
from statefulwebapp.specs.registry import BY_KEY, render_all

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / ".cluster"
AUDIT_LOG = CLUSTER / "kwok/clusters/swa/logs/audit.log"
OPERATOR_AGENTS = ("kopf/", USER_AGENT.split("/")[0] + "/")
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
SPEC: dict[str, Any] = {
    "replicas": 1,
    "storage": {"nfs": {"server": "nfs.bench.local", "path": "/bench"}, "capacity": "1Gi"},
    # Everything else as the defaults have it: the date logger runs every minute, so the
    # steady state measured is the one users get.
}
DATELOG_ACTIVE = not SPEC.get("dateLogger", {}).get("suspend", False)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# -- the cluster and the operator -----------------------------------------------------------


def fresh_cluster() -> pykube.HTTPClient:
    """Stop the local cluster and start a new one with audit logging; a client for it."""
    env = {**os.environ, "CLUSTER_AUDIT": "1"}
    env.pop("REAL_NODE", None)  # The fleet's pods are kwok's: the measure is the control plane.
    for script, script_env in (("down.sh", None), ("up.sh", env)):
        done = subprocess.run(
            [REPO / "hack/cluster" / script],
            capture_output=True,
            text=True,
            env=script_env,
            check=False,
        )
        if done.returncode != 0:
            # Its output says why (a port taken, a component that did not start).
            sys.stderr.write(done.stdout + done.stderr)
            raise RuntimeError(f"hack/cluster/{script} failed ({done.returncode}): see above")
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/statefulwebapps.apps.k8slab.io",
        "crd/statefulwebapprestores.apps.k8slab.io",
    )
    return pykube.HTTPClient(pykube.KubeConfig.from_file(str(CLUSTER / "kubeconfig")), timeout=60)


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    tools = subprocess.run(
        [REPO / "hack/tools/build.sh", "--dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    result = subprocess.run(
        [f"{tools}/kubectl", "--kubeconfig", str(CLUSTER / "kubeconfig"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if check and result.returncode:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result.stdout


@dataclass
class OperatorProcess:
    """The real console script, started for a measurement and stopped after it."""

    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0
    """Where it serves /metrics (0: nowhere)."""

    @classmethod
    def start(
        cls, log_path: Path, *, quiet: bool = True, lease: str = "", extra: tuple[str, ...] = ()
    ) -> OperatorProcess:
        """Start it; a lease of its own unless ``lease`` names a shared one."""
        env = {**os.environ, "KUBECONFIG": str(CLUSTER / "kubeconfig")}
        exe = Path(sys.executable).with_name("statefulwebapp-operator")
        out = log_path.open("ab")
        flags = ["--quiet"] if quiet else []
        lease = lease or f"default/bench-{uuid.uuid4().hex[:8]}"
        port = free_port()
        health = f"http://127.0.0.1:{port}/healthz"
        process = subprocess.Popen(
            [exe, "--health", health, "--lease", lease, *flags, *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        # A run that fails half-way must not leave it serving the cluster: the next run would
        # refuse to start (two operators would double every figure).
        atexit.register(_end, process)
        time.sleep(2)
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited: see {log_path}")
        return cls(process, log_path, port)

    def rss_mib(self, field: str = "VmRSS") -> float:
        """Resident memory now; ``VmHWM``: the most it has held since it started."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def usage(self, since: tuple[float, Counter[str]] | None = None) -> tuple[float, Counter[str]]:
        """Its CPU seconds and its counters (:meth:`counters`).

        ``since``: an earlier usage, to return the increase since.
        """
        cpu, counted = self.cpu_seconds(), self.counters()
        return (cpu - since[0], counted - since[1]) if since else (cpu, counted)

    def counters(self) -> Counter[str]:
        """Its counters, from its /metrics.

        ``bytes <verb> <resource>``: the bytes of the answers it decoded; ``passes <outcome>``:
        its passes; ``full checks`` and ``full check cpu ms``: its full checks, and their CPU.
        """
        scrape = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10)
        scrape.raise_for_status()
        counted: Counter[str] = Counter()
        for family in text_string_to_metric_families(scrape.text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "statefulwebapp_api_received_bytes_total":
                    counted[f"bytes {labels['verb']} {labels['resource']}"] += int(sample.value)
                elif sample.name == "statefulwebapp_reconcile_passes_total":
                    counted[f"passes {labels['outcome']}"] += int(sample.value)
                elif sample.name == "statefulwebapp_full_check_cpu_seconds_count":
                    counted["full checks"] += int(sample.value)
                elif sample.name == "statefulwebapp_full_check_cpu_seconds_sum":
                    counted["full check cpu ms"] += round(sample.value * 1000)
        return counted

    def stop(self) -> None:
        _end(self.process)


def per_app(counted: Counter[str], n: int) -> dict[str, Any]:
    """Per app created, from :meth:`OperatorProcess.counters`.

    The KiB decoded (all, and by verb and resource) and the passes (all, and by outcome).
    """
    received = {k.removeprefix("bytes "): v for k, v in counted.items() if k.startswith("bytes ")}
    passes = {k.removeprefix("passes "): v for k, v in counted.items() if k.startswith("passes ")}
    return {
        "received_kib_per_app": round(sum(received.values()) / n / 1024, 1),
        "received_kib_per_app_by_source": {
            source: round(size / n / 1024, 2)
            for source, size in sorted(received.items(), key=lambda item: -item[1])
        },
        "passes_per_app": round(sum(passes.values()) / n, 2),
        "passes_per_app_by_outcome": {
            outcome: round(count / n, 2) for outcome, count in sorted(passes.items())
        },
    }


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _end(process: subprocess.Popen[bytes]) -> None:
    """Stop an operator process (SIGINT, as a user would), killed if it takes over a minute."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def audit_mark() -> str:
    """Now, as the audit log writes times: requests completed after this are new."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_files(since: str) -> list[Path]:
    """The audit log and the backups it was rotated into, oldest first, that reach ``since``.

    The API server rotates its audit log every 100 MB (lumberjack's default size, as
    ``--audit-log-maxsize`` is not set): a thousand apps with their date loggers fill that
    within a fleet's run, so a byte offset into one file loses requests.
    """
    files = sorted(AUDIT_LOG.parent.glob("audit*.log"), key=lambda f: f.stat().st_mtime)
    cutoff = datetime.datetime.strptime(since, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
    return [f for f in files if f.stat().st_mtime >= cutoff.timestamp()]


def operator_requests(
    since: str, *, leases: bool = False, writes_by: Counter[str] | None = None
) -> Counter[str]:
    """The operator's completed requests after an audit mark, counted by verb.

    ``writes_by``: also counts each write by verb, resource (and subresource) and answer's
    code, such as ``patch statefulsets 409``: where writes beyond one per child come from.

    Watches are long-lived and counted once when they end; they are left out, since a steady
    state keeps the same watches open and they cost the API server no request rate. The
    leader-election lease is renewed every 2 s whatever the number of apps: its requests are
    counted apart (``leases=True`` counts only them), not spread over the apps.
    """
    counts: Counter[str] = Counter()
    agents = tuple(f'"userAgent":"{agent}'.encode() for agent in OPERATOR_AGENTS)
    for path in audit_files(since):
        with path.open("rb") as f:
            for line in f:
                # Most lines are the cluster's own components: skip them before parsing.
                if not any(agent in line for agent in agents):
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("stage") != "ResponseComplete":
                    continue
                if str(event.get("stageTimestamp", "")) < since:
                    continue
                if not str(event.get("userAgent", "")).startswith(OPERATOR_AGENTS):
                    continue
                if event.get("verb") == "watch":
                    continue
                if ((event.get("objectRef") or {}).get("resource") == "leases") != leases:
                    continue
                counts[event["verb"]] += 1
                if writes_by is not None and event["verb"] in WRITES:
                    ref = event.get("objectRef") or {}
                    target = "/".join(filter(None, (ref.get("resource"), ref.get("subresource"))))
                    code = (event.get("responseStatus") or {}).get("code", "")
                    writes_by[f"{event['verb']} {target} {code}"] += 1
    return counts


def requests_and_writes(since: str) -> tuple[Counter[str], Counter[str]]:
    """The operator's requests by verb, and its writes by target and answer, since a mark."""
    written: Counter[str] = Counter()
    return operator_requests(since, writes_by=written), written


def fleet_timeline(since: str, namespace: str, fleet: Fleet) -> dict[str, Any]:
    """The median and slowest 1 % apps' timelines (bench/timeline.py) from the audit log."""

    def lines() -> Iterable[bytes]:
        needle = f'"namespace":"{namespace}"'.encode()
        for path in audit_files(since):
            with path.open("rb") as f:
                yield from (line for line in f if needle in line or b'"persistentvolumes"' in line)

    bodies = {app: app_body(app, namespace) for app in fleet.by_app}
    found = timelines(lines(), bodies, fleet.created, OPERATOR_AGENTS)
    return tail_timeline(fleet.by_app, found)


def writes(counts: Counter[str]) -> int:
    return sum(n for verb, n in counts.items() if verb in WRITES)


# -- readiness watches ---------------------------------------------------------------------


@dataclass
class Tracker:
    """Ready times per app, fed by watch threads; ``ready`` maps app name to a timestamp."""

    expected: set[str]
    ready: dict[str, float] = field(default_factory=dict)
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)

    def mark(self, name: str) -> None:
        with self.lock:
            if name in self.expected and name not in self.ready:
                self.ready[name] = time.time()
                if len(self.ready) == len(self.expected):
                    self.done.set()


def watch(
    api: pykube.HTTPClient,
    kind: type[pykube.objects.APIObject],
    namespace: str,
    on_event: Callable[[dict[str, Any]], None],
    stop: threading.Event,
) -> None:
    while not stop.is_set():
        try:
            for event in kind.objects(api, namespace=namespace).watch():
                on_event(event.object.obj)
                if stop.is_set():
                    return
        except requests.exceptions.RequestException:
            continue  # A quiet watch times out client-side; open it again.


def app_ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    fresh = status.get("observedGeneration") == obj["metadata"].get("generation")
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return fresh and ready


def floor_ready(parts: dict[str, Any]) -> bool:
    """The same gates as the operator's Ready, on the directly applied children."""
    sts, pvc, ds = parts.get("sts"), parts.get("pvc"), parts.get("ds")
    if not (sts and pvc and ds and parts.get("cron")):
        return False
    s, d = sts.get("status") or {}, ds.get("status") or {}
    return (
        (pvc.get("status") or {}).get("phase") == "Bound"
        and s.get("readyReplicas") == SPEC["replicas"]
        and s.get("updatedReplicas") == SPEC["replicas"]
        and s.get("observedGeneration", 0) >= sts["metadata"]["generation"]
        and d.get("desiredNumberScheduled", 0) > 0
        and d.get("numberReady") == d.get("desiredNumberScheduled")
        and d.get("updatedNumberScheduled") == d.get("desiredNumberScheduled")
    )


# -- one fleet -------------------------------------------------------------------------------


@dataclass
class Fleet:
    """Per-app convergence of one run."""

    latencies: list[float]
    fleet_s: float
    by_app: dict[str, float] = field(default_factory=dict)
    """Each app's latency, by name."""
    created: dict[str, float] = field(default_factory=dict)
    """When each app's create was sent (epoch seconds)."""
    start: float = 0.0
    """When the burst began: the first create sent (epoch seconds)."""

    def since_start(self) -> list[float]:
        """Each app's Ready, in seconds since the burst began.

        The floor sends an app's create only once the apps before it have their children (its
        creators are busy with them), while the operator's fleet is all created in seconds: an
        app's own latency starts later on the floor's side than on the operator's. Since the
        burst's start, both sides are timed alike.
        """
        return [self.created[app] + latency - self.start for app, latency in self.by_app.items()]


def make_namespace(name: str, timeout: float = 60) -> str:
    """Create the namespace ``name`` and wait for its default ServiceAccount.

    The controller manager makes it just after the namespace; until then no pod of the
    namespace can be created, and the workload controllers retry with backoff.
    """
    kubectl("create", "namespace", name)
    deadline = time.monotonic() + timeout
    while not kubectl("get", "serviceaccount", "default", "-n", name, check=False):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no default ServiceAccount in {name} after {timeout:.0f}s")
        time.sleep(0.2)
    return name


def app_body(name: str, namespace: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """An app of ``spec`` (default :data:`SPEC`) on an export of its own.

    One export serves one app: ``/bench/<namespace>-<name>``.
    """
    spec = json.loads(json.dumps(spec or SPEC))
    nfs = spec.get("storage", {}).get("nfs")
    if isinstance(nfs, dict) and isinstance(nfs.get("path"), str) and nfs["path"] == "/bench":
        nfs["path"] = f"/bench/{namespace}-{name}"
    return {
        "apiVersion": "apps.k8slab.io/v1alpha1",
        "kind": "StatefulWebApp",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def run_operator_fleet(api: pykube.HTTPClient, namespace: str, n: int, workers: int) -> Fleet:
    swa = pykube.object_factory(api, "apps.k8slab.io/v1alpha1", "StatefulWebApp")
    names_ = [f"app-{i:04d}" for i in range(n)]
    tracker = Tracker(set(names_))
    stop = threading.Event()

    def seen(obj: dict[str, Any]) -> None:
        if app_ready(obj):
            tracker.mark(obj["metadata"]["name"])

    threading.Thread(target=watch, args=(api, swa, namespace, seen, stop), daemon=True).start()
    time.sleep(1)
    created: dict[str, float] = {}

    def create(name: str) -> None:
        created[name] = time.time()
        swa(api, app_body(name, namespace)).create()

    try:
        return launch(names_, create, created, tracker, workers, "apps Ready (operator)")
    finally:
        stop.set()


def launch(
    apps: list[str],
    create: Callable[[str], None],
    created: dict[str, float],
    tracker: Tracker,
    workers: int,
    what: str,
) -> Fleet:
    """Create every app at once (``create`` records its start) and wait for all Ready."""
    start = time.time()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, apps))
    progress(tracker, len(apps), what)
    by_app = {a: tracker.ready[a] - created[a] for a in apps}
    return Fleet(list(by_app.values()), max(tracker.ready.values()) - start, by_app, created, start)


def progress(tracker: Tracker, n: int, what: str, timeout: float = 1800) -> None:
    deadline = time.time() + timeout
    while not tracker.done.wait(5):
        log(f"  {len(tracker.ready)}/{n} {what}")
        if time.time() > deadline:
            raise RuntimeError(f"only {len(tracker.ready)}/{n} {what} after {timeout}s")


FLOOR_PARTS: dict[str, type[pykube.objects.APIObject]] = {
    "sts": pykube.StatefulSet,
    "pvc": pykube.PersistentVolumeClaim,
    "ds": pykube.DaemonSet,
    "cron": pykube.CronJob,
}
"""The children :func:`floor_ready` reads, by the name it gives each."""


def create_floor_app(api: pykube.HTTPClient, name: str, namespace: str) -> None:
    """One app of the floor: the objects the operator makes, made without it.

    The app (no operator runs to act on it), then its children, owner references to it
    included, so the garbage collector tracks the same ownership on both sides. An app that
    exists already (a retry) is read back, not made again.
    """
    app = pykube.object_factory(api, "apps.k8slab.io/v1alpha1", "StatefulWebApp")(
        api, app_body(name, namespace)
    )
    if app.exists():
        app.reload()
    else:
        app.create()
    for key, manifest in render_all(parse(app.obj)).items():
        if manifest is not None:
            apply(api, BY_KEY[key], manifest, manager=MANAGER)


def run_floor_fleet(api: pykube.HTTPClient, namespace: str, n: int, workers: int) -> Fleet:
    names_ = [f"app-{i:04d}" for i in range(n)]
    tracker = Tracker(set(names_))
    parts: dict[str, dict[str, Any]] = {a: {} for a in names_}
    stop = threading.Event()

    def seen_as(part: str) -> Callable[[dict[str, Any]], None]:
        def seen(obj: dict[str, Any]) -> None:
            app = (obj["metadata"].get("labels") or {}).get(names.LABEL_INSTANCE)
            if app in parts:
                parts[app][part] = obj
                if floor_ready(parts[app]):
                    tracker.mark(app)

        return seen

    for part, kind in FLOOR_PARTS.items():
        args = (api, kind, namespace, seen_as(part), stop)
        threading.Thread(target=watch, args=args, daemon=True).start()
    time.sleep(1)
    created: dict[str, float] = {}

    def create(name: str) -> None:
        created[name] = time.time()
        create_floor_app(api, name, namespace)

    try:
        return launch(names_, create, created, tracker, workers, "apps Ready (floor)")
    finally:
        stop.set()


def wait_quiet(since: str, seconds: float) -> Counter[str]:
    time.sleep(seconds)
    return operator_requests(since)


# -- the whole run ---------------------------------------------------------------------------


def measure(
    ns: list[int],
    soak_s: float,
    steady_s: float,
    workers: int,
    repeats: int,
    out: Path,
    profile: bool = False,
    floor_side: bool = True,
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    operator_log = out / "operator.log"
    operator_log.unlink(missing_ok=True)
    runs: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "datelog_active": DATELOG_ACTIVE,
        "floor_first": floor_side,
        "order": ["floor", "operator"] if floor_side else ["operator"],
        "fresh_cluster_per_side": True,
    }
    plan = [(n, rep) for n in ns[:-1] for rep in range(repeats)] + [(ns[-1], 0)]
    for index, (n, rep) in enumerate(plan):
        largest = index == len(plan) - 1
        namespace = f"bench-{n}-{rep}"
        floor = None
        if floor_side:
            log(f"N={n} #{rep + 1}: a fresh cluster; the floor: {n} apps and children, no operator")
            api = fresh_cluster()
            make_namespace(namespace)
            floor = run_floor_fleet(api, namespace, n, workers)
            log(f"N={n} #{rep + 1}: floor {floor.fleet_s:.1f}s; a fresh cluster for the operator")
        api = fresh_cluster()
        make_namespace(namespace)
        operator = OperatorProcess.start(operator_log)
        time.sleep(3)
        rss_idle = operator.rss_mib()
        log(f"N={n} #{rep + 1}: operator idle at {rss_idle:.0f} MiB; creating {n} apps")
        mark = audit_mark()
        usage = operator.usage()
        spy = Recording(operator.process.pid, out / "profile.raw") if profile and largest else None
        fleet = run_operator_fleet(api, namespace, n, workers)
        time.sleep(2)  # Let the last status writes land in the audit log.
        profiled = spy.stop() if spy else None
        created_counts, written = requests_and_writes(mark)
        tail = fleet_timeline(mark, namespace, fleet)
        cpu_fleet, received = operator.usage(since=usage)
        rss = operator.rss_mib()
        p99 = percentile(fleet.latencies, 0.99)
        run: dict[str, Any] = {
            "n": n,
            "repeat": rep + 1,
            "fleet_s": round(fleet.fleet_s, 2),
            "p50_s": round(percentile(fleet.latencies, 0.50), 2),
            "p95_s": round(percentile(fleet.latencies, 0.95), 2),
            "p99_s": round(p99, 2),
            "mean_s": round(statistics.fmean(fleet.latencies), 2),
            **floor_figures(fleet, floor),
            "writes_per_app": round(writes(created_counts) / n, 2),
            "gets_per_app": round(created_counts.get("get", 0) / n, 2),
            "writes_per_app_by_target": {
                target: round(count / n, 3) for target, count in sorted(written.items())
            },
            "requests_per_app_by_verb": {
                v: round(c / n, 2) for v, c in sorted(created_counts.items())
            },
            **per_app(received, n),
            "rss_mib_idle": round(rss_idle, 1),
            "rss_mib": round(rss, 1),
            "operator_cpu_s": round(cpu_fleet, 1),
            "cpu_s_per_100_apps": round(cpu_fleet / n * 100, 2),
            "tail_timeline": tail,
            **({"profile": profiled} if profiled else {}),
            "latencies_s": [round(x, 3) for x in sorted(fleet.latencies)],
            "floor_latencies_s": [round(x, 3) for x in sorted(floor.latencies)] if floor else [],
        }
        log(
            f"N={n} #{rep + 1}: fleet {fleet.fleet_s:.1f}s, ratio {run['floor_ratio']}, "
            f"p99 ratio {run['p99_ratio']}, {rss:.0f} MiB"
        )
        if largest:
            run.update(after_the_largest(operator, n, steady_s, soak_s))
        operator.stop()
        if largest:
            run.update(restart(operator_log, n))
        # Saved as it goes, so a run stopped early still leaves every figure it measured.
        runs.append(run)
        partial = {**result, "runs": runs, "complete": False}
        (out / "results.partial.json").write_text(json.dumps(partial, indent=2) + "\n")
    result["runs"] = runs
    result.update(summary(runs))
    result.update({k: v for k, v in runs[-1].items() if not k.endswith("latencies_s")})
    return result


def after_the_largest(
    operator: OperatorProcess, n: int, steady_s: float, soak_s: float
) -> dict[str, Any]:
    """The largest fleet, left alone: a quiet period, a soak, the peak RSS, the full checks."""
    log(f"N={n}: measuring a quiet {steady_s:.0f}s")
    quiet = wait_quiet(audit_mark(), steady_s)
    return {
        "steady_s": round(steady_s),
        "steady_requests_per_app_minute": round(sum(quiet.values()) / n / (steady_s / 60), 3),
        "steady_writes_per_app_minute": round(writes(quiet) / n / (steady_s / 60), 3),
        **soak(operator, n, soak_s),
        "rss_peak_mib": round(operator.rss_mib("VmHWM"), 1),
        **full_checks(operator),
    }


def floor_figures(fleet: Fleet, floor: Fleet | None) -> dict[str, float | None]:
    """The floor's own figures and the fleet's ratios to them; None where no floor was run."""
    if floor is None:
        keys = (
            "floor_fleet_s",
            "floor_p50_s",
            "floor_p99_s",
            "p99_since_start_s",
            "floor_p99_since_start_s",
            "floor_ratio",
            "p99_ratio",
        )
        return dict.fromkeys(keys)
    p99, floor_p99 = percentile(fleet.since_start(), 0.99), percentile(floor.since_start(), 0.99)
    return {
        "floor_fleet_s": round(floor.fleet_s, 2),
        "floor_p50_s": round(percentile(floor.latencies, 0.50), 2),
        "floor_p99_s": round(percentile(floor.latencies, 0.99), 2),
        "p99_since_start_s": round(p99, 2),
        "floor_p99_since_start_s": round(floor_p99, 2),
        "floor_ratio": round(fleet.fleet_s / floor.fleet_s, 2),
        "p99_ratio": round(p99 / floor_p99, 2),
    }


def full_checks(operator: OperatorProcess) -> dict[str, Any]:
    """How many full checks the operator made since it started, and their mean CPU seconds."""
    counted = operator.counters()
    checks = counted["full checks"]
    return {
        "full_checks": checks,
        "full_check_cpu_s": round(counted["full check cpu ms"] / 1000 / checks, 3)
        if checks
        else None,
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures across runs: spread, cost per 100 apps, the worst single-app ratio."""
    singles = [
        run["floor_ratio"] for run in runs if run["n"] == 1 and run["floor_ratio"] is not None
    ]
    return {
        "spread": spread(runs),
        "cost_per_100_apps": cost_per_100_apps(runs),
        # The worst repeat: one app must be near the floor in every run, not on average.
        "n1_ratio": max(singles) if singles else None,
    }


def spread(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per N measured more than once: the lowest and highest of each headline figure."""
    keys = ("fleet_s", "floor_fleet_s", "floor_ratio", "p99_ratio", "writes_per_app")
    by_n: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        by_n.setdefault(run["n"], []).append(run)
    return {
        str(n): {
            k: [min(r[k] for r in group), max(r[k] for r in group)]
            for k in keys
            if all(r[k] is not None for r in group)
        }
        for n, group in by_n.items()
        if len(group) > 1
    }


def cost_per_100_apps(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """How the operator's memory and CPU grow with the fleet, per 100 apps, at each N > 1.

    Memory is the RSS after the fleet above that operator's own idle RSS.
    """
    last = {run["n"]: run for run in runs}
    return {
        str(n): {
            "rss_mib": round((run["rss_mib"] - run["rss_mib_idle"]) / n * 100, 2),
            "operator_cpu_s": round(run["operator_cpu_s"] / n * 100, 2),
        }
        for n, run in sorted(last.items())
        if n > 1
    }


def soak(operator: OperatorProcess, n: int, soak_s: float) -> dict[str, Any]:
    log(f"N={n}: soaking {soak_s:.0f}s")
    mark = audit_mark()
    samples = []
    cpu = operator.cpu_seconds()
    start = time.time()
    while time.time() - start < soak_s:
        samples.append((round(time.time() - start, 1), round(operator.rss_mib(), 1)))
        time.sleep(min(10, soak_s / 10))
    samples.append((round(time.time() - start, 1), round(operator.rss_mib(), 1)))
    counts = operator_requests(mark)
    lease = operator_requests(mark, leases=True)
    first, last = samples[0][1], samples[-1][1]
    return {
        "soak_s": round(soak_s),
        "soak_cpu_s_per_minute": round((operator.cpu_seconds() - cpu) / (soak_s / 60), 3),
        "lease_requests_per_minute": round(sum(lease.values()) / (soak_s / 60), 1),
        "rss_growth_pct": round(100 * (last - first) / first, 2),
        "soak_rss_mib": samples,
        "soak_requests_per_app_minute": round(sum(counts.values()) / n / (soak_s / 60), 3),
        "soak_writes_per_app_minute": round(writes(counts) / n / (soak_s / 60), 3),
    }


RESUMED = re.compile(r"resumed (\d+) apps in ([\d.]+) s since start")


def restart(operator_log: Path, n: int) -> dict[str, Any]:
    """Start a fresh operator on the existing fleet; time until it has resumed every app."""
    log(f"N={n}: restarting the operator")
    before = len(RESUMED.findall(operator_log.read_text(errors="replace")))
    mark = audit_mark()
    start = time.time()
    # INFO logging here: the operator says once when every app found at start had its pass.
    operator = OperatorProcess.start(operator_log, quiet=False)
    deadline = start + 900
    said: list[tuple[str, str]] = []
    while time.time() < deadline:
        said = RESUMED.findall(operator_log.read_text(errors="replace"))[before:]
        if said:
            break
        time.sleep(0.2)
    else:
        log(f"warning: no 'resumed N apps' line in {operator_log} after 900 s")
    elapsed = time.time() - start
    if said and int(said[0][0]) != n:
        log(f"warning: the operator resumed {said[0][0]} apps, not {n}")
    time.sleep(5)
    counts = operator_requests(mark)
    rss, peak = operator.rss_mib(), operator.rss_mib("VmHWM")
    operator.stop()
    return {
        "restart_s": round(elapsed, 2),
        "restart_rss_mib": round(rss, 1),
        "restart_rss_peak_mib": round(peak, 1),
        "restart_writes": writes(counts),
        "restart_requests_by_verb": dict(counts),
    }


def versions() -> dict[str, str]:
    env = dict(
        line.split("=", 1)
        for line in (REPO / "hack/tools/versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    import kopf  # noqa: PLC0415  (only for its version)

    return {
        "kubernetes": env["KUBE_VERSION"],
        "kwok": env["KWOK_VERSION"],
        "etcd": env["ETCD_VERSION"],
        "kopf": kopf.__version__ if hasattr(kopf, "__version__") else "",
        "python": platform.python_version(),
    }


def machine() -> dict[str, Any]:
    mem = Path("/proc/meminfo").read_text().split()[1]
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(int(mem) / 2**20, 1),
        "cpu": model,
        "kernel": platform.release(),
    }


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--n", default="1,100,1000", help="fleet sizes, comma-separated (default: %(default)s)"
    )
    p.add_argument(
        "--soak",
        type=float,
        default=120,
        help=(
            "soak seconds at the largest N, after the quiet minute: RSS growth and steady "
            "requests over two more date-logger periods (default: %(default)s)"
        ),
    )
    p.add_argument(
        "--steady",
        type=float,
        default=60,
        help=(
            "quiet seconds measured after the largest fleet; a whole date-logger period "
            "(default: %(default)s)"
        ),
    )
    p.add_argument(
        "--workers", type=int, default=8, help="parallel creators (default: %(default)s)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="runs of each N but the largest, for their spread (default: %(default)s)",
    )
    p.add_argument(
        "--replicas",
        type=int,
        default=SPEC["replicas"],
        help=(
            "web replicas of every app; above 1 each app has a PodDisruptionBudget too "
            "(default: %(default)s)"
        ),
    )
    p.add_argument("--out", type=Path, default=REPO / "bench/results", help="results folder")
    p.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help=(
            "the operator's side only: no floor, so no ratio to it (for the largest fleets, "
            "whose floor alone takes as long as the operator's side)"
        ),
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample the operator with py-spy while the largest fleet is created (profile key)",
    )
    args = p.parse_args(list(argv) if argv is not None else None)
    if args.soak <= 0 or args.steady <= 0:
        p.error("--soak and --steady must be over 0 s: requests per minute are measured over them")
    SPEC["replicas"] = args.replicas
    ns = [int(x) for x in args.n.split(",")]
    others = subprocess.run(
        ["pgrep", "-f", "bin/statefulwebapp-operator"], capture_output=True, text=True, check=False
    ).stdout.split()
    if others:
        # A second operator serving the fleet would double every figure measured here.
        log(f"error: statefulwebapp-operator already running (pid {', '.join(others)}); stop it")
        return 2
    started = time.time()
    result = measure(
        ns,
        args.soak,
        args.steady,
        args.workers,
        args.repeats,
        args.out,
        profile=args.profile,
        floor_side=args.floor,
    )
    result["versions"] = versions()
    result["machine"] = machine()
    result["duration_s"] = round(time.time() - started)
    result["spec"] = SPEC
    result["command"] = "make bench BENCH_ARGS='" + " ".join(sys.argv[1:]) + "'"
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    from bench.report import write_report  # noqa: PLC0415

    write_report(result, args.out)
    log(f"done in {result['duration_s']}s: {args.out}/results.json, results.md, convergence.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
