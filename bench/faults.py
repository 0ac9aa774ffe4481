"""Fault suite: the operator under crashes, outages, watch gaps, upgrades and hostile input.

Run it with ``make faults`` (a fresh local cluster, torn down after); it writes
``bench/results/faults.json`` and ``faults.md``. Every scenario uses the real console script
and the real control plane; components are stopped and started with
``hack/cluster/component.sh``. Where a pod would be restarted by its kubelet (an operator that
gave up its lease during an outage exits on purpose), a supervisor thread here restarts it.

Scenarios (each in its own namespace):
- kill9: ``kill -9`` the operator at random moments of a 200-app burst (and while some apps are
  deleted), restarting it each time; then every app must converge, no child may have been
  created twice, no child or volume may be left without its app.
- apiserver / etcd: stop the component for 30 s and for 120 s in the middle of a 100-app
  burst; time from its return to every app Ready.
- watch_gap: a child and an app deleted while the operator is frozen and the API server
  restarts (its watches resume with 410 Gone and a relist); time to repair and collect.
- delete_while_down: apps deleted while the operator is stopped; time to collect their volumes.
- upgrade: 100 live apps, operator replaced by a new process of the same renderers: no
  StatefulSet or DaemonSet may roll.
- failover: two operators on one lease, the leader killed; time until a new app is Ready.
- bad_inputs: malformed and hostile specs; nothing may be half made.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import pykube
import requests
import yaml
from tests.e2e.cluster import compact_etcd
from tests.e2e.test_admission import REFUSED

from bench.fleet import (
    CLUSTER,
    FLOOR_PARTS,
    REPO,
    SPEC,
    OperatorProcess,
    app_body,
    app_ready,
    create_floor_app,
    floor_ready,
    kubectl,
    log,
    make_namespace,
)
from statefulwebapp.api.parse import parse
from statefulwebapp.runtime import kube
from statefulwebapp.specs import names, registry

OUT = REPO / "bench/results"
OPERATOR_LOG = OUT / "faults-operator.log"
CHILD_KINDS: dict[str, type[pykube.objects.APIObject]] = {
    "StatefulSet": pykube.StatefulSet,
    "DaemonSet": pykube.DaemonSet,
    "CronJob": pykube.CronJob,
    "Service": pykube.Service,
    "PersistentVolumeClaim": pykube.PersistentVolumeClaim,
}


def api() -> pykube.HTTPClient:
    return pykube.HTTPClient(pykube.KubeConfig.from_file(str(CLUSTER / "kubeconfig")), timeout=20)


def component(action: str, name: str) -> None:
    subprocess.run([REPO / "hack/cluster/component.sh", action, name], check=True, timeout=60)


def api_up() -> bool:
    return "ok" in kubectl("get", "--raw", "/readyz", check=False)


def wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> float:
    """Seconds until ``check()`` is truthy; raises if it never is."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except (RuntimeError, requests.RequestException):
            pass  # The API server may be on its way back.
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def app_names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(n)]


def create_apps(ns: str, apps: Iterable[str], spec: dict[str, Any] | None = None) -> None:
    """Create the apps, retrying each until the API server takes it (it may be down)."""
    client = api()
    swa = pykube.object_factory(client, "apps.k8slab.io/v1alpha1", "StatefulWebApp")

    def create(name: str) -> None:
        body = app_body(name, ns, spec)
        while True:
            try:
                swa(client, body).create()
                return
            except pykube.exceptions.HTTPError as err:
                if err.code == 409:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, apps))


def create_floor_apps(ns: str, apps: Iterable[str]) -> None:
    """The bench's floor for a burst: each app and its children applied directly, no operator.

    Retried like :func:`create_apps`, so that the same burst goes through the same outage.
    """
    client = api()

    def create(name: str) -> None:
        while True:
            try:
                create_floor_app(client, name, ns)
                return
            except (pykube.exceptions.HTTPError, kube.ApiError, requests.RequestException):
                time.sleep(1)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, apps))


def listed(ns: str, *kinds_: str) -> list[dict[str, Any]]:
    out = kubectl("get", ",".join(kinds_), "-n", ns, "-o", "json", check=False)
    return list(json.loads(out)["items"]) if out.strip() else []


def instance_of(obj: dict[str, Any]) -> str:
    return str((obj["metadata"].get("labels") or {}).get(names.LABEL_INSTANCE, ""))


def floor_ready_apps(ns: str) -> set[str]:
    """The floor's apps whose children pass the operator's Ready gates (bench.fleet)."""
    part_of = {kind.kind: part for part, kind in FLOOR_PARTS.items()}
    parts: dict[str, dict[str, Any]] = defaultdict(dict)
    for obj in listed(ns, *(kind.endpoint for kind in FLOOR_PARTS.values())):
        parts[instance_of(obj)][part_of[obj["kind"]]] = obj
    return {app for app, found in parts.items() if floor_ready(found)}


def stale_statuses(ns: str, apps: Iterable[str]) -> dict[str, str]:
    """Per app: what its StatefulSet and DaemonSet report ready against their pods' own Ready.

    Says whose view is stale when an app is not Ready: the pods (the simulated kubelets) or
    the workloads' status (the controller manager's).
    """
    objs = listed(ns, "pods", "statefulsets", "daemonsets")
    pods: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for pod in (o for o in objs if o["kind"] == "Pod"):
        refs: list[dict[str, Any]] = pod["metadata"].get("ownerReferences") or []
        owner = next(iter(refs), {}).get("kind", "")
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        pods[(instance_of(pod), owner)].append(ready)
    out: dict[str, str] = {}
    workloads = {(instance_of(o), o["kind"]): o for o in objs if o["kind"] != "Pod"}
    for app in apps:
        said = []
        for kind, field in (("StatefulSet", "readyReplicas"), ("DaemonSet", "numberReady")):
            workload = workloads.get((app, kind))
            if workload is None:
                said.append(f"no {kind}")
                continue
            ready = (workload.get("status") or {}).get(field, 0)
            seen = pods[(app, kind)]
            said.append(f"{kind} says {ready} ready, its pods {sum(seen)}/{len(seen)} Ready")
        out[app] = "; ".join(said)
    return out


def apps_in(ns: str) -> dict[str, dict[str, Any]]:
    out = kubectl("get", "swa", "-n", ns, "-o", "json", check=False)
    items = json.loads(out)["items"] if out.strip() else []
    return {item["metadata"]["name"]: item for item in items}


def ready_apps(ns: str) -> set[str]:
    return {name for name, obj in apps_in(ns).items() if app_ready(obj)}


def volumes_of(ns: str) -> set[str]:
    out = kubectl("get", "pv", "-l", f"{names.LABEL_APP_NAMESPACE}={ns}", "-o", "name")
    return {line.split("/", 1)[1] for line in out.split()}


class Supervised:
    """An operator kept running the way a kubelet keeps a pod running: restarted on exit."""

    def __init__(self, ns: str, lease: str = "") -> None:
        # One identity across restarts, as a pod keeps its name: a restarted leader takes its
        # own lease back without waiting for it to run out.
        self.lease = lease
        self.extra = ("--namespace", ns, "--identity", f"supervised-{time.monotonic_ns()}")
        self.restarts = 0
        self._stop = threading.Event()
        self.current = OperatorProcess.start(
            OPERATOR_LOG, quiet=False, lease=lease, extra=self.extra
        )
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            if self.current.process.poll() is not None:
                self.restarts += 1
                log(f"  operator exited ({self.current.process.returncode}); restarting it")
                self.current = OperatorProcess.start(
                    OPERATOR_LOG, quiet=False, lease=self.lease, extra=self.extra
                )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.current.stop()


class ChildUids:
    """Every uid each child name had during a run: more than one means created twice."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.uids: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._stop = threading.Event()
        for kind, cls in CHILD_KINDS.items():
            threading.Thread(target=self._watch, args=(kind, cls), daemon=True).start()

    def _watch(self, kind: str, cls: type[pykube.objects.APIObject]) -> None:
        client = api()
        while not self._stop.is_set():
            try:
                query = cls.objects(client, namespace=self.ns).filter(
                    selector={names.LABEL_MANAGED_BY: names.MANAGER}
                )
                for event in query.watch():
                    meta = event.object.obj["metadata"]
                    self.uids[(kind, meta["name"])].add(meta["uid"])
                    if self._stop.is_set():
                        return
            except (requests.RequestException, pykube.exceptions.PyKubeError):
                time.sleep(1)

    def duplicates(self) -> dict[str, int]:
        return {f"{k}/{n}": len(u) - 1 for (k, n), u in self.uids.items() if len(u) > 1}

    def stop(self) -> None:
        self._stop.set()


# -- scenarios ---------------------------------------------------------------------------------


def kill9(runs: int, n: int) -> dict[str, Any]:
    ns = make_namespace("faults-kill9")
    uids = ChildUids(ns)
    apps = app_names("k", n)
    deleted = apps[: max(1, n // 10)]
    creator = threading.Thread(target=create_apps, args=(ns, apps))
    creator.start()
    log(f"kill9: {runs} kill -9 at random moments of a {n}-app burst")
    for run in range(runs):
        operator = OperatorProcess.start(OPERATOR_LOG, extra=("--namespace", ns))
        time.sleep(random.uniform(0.2, 3.0))
        operator.process.kill()
        operator.process.wait()
        step = max(1, runs // len(deleted))
        if run % step == 0 and run // step < len(deleted):
            doomed = deleted[run // step]
            kubectl("delete", "swa", doomed, "-n", ns, "--wait=false", "--ignore-not-found")
    creator.join()
    for name in deleted:  # Every one of them deleted, whatever the run count.
        kubectl("delete", "swa", name, "-n", ns, "--wait=false", "--ignore-not-found")
    final = OperatorProcess.start(OPERATOR_LOG, quiet=False, extra=("--namespace", ns))
    remaining = set(apps) - set(deleted)
    try:
        took = wait(lambda: ready_apps(ns) >= remaining, 600, "every app Ready after the kills")
        gone = {names.volume_of(ns, name) for name in deleted}
        wait(lambda: not volumes_of(ns) & gone, 120, "the deleted apps' volumes collected")
        wait(lambda: not orphans(ns, remaining), 120, "no child without its app")
    except RuntimeError as err:
        log(f"kill9: {err}")
        took = float("nan")
    time.sleep(5)
    ready = ready_apps(ns)
    dupes = uids.duplicates()
    left = orphans(ns, remaining)
    uids.stop()
    final.stop()
    log(f"kill9: {len(ready & remaining)}/{len(remaining)} Ready; dupes {dupes}; orphans {left}")
    return {
        "kill9_runs": runs,
        "kill9_apps": n,
        "kill9_deleted_apps": len(deleted),
        "kill9_converged_pct": round(100 * len(ready & remaining) / len(remaining), 1),
        "kill9_converge_after_last_kill_s": round(took, 1),
        "kill9_duplicates": sum(dupes.values()),
        "kill9_duplicate_children": dupes,
        "kill9_orphans": len(left),
        "kill9_orphan_objects": sorted(left),
    }


def orphans(ns: str, apps: set[str]) -> set[str]:
    """Children (and volumes) of this namespace whose app is not among ``apps``."""
    found = set()
    for kind in CHILD_KINDS:
        listed = json.loads(
            kubectl("get", kind.lower(), "-n", ns, "-l", names.MANAGED_SELECTOR, "-o", "json")
        )
        for item in listed["items"]:
            meta = item["metadata"]
            if (meta.get("labels") or {}).get(names.LABEL_INSTANCE) not in apps:
                found.add(f"{kind}/{meta['name']}")
    for volume in volumes_of(ns):
        if volume not in {names.volume_of(ns, app) for app in apps}:
            found.add(f"PersistentVolume/{volume}")
    return found


OUTAGE_LIMIT_S = 600
"""How long after an outage every app (and the floor) may take before the run says it did not
converge."""


def outage(what: str, seconds: float, n: int) -> dict[str, Any]:
    ns = make_namespace(f"faults-{what}-{int(seconds)}")
    # The same burst without the operator, through the same outage: what the cluster alone
    # makes of the children it already had (the bare StatefulSet below starts after).
    floor_ns = make_namespace(f"faults-{what}-{int(seconds)}-floor")
    operator = Supervised(ns, lease=f"default/faults-{what}-{int(seconds)}")
    apps = app_names("o", n)
    creator = threading.Thread(target=create_apps, args=(ns, apps))
    floor_creator = threading.Thread(target=create_floor_apps, args=(floor_ns, apps))
    creator.start()
    floor_creator.start()
    time.sleep(5)  # In the middle of the burst.
    log(f"{what}: down for {seconds:.0f}s in the middle of a {n}-app burst")
    component("stop", what)
    time.sleep(seconds)
    component("start", what)
    back = time.monotonic()
    try:
        wait(api_up, 120, f"the API server answering after {what} came back")
    except RuntimeError:
        operator.stop()
        raise
    recovered: dict[str, float] = {}
    floor = threading.Thread(target=cluster_recovery, args=(ns, back, recovered))
    floor.start()
    burst: dict[str, Any] = {}
    burst_floor = threading.Thread(target=burst_recovery, args=(floor_ns, apps, back, burst))
    burst_floor.start()
    # A scenario that does not converge is a figure with its reason, never a crash that loses
    # the others' figures (or leaves the supervised operator running).
    took: float | None = None
    stuck: dict[str, str] = {}
    try:
        creator.join()
        wait(lambda: ready_apps(ns) >= set(apps), OUTAGE_LIMIT_S, f"every app Ready after {what}")
        took = round(time.monotonic() - back, 1)
    except RuntimeError as err:
        log(f"{what} {seconds:.0f}s: {err}")
        stuck = not_ready(ns, apps)
    finally:
        floor.join()
        floor_creator.join()
        burst_floor.join()
        restarts = operator.restarts
        operator.stop()
    floor_s, burst_s = recovered.get("s"), burst.get("s")
    log(
        f"{what} {seconds:.0f}s: all Ready {took}s after it was back, the floor {floor_s}s, "
        f"the burst's floor {burst_s}s ({restarts} restarts; {len(stuck)} not Ready, "
        f"{len(burst.get('not_ready', {}))} of the burst's floor)"
    )
    return {
        "down_s": seconds,
        "converge_s": took,
        "cluster_recovery_s": floor_s,
        "converge_ratio": round(took / floor_s, 2) if took is not None and floor_s else None,
        "burst_floor_s": burst_s,
        "burst_floor_ratio": round(took / burst_s, 2) if took is not None and burst_s else None,
        "operator_restarts": restarts,
        "not_converged": stuck,
        "not_converged_children": stale_statuses(ns, stuck) if stuck else {},
        "burst_floor_not_ready": burst.get("not_ready", {}),
    }


def burst_recovery(ns: str, apps: list[str], since: float, out: dict[str, Any]) -> None:
    """The burst's floor: when every app of the operator-less burst passes the Ready gates."""
    try:
        wait(lambda: floor_ready_apps(ns) >= set(apps), OUTAGE_LIMIT_S, "the burst's floor Ready")
    except RuntimeError as err:
        log(f"burst floor: {err}")
        out["not_ready"] = stale_statuses(ns, sorted(set(apps) - floor_ready_apps(ns)))
        return
    out["s"] = round(time.monotonic() - since, 1)


def not_ready(ns: str, apps: list[str]) -> dict[str, str]:
    """Each app that is not Ready, with its Ready condition's reason and message."""
    found = apps_in(ns)
    stuck = {}
    for name in apps:
        obj = found.get(name)
        if obj is None:
            stuck[name] = "missing"
        elif not app_ready(obj):
            ready: dict[str, Any] = next(
                (c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"),
                {},
            )
            stuck[name] = f"{ready.get('reason', 'no status')}: {ready.get('message', '')}"
    return stuck


def cluster_recovery(ns: str, since: float, out: dict[str, float]) -> None:
    """The floor: when the cluster's own controllers work again after an outage.

    A bare StatefulSet (no operator involved) applied once the API server answers; the time
    until its pod is Ready is what the controller manager and the simulated kubelets need to
    resume, which bounds anything the operator can achieve.
    """
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "floor", "namespace": ns},
        "spec": {
            "replicas": 1,
            "serviceName": "floor",
            "selector": {"matchLabels": {"floor": "yes"}},
            "template": {
                "metadata": {"labels": {"floor": "yes"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(sts))

    def ready() -> bool:
        got = kubectl("get", "statefulset", "floor", "-n", ns, "-o", "json", check=False)
        return bool(got) and json.loads(got).get("status", {}).get("readyReplicas") == 1

    try:
        wait(ready, OUTAGE_LIMIT_S, "the floor StatefulSet Ready")
    except RuntimeError as err:
        log(f"floor: {err}")
        return
    out["s"] = round(time.monotonic() - since, 1)


def watch_gap() -> dict[str, Any]:
    ns = make_namespace("faults-gap")
    operator = OperatorProcess.start(OPERATOR_LOG, quiet=False, extra=("--namespace", ns))
    apps = app_names("g", 10)
    create_apps(ns, apps)
    wait(lambda: ready_apps(ns) >= set(apps), 300, "the gap scenario's apps Ready")
    victim, doomed = apps[0], apps[1]
    log(
        "watch_gap: the API server restarted, a Service and an app deleted and etcd compacted, "
        "all while the operator is frozen"
    )
    mark = OPERATOR_LOG.stat().st_size
    operator.process.send_signal(19)  # SIGSTOP
    try:
        # The API server goes first: the operator's watch connections die with it, so the
        # deletions below never reach its sockets; after them etcd is compacted, so the
        # watches cannot resume where they stopped: 410 Gone, a relist, no DELETED events.
        component("stop", "kube-apiserver")
        component("start", "kube-apiserver")
        wait(api_up, 120, "the API server back")
        kubectl("delete", "service", victim, "-n", ns, "--wait=true")
        kubectl("delete", "swa", doomed, "-n", ns, "--wait=true")
        compact_etcd()
    finally:
        operator.process.send_signal(18)  # SIGCONT
    took = wait(
        lambda: (
            kubectl("get", "service", victim, "-n", ns, "--ignore-not-found", "-o", "name")
            and names.volume_of(ns, doomed) not in volumes_of(ns)
        ),
        180,
        "the Service recreated and the deleted app's volume collected",
    )
    by_resync = "resync: the watches missed changes" in log_since(mark)
    operator.stop()
    log(f"watch_gap: repaired {took:.1f}s after the operator resumed (by the resync: {by_resync})")
    return {"watch_gap_repaired_s": round(took, 1), "watch_gap_by_resync": by_resync}


def delete_while_down() -> dict[str, Any]:
    ns = make_namespace("faults-down")
    operator = OperatorProcess.start(OPERATOR_LOG, extra=("--namespace", ns))
    apps = app_names("d", 20)
    create_apps(ns, apps)
    wait(lambda: ready_apps(ns) >= set(apps), 300, "the apps Ready")
    operator.stop()
    doomed = apps[:10]
    for name in doomed:
        kubectl("delete", "swa", name, "-n", ns, "--wait=false")
    wait(lambda: not set(doomed) & set(apps_in(ns)), 60, "the apps deleted")
    started = time.monotonic()
    operator = OperatorProcess.start(OPERATOR_LOG, extra=("--namespace", ns))
    gone = {names.volume_of(ns, name) for name in doomed}
    wait(lambda: not volumes_of(ns) & gone, 120, "their volumes collected")
    took = time.monotonic() - started
    operator.stop()
    log(f"delete_while_down: {len(doomed)} volumes collected {took:.1f}s after the start")
    return {"delete_while_down_s": round(took, 1), "delete_while_down_apps": len(doomed)}


def log_since(mark: int) -> str:
    with OPERATOR_LOG.open("rb") as f:
        f.seek(mark)
        return f.read().decode(errors="replace")


def workload_generations(ns: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind in ("statefulset", "daemonset"):
        items = json.loads(kubectl("get", kind, "-n", ns, "-o", "json"))["items"]
        for item in items:
            out[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["generation"]
    return out


def upgrade(n: int) -> dict[str, Any]:
    ns = make_namespace("faults-upgrade")
    old = OperatorProcess.start(OPERATOR_LOG, extra=("--namespace", ns))
    apps = app_names("u", n)
    create_apps(ns, apps)
    wait(lambda: ready_apps(ns) >= set(apps), 600, "the apps Ready")
    before = workload_generations(ns)
    # The replacement: the old one stops as a rolling update stops it (SIGTERM), the new one
    # (the same renderers: a build with other changes) resumes every app.
    old.stop()
    mark = OPERATOR_LOG.stat().st_size
    new = OperatorProcess.start(OPERATOR_LOG, quiet=False, extra=("--namespace", ns))
    wait(lambda: "resumed" in log_since(mark), 300, "the new operator's resume line")
    time.sleep(15)
    after = workload_generations(ns)
    new.stop()
    rolled = sorted(k for k in before if after.get(k) != before[k])
    log(f"upgrade: {len(rolled)} of {len(before)} workloads changed generation")
    return {"upgrade_apps": n, "upgrade_rollouts": len(rolled), "upgrade_rolled": rolled}


def failover() -> dict[str, Any]:
    ns = make_namespace("faults-failover")
    lease = "default/faults-failover"
    leader = OperatorProcess.start(
        OPERATOR_LOG, quiet=False, lease=lease, extra=("--namespace", ns)
    )
    wait(
        lambda: "leader: took the lease" in OPERATOR_LOG.read_text(errors="replace"), 60, "a leader"
    )
    mark = OPERATOR_LOG.stat().st_size
    standby = OperatorProcess.start(
        OPERATOR_LOG, quiet=False, lease=lease, extra=("--namespace", ns)
    )
    apps = app_names("f", 5)
    create_apps(ns, apps)
    wait(lambda: ready_apps(ns) >= set(apps), 120, "the apps Ready")
    leader.process.kill()
    killed = time.monotonic()
    create_apps(ns, ["after-failover"], {**SPEC, "serviceName": "after-failover"})
    wait(lambda: "after-failover" in ready_apps(ns), 120, "a new app Ready under the standby")
    took = time.monotonic() - killed
    took_over = "leader: took the lease" in log_since(mark)
    standby.stop()
    log(f"failover: new app Ready {took:.1f}s after the leader's kill -9 (took over: {took_over})")
    return {"failover_s": round(took, 1), "failover_took_over": took_over}


def bad_specs() -> list[tuple[str, dict[str, Any], str]]:
    """(case, spec, app name): malformed and hostile input; the name is part of the input."""
    base = json.loads(json.dumps(SPEC))
    storage = base["storage"]
    cases: list[tuple[str, dict[str, Any], str]] = [
        (case, _merged(base, spec), "") for case, spec, _ in REFUSED
    ]
    cases += [
        ("replicas as text", {**base, "replicas": "three"}, ""),
        ("replicas as float", {**base, "replicas": 1.5}, ""),
        ("replicas huge", {**base, "replicas": 10**9}, ""),
        ("replicas negative", {**base, "replicas": -5}, ""),
        ("replicas 100", {**base, "replicas": 100}, ""),
        ("port 0", {**base, "port": 0}, ""),
        ("port as text", {**base, "port": "80"}, ""),
        ("image 10k chars", {**base, "image": "a" * 10000}, ""),
        ("image empty", {**base, "image": ""}, ""),
        ("image with a newline", {**base, "image": "nginx\nevil"}, ""),
        ("serviceName unicode", {**base, "serviceName": "웹서비스"}, ""),
        ("serviceName 64 chars", {**base, "serviceName": "s" * 64}, ""),
        ("storage missing", {k: v for k, v in base.items() if k != "storage"}, ""),
        ("storage a string", {**base, "storage": "nfs"}, ""),
        (
            "nfs server empty",
            {**base, "storage": {**storage, "nfs": {"server": "", "path": "/x"}}},
            "",
        ),
        (
            "nfs path relative",
            {**base, "storage": {**storage, "nfs": {"server": "a", "path": "x"}}},
            "",
        ),
        ("capacity negative", {**base, "storage": {**storage, "capacity": "-1Gi"}}, ""),
        ("capacity huge string", {**base, "storage": {**storage, "capacity": "9" * 100}}, ""),
        ("request above capacity", {**base, "storage": {**storage, "request": "2Gi"}}, ""),
        ("backup keep 0", {**base, "backup": {"keep": 0}}, ""),
        ("backup interval 1s", {**base, "backup": {"intervalSeconds": 1}}, ""),
        ("backup as a list", {**base, "backup": ["enabled"]}, ""),
        ("schedule weekday 7", {**base, "dateLogger": {"schedule": "* * * * 7"}}, ""),
        ("schedule reversed range", {**base, "dateLogger": {"schedule": "5-1 * * * *"}}, ""),
        ("schedule broken step", {**base, "dateLogger": {"schedule": "1-/2 * * * *"}}, ""),
        ("schedule upper-case macro", {**base, "dateLogger": {"schedule": "@HOURLY"}}, ""),
        ("schedule empty", {**base, "dateLogger": {"schedule": ""}}, ""),
        ("history limit 1000", {**base, "dateLogger": {"successfulJobsHistoryLimit": 1000}}, ""),
        ("podSecurity privileged", {**base, "podSecurity": "privileged"}, ""),
        ("runAsUser 0 restricted", {**base, "podSecurity": "restricted", "runAsUser": 0}, ""),
        ("unknown field", {**base, "sidecar": {"image": "evil"}}, ""),
        ("name unicode", base, "웹앱"),
        ("name 45 chars", base, "n" * 45),
        ("name with a dot", base, "web.app"),
        ("name upper case", base, "WebApp"),
        ("serviceName taken by a foreign Service", {**base, "serviceName": "taken"}, ""),
        ("serviceName taken by another app", {**base, "serviceName": "shared"}, ""),
        ("serviceName taken by another app, second", {**base, "serviceName": "shared"}, ""),
    ]
    return cases


def _merged(base: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(base))
    for key, value in spec.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and key in out else value
    return out


def bad_inputs() -> dict[str, Any]:
    ns = make_namespace("faults-bad")
    kubectl("create", "service", "clusterip", "taken", "--tcp=80:80", "-n", ns)
    operator = OperatorProcess.start(OPERATOR_LOG, extra=("--namespace", ns))
    cases = bad_specs()
    outcome: dict[str, str] = {}
    for i, (case, spec, name) in enumerate(cases):
        app = name or f"bad-{i:02d}"
        body: dict[str, Any] = {"apiVersion": "apps.k8slab.io/v1alpha1", "kind": "StatefulWebApp"}
        body |= {"metadata": {"name": app, "namespace": ns}, "spec": spec}
        result = subprocess.run(
            [kubectl_path(), "--kubeconfig", str(CLUSTER / "kubeconfig"), "apply", "-f", "-"],
            input=yaml.safe_dump(body, allow_unicode=True),
            capture_output=True,
            text=True,
            check=False,
        )
        outcome[app] = "refused" if result.returncode else "accepted"
        log(f"  {case}: {outcome[app]}")
    time.sleep(20)
    live = apps_in(ns)
    half: dict[str, str] = {}
    for app, verdict in outcome.items():
        made = children_of(ns, app)
        obj = live.get(app)
        if verdict == "refused" or obj is None:
            if made:
                half[app] = f"refused at admission, yet {sorted(made)} exist"
            continue
        expected = len([m for m in registry.render_all(parse_or_none(obj)).values() if m])
        if not app_ready(obj) and 0 < len(made) < expected:
            reason = (obj.get("status", {}).get("conditions") or [{}])[0].get("reason")
            half[app] = f"{reason}: {len(made)}/{expected} children"
    operator.stop()
    accepted = sum(v == "accepted" for v in outcome.values())
    log(
        f"bad_inputs: {len(cases)} tried, {len(cases) - accepted} refused at admission, "
        f"half made: {half or 0}"
    )
    return {
        "bad_inputs_tried": len(cases),
        "bad_inputs_refused_at_admission": len(cases) - accepted,
        "bad_inputs_half_made": len(half),
        "bad_inputs_half_made_apps": half,
    }


@cache
def kubectl_path() -> str:
    out = subprocess.run(
        [REPO / "hack/tools/build.sh", "--dir"], check=True, capture_output=True, text=True
    )
    return str(Path(out.stdout.strip()) / "kubectl")


def parse_or_none(obj: dict[str, Any]) -> Any:
    return parse(obj)


def children_of(ns: str, app: str) -> set[str]:
    found = set()
    for kind in CHILD_KINDS:
        out = kubectl(
            "get",
            kind.lower(),
            "-n",
            ns,
            "-l",
            f"{names.LABEL_INSTANCE}={app}",
            "-o",
            "name",
            check=False,
        )
        found |= set(out.split())
    if names.volume_of(ns, app) in volumes_of(ns):
        found.add(f"persistentvolume/{names.volume_of(ns, app)}")
    return found


# -- the whole run -----------------------------------------------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--kill9-runs", type=int, default=50, help="kill -9 runs (default: %(default)s)")
    p.add_argument("--kill9-apps", type=int, default=200, help="apps in that burst")
    p.add_argument("--outage-apps", type=int, default=100, help="apps in each outage burst")
    p.add_argument(
        "--outages", default="30,120", help="outage lengths in seconds (default: %(default)s)"
    )
    p.add_argument("--upgrade-apps", type=int, default=100, help="live apps during the upgrade")
    p.add_argument("--out", type=Path, default=OUT, help="results folder")
    p.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios to run again, updating the results folder's faults.json "
        "(bad_inputs, failover, delete_while_down, watch_gap, upgrade, kill9, outages)",
    )
    args = p.parse_args(list(argv) if argv is not None else None)
    args.out.mkdir(parents=True, exist_ok=True)
    global OPERATOR_LOG  # noqa: PLW0603  (one log for the run, in its results folder)
    OPERATOR_LOG = args.out / "faults-operator.log"
    OPERATOR_LOG.unlink(missing_ok=True)
    started = time.time()
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/statefulwebapps.apps.k8slab.io",
        "crd/statefulwebapprestores.apps.k8slab.io",
    )
    only = set(filter(None, args.only.split(",")))
    saved = args.out / "faults.json"
    result: dict[str, Any] = json.loads(saved.read_text()) if only and saved.exists() else {}
    scenarios: dict[str, Callable[[], dict[str, Any]]] = {
        "bad_inputs": bad_inputs,
        "failover": failover,
        "delete_while_down": delete_while_down,
        "watch_gap": watch_gap,
        "upgrade": lambda: upgrade(args.upgrade_apps),
        "kill9": lambda: kill9(args.kill9_runs, args.kill9_apps),
        "outages": lambda: outages([float(x) for x in args.outages.split(",")], args.outage_apps),
    }
    for name, scenario in scenarios.items():
        if not only or name in only:
            try:
                result |= scenario()
            except Exception as err:  # Recorded: the other scenarios' figures still count.
                log(f"{name}: failed: {err!r}")
                result[f"{name}_error"] = repr(err)
    command = "make faults FAULTS_ARGS='" + " ".join(sys.argv[1:]) + "'"
    if only:
        result.setdefault("reruns", []).append(command)
    else:
        result["duration_s"] = round(time.time() - started)
        result["command"] = command
    (args.out / "faults.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (args.out / "faults.md").write_text(report(result))
    log(f"done in {result['duration_s']}s: {args.out}/faults.json, faults.md")
    return 0


def outages(lengths: list[float], n: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for what, key in (("kube-apiserver", "apiserver"), ("etcd", "etcd")):
        runs = [outage(what, seconds, n) for seconds in lengths]
        result[f"{key}_outages"] = runs
        result[f"{key}_down_max_s"] = max(r["down_s"] for r in runs)
        converged = all(r["converge_s"] is not None for r in runs)
        result[f"converge_after_{key}_s"] = (
            max(r["converge_s"] for r in runs) if converged else None
        )
        result[f"cluster_recovery_after_{key}_s"] = max(r["cluster_recovery_s"] or 0 for r in runs)
        # The worst of the lengths: the operator's convergence against the cluster's own.
        ratios = [r["converge_ratio"] for r in runs]
        result[f"converge_after_{key}_ratio"] = (
            max(ratios) if all(x is not None for x in ratios) else None
        )
        burst = [r["burst_floor_ratio"] for r in runs]
        result[f"converge_after_{key}_burst_ratio"] = (
            max(burst) if all(x is not None for x in burst) else None
        )
    return result


TARGETS: list[tuple[str, str, Callable[[Any], bool]]] = [
    ("kill9_runs", ">= 50", lambda v: v >= 50),
    ("kill9_converged_pct", "= 100", lambda v: v == 100),
    ("kill9_duplicates", "= 0", lambda v: v == 0),
    ("kill9_orphans", "= 0", lambda v: v == 0),
    ("apiserver_down_max_s", ">= 120", lambda v: v >= 120),
    ("converge_after_apiserver_ratio", "<= 1.2", lambda v: v <= 1.2),
    ("etcd_down_max_s", ">= 120", lambda v: v >= 120),
    ("converge_after_etcd_ratio", "<= 1.2", lambda v: v <= 1.2),
    ("converge_after_apiserver_burst_ratio", "<= 1.2", lambda v: v <= 1.2),
    ("converge_after_etcd_burst_ratio", "<= 1.2", lambda v: v <= 1.2),
    ("watch_gap_repaired_s", "<= 60", lambda v: v <= 60),
    ("delete_while_down_s", "<= 30", lambda v: v <= 30),
    ("upgrade_rollouts", "= 0", lambda v: v == 0),
    ("failover_s", "<= 30", lambda v: v <= 30),
    ("bad_inputs_tried", ">= 50", lambda v: v >= 50),
    ("bad_inputs_half_made", "= 0", lambda v: v == 0),
]


def report(result: dict[str, Any]) -> str:
    lines = ["| key | target | measured | met |", "|---|---|---|---|"]
    for key, target, ok in TARGETS:
        value = result.get(key)
        met = "yes" if value is not None and ok(value) else "no"
        lines.append(f"| {key} | {target} | {value} | {met} |")
    lines.append("")
    lines.append(
        "| outage | down (s) | every app Ready (s) | the floor (s) | ratio "
        "| the burst's floor (s) | ratio | not Ready | the burst's floor not Ready |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for key in ("apiserver", "etcd"):
        for run in result.get(f"{key}_outages", []):
            stuck = run.get("not_converged") or {}
            reasons = sorted({why.split(":", 1)[0] for why in stuck.values()})
            lines.append(
                f"| {key} | {run['down_s']:.0f} | {run['converge_s']} | "
                f"{run['cluster_recovery_s']} | {run.get('converge_ratio')} | "
                f"{run.get('burst_floor_s')} | {run.get('burst_floor_ratio')} | "
                f"{len(stuck)}{' (' + ', '.join(reasons) + ')' if reasons else ''} | "
                f"{len(run.get('burst_floor_not_ready') or {})} |"
            )
    lines.append("")
    lines.append(
        "The floor is a bare StatefulSet (no operator) applied when the server answers again: "
        "the cluster's own controllers' recovery, which the operator's convergence includes. "
        "The burst's floor is the same burst of apps made without the operator (each app's "
        "children applied directly, as `make bench`'s floor does) through the same outage: "
        "what the cluster alone makes of children it already had. For an app not Ready, "
        "`not_converged_children` (and `burst_floor_not_ready`) in faults.json say what its "
        "StatefulSet and DaemonSet report against their pods' own Ready."
    )
    lines.append("")
    lines.append(f"Measured by `{result['command']}` in {result['duration_s']} s.")
    for rerun in result.get("reruns", []):
        lines.append(f"Scenarios run again, their figures replacing the first run's: `{rerun}`.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
