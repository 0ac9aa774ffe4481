"""kopf wiring: indexes of the apps and their children, and short handlers around reconcile.

Every handler ends up in :func:`statefulwebapp.reconcile.reconcile`: the app's create, update
and resume, and any event of a labelled child (a deletion included, which is how a deleted
child comes back within seconds). The children are watched with a server-side label selector,
so the operator never lists the cluster's other StatefulSets or Services.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Mapping
from typing import Any, cast

import kopf

from statefulwebapp import kube, names
from statefulwebapp.model import GROUP, PLURAL, VERSION
from statefulwebapp.reconcile import Obj, cleanup, reconcile

APP = (GROUP, VERSION, PLURAL)
CHILDREN: dict[str, tuple[str, str, str]] = {
    "PersistentVolume": ("", "v1", "persistentvolumes"),
    "PersistentVolumeClaim": ("", "v1", "persistentvolumeclaims"),
    "Service": ("", "v1", "services"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "DaemonSet": ("apps", "v1", "daemonsets"),
    "CronJob": ("batch", "v1", "cronjobs"),
}
MANAGED = {names.LABEL_MANAGED_BY: names.MANAGER}


def _index_name(kind: str) -> str:
    return f"idx_{kind.lower()}"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Operator settings, and one HTTP client shared by every handler."""
    prefix = GROUP
    settings.persistence.finalizer = f"{prefix}/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    # Watches that silently stop are kopf's best-known failure; bound them on both ends.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    for group, version, plural in CHILDREN.values():
        settings.watching.label_selectors[_selector(group, version, plural)] = (
            names.MANAGED_SELECTOR
        )
    # The CRD is installed before the operator starts (the chart and `make run` do it), so
    # kopf need not follow CRDs and namespaces at run time: that saves two cluster-wide
    # watches and their RBAC rules. Namespace globs need scanning, hence exact names only.
    settings.scanning.disabled = True
    settings.execution.max_workers = 8  # With PASS_WORKERS, within kube.POOL_SIZE.
    settings.posting.level = logging.WARNING
    memo.api = kube.connect()


def _selector(group: str, version: str, plural: str) -> tuple[str, str] | str:
    return (f"{group}/{version}", plural) if group else plural


def _key(namespace: str | None, name: str | None) -> tuple[str, str]:
    return (namespace or "", name or "")


def _trim(body: Obj) -> dict[str, Any]:
    """What reconcile and status need of an object; the rest is not worth holding."""
    meta = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "generation", "labels", "ownerReferences")
            if key in meta
        },
        "spec": body.get("spec"),
        "status": body.get("status"),
    }


@kopf.index(*APP, id="idx_apps")
def index_apps(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    """Apps by (namespace, name), so a child's event finds its app without a request."""
    trimmed = _trim(body)
    trimmed["metadata"]["deletionTimestamp"] = body.get("metadata", {}).get("deletionTimestamp")
    return {_key(namespace, name): trimmed}


def _index_child(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {_owner_key(body): _trim(body)}


def _owner_key(body: Obj) -> tuple[str, str]:
    labels = body.get("metadata", {}).get("labels") or {}
    namespace = labels.get(names.LABEL_APP_NAMESPACE) or body.get("metadata", {}).get("namespace")
    return _key(namespace, labels.get(names.LABEL_INSTANCE))


def _first(index: Mapping[Any, Any], key: Any) -> Any:
    store = index.get(key)
    return next(iter(store), None) if store is not None else None


def _observed(key: tuple[str, str], kwargs: Mapping[str, Any]) -> dict[str, Obj | None]:
    return {kind: _first(kwargs[_index_name(kind)], key) for kind in CHILDREN}


def _run(body: Obj, kwargs: Mapping[str, Any], logger: kopf.Logger) -> None:
    meta = body["metadata"]

    def warn(reason: str, message: str) -> None:
        kopf.warn(kopf.Body(cast(kopf.RawBody, dict(body))), reason=reason, message=message)

    outcome = reconcile(
        kwargs["memo"].api,
        body=body,
        observed=_observed(_key(meta["namespace"], meta["name"]), kwargs),
        warn=warn,
        logger=logger,
    )
    if outcome.problem is not None and outcome.problem.reason in {"Forbidden", "ApplyFailed"}:
        raise kopf.TemporaryError(outcome.problem.message, delay=RETRY_SECONDS)


@kopf.on.resume(*APP, id="reconcile")
@kopf.on.create(*APP, id="reconcile")
@kopf.on.update(*APP, id="reconcile")
def reconcile_app(body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    """The app itself changed (or the operator started): converge it."""
    _run(body, kwargs, logger)


@kopf.on.delete(*APP, id="cleanup")
def cleanup_app(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Remove the cluster-scoped volume; the garbage collector takes the rest."""
    cleanup(memo.api, body)


COALESCE_SECONDS = 0.5
"""After a pass for an app, further child events of it wait this long and share one pass.

A new app's children report progress in bursts (a DaemonSet's status moves 0/4, 1/4 ... 4/4
within a second). The first event is handled at once, so a lone change (a deleted child) is
repaired without delay; the rest of a burst costs one more pass, and one status write.
"""
RETRY_SECONDS = 10.0

_busy: set[tuple[str, str]] = set()
"""Apps with a pass running or a window open."""
_dirty: set[tuple[str, str]] = set()
"""Apps whose children changed during the pass or window: they get one trailing pass."""
_lock = threading.Lock()
PASS_WORKERS = 4
_passes = concurrent.futures.ThreadPoolExecutor(PASS_WORKERS, thread_name_prefix="pass")


def on_child_event(body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    """A child changed or vanished: repair it if needed and recompute the app's status."""
    key = _owner_key(body)
    with _lock:
        if key in _busy:
            _dirty.add(key)
            return
        _busy.add(key)
    _pass(key, kwargs, logger)


def _pass(key: tuple[str, str], kwargs: Mapping[str, Any], logger: kopf.Logger) -> None:
    delay = COALESCE_SECONDS
    app = _first(kwargs["idx_apps"], key)
    # No app, or one going away: recreating its children would fight the deletion.
    try:
        if app is not None and not app["metadata"].get("deletionTimestamp"):
            _run(app, kwargs, logger)
    except Exception as err:
        # No kopf retry out here: come back later ourselves, whatever went wrong, so the
        # app is never left without a pass.
        logger.error("reconcile of %s/%s failed, retrying in %ss: %s", *key, RETRY_SECONDS, err)
        with _lock:
            _dirty.add(key)
        delay = RETRY_SECONDS
    finally:
        # The copied context carries kopf's settings and event queue into the pool's thread;
        # the timer only hands over, so at most PASS_WORKERS passes talk to the API at once.
        context = contextvars.copy_context()
        timer = threading.Timer(delay, _passes.submit, (context.run, _trail, key, kwargs, logger))
        timer.daemon = True
        timer.start()


def _trail(key: tuple[str, str], kwargs: Mapping[str, Any], logger: kopf.Logger) -> None:
    with _lock:
        if key not in _dirty:
            _busy.discard(key)
            return
        _dirty.discard(key)
    _pass(key, kwargs, logger)


for _kind, (_group, _version, _plural) in CHILDREN.items():
    _resource = (_group, _version, _plural) if _group else (_version, _plural)
    kopf.index(*_resource, labels=MANAGED, id=_index_name(_kind))(_index_child)
    kopf.on.event(*_resource, labels=MANAGED, id=f"child_{_kind.lower()}")(on_child_event)
