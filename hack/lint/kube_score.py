"""`make lint-k8s`: kube-score on the chart and on the operator's renderings of the sample app.

    .venv/bin/python hack/lint/kube_score.py [--counts] [--chart DIR]

Three sources, each rendered here, offline:

- ``chart``: ``helm template`` of deploy/statefulwebapp-operator with its default values;
- ``sample-default`` and ``sample-restricted``: the children the operator renders for the
  sample app (crds/samples/web.yaml, through hack/render-sample.py), ``podSecurity`` default
  and restricted.

A finding is one remark of kube-score on a check it does not grade OK (one line of its ``ci``
output). Each must be on the allow-list, hack/lint/allow.yaml, which says why it is refused on
purpose; any other fails, and so does an entry that matches no finding (left behind, it would
hide the same finding come back later).

``--counts`` prints the findings per source and check, allow-list ignored (the README's
figures); ``--chart DIR`` lints another copy of the chart, e.g. one taken from an older commit.
The tools come from the tools cache (hack/tools/build.sh helm kube-score).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ALLOW = REPO / "hack/lint/allow.yaml"
SOURCES = ("chart", "sample-default", "sample-restricted")
OK = 10
"""kube-score's grade of a passed check; 7 (almost OK), 5 (warning), 1 (critical) are findings."""


@dataclass(frozen=True)
class Finding:
    """One remark of kube-score: where, which check, and what it says."""

    source: str
    kind: str
    name: str
    check: str
    container: str
    summary: str

    def __str__(self) -> str:
        """As kube-score's ``ci`` output words it, with the source first."""
        where = f" ({self.container})" if self.container else ""
        return f"{self.source}: {self.kind}/{self.name}: {self.check}:{where} {self.summary}"


def versions() -> dict[str, str]:
    """The pins of hack/tools/versions.env (KUBE_VERSION, ...)."""
    pins = {}
    for line in (REPO / "hack/tools/versions.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            pins[key.strip()] = value.strip()
    return pins


def tools_bin() -> Path:
    """The tools cache's bin directory."""
    out = subprocess.run(
        [REPO / "hack/tools/build.sh", "--dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def render(source: str, chart: Path, kube_version: str) -> str:
    """The multi-document YAML of one source."""
    if source == "chart":
        command = [str(tools_bin() / "helm"), "template", "swa", str(chart), "-n", "swa-system"]
        command += ["--kube-version", kube_version]
    else:
        mode = source.removeprefix("sample-")
        command = [sys.executable, str(REPO / "hack/render-sample.py"), "--pod-security", mode]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def score(source: str, manifests: str, kube_version: str) -> list[Finding]:
    """kube-score's findings on ``manifests``."""
    minor = ".".join(kube_version.split(".")[:2])
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        file.write(manifests)
        file.flush()
        command = [str(tools_bin() / "kube-score"), "score", "--kubernetes-version", minor]
        out = subprocess.run(
            [*command, "--output-format", "json", file.name],
            check=False,
            capture_output=True,
            text=True,
        )
    # Exit 1 means findings, which are read from the JSON; anything else is kube-score failing.
    if out.returncode not in (0, 1) or not out.stdout.strip():
        sys.exit(f"kube-score failed on {source} ({out.returncode}): {out.stderr.strip()}")
    findings = []
    for obj in json.loads(out.stdout):
        for check in obj["checks"]:
            if check["skipped"] or check["grade"] >= OK:
                continue
            for comment in check["comments"] or [{"path": "", "summary": check["check"]["name"]}]:
                findings.append(
                    Finding(
                        source,
                        obj["type_meta"]["kind"],
                        obj["object_meta"]["name"],
                        check["check"]["id"],
                        comment["path"],
                        comment["summary"],
                    )
                )
    return findings


def matches(entry: dict[str, Any], finding: Finding) -> bool:
    """Whether an allow-list entry covers ``finding``: every field it gives is equal."""
    objects = entry.get("objects")
    return (
        entry["check"] == finding.check
        and finding.source in entry.get("sources", SOURCES)
        and (objects is None or f"{finding.kind}/{finding.name}" in objects)
        and entry.get("container", finding.container) == finding.container
        and entry.get("summary", finding.summary) == finding.summary
    )


def main() -> int:
    """Lint the three sources; print what fails, or the counts."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--counts", action="store_true", help="print findings per source and check")
    p.add_argument("--chart", type=Path, default=REPO / "deploy/statefulwebapp-operator")
    args = p.parse_args()
    kube_version = versions()["KUBE_VERSION"]
    findings = [
        finding
        for source in SOURCES
        for finding in score(source, render(source, args.chart, kube_version), kube_version)
    ]
    if args.counts:
        counts = collections.Counter((f.source, f.check) for f in findings)
        for source in SOURCES:
            total = sum(n for (s, _), n in counts.items() if s == source)
            print(f"{source}: {total}")
            for (s, check), n in sorted(counts.items()):
                if s == source:
                    print(f"  {check}: {n}")
        return 0
    entries = yaml.safe_load(ALLOW.read_text()) or []
    refused = [f for f in findings if not any(matches(e, f) for e in entries)]
    stale = [e for e in entries if not any(matches(e, f) for f in findings)]
    for finding in refused:
        print(f"kube-score: {finding}", file=sys.stderr)
    for entry in stale:
        print(
            f"{ALLOW.relative_to(REPO)}: the entry for {entry['check']} "
            f"{entry.get('objects', '')} matches no finding any more: remove it",
            file=sys.stderr,
        )
    if refused:
        print(
            f"kube-score: {len(refused)} finding(s) not on {ALLOW.relative_to(REPO)}: fix them, "
            "or add them there saying why they stay",
            file=sys.stderr,
        )
    if refused or stale:
        return 1
    print(f"kube-score: {len(findings)} finding(s), each on the allow-list with its reason")
    return 0


if __name__ == "__main__":
    sys.exit(main())
