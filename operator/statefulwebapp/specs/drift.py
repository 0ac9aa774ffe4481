"""When a child needs an apply: the drift rule, pure and without I/O.

A child is up to date when both hold:

1. **It was last applied from the rendering we would send now.** Every rendering is stamped with
   a digest of itself (annotation :data:`DIGEST`) as part of what is applied; a live child whose
   stamp differs was applied from an older spec. This is what catches a field *dropped* from the
   rendering (``resources`` removed, a toleration turned off): a value comparison cannot see a
   field we no longer render, but server-side apply removes it as soon as we apply without it.
2. **Nobody changed what we set.** Every field of the rendering has the same value on the live
   object (:func:`is_subset`); fields the API server defaults or other managers own are not
   looked at. Values are compared with the form the API server stored at our last apply
   (:func:`stored_form`, e.g. a quantity ``0.5`` comes back as ``500m``), so a canonical form
   never looks like drift.

docs/architecture.md says why this and not managed fields or a dry-run per pass.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from statefulwebapp.specs import names

DIGEST = f"{names.ANNOTATION_PREFIX}/rendering"
"""Annotation on every child: digest of the rendering it was last applied from."""


def digest(manifest: Mapping[str, Any]) -> str:
    """A short, stable digest of a rendering (key order and whitespace do not matter)."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stamp(manifest: Mapping[str, Any], known: str | None = None) -> dict[str, Any]:
    """``manifest`` with its own digest among its annotations, ready to apply.

    ``known``: that digest, computed before for this same rendering.
    """
    meta = dict(manifest["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), DIGEST: known or digest(manifest)}
    return {**manifest, "metadata": meta}


def stamp_of(obj: Mapping[str, Any] | None) -> str | None:
    """The digest a live child was last applied with, if any."""
    if obj is None:
        return None
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(DIGEST)


def up_to_date(
    stamped: Mapping[str, Any],
    live: Mapping[str, Any] | None,
    stored: Mapping[str, Any] | None = None,
) -> bool:
    """Whether ``live`` needs no apply of ``stamped`` (a :func:`stamp` ed rendering).

    ``stored`` is the rendering as the API server stored it at our last apply of this same
    digest (:func:`stored_form`), when it differed from the rendering; without it the rendering
    itself is compared.
    """
    if live is None or stamp_of(live) != stamp_of(stamped):
        return False
    return is_subset(stored if stored is not None else stamped, live)


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field set in ``desired`` has the same value in ``live``.

    Fields the API server defaults or other managers own are ignored. Lists whose items all
    carry a ``name`` (containers, volumes, env, ports) are matched by name, as server-side apply
    merges them: an item someone else added (a sidecar) is theirs. Other lists must match
    element-wise, because server-side apply replaces them whole.
    """
    # dict, not Mapping: renderings and decoded JSON are dicts, and an ABC's isinstance was
    # a third of this function's time, run for every field of every child on every pass.
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            is_subset(value, live.get(key)) for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list):
            return False
        if _named(desired):
            by_name = {item.get("name"): item for item in live if isinstance(item, dict)}
            return all(is_subset(item, by_name.get(item["name"])) for item in desired)
        return len(desired) == len(live) and all(
            is_subset(d, v) for d, v in zip(desired, live, strict=True)
        )
    return bool(desired == live)


def stored_form(stamped: Mapping[str, Any], answer: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the API server made of the fields of ``stamped``, read from its apply ``answer``.

    None when it stored them exactly as rendered (the usual case, and nothing to remember).
    Otherwise the rendering's shape with the server's values (``0.5`` -> ``500m``, a field it
    dropped -> None), to compare the live object with from then on.
    """
    if is_subset(stamped, answer):
        return None
    projected: dict[str, Any] = _project(stamped, answer)
    return projected


def _project(desired: Any, answer: Any) -> Any:
    if isinstance(desired, Mapping):
        source = answer if isinstance(answer, Mapping) else {}
        return {key: _project(value, source.get(key)) for key, value in desired.items()}
    if isinstance(desired, list):
        items = answer if isinstance(answer, list) else []
        if _named(desired):
            by_name = {item.get("name"): item for item in items if isinstance(item, Mapping)}
            return [_project(item, by_name.get(item["name"])) for item in desired]
        if len(items) != len(desired):
            return items
        return [_project(d, a) for d, a in zip(desired, items, strict=True)]
    return answer


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)
