"""What the alert and dashboard tests share: the chart's files, promtool, PromQL's metric names.

promtool comes from Debian's ``prometheus`` package, which ``make unit`` and ``make tools``
install (hack/tools/packages.sh); a missing promtool fails the tests that need it, never skips
them: an alert nobody tested would ship silently.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from statefulwebapp.runtime.metrics import Metrics

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy/statefulwebapp-operator"
ALERTS = CHART / "files/alerts.yaml"
DASHBOARD = CHART / "files/dashboard.json"
RUNBOOKS = REPO / "docs/runbooks.md"

RUNBOOK_BASE = "https://statefulwebapp-operator.invalid/docs/runbooks.md"
"""The runbooks' base URL written in files/alerts.yaml, which the chart replaces."""
UP_PLACEHOLDER = 'up{job="statefulwebapp-operator-metrics"}'
"""The `up` selector written in files/alerts.yaml, which the chart replaces."""

STANDARD = frozenset({"up"})
"""Series Prometheus makes itself for every target, not the operator's /metrics."""


def promtool() -> str:
    """The promtool on PATH; missing, the test fails saying how to get it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: run `make unit` (or `make tools`), which installs Debian's "
            "prometheus package (hack/tools/packages.sh prometheus)"
        )
    return path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@cache
def alert_groups() -> tuple[dict[str, Any], ...]:
    groups: list[dict[str, Any]] = yaml.safe_load(ALERTS.read_text())["groups"]
    return tuple(groups)


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule of files/alerts.yaml, in order."""
    return [rule for group in alert_groups() for rule in group["rules"] if "alert" in rule]


@cache
def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


@cache
def exposed() -> frozenset[str]:
    """The names of the series the operator's /metrics can show.

    A family with labels shows no sample until one is recorded, so the names come from each
    family's type, as the text format writes them (a counter ``x`` as ``x_total``, ...).
    """
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return frozenset(names)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_TOKEN = re.compile(
    r"(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<call>\s*\()?"
)
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "atan2", "inf", "nan", "by", "without", "on", "ignoring"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    Strings, label matchers, ranges, grouping label lists and offsets are dropped first; of what
    is left, a name followed by ``(`` is a function or an aggregation, a few are keywords, and
    every other name selects a metric.
    """
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    found = set()
    for token in _TOKEN.finditer(text):
        name = token.group("name")
        if name and not token.group("call") and name.lower() not in _KEYWORDS:
            found.add(name)
    return found


def unknown_metrics(exprs: dict[str, str]) -> list[str]:
    """``where: name`` for each metric an expression names that the operator does not export."""
    known = exposed() | STANDARD
    return [
        f"{where}: {name}"
        for where, expr in exprs.items()
        for name in sorted(metric_names(expr) - known)
    ]


def check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    return run_promtool("check", "rules", path)
