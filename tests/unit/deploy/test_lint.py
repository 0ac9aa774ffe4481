"""hack/lint/kube_score.py's allow-list rules and hack/render-sample.py, without kube-score.

`make lint-k8s` runs the linter itself; here, what decides its verdict: which finding an entry
covers, that every entry says why, and that the sample renders in both podSecurity modes.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import yaml

REPO = Path(__file__).resolve().parents[3]


def lint() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kube_score", REPO / "hack/lint/kube_score.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kube_score"] = module  # dataclasses look their module up by name.
    spec.loader.exec_module(module)
    return module


def test_an_entry_covers_a_finding_equal_on_every_field_it_gives() -> None:
    k = lint()
    finding = k.Finding(
        "chart", "Deployment", "op", "container-image-tag", "c", "Image with latest tag"
    )
    assert k.matches({"check": "container-image-tag"}, finding)
    assert k.matches({"check": "container-image-tag", "objects": ["Deployment/op"]}, finding)
    assert k.matches(
        {"check": "container-image-tag", "sources": ["chart"], "container": "c"}, finding
    )
    assert not k.matches({"check": "pod-networkpolicy"}, finding)
    assert not k.matches({"check": "container-image-tag", "sources": ["sample-default"]}, finding)
    assert not k.matches({"check": "container-image-tag", "objects": ["Pod/op"]}, finding)
    assert not k.matches({"check": "container-image-tag", "container": "d"}, finding)
    assert not k.matches({"check": "container-image-tag", "summary": "other"}, finding)


def test_every_allow_list_entry_says_why_and_names_known_sources() -> None:
    k = lint()
    entries = yaml.safe_load(k.ALLOW.read_text())
    assert entries
    for entry in entries:
        assert set(entry) <= {"check", "sources", "objects", "container", "summary", "why"}, entry
        assert entry["why"].strip(), entry
        assert set(entry.get("sources", k.SOURCES)) <= set(k.SOURCES), entry


def test_the_sample_renders_in_both_pod_security_modes() -> None:
    kinds = {}
    for mode in ("default", "restricted"):
        out = subprocess.run(
            [sys.executable, REPO / "hack/render-sample.py", "--pod-security", mode],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        docs = list(yaml.safe_load_all(out.stdout))
        kinds[mode] = sorted(doc["kind"] for doc in docs)
        (web,) = [doc for doc in docs if doc["kind"] == "StatefulSet"]
        context = web["spec"]["template"]["spec"].get("securityContext", {})
        assert context.get("runAsNonRoot", False) is (mode == "restricted")
    assert kinds["default"] == kinds["restricted"]
    assert "DaemonSet" in kinds["default"]
    assert "CronJob" in kinds["default"]
