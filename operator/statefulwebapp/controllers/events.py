"""Events posted on an app (client-go's ``record.EventRecorder``), through kopf's event queue.

Outside kopf's context (a unit test, a thread started without kopf's context) there is no
event queue: the logger tells instead, so nothing is lost silently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]
"""A logger, or kopf's per-object adapter."""


class EventRecorder:
    """Posts an app's Events; each pass or step copies kopf's context into its thread."""

    def event(
        self, app: Mapping[str, Any], kind: str, reason: str, message: str, logger: Log
    ) -> None:
        """Post a ``kind`` (Normal, Warning) Event with ``reason`` and ``message`` on ``app``."""
        try:
            kopf.event(
                kopf.Body(cast(kopf.RawBody, dict(app))), type=kind, reason=reason, message=message
            )
        except LookupError:
            say = logger.warning if kind == "Warning" else logger.info
            say("%s: %s", reason, message)
