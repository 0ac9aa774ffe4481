"""The restore's pass: read what :func:`~statefulwebapp.specs.restoring.decide` needs, do it.

A restore under way is passed again every ``POLL_SECONDS`` (its Job is not watched: restores are
rare and short), a finished one never again: a restore costs a handful of requests and a few
status writes, an app with no restore nothing. How a restore goes is ``specs/restoring.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pykube

from statefulwebapp.api import kinds
from statefulwebapp.api.model import (
    DEFAULT_BACKUP_ROOT,
    RestoreSpec,
    SpecError,
)
from statefulwebapp.api.objects import Key, Manifest, timestamp
from statefulwebapp.api.parse import parse_restore
from statefulwebapp.controllers import refusals
from statefulwebapp.controllers.events import EventRecorder
from statefulwebapp.controllers.reconcile import Index, first, owned_first
from statefulwebapp.runtime import informer, kube, workqueue
from statefulwebapp.specs import names, registry
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

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


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


@dataclass(frozen=True)
class RestoreResult(workqueue.Result):
    """A restore's pass result for the work queue, and whether its app must be passed."""

    wake_app: bool = False
    """The app starts or stops restoring: its web pods stop or come back."""


@dataclass
class RestoreReconciler:
    """Reconciles StatefulWebAppRestores: its client, the caches it reads, where events go."""

    api: pykube.HTTPClient
    apps: Index
    """The apps' cache (``sources.APPS``)."""
    restores: Index
    """kopf's index of the restores, by their app."""
    cache: Mapping[str, informer.Store] = field(default_factory=dict)
    """The informers' caches: the app's StatefulSet says when its web pods are stopped."""
    recorder: EventRecorder = field(default_factory=EventRecorder)
    backup_root: str = DEFAULT_BACKUP_ROOT
    """The admin's directory of archives on the nodes."""

    def reconcile(self, app_key: Key, name: str, logger: Log) -> workqueue.Result:
        """One pass of restore ``name`` of the app ``app_key``."""
        # 1. The restore as kopf's index holds it, among its app's restores.
        siblings = [json.loads(packed) for packed in self.restores.get(app_key, ())]
        body = next((r for r in siblings if r["metadata"]["name"] == name), None)
        if body is None:
            return workqueue.Result()  # Deleted, or its app renamed: nothing to do.
        # 2. Its app, and the app's own StatefulSet, from the caches.
        app = first(self.apps, app_key)
        uid = str((app or {}).get("metadata", {}).get("uid") or "")
        statefulset = owned_first(self.cache[registry.STATEFULSET.key], app_key, uid)

        def post_event(kind: str, reason: str, message: str) -> None:
            if app is not None:
                self.recorder.event(app, kind, reason, message, logger)

        # 3. One step: read what decide() needs, do what it says.
        try:
            action = reconcile_restore(
                self.api,
                body,
                app=app,
                apps=[n for ns, n in self.apps if ns == app_key[0]],
                siblings=siblings,
                statefulset=statefulset,
                post_event=post_event,
                backup_root=self.backup_root,
            )
        except (kube.ApiError, *refusals.TRANSIENT) as err:
            logger.error("restore %s: %s; retrying with backoff", name, err)
            return workqueue.Result(failed=True)
        # 4. Said when it ends; passed again while it goes; its app passed when it must.
        if action.status is not None and action.status.get("phase") in {SUCCEEDED, FAILED}:
            logger.info("restore %s: %s", action.status["phase"], action.status.get("message"))
        return RestoreResult(requeue_after=action.requeue_after, wake_app=action.wake_app)
