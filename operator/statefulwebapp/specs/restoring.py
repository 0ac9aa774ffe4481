"""How a StatefulWebAppRestore goes: stop the web pods, run the Job, tell the result.

A restore goes ``Pending`` (accepted: the web pods are stopping) -> ``Running`` (its Job runs)
-> ``Succeeded`` or ``Failed``, once. From ``Pending`` on, its app renders its StatefulSet with
no replicas (``AppSpec.restoring``), so no web pod serves a half-restored volume; the Job
(``render_backup.render_restore_job``) starts only once the StatefulSet reports no pod left. The
Job's script keeps the volume's previous content until the archive is fully extracted and
swaps it in a way a retry can finish, so a failed or killed restore loses nothing. Its result
(the archive, the node, the candidates it considered) comes back as the pod's termination
message.

:func:`decide` is pure: from the restore, its app and what the cluster shows, what to do next.
``controllers/restore.py`` reads those and does it (``reconcile_restore``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from statefulwebapp.api.model import (
    DEFAULT_BACKUP_ROOT,
    GROUP,
    KIND,
    VERSION,
    AppSpec,
    RestoreSpec,
    SpecError,
)
from statefulwebapp.api.objects import Manifest
from statefulwebapp.api.parse import parse
from statefulwebapp.specs import names
from statefulwebapp.specs.render_backup import render_restore_job

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
ACTIVE = frozenset({"", PENDING, RUNNING})
"""Phases of a restore that is not over: at most one per app goes on."""
STARTED = frozenset({PENDING, RUNNING})
"""Phases in which the app's web pods are stopped for the restore."""
POLL_SECONDS = 2.0
"""How often a running restore looks at its StatefulSet and Job."""
MAX_CANDIDATES = 20


@dataclass(frozen=True)
class Observed:
    """What one pass of a restore knows of the cluster."""

    app: Manifest | None
    """The restore's app as last seen, or None if there is none."""
    apps: Sequence[str] = ()
    """Names of the apps in the restore's namespace (for a message naming what exists)."""
    first: str = ""
    """The restore that came first among the app's unfinished ones (itself when it did)."""
    statefulset: Manifest | None = None
    """The app's StatefulSet as last seen."""
    job: Manifest | None = None
    """The restore's Job, or None before it is created."""
    result: Mapping[str, Any] | None = None
    """The Job's pod's result (:func:`parse_result`), once the Job has finished."""
    backup_root: str = DEFAULT_BACKUP_ROOT
    """The admin's directory of archives on the nodes (``policy.Policy.backup_root``)."""


@dataclass
class Action:
    """What a pass does: each field empty means nothing of that kind."""

    status: Manifest | None = None
    """The restore's new status, written by a merge patch."""
    job: Manifest | None = None
    """The Job to apply."""
    app_event: tuple[str, str, str] | None = None
    """(type, reason, message) of an event posted on the app."""
    wake_app: bool = False
    """The app must be passed again: it starts or stops restoring."""
    requeue_after: float | None = None
    """Pass this restore again after so many seconds."""
    adopt: Manifest | None = None
    """The owner reference to the app to put on the restore: deleting the app deletes it."""
    stop_job: bool = False
    """Suspend the restore's Job (its pods stop): the restore ended without it."""


def phase(body: Mapping[str, Any]) -> str:
    """The restore's phase as its status says ("" before the operator has seen it)."""
    return str((body.get("status") or {}).get("phase") or "")


def app_of(body: Mapping[str, Any]) -> str:
    """The app a restore is for."""
    return str((body.get("spec") or {}).get("appName") or "")


def first_active(restores: Sequence[Mapping[str, Any]]) -> str:
    """Among one app's unfinished restores, the one that goes: a started one, else the oldest.

    Ties of creation time (one second) fall to the name, so every pass picks the same one.
    """
    active = [r for r in restores if phase(r) in ACTIVE]
    if not active:
        return ""
    started = [r for r in active if phase(r) in STARTED]
    chosen = min(
        started or active,
        key=lambda r: (
            str((r.get("metadata") or {}).get("creationTimestamp") or ""),
            str((r.get("metadata") or {}).get("name") or ""),
        ),
    )
    return str(chosen["metadata"]["name"])


def under_way(restores: Sequence[Mapping[str, Any]]) -> str:
    """The restore that has stopped the app's web pods, or "" when none has."""
    started = [r for r in restores if phase(r) in STARTED]
    return first_active(started)


def last_ended(restores: Sequence[Mapping[str, Any]]) -> str:
    """When the last of an app's ``restores`` ended (``completionTime``); "" if none has.

    While a restore runs, the agents' checks find its work files in the volume; their reports
    of that, still fresh when it has ended, must not read as a restore stopped half-way.
    """
    ends = [str((r.get("status") or {}).get("completionTime") or "") for r in restores]
    return max(ends, default="")


def parse_result(message: str) -> dict[str, Any]:
    """The restore script's ``key=value`` lines; ``candidate`` lines gathered in a list."""
    result: dict[str, Any] = {"candidates": []}
    for line in message.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "candidate":
            result["candidates"].append(value)
        else:
            result[key] = value
    return result


def job_finished(job: Mapping[str, Any] | None) -> str:
    """``Complete``, ``Failed`` or "" from the Job's conditions."""
    for condition in (job or {}).get("status", {}).get("conditions") or []:
        if condition.get("type") in {"Complete", "Failed"} and condition.get("status") == "True":
            return str(condition["type"])
    return ""


def decide(restore: RestoreSpec, status: Mapping[str, Any], seen: Observed, now: str) -> Action:
    """The next step of ``restore``, whose status is ``status``, given what is ``seen``."""
    current = str(status.get("phase") or "")
    if current in {SUCCEEDED, FAILED}:
        return Action()
    if seen.app is None:
        if current in STARTED:
            return Action()  # The app is being deleted: the garbage collector takes this too.
        apps = ", ".join(sorted(seen.apps)) or "none"
        return fail(
            status,
            now,
            "NoSuchApp",
            f"no StatefulWebApp {restore.app_name!r} in namespace {restore.namespace} "
            f"(apps there: {apps}); create a restore that names one of them",
        )
    try:
        app = parse(seen.app, backup_root=seen.backup_root)
    except SpecError as err:
        return fail(status, now, "InvalidApp", f"app {restore.app_name}: {err}; fix the app first")
    if current not in STARTED:
        return _start(restore, app, status, seen, now)
    return _run(restore, app, status, seen, now)


def _start(
    restore: RestoreSpec, app: AppSpec, status: Mapping[str, Any], seen: Observed, now: str
) -> Action:
    shared = app.backup.target.nfs
    if app.restricted and shared is None:
        return fail(
            status,
            now,
            "NoArchives",
            f"app {app.name} has podSecurity: restricted, which admits no hostPath: its agents "
            "keep archives in their own pods, where no restore can read them",
        )
    if app.restricted and shared is not None:
        # The Job swaps the volume's content whoever owns it: it runs as root, which a
        # "restricted" namespace does not admit.
        return fail(
            status,
            now,
            "PodSecurityRestricted",
            f"app {app.name} has podSecurity: restricted: a restore's Job runs as root, which "
            "that profile does not admit; its archives are on "
            f"{shared.server}:{shared.path}, one directory per node",
        )
    if seen.first and seen.first != restore.name:
        return fail(
            status,
            now,
            "AnotherRestoreRunning",
            f"restore {seen.first} of app {app.name} came first and is not finished; "
            "create this restore again once it has",
        )
    return Action(
        status=_status(
            status,
            now,
            PENDING,
            "WaitingForWebPods",
            f"stopping the web pods of {app.name} before restoring {restore.archive}",
            startTime=now,
        ),
        adopt={
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": app.name,
            "uid": app.uid,
            "blockOwnerDeletion": True,
        },
        wake_app=True,
        requeue_after=POLL_SECONDS,
        app_event=(
            "Normal",
            "Restoring",
            f"restore {restore.name}: web pods stopped until {restore.archive} is back",
        ),
    )


def _run(
    restore: RestoreSpec, app: AppSpec, status: Mapping[str, Any], seen: Observed, now: str
) -> Action:
    late = _past_deadline(restore, status, now)
    if late is not None and not job_finished(seen.job):
        return _timed_out(restore, app, status, seen, now)
    if seen.job is None:
        sts_status = (seen.statefulset or {}).get("status") or {}
        left = int(sts_status.get("replicas") or 0)
        # Only the app's own StatefulSet (by its uid) can say its pods are stopped.
        stopped = (
            seen.statefulset is not None
            and names.owned(seen.statefulset, app.namespace, app.name, app.uid)
            and (seen.statefulset.get("spec") or {}).get("replicas") == 0
            and left == 0
            and not int(sts_status.get("readyReplicas") or 0)
        )
        if not stopped:
            message = f"stopping the web pods of {app.name} ({left} left)"
            return Action(
                status=_status(status, now, PENDING, "WaitingForWebPods", message),
                requeue_after=POLL_SECONDS,
            )
        job = render_restore_job(app, restore)
        return Action(
            status=_status(
                status,
                now,
                RUNNING,
                "Restoring",
                f"restoring {restore.archive} into {names.claim(app)} "
                f"(Job {job['metadata']['name']})",
            ),
            job=job,
            requeue_after=POLL_SECONDS,
        )
    finished = job_finished(seen.job)
    if not finished or seen.result is None:
        return Action(requeue_after=POLL_SECONDS)
    result = seen.result
    extra: dict[str, Any] = {"candidates": list(result.get("candidates") or [])[:MAX_CANDIDATES]}
    if result.get("archive"):
        extra["archive"] = {"file": result["archive"], "node": result.get("node", "")}
    if finished == "Complete" and result.get("result") == "restored":
        message = str(result.get("message") or f"restored {result.get('archive')}")
        return Action(
            status=_status(
                status, now, SUCCEEDED, "Restored", message, completionTime=now, **extra
            ),
            wake_app=True,
            app_event=("Normal", "Restored", f"restore {restore.name}: {message}"),
        )
    message = str(result.get("message") or "the restore's pod failed without a result")
    return fail(status, now, "RestoreFailed", message, **extra)


def _past_deadline(restore: RestoreSpec, status: Mapping[str, Any], now: str) -> float | None:
    """Seconds past the restore's deadline (its start plus ``timeoutSeconds``); None if not."""
    started = str(status.get("startTime") or "")
    if not started:
        return None
    elapsed = (_parse_time(now) - _parse_time(started)).total_seconds()
    return elapsed - restore.timeout_seconds if elapsed > restore.timeout_seconds else None


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _timed_out(
    restore: RestoreSpec, app: AppSpec, status: Mapping[str, Any], seen: Observed, now: str
) -> Action:
    waiting = str(status.get("message") or "starting")
    message = (
        f"not finished within timeoutSeconds ({restore.timeout_seconds} s) while {waiting}; "
        f"the web pods of {app.name} start again"
    )
    if seen.job is not None:
        message += (
            f"; its Job {seen.job['metadata']['name']} was stopped (if it had begun to swap "
            "the volume's content, the next restore of this app finishes that swap first: "
            "create one; kubectl describe pods of the Job said why it did not finish)"
        )
    action = fail(status, now, "DeadlineExceeded", message)
    action.stop_job = seen.job is not None
    return action


def fail(status: Mapping[str, Any], now: str, reason: str, message: str, **extra: Any) -> Action:
    """End the restore as Failed with ``reason``; an app it stopped comes back."""
    return Action(
        status=_status(status, now, FAILED, reason, message, completionTime=now, **extra),
        wake_app=str(status.get("phase") or "") in STARTED,
        app_event=("Warning", "RestoreFailed", message),
    )


def _status(
    status: Mapping[str, Any], now: str, new_phase: str, reason: str, message: str, **extra: Any
) -> Manifest:
    done = new_phase in {SUCCEEDED, FAILED}
    conditions = status.get("conditions") or []
    previous: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Complete"), {})
    flag = "True" if new_phase == SUCCEEDED else "False"
    condition = {
        "type": "Complete",
        "status": flag,
        "reason": reason,
        "message": message,
        "lastTransitionTime": previous.get("lastTransitionTime", now)
        if previous.get("status") == flag
        else now,
    }
    new = {"phase": new_phase, "message": message, "conditions": [condition], **extra}
    if not done:
        new.pop("completionTime", None)
    return new
