"""The chart's alerts (deploy/statefulwebapp-operator/files/alerts.yaml), checked by promtool.

No cluster and no helm: promtool reads the very file the chart wraps in a PrometheusRule.
``promtool check rules`` parses it; ``promtool test rules`` runs alerts_test.yaml, which
gives every alert series that fire it, with its labels and annotations, and series that do
not. Those tests are themselves checked: broken on purpose (an alert that never fires, one
that always fires, one that waits longer or not at all), the rules must fail them, alert by
alert. Then: every Ready reason the operator writes lands in exactly one apps alert, the
alerts name only metrics the operator exports, and every runbook_url leads to a section of
docs/runbooks.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from statefulwebapp.specs import status
from tests.unit.deploy import monitoring
from tests.unit.deploy.monitoring import REPO
from tests.unit.deploy.test_docs import anchors

TESTS = Path(__file__).with_name("alerts_test.yaml")
VALUES = REPO / "deploy/statefulwebapp-operator/values.yaml"
OPERATOR = REPO / "operator/statefulwebapp"

SEVERITIES = {"critical", "warning", "info"}

OWN_ALERT = {
    "BackupFailing": "StatefulWebAppBackupFailing",
    "RestoreInterrupted": "StatefulWebAppRestoreInterrupted",
    # The operator wrote nothing and retries nothing until a person changes something.
    **dict.fromkeys(
        ("InvalidSpec", "Refused", "NameConflict", "ExportNotAllowed", "ExportInUse"),
        "StatefulWebAppNeedsUserAction",
    ),
}
"""Ready reasons with an alert of their own. Ready has none; any other reason, one added later
included, is StatefulWebAppNotReady's."""
CATCH_ALL = "StatefulWebAppNotReady"


def ready_reasons() -> set[str]:
    """Every reason of an app's Ready condition, read from the operator's source.

    The readiness gates of specs/status.py return ``("Reason", message)``; every problem a
    pass reports (refusals, conflicts, the admin's policy) is a ``Problem("Reason", ...)``.
    """
    reasons = set(
        re.findall(r'return\s*\(?\s*"([A-Z]\w+)",', (OPERATOR / "specs/status.py").read_text())
    )
    for path in OPERATOR.rglob("*.py"):
        reasons.update(re.findall(r'Problem\(\s*"([A-Z]\w+)"', path.read_text()))
    return reasons


def test_promtool_check_rules_passes() -> None:
    result = monitoring.check_rules(monitoring.ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(monitoring.alerts())} rules found" in result.stdout


def test_promtool_test_rules_passes() -> None:
    result = monitoring.run_promtool("test", "rules", TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def rule_tests() -> list[dict[str, Any]]:
    loaded: dict[str, Any] = yaml.safe_load(TESTS.read_text())
    return [
        {**check, "test": test["name"]}
        for test in loaded["tests"]
        for check in test.get("alert_rule_test", [])
    ]


def test_every_alert_is_tested_firing_and_quiet() -> None:
    names = {rule["alert"] for rule in monitoring.alerts()}
    checks = rule_tests()
    # An alert name promtool does not know would pass its `exp_alerts: []` for nothing.
    assert {check["alertname"] for check in checks} <= names
    for name in sorted(names):
        mine = [check for check in checks if check["alertname"] == name]
        assert any(check["exp_alerts"] for check in mine), f"{name}: no test where it fires"
        assert any(not check["exp_alerts"] for check in mine), f"{name}: no test where it is quiet"


def mutate(tmp_path: Path, change: dict[str, dict[str, str]]) -> set[tuple[str, str, str]]:
    """Run alerts_test.yaml against the rules with ``change`` (alert: fields) applied.

    Returns the checks that failed: (test name, alert, eval time).
    """
    tmp_path.mkdir()
    rules = yaml.safe_load(monitoring.ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.update(change.get(rule.get("alert", ""), {}))
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rules))
    tests = yaml.safe_load(TESTS.read_text())
    tests["rule_files"] = ["alerts.yaml"]
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(tests))
    result = monitoring.run_promtool("test", "rules", tmp_path / "alerts_test.yaml")
    assert result.returncode != 0, "the broken rules passed every test"
    failed = re.findall(
        r"name: (.*),\s*alertname: (\w+), time: (\w+),", result.stdout + result.stderr
    )
    assert failed, result.stdout + result.stderr
    return {(test, alert, time) for test, alert, time in failed}


def seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", duration))


def checks_expecting(firing: bool) -> set[tuple[str, str, str]]:
    return {
        (check["test"], check["alertname"], check["eval_time"])
        for check in rule_tests()
        if bool(check["exp_alerts"]) == firing
    }


def failed_alerts(failed: set[tuple[str, str, str]], among: set[tuple[str, str, str]]) -> set[str]:
    return {alert for test, alert, time in failed if (test, alert, time) in among}


def test_alerts_broken_on_purpose_fail_their_tests(tmp_path: Path) -> None:
    """Each alert's tests catch it never firing, always firing, waiting longer or not at all."""
    names = {rule["alert"] for rule in monitoring.alerts()}
    # `absent(vector(1))` is always empty; `vector(1)` always one series.
    never = mutate(tmp_path / "never", {name: {"expr": "absent(vector(1))"} for name in names})
    assert failed_alerts(never, checks_expecting(firing=True)) == names
    always = mutate(tmp_path / "always", {name: {"expr": "vector(1)"} for name in names})
    assert failed_alerts(always, checks_expecting(firing=False)) == names
    fors = {rule["alert"]: seconds(rule.get("for", "0s")) for rule in monitoring.alerts()}
    later = {name: {"for": f"{fors[name] + 300}s"} for name in names}
    assert failed_alerts(mutate(tmp_path / "later", later), checks_expecting(firing=True)) == names
    waiting = {name for name, wait in fors.items() if wait}
    sooner = mutate(tmp_path / "sooner", {name: {"for": "0s"} for name in waiting})
    assert failed_alerts(sooner, checks_expecting(firing=False)) == waiting


def test_the_reasons_are_read_from_the_operator() -> None:
    reasons = ready_reasons()
    # The scan finds the status's gates and the problems of passes alike.
    assert reasons >= status.PROGRESS_REASONS
    assert {"Ready", "Restoring", "VolumeMountFailed", "ServerTrouble", "Forbidden"} <= reasons
    assert set(OWN_ALERT) <= reasons, "a reason with an alert of its own is no longer written"


def test_each_ready_reason_fires_exactly_one_apps_alert(tmp_path: Path) -> None:
    """An app held at each reason (and at one the operator may add later) for 20 minutes."""
    reasons = sorted(ready_reasons() | {"SomeFutureReason"})
    firing = 'count by (alertname, reason) (ALERTS{alertstate="firing", reason!=""})'
    tests = []
    for reason in reasons:
        series = f'statefulwebapp_apps{{reason="{reason}", namespace="swa-system"}}'
        alert = None if reason == "Ready" else OWN_ALERT.get(reason, CATCH_ALL)
        expected = (
            []
            if alert is None
            else [{"labels": f'{{alertname="{alert}", reason="{reason}"}}', "value": 1}]
        )
        tests.append(
            {
                "name": reason,
                "interval": "1m",
                "input_series": [{"series": series, "values": "1x30"}],
                "promql_expr_test": [{"expr": firing, "eval_time": "20m", "exp_samples": expected}],
            }
        )
    path = tmp_path / "reasons_test.yaml"
    path.write_text(
        yaml.safe_dump(
            {"rule_files": [str(monitoring.ALERTS)], "evaluation_interval": "1m", "tests": tests}
        )
    )
    result = monitoring.run_promtool("test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_name_only_metrics_the_operator_exports() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in monitoring.alerts()}
    assert monitoring.unknown_metrics(exprs) == []
    used = set().union(*(monitoring.metric_names(expr) for expr in exprs.values()))
    # Every metric the brief of the alerts names is watched.
    assert {
        "statefulwebapp_apps",
        "statefulwebapp_leader",
        "up",
        "statefulwebapp_reconcile_passes_total",
        "statefulwebapp_work_queue_depth",
        "statefulwebapp_api_requests_total",
    } <= used


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (reason) (statefulwebapp_apps{reason!~"Ready|x"}) > 0', {"statefulwebapp_apps"}),
        (
            "histogram_quantile(0.99, sum by (namespace, le) (rate(a_bucket[10m]))) > 1e3",
            {"a_bucket"},
        ),
        ("(b > 170e6) and on (job, instance) c", {"b", "c"}),
        ('up{job="x"} == 0 or absent(up{job="x"})', {"up"}),
        (
            "sum without (pod) (rate(d_total[$__rate_interval] offset 5m)) / ignoring(x) e",
            {"d_total", "e"},
        ),
        ("rate(f:g[5m]) unless bool h", {"f:g", "h"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert monitoring.metric_names(expr) == names


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook() -> None:
    for rule in monitoring.alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert all(text.strip() for text in rule["annotations"].values()), name
        # Named as the runbook's heading, so the anchor is the name as GitHub slugs it.
        assert rule["annotations"]["runbook_url"] == f"{monitoring.RUNBOOK_BASE}#{name.lower()}"


def test_every_runbook_url_leads_to_a_runbook_section() -> None:
    sections = anchors(monitoring.RUNBOOKS)
    names = [rule["alert"] for rule in monitoring.alerts()]
    assert [name for name in names if rule_anchor(name) not in sections] == []
    # And no runbook is left for an alert that is gone.
    headings = re.findall(r"^## (StatefulWebApp\w+)$", monitoring.RUNBOOKS.read_text(), re.M)
    assert sorted(headings) == sorted(names)


def rule_anchor(name: str) -> str:
    (rule,) = [rule for rule in monitoring.alerts() if rule["alert"] == name]
    url: str = rule["annotations"]["runbook_url"]
    return url.partition("#")[2]


def test_the_placeholders_the_chart_replaces_are_in_the_file() -> None:
    """The chart replaces them as text: each must be spelled as the template spells it."""
    values = yaml.safe_load(VALUES.read_text())["metrics"]["prometheusRule"]
    assert values["runbookBaseURL"] == monitoring.RUNBOOK_BASE
    # `up` is the only metric naming a job, and only through the placeholder.
    exprs = {rule["alert"]: rule["expr"] for rule in monitoring.alerts()}
    assert [name for name, expr in exprs.items() if "job=" in expr] == [
        "StatefulWebAppOperatorDown"
    ]
    down = exprs["StatefulWebAppOperatorDown"]
    assert down.count("job=") == down.count(monitoring.UP_PLACEHOLDER) == 2


def test_the_operations_page_lists_every_alert_as_the_file_has_it() -> None:
    """docs/operations.md's table: each alert once, with its runbook, `for` and severity."""
    table = re.findall(
        r"^\| \[(\w+)\]\(runbooks\.md#(\w+)\) \| .* \| (\w+) \| (\w+) \|$",
        (REPO / "docs/operations.md").read_text(),
        re.M,
    )
    listed = {name: (anchor, wait, severity) for name, anchor, wait, severity in table}
    assert len(listed) == len(table)
    assert listed == {
        rule["alert"]: (rule_anchor(rule["alert"]), rule["for"], rule["labels"]["severity"])
        for rule in monitoring.alerts()
    }
