"""The spec model: defaults, and a clear SpecError for what the schema cannot check."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from statefulwebapp.model import SpecError, cron_problem, parse
from statefulwebapp.quantity import parse_quantity


def body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
        "spec": {"storage": {"nfs": {"server": "nfs.example", "path": "/shared"}}},
    }
    base["spec"].update(copy.deepcopy(spec))
    return base


def test_defaults_match_the_api_contract() -> None:
    app = parse(body())
    assert (app.replicas, app.image, app.service_name, app.port) == (1, "nginx", "web", 80)
    assert (app.storage.capacity, app.storage.request) == ("100Mi", "100Mi")
    assert app.storage.mount_path == "/usr/share/nginx/html"
    assert app.backup.enabled
    assert app.backup.image == "busybox"
    assert app.backup.tolerate_control_plane
    assert app.backup.resources.to_k8s() == {"limits": {"cpu": "100m", "memory": "200Mi"}}
    assert app.date_logger.schedule == "*/1 * * * *"
    assert app.date_logger.successful_jobs_history_limit == 3
    assert app.date_logger.failed_jobs_history_limit == 1


def test_request_defaults_to_capacity() -> None:
    assert (
        parse(
            body(storage={"nfs": {"server": "a", "path": "/x"}, "capacity": "1Gi"})
        ).storage.request
        == "1Gi"
    )


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"replicas": -1}, "spec.replicas", "between 0 and 100"),
        ({"replicas": 5000}, "spec.replicas", "between 0 and 100"),
        ({"port": 70000}, "spec.port", "between 1 and 65535"),
        ({"image": ""}, "spec.image", "non-empty"),
        ({"serviceName": "Bad_Name"}, "spec.serviceName", "DNS label"),
        ({"storage": {"nfs": {"path": "/x"}}}, "spec.storage.nfs.server", "required"),
        ({"storage": {"nfs": {"server": "a", "path": "rel"}}}, "spec.storage.nfs.path", "absolute"),
        ({"storage": {"nfs": {"server": "a", "path": "/x/../y"}}}, "spec.storage.nfs.path", ".."),
        (
            {"storage": {"nfs": {"server": "bad host!", "path": "/x"}}},
            "spec.storage.nfs.server",
            "host",
        ),
        (
            {"storage": {"nfs": {"server": "300.1.1.1", "path": "/x"}}},
            "spec.storage.nfs.server",
            "host",
        ),
        (
            {
                "storage": {
                    "nfs": {"server": "a", "path": "/x"},
                    "capacity": "10Mi",
                    "request": "1Gi",
                }
            },
            "spec.storage.request",
            "larger than",
        ),
        (
            {"storage": {"nfs": {"server": "a", "path": "/x"}, "capacity": "lots"}},
            "spec.storage.capacity",
            "quantity",
        ),
        ({"dateLogger": {"schedule": "every minute"}}, "spec.dateLogger.schedule", "5 fields"),
        ({"dateLogger": {"schedule": "61 * * * *"}}, "spec.dateLogger.schedule", "outside 0-59"),
        ({"backup": {"keep": 0}}, "spec.backup.keep", "between 1"),
        (
            {"backup": {"resources": {"limits": {"cpu": "fast"}}}},
            "spec.backup.resources.limits.cpu",
            "quantity",
        ),
    ],
)
def test_bad_input_names_the_field(spec: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse(body(**spec))
    assert err.value.field == field
    assert words in str(err.value)


def test_app_name_longer_than_the_cronjob_allows_is_refused() -> None:
    long = body()
    long["metadata"]["name"] = "a" * 45
    with pytest.raises(SpecError, match="at most 44"):
        parse(long)
    long["metadata"]["name"] = "a" * 44
    assert parse(long).name == "a" * 44


@pytest.mark.parametrize(
    "schedule", ["*/1 * * * *", "0 3 * * mon-fri", "@hourly", "5,35 */2 1-15 jan *"]
)
def test_valid_cron(schedule: str) -> None:
    assert cron_problem(schedule) is None


@pytest.mark.parametrize(
    "schedule",
    [
        "* * * *",
        "*/0 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "TZ=UTC * * * * *",
    ],
)
def test_invalid_cron(schedule: str) -> None:
    assert cron_problem(schedule)


@pytest.mark.parametrize(
    ("text", "value"),
    [("100Mi", 100 * 2**20), ("10M", 10**7), ("250m", 0.25), ("1.5Gi", 1.5 * 2**30), ("1e3", 1000)],
)
def test_quantities(text: str, value: float) -> None:
    assert parse_quantity(text) == value
