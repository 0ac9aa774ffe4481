"""The one idempotent reconcile: desired children from the spec, applied where they differ.

It runs for every event of the app (its creation, changes and the operator's start) and of any
of its children, so drift is repaired and the status recomputed from the same code path. It
reads the children from the operator's in-memory indexes, writes only what differs, and writes
the status only when it changed: a quiet cluster costs no requests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

import pykube

from statefulwebapp.api import kinds
from statefulwebapp.api.model import AppSpec, SpecError
from statefulwebapp.api.objects import Obj, timestamp
from statefulwebapp.api.parse import parse
from statefulwebapp.controllers import refusals
from statefulwebapp.controllers.app_state import Memory, Outcome, Seen
from statefulwebapp.controllers.policy import NO_POLICY, ExportClaims, Policy, exports_of
from statefulwebapp.runtime import kube
from statefulwebapp.specs import drift, failures, names, registry, status

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]
Warn = Callable[[str, str], None]
"""Posts a Warning event on the app: ``warn(reason, message)``."""


def owned(app: AppSpec, obj: Obj) -> bool:
    """Whether ``obj`` is this app's (``names.owned``: by uid; a volume by labels and claim)."""
    return names.owned(obj, app.namespace, app.name, app.uid)


def reconcile(
    api: pykube.HTTPClient,
    *,
    body: Obj,
    observed: Mapping[str, Obj | None],
    warn: Warn,
    logger: Log,
    memory: Memory,
    progress_due: Callable[[], bool] = lambda: True,
    rollout_due: Callable[[], bool] = lambda: True,
    mount_failures: Sequence[Obj] = (),
    probe_failures: Sequence[Obj] = (),
    restoring: str = "",
    lookups: Executor | None = None,
    policy: Policy = NO_POLICY,
    claims: ExportClaims | None = None,
) -> Outcome:
    """Bring the app's children in line with its spec and publish the recomputed status.

    ``observed`` maps each child (its ``key``) to the object last seen by the watches (None if not
    seen). A missing child is looked up once before creating it, so an object of the same
    name that belongs to someone else is reported, never overwritten. A status change that is
    only progress (:func:`status.urgent`) is written if ``progress_due()`` says so (it is
    asked only then, so it may spend a budget); if not, ``status_held`` tells the caller to
    come back. ``rollout_due()`` is asked before re-applying a StatefulSet or DaemonSet whose
    rendering changed while the spec did not (an operator upgrade): a fleet must not roll at
    once. ``mount_failures`` and ``probe_failures``: the kubelet's FailedMount and Unhealthy
    events of the app's pods, packed (``sources.pack_pod_event``), for the status.
    ``restoring``: the StatefulWebAppRestore under way for the app, if one is (restore.py):
    the web pods are stopped while it runs. ``lookups``: a pool for the looks before
    creating missing children, which then go at once. ``policy``: the admin's decisions (the
    archives' root on the nodes, the exports allowed); ``claims``: the exports live apps use,
    of which an app gets none an older app holds.
    """
    outcome = Outcome()
    seen = Seen.of(body)
    children = dict(observed)
    # 1. Parse the spec once into the typed model.
    try:
        app = parse(body, backup_root=policy.backup_root)
        if restoring:
            app = replace(app, restoring=restoring)
    except SpecError as err:
        outcome.problems.append(status.Problem("InvalidSpec", f"{err}; fix the field and re-apply"))
        _warn_if_news(seen, outcome, warn)
        # Without a valid spec there is no model to compute a status from: report the
        # problem alone and touch no child.
        invalid = _invalid_status(seen, outcome.problems[0])
        outcome.ready_reason = status.ready_condition(invalid).get("reason")
        _publish(api, seen, invalid, outcome, progress_due=progress_due)
        return outcome
    # 2. Render every child, stamped with the digest of its rendering (digested once per spec).
    desired = memory.rendering(app)
    # 3. The admin decides which exports an app may mount, and one export serves one app:
    #    an app refused either way gets nothing created or changed.
    refused = policy.refusal(app) or (
        claims.holder((app.namespace, app.name), exports_of(app)) if claims else None
    )
    if refused is not None:
        outcome.problems.append(refused)
    else:
        try:
            # 4. Before creating a missing child: the app must really exist (an index entry can
            #    outlive a watch gap), and no object of ours may be in the way of a child's name.
            missing = [k for k, manifest in desired.items() if manifest and children.get(k) is None]
            if missing:
                current, found = _look_up(api, app, desired, missing, lookups)
                if current is None or current["metadata"].get("uid") != app.uid:
                    outcome.app_gone = True
                    return outcome
                children.update(found)
            conflict = _find_conflict(app, desired, children)
            if conflict is not None:
                outcome.problems.append(conflict)
            else:
                # 5. Converge each child on its own: one refusal freezes no other.
                _converge(
                    api,
                    app=app,
                    desired=desired,
                    children=children,
                    outcome=outcome,
                    memory=memory,
                    logger=logger,
                    rollout_due=rollout_due if seen.acknowledged else lambda: True,
                )
        except (kube.ApiError, *refusals.TRANSIENT) as err:
            if isinstance(err, kube.ApiError) and err.terminating:
                # The namespace, and the app with it, is going away: nothing to repair or report.
                return outcome
            outcome.problems.append(refusals.problem(kinds.APP, f"{app.namespace}/{app.name}", err))
    _warn_if_news(seen, outcome, warn)
    # 6. The status, recomputed from the children as they now are.
    now = timestamp()
    new = status.compute(
        app,
        generation=seen.generation,
        children=children,
        previous=seen.status,
        problem=status.combine(outcome.problems),
        mount_failures=mount_failures,
        probe_failures=probe_failures,
        now=now,
    )
    outcome.ready_reason = status.ready_condition(new).get("reason")
    if outcome.ready_reason != "Ready":
        outcome.recheck_after = failures.recheck_after(app, mount_failures, probe_failures, now)
    _publish(api, seen, new, outcome, progress_due=progress_due)
    return outcome


def _look_up(
    api: pykube.HTTPClient,
    app: AppSpec,
    desired: Mapping[str, Obj | None],
    missing: Sequence[str],
    lookups: Executor | None,
) -> tuple[Obj | None, dict[str, Obj | None]]:
    """The app and the ``missing`` children as the API server's watch cache has them.

    The watches only see our labelled objects: a foreign object in a child's way needs a
    direct look. With a pool the looks go at once, so a new app waits one round trip for them
    rather than one per child.
    """
    wanted: list[tuple[kube.Resource, str]] = [(kinds.APP, app.name)]
    wanted += [(registry.BY_KEY[key], (desired[key] or {})["metadata"]["name"]) for key in missing]

    def look(kind_name: tuple[kube.Resource, str]) -> Obj | None:
        return kube.get(api, *kind_name, app.namespace, cached=True)

    found = list(lookups.map(look, wanted)) if lookups is not None else [look(w) for w in wanted]
    return found[0], dict(zip(missing, found[1:], strict=True))


def _find_conflict(
    app: AppSpec,
    desired: Mapping[str, Obj | None],
    children: Mapping[str, Obj | None],
) -> status.Problem | None:
    for key, manifest in desired.items():
        if manifest is None:
            continue
        live = children.get(key)
        kind = registry.BY_KEY[key].name
        name = manifest["metadata"]["name"]
        if live is not None and not owned(app, live):
            return status.Problem(
                "NameConflict",
                f"{kind} {_where(kind, name, app)} already exists and does not belong to this "
                "StatefulWebApp; nothing was changed. Delete or rename that object, or choose "
                "another app name or serviceName",
            )
    return None


def _where(kind: str, name: str, app: AppSpec) -> str:
    return name if not kinds.BY_NAME[kind].namespaced else f"{app.namespace}/{name}"


def _warn_if_news(seen: Seen, outcome: Outcome, warn: Warn) -> None:
    """Post a Warning event when the app's Ready condition does not already tell of it.

    Events are for changes: repeating the same Warning on every child event would flood the
    namespace and cost a write each time.
    """
    problem = status.combine(outcome.problems)
    if problem is None or all(p.reason == "ServerTrouble" for p in outcome.problems):
        # Server trouble is retried with backoff: a log line and the condition tell of it,
        # a Warning event per retry would add load to a server already in trouble.
        return
    if (seen.ready.get("reason"), seen.ready.get("message")) != (problem.reason, problem.message):
        warn(problem.reason, problem.message)


def _converge(
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
            problem = refusals.problem(child, _where(child.name, name, app), err)
            if not problem.retry and manifest is not None:
                known.refused[child.key] = (drift.stamp_of(manifest) or "", problem)
        if problem is None:
            continue
        outcome.problems.append(problem)
        if child.validates and problem.reason == "InvalidSpec":
            # Only the API server could check this child, and it says the spec is invalid:
            # an invalid spec is never half applied.
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
    answer = kube.apply(api, child, manifest, manager=names.MANAGER)
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


def _publish(
    api: pykube.HTTPClient,
    seen: Seen,
    new: dict[str, Any],
    outcome: Outcome,
    *,
    progress_due: Callable[[], bool],
) -> None:
    if all(seen.status.get(name) == value for name, value in new.items()):
        return
    if not status.urgent(seen.status, new) and not progress_due():
        outcome.status_held = True
        return
    written = kube.patch_status(api, seen.namespace, seen.name, new, kinds.APP)
    outcome.status_written = True
    if written is not None:
        outcome.written_version = written.get("metadata", {}).get("resourceVersion")
        outcome.written_status = written.get("status")


def _invalid_status(seen: Seen, problem: status.Problem) -> dict[str, Any]:
    previous = seen.status.get("conditions") or []
    ready = status.condition(
        "Ready",
        ok=False,
        reason=problem.reason,
        message=problem.message,
        previous=previous,
        now=timestamp(),
    )
    return {"observedGeneration": seen.generation, "conditions": [ready]}
