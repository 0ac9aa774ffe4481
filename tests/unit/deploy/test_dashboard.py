"""The chart's Grafana dashboard (deploy/statefulwebapp-operator/files/dashboard.json).

No Grafana: every query is checked as PromQL by promtool (written as recording rules, Grafana's
variables given values), names only metrics the operator exports, and is narrowed to the
operator chosen in the dashboard's variables; the data source is a variable, never a uid.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.unit.deploy import monitoring

BUILTIN_RANGES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
"""Grafana's own range variables, with a value each for promtool."""
VARIABLE = re.compile(r"\$\{?(\w+)\}?")
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def queries() -> dict[str, str]:
    """Every panel query, named by its panel and refId."""
    found = {}
    for panel in monitoring.panels(monitoring.dashboard()):
        for target in panel.get("targets", []):
            found[f"{panel['title']} {target['refId']}"] = target["expr"]
    return found


def variables() -> list[dict[str, Any]]:
    variables: list[dict[str, Any]] = monitoring.dashboard()["templating"]["list"]
    return variables


def variable_selectors() -> dict[str, str]:
    """The series selector of each query variable (``label_values(<selector>, <label>)``)."""
    selectors = {}
    for variable in variables():
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"])
            assert match, f"variable {variable['name']}: {variable['query']}"
            selectors[f"variable {variable['name']}"] = match.group(1)
    return selectors


def as_promql(expr: str) -> str:
    """``expr`` with Grafana's variables replaced: ranges by a duration, the rest by ``.*``."""
    for name, value in BUILTIN_RANGES.items():
        expr = expr.replace(name, value)
    return VARIABLE.sub(".*", expr)


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = {**queries(), **variable_selectors()}
    assert len(queries()) >= 10
    rules = [
        {"record": f"dashboard:query_{number}", "expr": as_promql(expr)}
        for number, expr in enumerate(exprs.values())
    ]
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = monitoring.check_rules(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_a_broken_query_is_refused(tmp_path: Path) -> None:
    """The check above would catch a typo: promtool refuses what Prometheus would."""
    path = tmp_path / "broken.yaml"
    broken = as_promql('sum by (reason (statefulwebapp_apps{job=~"$job"})')
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": broken}]}]})
    )
    assert monitoring.check_rules(path).returncode != 0


def test_every_query_names_only_metrics_the_operator_exports() -> None:
    exprs = {**queries(), **variable_selectors()}
    assert monitoring.unknown_metrics(exprs) == []


def test_the_panels_an_sre_needs_are_there() -> None:
    exprs = queries().values()
    used = set().union(*(monitoring.metric_names(expr) for expr in exprs))
    assert {
        "statefulwebapp_apps",
        "statefulwebapp_reconcile_passes_total",
        "statefulwebapp_reconcile_duration_seconds_bucket",
        "statefulwebapp_work_queue_depth",
        "statefulwebapp_api_requests_total",
        "statefulwebapp_leader",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    } <= used
    assert any("sum by (reason)" in expr for expr in exprs)
    assert any("sum by (outcome)" in expr for expr in exprs)
    assert any("sum by (verb, code)" in expr for expr in exprs)
    quantiles = [expr for expr in exprs if expr.startswith("histogram_quantile(")]
    assert len(quantiles) >= 3


def selectors(expr: str, name: str) -> Iterator[str]:
    """The label matchers of each selection of metric ``name`` in ``expr`` ("" when none)."""
    for match in re.finditer(rf"(?<![\w:]){re.escape(name)}(?![\w:(])\s*(\{{[^}}]*\}})?", expr):
        yield match.group(1) or ""


def test_every_query_is_narrowed_to_the_chosen_operator() -> None:
    """process_* and up are every target's: without the job variable a panel mixes them in."""
    for where, expr in queries().items():
        for name in monitoring.metric_names(expr):
            for matchers in selectors(expr, name):
                assert 'job=~"$job"' in matchers, f"{where}: {name}{matchers}"
                assert 'namespace=~"$namespace"' in matchers, f"{where}: {name}{matchers}"


def test_variables_used_are_defined() -> None:
    defined = {variable["name"] for variable in variables()}
    assert [variable["name"] for variable in variables()] == ["datasource", "namespace", "job"]
    for where, expr in {**queries(), **variable_selectors()}.items():
        used = {f"$__{name}" for name in re.findall(r"\$__(\w+)", expr)}
        assert used <= set(BUILTIN_RANGES), where
        assert set(VARIABLE.findall(expr)) - {name.removeprefix("$") for name in used} <= defined


def datasources(node: Any) -> Iterator[Any]:
    """Every ``datasource`` value anywhere in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasources(item)


def test_the_data_source_is_a_variable_never_a_uid() -> None:
    board = monitoring.dashboard()
    (variable,) = [v for v in variables() if v["type"] == "datasource"]
    assert variable["name"] == "datasource"
    assert variable["query"] == "prometheus"
    found = list(datasources(board))
    assert found
    assert all(value == DATASOURCE for value in found)
    # A dashboard made for import (__inputs) would need a person to pick the data source.
    assert "__inputs" not in board


def test_panels_have_unique_ids_and_a_place() -> None:
    all_panels = list(monitoring.panels(monitoring.dashboard()))
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids))
    for panel in all_panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["description"], panel["title"]
    assert monitoring.dashboard()["uid"] == "statefulwebapp-operator"
