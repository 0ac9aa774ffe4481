"""The fields a manager owns on a live object, as the API server records them, and the fields
of a rendering in the same terms: the definition of "a child is up to date" in issue terms.

After an apply, the operator's field set is exactly the rendering's, so the two sets must be
equal; a field dropped from the rendering but still owned (the bug this guards against) shows
up as an extra path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from statefulwebapp.specs import names

ATOMIC = frozenset(
    {
        "tolerations",
        "selector",
        "nodeSelector",
        "labelSelector",
        "fieldRef",
        "podSelector",
        "ingress",
    }
)
"""Fields that server-side apply owns whole: the tolerations list (``listType=atomic``), label
selectors (``structType=atomic`` / ``mapType=atomic``, a spread constraint's labelSelector and
a NetworkPolicy's podSelector too), a pod's nodeSelector (``mapType=atomic``), an env var's
downward-API ``fieldRef`` (``ObjectFieldSelector``, ``structType=atomic``), a NetworkPolicy's
ingress rules (``listType=atomic``)."""
ATOMIC_ITEMS = frozenset({"ownerReferences"})
"""Lists whose items are owned whole (an OwnerReference is ``structType=atomic``)."""


def owned_paths(obj: Mapping[str, Any], manager: str = names.MANAGER) -> set[str]:
    """Leaf paths (``a.b[*].c``) that ``manager`` owns on ``obj`` through Apply."""
    entries = [
        entry
        for entry in obj["metadata"].get("managedFields") or []
        if entry["manager"] == manager and entry["operation"] == "Apply"
    ]
    assert len(entries) == 1, f"expected one Apply entry of {manager}, got {len(entries)}"
    return set(_fields_v1(entries[0]["fieldsV1"], ""))


def _fields_v1(node: Mapping[str, Any], path: str) -> Iterator[str]:
    children = {key: value for key, value in node.items() if key != "."}
    if not children:
        yield path
        return
    for key, value in children.items():
        kind, _, name = key.partition(":")
        step = f"{path}.{name}" if kind == "f" and path else name if kind == "f" else f"{path}[*]"
        yield from _fields_v1(value, step)


def rendered_paths(manifest: Mapping[str, Any]) -> set[str]:
    """Leaf paths of a rendering, lists of objects as ``[*]``."""
    return set(_leaves(manifest, ""))


def _leaves(value: Any, path: str) -> Iterator[str]:
    last = path.rsplit(".", 1)[-1]
    if last in ATOMIC:
        yield path
    elif last in ATOMIC_ITEMS:
        yield f"{path}[*]"
    elif isinstance(value, Mapping) and value:
        for key, sub in value.items():
            yield from _leaves(sub, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        for item in value:
            yield from _leaves(item, f"{path}[*]")
    else:
        yield path


def rendering_fields(manifest: Mapping[str, Any]) -> set[str]:
    """The rendering's paths without apiVersion/kind/name/namespace, which no entry records."""
    skip = {"apiVersion", "kind", "metadata.name", "metadata.namespace"}
    return rendered_paths(manifest) - skip
