"""A real Prometheus scrapes a live operator and evaluates the chart's alerts and dashboard.

The unit tests prove the rule file with promtool on series they make up
(tests/unit/deploy/test_alerts.py); here the series are the operator's own. Debian's
``prometheus`` (which ``make unit`` and ``make tools`` install) runs on a free loopback port,
scrapes an operator every second, and evaluates the shipped rule file, rendered as the chart
renders it, with one change: every ``for`` is 0s. The durations are minutes, which promtool's
tests prove alert by alert; waited out here they would cost this module a quarter of an hour
for nothing more. The scrape job has a name of its own and the ``namespace`` and ``pod``
target labels the Prometheus Operator would set, so the chart's ``up`` selector must really
select the target.

Two apps are made not Ready as a user would make them: a quota refuses one's backup DaemonSet
(the operator's apply answered 403: Refused, StatefulWebAppNeedsUserAction), another quota
refuses the other's pods (WebPodsNotReady, StatefulWebAppNotReady, the catch-all). Each alert
fires with its reason, its labels and its runbook; neither fires the other's; the quotas
removed and the apps edited, both resolve. Then every query of the dashboard, its variables
resolved and Grafana's intervals given the values Grafana would give them, returns data.

Runs on the local cluster only: Prometheus and the operator it scrapes are processes of this
machine on either cluster, and the quotas are the API server's.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykube
import pytest
import requests
import yaml

from tests.e2e.apps import apply, delete_namespace, sample, wait_ready, wait_reason
from tests.e2e.cluster import Cluster, Operator, make_namespace, wait_for
from tests.e2e.conftest import start_operator
from tests.unit.deploy import monitoring

pytestmark = pytest.mark.local_cluster(
    reason="Prometheus and the operator it scrapes are processes of this machine, the same on "
    "either cluster; what makes the apps not Ready is the API server's quota admission"
)

SCRAPE_SECONDS = 1
"""Prometheus's scrape and evaluation interval, and the scrape interval Grafana is told."""
JOB = "e2e-operator-metrics"
"""The scrape job: not the placeholder's, so the chart's substitution must take."""
POD = "statefulwebapp-operator-0"
"""The ``pod`` target label, as the Prometheus Operator sets it (the dashboard groups by it)."""
RUNBOOKS = "https://runbooks.e2e.invalid/docs/runbooks.md"
"""The runbooks' base URL the rules are rendered with (the chart's runbookBaseURL)."""

APPS_ALERTS = frozenset(
    rule["alert"]
    for group in monitoring.alert_groups()
    if group["name"] == "statefulwebapp-apps"
    for rule in group["rules"]
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rules(namespace: str) -> str:
    """files/alerts.yaml as the chart renders it for an operator in ``namespace`` scraped by
    job ``JOB`` (templates/prometheusrule.yaml's two substitutions), every ``for`` 0s."""
    text = monitoring.ALERTS.read_text()
    text = text.replace(monitoring.UP_PLACEHOLDER, f'up{{job="{JOB}",namespace="{namespace}"}}')
    text = text.replace(f"{monitoring.RUNBOOK_BASE}#", f"{RUNBOOKS}#")
    loaded = yaml.safe_load(text)
    for group in loaded["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "0s"
    return yaml.safe_dump(loaded, sort_keys=False)


@dataclass
class Prometheus:
    """A Prometheus server, running as a child process."""

    process: subprocess.Popen[bytes]
    url: str
    config: Path
    log: Path
    started: float
    """``time.time()`` when it started: where the dashboard's time range begins."""

    def api(self, path: str, **params: str | float) -> Any:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        assert response.status_code == 200, f"{path} {params}: {response.text}"
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        """The alerts of that name firing now."""
        return [
            alert
            for alert in self.api("alerts")["alerts"]
            if alert["labels"]["alertname"] == alertname and alert["state"] == "firing"
        ]

    def firing_of(self, alertname: str, reason: str) -> dict[str, Any] | None:
        """The alert of that name firing now for that Ready reason, if it is."""
        found = [a for a in self.firing(alertname) if a["labels"].get("reason") == reason]
        assert len(found) <= 1, found
        return found[0] if found else None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def running(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"prometheus exited with {self.process.returncode}:\n{self.tail()}")
        return True

    @classmethod
    def start(cls, workdir: Path, target: int, namespace: str) -> Prometheus:
        """Scraping ``127.0.0.1:<target>`` as the operator of ``namespace``; ready, and the
        target scraped once."""
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail(
                "prometheus is missing: run `make tools` (or `make unit`), which installs "
                "Debian's prometheus package (hack/tools/packages.sh prometheus)"
            )
        (workdir / "rules.yaml").write_text(rules(namespace))
        config = workdir / "prometheus.yaml"
        interval = f"{SCRAPE_SECONDS}s"
        labels = {"namespace": namespace, "pod": POD}
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": interval,
                        "scrape_timeout": interval,
                        "evaluation_interval": interval,
                    },
                    "rule_files": [str(workdir / "rules.yaml")],
                    "scrape_configs": [
                        {
                            "job_name": JOB,
                            "static_configs": [
                                {"targets": [f"127.0.0.1:{target}"], "labels": labels}
                            ],
                        }
                    ],
                }
            )
        )
        port = free_port()
        log = workdir / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = cls(process, f"http://127.0.0.1:{port}", config, log, time.time())
        try:
            wait_for(lambda: server.running() and server.ready(), 30, f"prometheus ready ({log})")
            wait_for(server.scraped, 30, f"a scrape of the operator ({log})")
        except BaseException:
            server.stop()
            raise
        return server

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def scraped(self) -> bool:
        targets = self.api("targets", state="active")["activeTargets"]
        return [target["health"] for target in targets] == ["up"]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def left(self) -> list[int]:
        """Processes still running with this server's configuration."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"--config.file={self.config}".encode() in args:
                found.append(int(entry.name))
        return found


@dataclass
class Served:
    """The operator and the namespaces of its apps; its Lease is in the first."""

    operator: Operator
    refused: str
    """A namespace whose quota refuses the app's backup DaemonSet."""
    podless: str
    """A namespace whose quota refuses every pod."""


@pytest.fixture(scope="module")
def served(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """An operator serving two namespaces of its own; its Lease in the first, which is
    therefore its ``namespace`` label: the scope of its leader election, as in a pod.

    Apps are deleted first, while it runs, and it stops once it has collected their volumes.
    """
    refused = make_namespace(cluster, "prom")
    podless = make_namespace(cluster, "prom")
    try:
        operator = start_operator(
            cluster,
            tmp_path_factory,
            "--namespace",
            refused,
            "--namespace",
            podless,
            "--lease",
            f"{refused}/statefulwebapp-operator",
        )
        try:
            yield Served(operator, refused, podless)
            for namespace in (refused, podless):
                cluster.kubectl(
                    "delete", "swa", "--all", "-n", namespace, "--wait=true", "--timeout=60s"
                )
            wait_for(
                lambda: (
                    not [
                        pv.name
                        for pv in pykube.PersistentVolume.objects(cluster.api)
                        if pv.name.startswith((f"{refused}.", f"{podless}."))
                    ]
                ),
                30,
                "the apps' volumes collected",
            )
        finally:
            operator.stop()
    finally:
        for namespace in (refused, podless):
            delete_namespace(cluster, namespace)


@pytest.fixture(scope="module")
def prometheus(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    server = Prometheus.start(
        tmp_path_factory.mktemp("prometheus"), served.operator.health_port, served.refused
    )
    yield server
    server.stop()
    assert server.process.returncode is not None
    assert server.left() == [], f"prometheus processes left: {server.left()}"


def quota(cluster: Cluster, namespace: str, hard: dict[str, str]) -> None:
    """A ResourceQuota named ``e2e``, waited for until its controller has counted it."""
    body = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "e2e"}}
    apply(cluster, namespace, {**body, "spec": {"hard": hard}})
    wait_for(
        lambda: (
            pykube.ResourceQuota.objects(cluster.api, namespace=namespace)
            .get(name="e2e")
            .obj.get("status", {})
            .get("hard")
        ),
        30,
        f"the quota of {namespace} counted",
    )


@pytest.fixture(scope="module")
def not_ready(cluster: Cluster, served: Served, prometheus: Prometheus) -> Served:
    """Both apps made not Ready, scraped by Prometheus since before they were applied.

    The refused app's status says Refused at once. The podless app's WebPodsNotReady is a
    waiting reason giving way to another (StorageNotBound), a progress-only change whose status
    write the operator may hold back a while (``status.urgent``); its metric counts the reason
    each pass computes, so the test waits for that one in Prometheus.
    """
    quota(cluster, served.refused, {"count/daemonsets.apps": "0"})
    quota(cluster, served.podless, {"pods": "0"})
    apply(cluster, served.refused, sample())
    apply(cluster, served.podless, sample())
    wait_reason(cluster, served.refused, "Refused")
    return served


def test_a_not_ready_app_fires_its_alert_and_its_recovery_resolves_it(
    cluster: Cluster, not_ready: Served, prometheus: Prometheus
) -> None:
    namespace = not_ready.refused
    refused = wait_for(
        lambda: prometheus.firing_of("StatefulWebAppNeedsUserAction", "Refused"),
        60,
        "StatefulWebAppNeedsUserAction to fire for Refused",
    )
    podless = wait_for(
        lambda: prometheus.firing_of("StatefulWebAppNotReady", "WebPodsNotReady"),
        60,
        "StatefulWebAppNotReady to fire for WebPodsNotReady",
    )
    for alert, name, severity in [
        (refused, "StatefulWebAppNeedsUserAction", "info"),
        (podless, "StatefulWebAppNotReady", "warning"),
    ]:
        reason = alert["labels"]["reason"]
        # Summed by the operator's namespace and the reason: one app each.
        assert alert["labels"] == {
            "alertname": name,
            "namespace": namespace,
            "reason": reason,
            "severity": severity,
        }
        assert float(alert["value"]) == 1
        annotations = alert["annotations"]
        assert annotations["runbook_url"] == f"{RUNBOOKS}#{name.lower()}"
        assert annotations["summary"].startswith("1 StatefulWebApp(s) ")
        assert annotations["summary"].endswith(f": {reason}")
        assert f"namespace {namespace}" in annotations["description"]
    # What the README shows (pytest -s): the alerts as Prometheus's API has them.
    print(json.dumps({"firing": [refused, podless]}, indent=2))
    # Each reason fires exactly one apps alert.
    assert prometheus.firing_of("StatefulWebAppNotReady", "Refused") is None
    assert prometheus.firing_of("StatefulWebAppNeedsUserAction", "WebPodsNotReady") is None
    # The operator's alerts see it scraped (the chart's `up` selector takes the job) and leading.
    for name in ("StatefulWebAppOperatorDown", "StatefulWebAppOperatorNoLeader"):
        assert prometheus.firing(name) == [], name

    # What refused them is gone; an edit of each app applies it now: the operator never sends
    # a refused rendering again, and the controllers whose pods were refused back off.
    for each in (not_ready.refused, not_ready.podless):
        cluster.kubectl("delete", "resourcequota", "e2e", "-n", each)
    apply(cluster, not_ready.refused, sample(backup={"keep": 5}))
    apply(cluster, not_ready.podless, sample(replicas=2, backup={"keep": 5}))
    wait_ready(cluster, not_ready.refused)
    wait_ready(cluster, not_ready.podless)
    deadline = time.monotonic() + 60
    while (still := [a for name in APPS_ALERTS for a in prometheus.firing(name)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(SCRAPE_SECONDS)
    assert still == [], "apps alerts still firing after both apps are Ready"
    ready = prometheus.api("query", query='statefulwebapp_apps{reason="Ready"}')["result"]
    assert [float(series["value"][1]) for series in ready] == [2]


def test_every_rule_evaluates_without_error(not_ready: Served, prometheus: Prometheus) -> None:
    """Every alert of the shipped file is loaded and evaluated against the real series."""

    def evaluated() -> Any:
        found = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        return all(rule["health"] != "unknown" for rule in found) and found

    found = wait_for(evaluated, 10, "every rule evaluated once")
    assert sorted(rule["name"] for rule in found) == sorted(
        rule["alert"] for rule in monitoring.alerts()
    )
    assert [(r["name"], r.get("lastError")) for r in found if r["health"] != "ok"] == []


VARIABLE = re.compile(r"\$\{?(\w+)\}?")
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


def grafana_variables(prometheus: Prometheus, range_seconds: int) -> dict[str, str]:
    """Every variable of the dashboard with the value Grafana would give it, "All" chosen.

    Grafana's ranges: ``$__interval`` is the time range over the panel's data points, never
    less than the data source's scrape interval, which over this module's minute or two is
    that floor; ``$__rate_interval`` is the larger of it plus the scrape interval and four
    scrape intervals (rate() then always has two samples); ``$__range`` is the time range.
    A query variable (``label_values(<selector>, <label>)``) is asked of Prometheus as Grafana
    asks it, after the variables before it; "All" of several values is their alternation.
    """
    interval = SCRAPE_SECONDS
    values = {
        "__interval": f"{interval}s",
        "__rate_interval": f"{max(interval + SCRAPE_SECONDS, 4 * SCRAPE_SECONDS)}s",
        "__range": f"{range_seconds}s",
    }
    for variable in monitoring.dashboard()["templating"]["list"]:
        if variable["type"] == "datasource":
            values[variable["name"]] = "prometheus-e2e"
            continue
        match = LABEL_VALUES.match(variable["query"])
        assert match, variable
        selector = substitute(match.group(1), values)
        found = prometheus.api(f"label/{match.group(2)}/values", **{"match[]": selector})
        assert found, f"variable {variable['name']}: no value for {selector}"
        # Namespace and job names: nothing in them a regex would read.
        assert all(re.fullmatch(r"[a-z0-9-]+", value) for value in found), found
        values[variable["name"]] = found[0] if len(found) == 1 else f"({'|'.join(found)})"
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        assert match.group(1) in values, f"unknown variable {match.group(0)} in {expr}"
        return values[match.group(1)]

    return VARIABLE.sub(value, expr)


def test_every_dashboard_query_returns_data(not_ready: Served, prometheus: Prometheus) -> None:
    """Every panel's query, as Grafana would send it over the time since Prometheus started,
    draws something: at least one series with at least one number (not NaN). Apps not Ready,
    passes of every kind, and the operator's 403 (the refused DaemonSet) are all there."""
    targets = [
        (f"{panel['title']} {target['refId']}", target)
        for panel in monitoring.panels(monitoring.dashboard())
        for target in panel.get("targets", [])
    ]
    assert len(targets) >= 10
    # Every panel asks for a range, as a time series or a stat's last value over it.
    assert [name for name, target in targets if not target.get("range")] == []

    def without_data() -> list[str]:
        end = time.time()
        values = grafana_variables(prometheus, math.ceil(end - prometheus.started))
        assert values["namespace"] == not_ready.refused
        assert values["job"] == JOB
        empty = []
        for name, target in targets:
            expr = substitute(target["expr"], values)
            result = prometheus.api(
                "query_range",
                query=expr,
                start=prometheus.started,
                end=end,
                step=values["__interval"],
            )["result"]
            numbers = [v for series in result for _, v in series["values"] if not_nan(v)]
            if not numbers:
                empty.append(f"{name}: {expr}")
        return empty

    deadline = time.monotonic() + 30
    while (empty := without_data()) and time.monotonic() < deadline:
        time.sleep(SCRAPE_SECONDS)
    assert empty == [], "dashboard queries without data:\n" + "\n".join(empty)


def not_nan(value: str) -> bool:
    return not math.isnan(float(value))
