"""The StatefulWebAppRestore CRD, read as YAML: what ``kubectl explain swar`` shows, the names
and columns, the immutable spec, and that the status the operator writes is declared. What
the rules accept is tested against the real API server in tests/e2e/test_restore.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from statefulwebapp.api import kinds
from statefulwebapp.api.model import RestoreSpec
from statefulwebapp.specs import restoring
from tests.unit.crd_schema import unknown_fields, walk
from tests.unit.scenario import SCENARIO

CRD_PATH = Path(__file__).resolve().parents[3] / "crds/statefulwebapprestores.apps.k8slab.io.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


@pytest.fixture(scope="module")
def root(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_names_columns_and_subresources(crd: dict[str, Any]) -> None:
    assert crd["spec"]["names"]["kind"] == kinds.RESTORE.name
    assert crd["spec"]["names"]["plural"] == kinds.RESTORE.plural
    assert crd["spec"]["names"]["shortNames"] == ["swar"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["App", "Archive", "Phase", "Restored", "Node", "Age"]


def test_every_property_has_a_description(root: dict[str, Any]) -> None:
    # Under the root's metadata the API server takes no description (test_crd.py says more).
    undocumented = [
        path
        for path, sub in walk(root)
        if path != "metadata" and not str(sub.get("description", "")).strip()
    ]
    assert undocumented == []


def test_the_spec_is_immutable_and_the_archive_a_name_the_agent_writes(
    root: dict[str, Any],
) -> None:
    spec = root["properties"]["spec"]
    (rule,) = spec["x-kubernetes-validations"]
    assert rule["rule"] == "self == oldSelf"
    assert spec["required"] == ["appName"]
    archive = spec["properties"]["archive"]
    assert archive["default"] == RestoreSpec.archive
    pattern = re.compile(archive["pattern"])
    for good in (
        "latest",
        "default-web-20261202T031500Z.tar.gz",
        "team-a-shop.v2-20260101T000000Z.tar.gz",
    ):
        assert pattern.match(good), good
    for bad in (
        "",
        "newest",
        "web.tar.gz",
        "../x-20261202T031500Z.tar.gz",
        "-x-20261202T031500Z.tar.gz",
    ):
        assert not pattern.match(bad), bad


def test_the_status_the_operator_writes_is_declared(root: dict[str, Any]) -> None:
    schema = root["properties"]["status"]
    app = dict(SCENARIO, metadata={**SCENARIO["metadata"]})
    spec = RestoreSpec(name="back", namespace="default", uid="u", app_name="web")
    accepted = restoring.decide(spec, {}, restoring.Observed(app=app, first="back"), "T")
    refused = restoring.decide(spec, {}, restoring.Observed(app=None), "T")
    result = {
        "result": "restored",
        "archive": "a",
        "node": "n",
        "message": "m",
        "candidates": ["n/a"],
    }
    done = restoring.decide(
        spec,
        {"phase": "Running"},
        restoring.Observed(
            app=app,
            job={"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
            result=result,
        ),
        "T",
    )
    for action in (accepted, refused, done):
        assert action.status is not None
        assert unknown_fields(action.status, schema) == []
    conditions = schema["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
