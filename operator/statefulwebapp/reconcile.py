"""The one idempotent reconcile: desired children from the spec, applied where they differ.

It runs for every event of the app (its creation, changes and the operator's start) and of any
of its children, so drift is repaired and the status recomputed from the same code path. It
reads the children from the operator's in-memory indexes, writes only what differs, and writes
the status only when it changed: a quiet cluster costs no requests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
import pykube

from statefulwebapp import kube, names, status
from statefulwebapp.model import AppSpec, SpecError, parse
from statefulwebapp.render import render_all

Obj = Mapping[str, Any]
Warn = Callable[[str, str], None]
"""Posts a Warning event on the app: ``warn(reason, message)``."""


@dataclass
class Outcome:
    """What one reconcile did, for logs and tests."""

    applied: list[str] = field(default_factory=list)
    """Children written (kind/name)."""
    deleted: list[str] = field(default_factory=list)
    """Children removed because the spec disabled them."""
    problem: status.Problem | None = None
    """Why the app is not reconciled, if it is not."""
    status_written: bool = False
    """Whether the status subresource was patched."""
    written_version: str | None = None
    """The app's resourceVersion after that status write, if the API server returned one."""
    written_status: dict[str, Any] | None = None
    """The status as written; newer than what the watch has shown until it shows that version."""
    status_held: bool = False
    """Whether a progress-only status change was held back (``progress_due`` was False)."""


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field we set in ``desired`` has the same value in ``live``.

    Fields the API server defaults or other managers own are ignored; lists must match
    element-wise, because server-side apply replaces the lists we render.
    """
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            is_subset(value, live.get(key)) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_subset(d, v) for d, v in zip(desired, live, strict=True))
        )
    return bool(desired == live)


def owned(app: AppSpec, obj: Obj) -> bool:
    """Whether ``obj`` belongs to this app (owner reference, or labels for the PV)."""
    meta = obj.get("metadata", {})
    if obj.get("kind") == "PersistentVolume":
        return names.volume_belongs(meta.get("labels") or {}, app.namespace, app.name)
    return any(ref.get("uid") == app.uid for ref in meta.get("ownerReferences") or [])


def reconcile(
    api: pykube.HTTPClient,
    *,
    body: Obj,
    observed: Mapping[str, Obj | None],
    warn: Warn,
    logger: kopf.Logger,
    progress_due: Callable[[], bool] = lambda: True,
) -> Outcome:
    """Bring the app's children in line with its spec and publish the recomputed status.

    ``observed`` maps each child kind to the object last seen by the watches (None if not
    seen). A missing child is looked up once before creating it, so an object of the same
    name that belongs to someone else is reported, never overwritten. A status change that is
    only progress (:func:`status.urgent`) is written if ``progress_due()`` says so (it is
    asked only then, so it may spend a budget); if not, ``status_held`` tells the caller to
    come back.
    """
    outcome = Outcome()
    meta = body.get("metadata", {})
    generation = int(meta.get("generation", 0))
    children = dict(observed)
    try:
        app = parse(body)
    except SpecError as err:
        outcome.problem = status.Problem("InvalidSpec", f"{err}; fix the field and re-apply")
        if _is_news(body, outcome.problem):
            warn("InvalidSpec", str(err))
        # Without a valid spec there is no model to compute a status from: report the
        # problem alone and touch no child.
        _publish(
            api,
            body,
            _invalid_status(body, generation, outcome.problem),
            outcome,
            progress_due=progress_due,
        )
        return outcome

    desired = render_all(app)
    try:
        outcome.problem = _find_conflict(api, app, desired, children)
        if outcome.problem is None:
            _converge(
                api,
                app=app,
                desired=desired,
                children=children,
                outcome=outcome,
                logger=logger,
            )
    except kube.ApiError as err:
        if err.terminating:
            # The namespace, and the app with it, is going away: nothing to repair or report.
            return outcome
        outcome.problem = status.Problem(
            "Forbidden" if err.forbidden else "ApplyFailed",
            f"{err}" + ("; grant the operator this permission" if err.forbidden else ""),
        )
    if outcome.problem is not None and _is_news(body, outcome.problem):
        warn(outcome.problem.reason, outcome.problem.message)
    new = status.compute(
        app,
        generation=generation,
        children=children,
        previous=(body.get("status") or {}).get("conditions") or [],
        problem=outcome.problem,
        now=_now(),
    )
    _publish(api, body, new, outcome, progress_due=progress_due)
    return outcome


def _find_conflict(
    api: pykube.HTTPClient,
    app: AppSpec,
    desired: Mapping[str, Obj | None],
    children: dict[str, Obj | None],
) -> status.Problem | None:
    for kind, manifest in desired.items():
        if manifest is None:
            continue
        live = children.get(kind)
        name = manifest["metadata"]["name"]
        if live is None:
            # The watches only see our labelled objects; a foreign one needs a direct look.
            live = kube.get(api, kind, name, app.namespace)
            children[kind] = live
        if live is not None and not owned(app, live):
            where = name if kind == "PersistentVolume" else f"{app.namespace}/{name}"
            return status.Problem(
                "NameConflict",
                f"{kind} {where} already exists and does not belong to this StatefulWebApp; "
                "nothing was changed. Delete or rename that object, or choose another "
                "app name or serviceName",
            )
    return None


def _is_news(body: Obj, problem: status.Problem) -> bool:
    """Whether the app's Ready condition does not already tell of ``problem``.

    Events are for changes: repeating the same Warning on every child event would flood the
    namespace and cost a write each time.
    """
    ready = status.ready_condition(body.get("status") or {})
    return (ready.get("reason"), ready.get("message")) != (problem.reason, problem.message)


def _converge(
    api: pykube.HTTPClient,
    *,
    app: AppSpec,
    desired: Mapping[str, Obj | None],
    children: dict[str, Obj | None],
    outcome: Outcome,
    logger: kopf.Logger,
) -> None:
    for kind, manifest in desired.items():
        live = children.get(kind)
        if manifest is None:
            if live is not None:
                name = live["metadata"]["name"]
                kube.delete(api, kind, name, app.namespace)
                children[kind] = None
                outcome.deleted.append(f"{kind}/{name}")
            continue
        if kind == "PersistentVolume" and _released(live):
            # Its claim was deleted (by hand, or with an earlier app of this name), and a
            # Released volume never binds again: delete it and let its deletion event bring
            # the pass that recreates it. Retain keeps the NFS data either way.
            kube.delete(api, kind, manifest["metadata"]["name"])
            children[kind] = None
            outcome.deleted.append(f"{kind}/{manifest['metadata']['name']}")
            continue
        if live is not None and is_subset(manifest, live):
            continue
        children[kind] = kube.apply(api, manifest)
        outcome.applied.append(f"{kind}/{manifest['metadata']['name']}")
    if outcome.applied or outcome.deleted:
        logger.info("applied %s; deleted %s", outcome.applied or "-", outcome.deleted or "-")


def _released(volume: Obj | None) -> bool:
    return volume is not None and (volume.get("status") or {}).get("phase") == "Released"


def _publish(
    api: pykube.HTTPClient,
    body: Obj,
    new: dict[str, Any],
    outcome: Outcome,
    *,
    progress_due: Callable[[], bool],
) -> None:
    current = body.get("status") or {}
    if all(current.get(key) == value for key, value in new.items()):
        return
    if not status.urgent(current, new) and not progress_due():
        outcome.status_held = True
        return
    meta = body["metadata"]
    written = kube.patch_status(api, meta["namespace"], meta["name"], new)
    outcome.status_written = True
    if written is not None:
        outcome.written_version = written.get("metadata", {}).get("resourceVersion")
        outcome.written_status = written.get("status")


def _invalid_status(body: Obj, generation: int, problem: status.Problem) -> dict[str, Any]:
    previous = (body.get("status") or {}).get("conditions") or []
    ready = status.condition(
        "Ready",
        ok=False,
        reason=problem.reason,
        message=problem.message,
        previous=previous,
        now=_now(),
    )
    return {"observedGeneration": generation, "conditions": [ready]}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def collect_volume(api: pykube.HTTPClient, namespace: str, app_name: str) -> bool:
    """Delete the cluster-scoped volume of an app that no longer exists; True if deleted.

    No owner reference can tie a PersistentVolume to a namespaced app, so the operator
    collects it itself, from the app's deletion event or, if it was not running then, from the
    volume's own event at its next start. Retain keeps the exported data on the NFS server; only
    the PersistentVolume object goes. Namespaced children are removed by the garbage collector
    through their owner references.
    """
    name = names.volume_of(namespace, app_name)
    live = kube.get(api, "PersistentVolume", name)
    if live is None or live.get("metadata", {}).get("deletionTimestamp"):
        return False
    if not names.volume_belongs(live.get("metadata", {}).get("labels") or {}, namespace, app_name):
        return False
    kube.delete(api, "PersistentVolume", name)
    return True
