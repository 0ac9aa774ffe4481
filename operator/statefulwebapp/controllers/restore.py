"""The restore's pass: read what :func:`~statefulwebapp.specs.restoring.decide` needs, do it.

A restore under way is passed again every ``POLL_SECONDS`` (its Job is not watched: restores are
rare and short), a finished one never again: a restore costs a handful of requests and a few
status writes, an app with no restore nothing. How a restore goes is ``specs/restoring.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pykube

from statefulwebapp.api import kinds
from statefulwebapp.api.model import (
    DEFAULT_BACKUP_ROOT,
    RestoreSpec,
    SpecError,
)
from statefulwebapp.api.objects import Manifest, timestamp
from statefulwebapp.api.parse import parse_restore
from statefulwebapp.controllers import refusals
from statefulwebapp.runtime import kube
from statefulwebapp.specs import names
from statefulwebapp.specs.restoring import (
    FAILED,
    STARTED,
    SUCCEEDED,
    Action,
    Observed,
    decide,
    fail,
    first_active,
    job_finished,
    parse_result,
    phase,
)


def pod_result(api: pykube.HTTPClient, restore: RestoreSpec) -> dict[str, Any] | None:
    """The result the newest finished pod of the restore's Job left, or None if none has."""
    p = f"{kinds.POD.api_base}/namespaces/{restore.namespace}/{kinds.POD.plural}"
    finished: list[tuple[str, str]] = []
    for page in kube.pages(api, p, selector=f"{names.LABEL_RESTORE}={restore.name}", limit=50):
        for pod in page.get("items") or []:
            for container in (pod.get("status") or {}).get("containerStatuses") or []:
                ended = (container.get("state") or {}).get("terminated") or {}
                if ended:
                    finished.append(
                        (str(ended.get("finishedAt") or ""), str(ended.get("message") or ""))
                    )
    if not finished:
        return None
    return parse_result(max(finished)[1])


def reconcile_restore(
    api: pykube.HTTPClient,
    body: Mapping[str, Any],
    *,
    app: Manifest | None,
    apps: Sequence[str],
    siblings: Sequence[Mapping[str, Any]],
    statefulset: Manifest | None,
    post_event: Callable[[str, str, str], None],
    backup_root: str = DEFAULT_BACKUP_ROOT,
) -> Action:
    """One pass of a restore: read what :func:`decide` needs, then do what it says.

    ``siblings``: every restore of the same app (this one included), as last seen.
    """
    try:
        restore = parse_restore(body)
    except SpecError as err:  # The CRD's schema makes this a stale object at most.
        return Action(status={"phase": FAILED, "message": str(err)})
    status = body.get("status") or {}
    if phase(body) in {SUCCEEDED, FAILED}:
        return Action()
    job = result = None
    if phase(body) in STARTED:
        job = kube.get(api, kinds.JOB, names.restore_job(restore), restore.namespace)
        if job_finished(job):
            result = pod_result(api, restore) or {}
    seen = Observed(
        app=app,
        apps=apps,
        first=first_active(siblings),
        statefulset=statefulset,
        job=job,
        result=result,
        backup_root=backup_root,
    )
    action = decide(restore, status, seen, timestamp())
    if action.adopt is not None:
        owners = (body.get("metadata") or {}).get("ownerReferences") or []
        if not any(o.get("uid") == action.adopt["uid"] for o in owners):
            patch = {"metadata": {"ownerReferences": [*owners, action.adopt]}}
            kube.merge_patch(api, kinds.RESTORE, restore.name, restore.namespace, patch)
    if action.stop_job and job is not None:
        # Suspended, the Job's pods are stopped by the Job controller and none is started
        # again; the Job stays with its restore (its owner) as the record of what ran.
        suspend = {"spec": {"suspend": True}}
        name = names.restore_job(restore)
        kube.merge_patch(api, kinds.JOB, name, restore.namespace, suspend)
    if action.job is not None:
        try:
            kube.apply(api, kinds.JOB, action.job, manager=names.MANAGER)
        except kube.ApiError as err:
            refused = refusals.problem(kinds.JOB, f"{restore.namespace}/{restore.name}", err)
            if refused.retry:
                raise
            # No retry can change a refusal of what the restore asked for: it ends, in the
            # API server's words, and the app comes back.
            action = fail(status, timestamp(), "JobRefused", refused.message)
    if action.status is not None and action.status != {k: status.get(k) for k in action.status}:
        kube.patch_status(api, restore.namespace, restore.name, action.status, kinds.RESTORE)
    if action.app_event is not None and app is not None:
        post_event(*action.app_event)
    return action
