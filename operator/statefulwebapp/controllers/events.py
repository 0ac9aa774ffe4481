"""Events posted on an app (client-go's ``record.EventRecorder``), with the operator's own client.

Not through kopf: kopf's ``kopf.event`` posts only from the task of an object kopf itself is
handling, and the apps' events come from the operator's informers. An Event that cannot be
posted (no client, as in a unit test; the API server refusing it) is logged instead, so nothing
is lost silently.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pykube
import requests

from statefulwebapp.api import kinds
from statefulwebapp.api.objects import timestamp
from statefulwebapp.runtime import kube
from statefulwebapp.specs import names

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]
"""A logger, or kopf's per-object adapter."""

MESSAGE_LIMIT = 1024
"""The longest message the API server keeps in an Event (it refuses longer ones)."""


@dataclass
class EventRecorder:
    """Posts an app's Events."""

    api: pykube.HTTPClient | None = None
    """The client that posts them; None: they are logged only."""

    def event(
        self, app: Mapping[str, Any], kind: str, reason: str, message: str, logger: Log
    ) -> None:
        """Post a ``kind`` (Normal, Warning) Event with ``reason`` and ``message`` on ``app``."""
        if self.api is not None:
            try:
                kube.create(self.api, kinds.EVENT, manifest(app, kind, reason, message))
                return
            except (kube.ApiError, requests.RequestException) as err:
                logger.warning("could not post the %s event: %s", reason, err)
        say = logger.warning if kind == "Warning" else logger.info
        say("%s: %s", reason, message)


def manifest(app: Mapping[str, Any], kind: str, reason: str, message: str) -> dict[str, Any]:
    """A core/v1 Event on ``app``, as ``kubectl describe`` and ``kubectl get events`` show it."""
    meta = app.get("metadata") or {}
    now = timestamp()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}",
            "namespace": meta.get("namespace"),
        },
        "involvedObject": {
            "apiVersion": app.get("apiVersion"),
            "kind": app.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": kind,
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
        "source": {"component": names.MANAGER},
        "reportingComponent": names.MANAGER,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
