"""kopf wiring: its settings, the start of the controller, the restores' index and handler.

Every app event ends up in one place, :meth:`AppReconciler.reconcile
<statefulwebapp.controllers.reconcile.AppReconciler.reconcile>`: the app's own (its creation,
any change, the listing at the operator's start) and any event of a labelled child (a deletion
included, which is how a deleted child comes back within seconds). The apps and their children
are watched by ``runtime/informer.py`` (packed on arrival, no per-object worker, listed before
the first pass), the children with a server-side label selector, so the operator never lists
the cluster's other StatefulSets or Services. kopf watches the restores (few, each a short
life), and runs the operator: its start and login. What the operator
holds while it runs, and what it does with an event, is
:class:`statefulwebapp.manager.Controller`, built at start and kept in kopf's memo: nothing here
keeps state.

kopf keeps no state on the apps (no finalizer, no last-handled annotation), so creating an app
costs its children's applies and two status writes, a restart costs no write at all, and
uninstalling the operator never leaves a namespace stuck in deletion. What is level-triggered
here is ``status.observedGeneration`` versus ``metadata.generation``, recomputed on every pass
like the rest of the status. The one thing the garbage collector cannot do, delete the
cluster-scoped volume of a deleted app, is done from the app's deletion event, and from the
volume's own event if the operator was not running.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import kopf

from statefulwebapp.api import kinds
from statefulwebapp.controllers.app import key_of
from statefulwebapp.manager import Controller, new_queue
from statefulwebapp.runtime import informer, kube
from statefulwebapp.runtime.metrics import Metrics
from statefulwebapp.settings import DEFAULTS, Settings
from statefulwebapp.specs import names, restoring

RESTORE = (kinds.RESTORE.group, kinds.RESTORE.version, kinds.RESTORE.plural)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    """Set kopf up, then start the controller: its clients, the watches, the resync.

    Returns once every app and child is listed and each app's pass queued. ``memo`` may carry
    ``settings`` (the command's, :class:`Settings`) and ``metrics`` (the command's, which it
    serves); kopf run directly gets the defaults. kopf passes its indexes to startup handlers
    too.
    """
    # Watches that silently stop are kopf's best-known failure; bound them on both ends.
    settings.watching.server_timeout = informer.SERVER_TIMEOUT
    settings.watching.connect_timeout, settings.watching.client_timeout = informer.CLIENT_TIMEOUT
    # The CRD is installed before the operator starts (the chart and `make run` do it), so
    # kopf need not follow CRDs and namespaces at run time: that saves two cluster-wide
    # watches and their RBAC rules. Namespace globs need scanning, hence exact names only.
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    # Without the command's metrics (kopf run directly): a registry of their own, served by
    # nobody.
    metrics: Metrics = memo.metrics if "metrics" in memo else Metrics()
    told: Settings = memo.settings if "settings" in memo else DEFAULTS
    controller = Controller(
        kube.connect(metrics=metrics, user_agent=names.USER_AGENT),
        restores=kwargs["idx_restores"],
        metrics=metrics,
        namespaces=told.namespaces,
        policy=told.policy,
        queue=new_queue(told.max_rollouts_per_minute),
    )
    memo.controller = controller
    controller.start(told.resync_seconds)


@kopf.index(*RESTORE, id="idx_restores")
async def index_restores(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[tuple[str, str], str]:
    """Restores by their app's (namespace, name): an app's pass sees whether one runs."""
    kept: dict[str, Any] = {k: body.get(k) for k in ("apiVersion", "kind", "spec", "status")}
    meta = body.get("metadata") or {}
    kept["metadata"] = {
        **{k: meta.get(k) for k in ("name", "namespace", "uid", "creationTimestamp")},
        "ownerReferences": meta.get("ownerReferences") or [],
    }
    return {key_of(namespace, restoring.app_of(body)): json.dumps(kept, separators=(",", ":"))}


@kopf.on.event(*RESTORE, id="restore")
async def on_restore_event(
    *,
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """A restore appeared, changed, was listed at start or deleted: take it a step further."""
    controller: Controller = memo.controller
    controller.restore_changed(
        namespace or "",
        name,
        key_of(namespace, restoring.app_of(body)),
        deleted=event["type"] == "DELETED",
    )
