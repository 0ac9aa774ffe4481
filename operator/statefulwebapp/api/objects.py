"""The shapes every module passes around, and the API's time format: said once, here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

Key = tuple[str, str]
"""An app's (namespace, name): how caches, indexes and the work queue know it."""

Obj = Mapping[str, Any]
"""A Kubernetes object as read (from a cache, an index or a response): not to be changed."""

Manifest = dict[str, Any]
"""A Kubernetes object being built (a rendered child, a status): the renderers' output."""


def timestamp(at: datetime | None = None, *, micro: bool = False) -> str:
    """A time as the API writes it: ``2026-12-02T06:11:08Z``; ``at`` defaults to now (UTC).

    With ``micro``, to the microsecond: a ``MicroTime``, such as a Lease's renewTime.
    """
    return (at or datetime.now(UTC)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    )
