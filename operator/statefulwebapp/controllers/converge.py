"""Converging an app's children: each applied where it differs, deleted where turned off.

One refusal freezes no other child.

Called by :meth:`statefulwebapp.controllers.reconcile.AppReconciler.converge`, step 5.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pykube

from statefulwebapp.api import kinds
from statefulwebapp.api.model import AppSpec
from statefulwebapp.api.objects import Obj
from statefulwebapp.controllers import refusals
from statefulwebapp.controllers.app_state import Memory, Outcome
from statefulwebapp.runtime import kube
from statefulwebapp.specs import drift, names, registry, status

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


def owned(app: AppSpec, obj: Obj) -> bool:
    """Whether ``obj`` is this app's (``names.owned``: by uid; a volume by labels and claim)."""
    return names.owned(obj, app.namespace, app.name, app.uid)


def where(kind: str, name: str, app: AppSpec) -> str:
    """How a message names a child: with its namespace when it has one."""
    return name if not kinds.BY_NAME[kind].namespaced else f"{app.namespace}/{name}"


def name_conflict(child: registry.Child, name: str, app: AppSpec) -> status.Problem:
    """The app's child ``name`` is an object that is not the app's: nothing is changed."""
    return status.Problem(
        "NameConflict",
        f"{child.name} {where(child.name, name, app)} already exists and does not belong to this "
        "StatefulWebApp; nothing was changed. Delete or rename that object, or choose "
        "another app name or serviceName",
    )


def converge(
    api: pykube.HTTPClient,
    *,
    app: AppSpec,
    desired: Mapping[str, Obj | None],
    children: dict[str, Obj | None],
    outcome: Outcome,
    memory: Memory,
    logger: Log,
    rollout_due: Callable[[], bool],
) -> None:
    """Apply each child of ``desired`` that differs, delete each the spec turned off.

    ``children`` are the live ones, updated with the answers; ``outcome`` says what was done.

    ``rollout_due()`` is asked before re-applying a workload whose rendering changed while the
    spec did not.
    """
    key = (app.namespace, app.name)
    known = _Known(
        stored=memory.stored.setdefault(key, {}),
        refused=memory.refused.setdefault(key, {}),
        synced=memory.synced.setdefault(key, {}),
    )
    for child in registry.CHILDREN:
        manifest = desired[child.key]
        live = children.get(child.key)
        try:
            if manifest is None or (not child.namespaced and _released(live)):
                # Disabled by the spec; or a Released volume, whose claim was deleted (by
                # hand, or with an earlier app of this name): it never binds again, so it goes
                # and its deletion event brings the pass that recreates it. Retain keeps the
                # NFS data either way.
                _delete(api, child, app, children, outcome)
                continue
            if _unasked_rollout(child, manifest, live) and not rollout_due():
                outcome.rollouts_held.append(f"{child.name}/{manifest['metadata']['name']}")
                continue
            problem = _apply(api, child, manifest, live, known, children, outcome)
        except (kube.ApiError, *refusals.TRANSIENT) as err:
            if isinstance(err, kube.ApiError) and err.terminating:
                raise
            name = (manifest or live or {}).get("metadata", {}).get("name", "")
            problem = refusals.problem(child, where(child.name, name, app), err)
            if not problem.retry and manifest is not None:
                known.refused[child.key] = (drift.stamp_of(manifest) or "", problem)
        if problem is None:
            continue
        outcome.problems.append(problem)
        if child.validates and problem.reason == "InvalidSpec":
            # Only the API server could check this child, and it says the spec is invalid:
            # an invalid spec is never half applied.
            break
        if live is None and problem.reason == "Conflict":
            # A name taken since the caches were filled: the next pass sees whose it is, and
            # an app whose name is someone else's must not get its other children meanwhile.
            break
    if outcome.applied or outcome.deleted:
        logger.info("applied %s; deleted %s", outcome.applied or "-", outcome.deleted or "-")


def _unasked_rollout(child: registry.Child, manifest: Obj, live: Obj | None) -> bool:
    """A workload applied before from another rendering of the same spec (an operator upgrade)."""
    if child not in (registry.STATEFULSET, registry.DAEMONSET) or live is None:
        return False
    before = drift.stamp_of(live)
    return before is not None and before != drift.stamp_of(manifest)


def _delete(
    api: pykube.HTTPClient,
    child: registry.Child,
    app: AppSpec,
    children: dict[str, Obj | None],
    outcome: Outcome,
) -> None:
    live = children.get(child.key)
    if live is None:
        return
    children[child.key] = None
    if not owned(app, live):
        # Not the app's (another incarnation's, or an object that only carries its labels):
        # never the operator's to delete.
        return
    if live["metadata"].get("deletionTimestamp"):
        # Deleted already, waiting on a finalizer (a claim still mounted, a volume still
        # bound): asking again on every pass would change nothing.
        return
    name = live["metadata"]["name"]
    # The uid as a precondition: an object of that name made since the cache saw ours is not
    # deleted in its place.
    uid = str(live["metadata"].get("uid") or "")
    if kube.delete(api, child, name, app.namespace if child.namespaced else "", uid=uid):
        outcome.deleted.append(f"{child.name}/{name}")


@dataclass(frozen=True)
class _Known:
    """What :class:`Memory` holds of one app's children, by kind, for one pass."""

    stored: dict[str, tuple[str, dict[str, Any]]]
    refused: dict[str, tuple[str, status.Problem]]
    synced: dict[str, tuple[str, str]]


def _apply(  # noqa: PLR0917  (the pass's state, each piece used)
    api: pykube.HTTPClient,
    child: registry.Child,
    manifest: Obj,
    live: Obj | None,
    known: _Known,
    children: dict[str, Obj | None],
    outcome: Outcome,
) -> status.Problem | None:
    """Apply ``manifest`` unless the child is up to date or this rendering was refused."""
    digest = drift.stamp_of(manifest) or ""
    version = str((live or {}).get("metadata", {}).get("resourceVersion") or "")
    if version and known.synced.get(child.key) == (digest, version):
        return None
    form = known.stored.get(child.key)
    if drift.up_to_date(manifest, live, form[1] if form and form[0] == digest else None):
        known.refused.pop(child.key, None)
        if version:
            known.synced[child.key] = (digest, version)
        return None
    known.synced.pop(child.key, None)
    before = known.refused.get(child.key)
    if before is not None and before[0] == digest:
        # Refused as it is: sending it again would be refused again.
        return before[1]
    # A child the caches do not show is applied without force: an object of that name made
    # since they were filled refuses it with its own fields (409, retried: by then the caches
    # say whose it is) rather than being taken over.
    answer = kube.apply(api, child, manifest, manager=names.MANAGER, force=live is not None)
    known.refused.pop(child.key, None)
    children[child.key] = answer
    form_now = drift.stored_form(manifest, answer)
    if form_now is None:
        known.stored.pop(child.key, None)
    else:
        known.stored[child.key] = (digest, form_now)
    outcome.applied.append(f"{child.name}/{manifest['metadata']['name']}")
    return None


def _released(volume: Obj | None) -> bool:
    return volume is not None and (volume.get("status") or {}).get("phase") == "Released"
