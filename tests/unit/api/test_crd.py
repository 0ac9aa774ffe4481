"""Tests for the StatefulWebApp CRD, read as YAML: no cluster needed.

The CRD is the one statement of what a valid spec is; ``statefulwebapp.api.model`` reads the same
fields with the same defaults. These tests hold the two in step (defaults, the status the
operator writes), check what ``kubectl explain`` shows (a description everywhere) and that the
sample in crds/samples/ is an object both accept. What the rules accept is tested against the
real API server, in tests/e2e/test_admission.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from statefulwebapp.api import model, parse
from statefulwebapp.specs import names, status
from tests.unit.crd_schema import Schema, unknown_fields, walk

ROOT = Path(__file__).resolve().parents[3]
CRD_PATH = ROOT / "crds/statefulwebapps.apps.k8slab.io.yaml"
SAMPLE_PATH = ROOT / "crds/samples/web.yaml"

MINIMAL: dict[str, Any] = {"storage": {"nfs": {"server": "211.183.3.100", "path": "/shared"}}}


def body(spec: dict[str, Any], name: str = "web") -> dict[str, Any]:
    """A StatefulWebApp object as the operator receives it."""
    return {
        "apiVersion": f"{model.GROUP}/{model.VERSION}",
        "kind": model.KIND,
        "metadata": {"name": name, "namespace": "default", "uid": "0000-1111"},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    with CRD_PATH.open() as f:
        loaded: dict[str, Any] = yaml.safe_load(f)
    return loaded


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    only: dict[str, Any]
    (only,) = crd["spec"]["versions"]
    return only


@pytest.fixture(scope="module")
def root(version: dict[str, Any]) -> Schema:
    schema: Schema = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.fixture(scope="module")
def spec_schema(root: Schema) -> Schema:
    schema: Schema = root["properties"]["spec"]
    return schema


def at(schema: Schema, path: str) -> Schema:
    """The sub-schema of a dotted property path such as ``spec.storage.nfs``."""
    for key in path.split("."):
        schema = schema["properties"][key]
    return schema


def apply_defaults(obj: Any, schema: Schema) -> Any:
    """Structural defaulting as the API server does it: fill in, then descend."""
    if isinstance(obj, dict):
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
        for key, value in obj.items():
            if key in props:
                apply_defaults(value, props[key])
            elif isinstance(schema.get("additionalProperties"), dict):
                apply_defaults(value, schema["additionalProperties"])
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            apply_defaults(item, schema["items"])
    return obj


def rules(schema: Schema) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every CEL rule of the schema, with the path of the schema carrying it."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield "<root>", rule
    for path, sub in walk(schema):
        for rule in sub.get("x-kubernetes-validations", []):
            yield path, rule


# -- identity ---------------------------------------------------------------------------------


def test_names_and_version(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{model.PLURAL}.{model.GROUP}"
    spec = crd["spec"]
    assert spec["group"] == model.GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == model.KIND
    assert spec["names"]["plural"] == model.PLURAL
    assert spec["names"]["singular"] == "statefulwebapp"
    assert spec["names"]["shortNames"] == ["swa"]
    assert "all" not in spec["names"].get("categories", [])
    assert version["name"] == model.VERSION
    assert version["served"] is True
    assert version["storage"] is True


def test_subresources(version: dict[str, Any]) -> None:
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_scale_paths_point_at_declared_fields(root: Schema) -> None:
    assert at(root, "spec.replicas")["type"] == "integer"
    assert at(root, "status.replicas")["type"] == "integer"
    assert at(root, "status.selector")["type"] == "string"


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Ready": ("string", ".status.ready"),
        "Storage": ("string", ".status.storage"),
        "Backup": ("string", ".status.backup"),
        "Date-Log": ("string", ".status.dateLog"),
        "Status": ("string", '.status.conditions[?(@.type=="Ready")].reason'),
        "Age": ("date", ".metadata.creationTimestamp"),
    }
    assert [c["name"] for c in version["additionalPrinterColumns"]][-1] == "Age"


# -- documentation ----------------------------------------------------------------------------


def test_every_property_has_a_description(root: Schema) -> None:
    # The API server refuses anything but name and generateName under the root's metadata,
    # descriptions included; kubectl explain shows the standard ObjectMeta docs there anyway.
    undocumented = [
        path
        for path, sub in walk(root)
        if path != "metadata" and not str(sub.get("description", "")).strip()
    ]
    assert str(root.get("description", "")).strip()
    assert undocumented == []


def test_every_default_is_documented(root: Schema) -> None:
    for path, sub in walk(root):
        if "default" in sub and sub["default"] != {} and sub.get("type") != "object":
            assert "Default:" in sub["description"], path


# -- defaults and limits agree with the model ----------------------------------------------------

# CRD path below spec -> how the model exposes the same default.
DEFAULTS: dict[str, Callable[[model.AppSpec], Any]] = {
    "replicas": lambda a: a.replicas,
    "image": lambda a: a.image,
    "imagePullPolicy": lambda a: a.image_pull_policy,
    "port": lambda a: a.port,
    "readOnlyRootFilesystem": lambda a: a.read_only_root_filesystem,
    "writablePaths": lambda a: list(a.writable_paths),
    "podSecurity": lambda a: "restricted" if a.restricted else "default",
    "storage.capacity": lambda a: a.storage.capacity,
    "storage.mountPath": lambda a: a.storage.mount_path,
    "probes.readiness.enabled": lambda a: a.probes.readiness.enabled,
    "probes.readiness.periodSeconds": lambda a: a.probes.readiness.period_seconds,
    "probes.readiness.timeoutSeconds": lambda a: a.probes.readiness.timeout_seconds,
    "probes.readiness.failureThreshold": lambda a: a.probes.readiness.failure_threshold,
    "probes.readiness.initialDelaySeconds": lambda a: a.probes.readiness.initial_delay_seconds,
    "probes.liveness.enabled": lambda a: a.probes.liveness.enabled,
    "probes.liveness.periodSeconds": lambda a: a.probes.liveness.period_seconds,
    "probes.liveness.timeoutSeconds": lambda a: a.probes.liveness.timeout_seconds,
    "probes.liveness.failureThreshold": lambda a: a.probes.liveness.failure_threshold,
    "probes.liveness.initialDelaySeconds": lambda a: a.probes.liveness.initial_delay_seconds,
    "disruptionBudget.enabled": lambda a: a.disruption_budget.enabled,
    "disruptionBudget.maxUnavailable": lambda a: a.disruption_budget.max_unavailable,
    "rollout.replaceStuckPods": lambda a: a.rollout.replace_stuck_pods,
    "topologySpread.enabled": lambda a: a.topology_spread.enabled,
    "topologySpread.maxSkew": lambda a: a.topology_spread.max_skew,
    "topologySpread.whenUnsatisfiable": lambda a: a.topology_spread.when_unsatisfiable,
    "networkPolicy.enabled": lambda a: a.network_policy.enabled,
    "backup.enabled": lambda a: a.backup.enabled,
    "backup.image": lambda a: a.backup.image,
    "backup.imagePullPolicy": lambda a: a.backup.image_pull_policy,
    "backup.intervalSeconds": lambda a: a.backup.interval_seconds,
    "backup.keep": lambda a: a.backup.keep,
    "backup.tolerateControlPlane": lambda a: a.backup.tolerate_control_plane,
    "dateLogger.enabled": lambda a: a.date_logger.enabled,
    "dateLogger.schedule": lambda a: a.date_logger.schedule,
    "dateLogger.image": lambda a: a.date_logger.image,
    "dateLogger.imagePullPolicy": lambda a: a.date_logger.image_pull_policy,
    "dateLogger.readOnlyRootFilesystem": lambda a: a.date_logger.read_only_root_filesystem,
    "dateLogger.startingDeadlineSeconds": lambda a: a.date_logger.starting_deadline_seconds,
    "dateLogger.suspend": lambda a: a.date_logger.suspend,
    "dateLogger.successfulJobsHistoryLimit": lambda a: a.date_logger.successful_jobs_history_limit,
    "dateLogger.failedJobsHistoryLimit": lambda a: a.date_logger.failed_jobs_history_limit,
}


MODEL_DEFAULTS: dict[str, Callable[[model.AppSpec], Any]] = {
    "resources": lambda a: a.resources.to_k8s(),
    "backup.resources": lambda a: a.backup.resources.to_k8s(),
    "dateLogger.resources": lambda a: a.date_logger.resources.to_k8s(),
}
"""Blocks the model defaults, not the CRD: a CRD default is stored in the app, and a later
``kubectl apply`` of part of the block (only limits, say) would merge into it instead of
replacing it."""


@pytest.mark.parametrize("path", sorted(MODEL_DEFAULTS))
def test_resource_blocks_are_defaulted_by_the_model_as_their_description_says(
    spec_schema: Schema, path: str
) -> None:
    sub = at(spec_schema, path)
    assert "default" not in sub
    said = " ".join(sub["description"].split()).split("Default:", 1)[1]
    resources = MODEL_DEFAULTS[path](parse.parse(body(copy.deepcopy(MINIMAL))))
    for half in ("requests", "limits"):
        part = (
            said.split(f"{half} of", 1)[1].split("limits of", 1)[0]
            if half == "requests"
            else said.split("limits of", 1)[1]
        )
        for resource, quantity in resources.get(half, {}).items():
            assert f"{resource} {quantity}" in part, (path, half, resource, said)


@pytest.mark.parametrize("path", sorted(DEFAULTS))
def test_crd_default_equals_model_default(spec_schema: Schema, path: str) -> None:
    app = parse.parse(body(copy.deepcopy(MINIMAL)))
    assert at(spec_schema, path)["default"] == DEFAULTS[path](app)


def test_every_crd_default_is_compared(spec_schema: Schema) -> None:
    with_default = {path for path, sub in walk(spec_schema) if "default" in sub}
    # These objects default to {} only so that their fields' defaults apply.
    holders = {
        "backup",
        "dateLogger",
        "probes",
        "probes.readiness",
        "probes.liveness",
        "topologySpread",
        "rollout",
        "disruptionBudget",
        "networkPolicy",
    }
    for holder in holders:
        assert at(spec_schema, holder)["default"] == {}, holder
    assert with_default - holders == set(DEFAULTS)


def test_defaulted_minimal_spec_parses_like_the_bare_one(spec_schema: Schema) -> None:
    defaulted = apply_defaults(copy.deepcopy(MINIMAL), spec_schema)
    assert set(defaulted) >= {"replicas", "image", "port", "backup", "dateLogger"}
    # The model's, not the CRD's (MODEL_DEFAULTS): nothing stored.
    assert "resources" not in defaulted
    assert "resources" not in defaulted["backup"]
    assert "resources" not in defaulted["dateLogger"]
    assert parse.parse(body(defaulted)) == parse.parse(body(copy.deepcopy(MINIMAL)))


def test_optional_fields_the_operator_defaults_have_no_crd_default(spec_schema: Schema) -> None:
    # serviceName defaults to metadata.name and storage.request to storage.capacity: neither can
    # be expressed as a static default, so the operator fills them in.
    assert "default" not in at(spec_schema, "serviceName")
    assert "default" not in at(spec_schema, "storage.request")
    # runAsUser has no CRD default so that the CRD can tell it was set (it is refused without
    # podSecurity: restricted); the model's default is the nginx user.
    assert "default" not in at(spec_schema, "runAsUser")
    app = parse.parse(body(copy.deepcopy(MINIMAL)))
    assert app.service_name == "web"
    assert app.storage.request == app.storage.capacity
    assert app.run_as_user == 101


def integer_fields(spec_schema: Schema) -> list[tuple[str, int, int]]:
    return [
        (path, sub["minimum"], sub["maximum"])
        for path, sub in walk(spec_schema)
        if sub.get("type") == "integer"
    ]


def with_value(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(MINIMAL)
    *parents, leaf = path.split(".")
    cur = spec
    for key in parents:
        cur = cur.setdefault(key, {})
    cur[leaf] = value
    return spec


def test_integer_fields_have_bounds(spec_schema: Schema) -> None:
    found = {path for path, _, _ in integer_fields(spec_schema)}
    assert found == {
        "replicas",
        "port",
        "runAsUser",
        *(
            f"probes.{which}.{field}"
            for which in ("readiness", "liveness")
            for field in (
                "periodSeconds",
                "timeoutSeconds",
                "failureThreshold",
                "initialDelaySeconds",
            )
        ),
        "topologySpread.maxSkew",
        "tolerations[].tolerationSeconds",
        "backup.intervalSeconds",
        "backup.keep",
        "backup.tolerations[].tolerationSeconds",
        "dateLogger.successfulJobsHistoryLimit",
        "dateLogger.failedJobsHistoryLimit",
        "dateLogger.startingDeadlineSeconds",
    }


def test_default_images_are_pinned_and_pulled_only_when_missing(spec_schema: Schema) -> None:
    for path in ("image", "backup.image", "dateLogger.image"):
        image = at(spec_schema, path)["default"]
        assert ":" in image, path
        assert not image.endswith(":latest"), path
    for path in ("imagePullPolicy", "backup.imagePullPolicy", "dateLogger.imagePullPolicy"):
        policy = at(spec_schema, path)
        assert policy["enum"] == ["Always", "IfNotPresent", "Never"], path
        assert policy["default"] == "IfNotPresent", path


def test_every_resources_field_has_one_shape_and_says_how_to_remove_it(
    spec_schema: Schema,
) -> None:
    shapes = []
    for path in ("resources", "backup.resources", "dateLogger.resources"):
        sub = at(spec_schema, path)
        assert "{} (applied, or a JSON patch) means none" in " ".join(sub["description"].split()), (
            path
        )
        assert "default" not in sub, path
        shapes.append(
            {
                half: sub["properties"][half]["additionalProperties"]["x-kubernetes-int-or-string"]
                for half in ("requests", "limits")
            }
        )
    assert shapes[0] == shapes[1] == shapes[2]
    # Throttling a web server only delays its answers: its default has no CPU limit.
    minimal = parse.parse(body(copy.deepcopy(MINIMAL)))
    assert "cpu" not in minimal.resources.limits
    assert minimal.backup.resources.limits["cpu"] == "100m"


def test_writable_paths_are_a_set_of_absolute_directories(spec_schema: Schema) -> None:
    paths = at(spec_schema, "writablePaths")
    assert paths["x-kubernetes-list-type"] == "set"
    assert paths["maxItems"] == 16
    assert paths["default"] == list(model.DEFAULT_WRITABLE_PATHS)
    (rule,) = paths["items"]["x-kubernetes-validations"]
    assert "startsWith('/')" in rule["rule"]
    (clash,) = [r for r in spec_schema["x-kubernetes-validations"] if "writablePaths" in r["rule"]]
    assert clash["fieldPath"] == ".writablePaths"
    assert "self.storage.mountPath in self.writablePaths" in clash["rule"]


# -- validation rules -------------------------------------------------------------------------


def test_every_rule_explains_itself(root: Schema) -> None:
    for path, rule in rules(root):
        text = rule.get("message") or rule.get("messageExpression")
        assert text, f"{path}: rule {rule['rule']!r} has no message"
        assert len(text) > 40, f"{path}: message too terse to tell the user what to do"


def test_strings_checked_by_cel_are_bounded(root: Schema) -> None:
    # Unbounded strings and maps make the API server's CEL cost estimate refuse the CRD.
    for path, sub in walk(root):
        if sub.get("x-kubernetes-validations") and sub.get("type") == "string":
            assert "maxLength" in sub, path
        if isinstance(sub.get("additionalProperties"), dict):
            assert "maxProperties" in sub, path
            assert "maxLength" in sub["additionalProperties"], path


def root_rule(root: Schema, needle: str) -> dict[str, Any]:
    (rule,) = [r for r in root["x-kubernetes-validations"] if needle in r["rule"]]
    found: dict[str, Any] = rule
    return found


def test_name_length_rule_matches_the_cronjob_limit(root: Schema) -> None:
    rule = root_rule(root, "size()")
    assert rule["rule"] == f"self.metadata.name.size() <= {names.MAX_APP_NAME}"
    assert names.MAX_APP_NAME == 44
    assert "44" in rule["message"]
    assert "-datelog" in rule["message"]
    assert "52" in rule["message"]
    assert rule["fieldPath"] == ".metadata.name"


def test_storage_nfs_is_required_and_its_export_immutable(spec_schema: Schema) -> None:
    assert "storage" in spec_schema["required"]
    storage = at(spec_schema, "storage")
    assert storage["required"] == ["nfs"]
    nfs = at(storage, "nfs")
    assert sorted(nfs["required"]) == ["path", "server"]
    (rule,) = nfs["x-kubernetes-validations"]
    # The export is fixed; its mount options are not (the PV's mountOptions may change).
    assert rule["rule"] == "self.server == oldSelf.server && self.path == oldSelf.path"
    assert rule["message"].startswith("storage.nfs.server and storage.nfs.path are immutable")
    assert "create a new StatefulWebApp" in rule["message"]
    assert "mountOptions may change" in rule["message"]


def test_mount_options_are_one_option_per_entry(spec_schema: Schema) -> None:
    options = at(spec_schema, "storage.nfs.mountOptions")
    assert options["type"] == "array"
    assert options["maxItems"] == 32
    item = options["items"]
    assert item["minLength"] == 1
    (rule,) = item["x-kubernetes-validations"]
    assert "contains(',')" in rule["rule"]
    assert "no default" not in options["description"]
    assert "mounted again" in options["description"]


def test_web_and_backup_tolerations_share_one_schema(spec_schema: Schema) -> None:
    web = at(spec_schema, "tolerations")["items"]
    backup = at(spec_schema, "backup.tolerations")["items"]
    assert web == backup
    assert web["properties"]["operator"]["enum"] == ["Equal", "Exists"]


def test_storage_size_rules(spec_schema: Schema) -> None:
    at_most, immutable = at(spec_schema, "storage")["x-kubernetes-validations"]
    assert "quantity(self.request).compareTo(quantity(self.capacity)) <= 0" in at_most["rule"]
    assert at_most["fieldPath"] == ".request"
    assert "oldSelf.capacity" in immutable["rule"]
    assert immutable["message"].startswith("storage.capacity and storage.request are immutable")


def test_optional_old_self_only_where_creation_must_be_checked_too(root: Schema) -> None:
    with_old = [(p, r) for p, r in rules(root) if "oldSelf" in r["rule"]]
    optional = sorted(p for p, r in with_old if r.get("optionalOldSelf"))
    assert optional == ["spec"]
    (rule,) = [r for p, r in with_old if r.get("optionalOldSelf")]
    assert "oldSelf.hasValue()" in rule["rule"]


# -- status -----------------------------------------------------------------------------------


def test_status_the_operator_writes_is_declared(root: Schema) -> None:
    app = parse.parse(body(copy.deepcopy(MINIMAL)))
    written = status.compute(app, generation=1, children={}, now="2025-01-01T00:00:00Z")
    assert unknown_fields(written, root["properties"]["status"]) == []
    schema = root["properties"]["status"]
    assert schema["properties"]["observedGeneration"]["format"] == "int64"
    assert written["dateLog"] == "ok"
    assert sorted(schema["properties"]["dateLog"]["enum"]) == sorted(status.DATE_LOG_STATES)


def test_conditions_are_a_map_keyed_by_type(root: Schema) -> None:
    conditions = at(root, "status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]
    assert set(conditions["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
    }


# -- sample -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    with SAMPLE_PATH.open() as f:
        loaded: dict[str, Any] = yaml.safe_load(f)
    return loaded


def test_sample_declares_only_known_fields(sample: dict[str, Any], root: Schema) -> None:
    assert sample["apiVersion"] == f"{model.GROUP}/{model.VERSION}"
    assert sample["kind"] == model.KIND
    assert unknown_fields(sample["spec"], root["properties"]["spec"], "spec") == []


def test_sample_is_the_reference_scenario(sample: dict[str, Any], spec_schema: Schema) -> None:
    obj = copy.deepcopy(sample)
    obj["metadata"].update(namespace="default", uid="0000-1111")
    app = parse.parse(obj)
    assert app.name == "web"
    assert app.replicas == 3
    assert app.image == model.DEFAULT_IMAGE
    assert app.service_name == "nginx"
    assert app.storage.nfs == model.NfsSource(server="211.183.3.100", path="/shared")
    assert app.storage.capacity == "100Mi"
    assert app.storage.request == "10Mi"
    assert app.backup == model.Backup()
    assert app.date_logger == model.DateLogger()
    assert app.date_logger.schedule == "*/1 * * * *"
    # The API server's defaults do not change what the operator makes of it.
    obj["spec"] = apply_defaults(obj["spec"], spec_schema)
    assert parse.parse(obj) == app
