"""Events on an app, posted with the operator's own client (not kopf's: the apps' events come
from the informers' threads, where kopf has no event queue)."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest

from statefulwebapp.controllers.events import MESSAGE_LIMIT, EventRecorder
from tests.unit import fakeapi
from tests.unit.harness import app

EVENTS = "/api/v1/namespaces/default/events"


def test_a_warning_is_posted_as_a_core_event_on_the_app() -> None:
    api = fakeapi.FakeApi()
    body = app()
    EventRecorder(cast(Any, api)).event(
        body, "Warning", "NameConflict", "x" * 2000, logging.getLogger("test")
    )
    ((path, event),) = [(p, o) for p, o in api.objects.items() if p.startswith(EVENTS)]
    assert event["involvedObject"] == {
        "apiVersion": body["apiVersion"],
        "kind": "StatefulWebApp",
        "name": "web",
        "namespace": "default",
        "uid": "uid-app",
    }
    assert (event["type"], event["reason"]) == ("Warning", "NameConflict")
    assert len(event["message"]) == MESSAGE_LIMIT, "the API server refuses longer ones"
    assert path.startswith(f"{EVENTS}/web.")
    assert event["source"] == {"component": "statefulwebapp-operator"}


def test_an_event_the_server_refuses_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    api = fakeapi.FakeApi()
    api.answers[("POST", EVENTS)] = fakeapi.error(403, "Forbidden", "cannot create events")
    EventRecorder(cast(Any, api)).event(
        app(), "Warning", "NameConflict", "in the way", logging.getLogger("test")
    )
    assert "could not post the NameConflict event" in caplog.text
    assert "NameConflict: in the way" in caplog.text
