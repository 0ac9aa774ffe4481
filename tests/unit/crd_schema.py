"""Walking a CRD's OpenAPI schema, as the API server reads it: shared by the CRD tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Schema = dict[str, Any]


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every sub-schema below ``schema``: properties, array items and map values."""
    for key, sub in schema.get("properties", {}).items():
        child = f"{path}.{key}" if path else key
        yield child, sub
        yield from walk(sub, child)
    if isinstance(schema.get("items"), dict):
        yield f"{path}[]", schema["items"]
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield f"{path}[*]", schema["additionalProperties"]
        yield from walk(schema["additionalProperties"], f"{path}[*]")


def unknown_fields(obj: Any, schema: Schema, path: str = "") -> list[str]:
    """Paths in ``obj`` the schema does not declare (the API server would prune them)."""
    found: list[str] = []
    if isinstance(obj, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            child = f"{path}.{key}" if path else key
            if key in props:
                found += unknown_fields(value, props[key], child)
            elif isinstance(extra, dict):
                found += unknown_fields(value, extra, child)
            elif not extra and not schema.get("x-kubernetes-preserve-unknown-fields"):
                found.append(child)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found
