"""What the operator watches besides the apps, and what it keeps of each object.

kopf gives every object it watches a queue and a worker of its own, fed with the object's full
body (managed fields included). At a thousand apps that is seven thousand bodies alive at once
at every start, and the peak stays as the process's RSS: Python's allocator rarely hands its
arenas back. A pass needs far less of a child: the fields :func:`pack` keeps, and which app to
pass. So kopf watches the apps (its handlers and their index) and the children are watched by
the informers of ``runtime/informer.py``: one thread per kind (and per served namespace) lists
page by page, then watches; every object is packed and its parsed body dropped as soon as it is
read. Passes read the packed children from a :class:`~statefulwebapp.runtime.informer.Store`.

The kubelet's FailedMount events are watched the same way (:data:`MOUNT_FAILURES`): a pod
waiting for its volume says only ``ContainerCreating``; the event says why, and the status
repeats it. So are its failed readiness checks (:data:`PROBE_FAILURES`): a backup agent that is
not ready says only that; the check's output says what its last archive run met; and its
back-offs (:data:`BACKOFFS`). The nodes are watched for their Ready condition (:data:`NODES`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Hashable, Mapping
from dataclasses import replace
from typing import Any

import pykube

from statefulwebapp.api import kinds
from statefulwebapp.api.objects import Key, Obj
from statefulwebapp.runtime.informer import Notify, Source, Store, name_of
from statefulwebapp.runtime.informer import start as start_informers
from statefulwebapp.runtime.metrics import Metrics
from statefulwebapp.specs import drift, names, pods, registry, status


def pack(body: Mapping[str, Any], also: tuple[str, ...] = ()) -> str:
    """What reconcile and status need of an object, as compact JSON; ``also``: more metadata.

    A thousand apps mean seven thousand objects held. As parsed dicts they took 65 KB per app;
    as JSON text, a quarter of that. A pass parses the seven it needs, well under a millisecond.
    """
    meta = body.get("metadata") or {}
    kept_meta = {key: meta[key] for key in (*_META, *also) if key in meta}
    # Of the annotations, only the digest the drift rule reads: others' may be large.
    stamp = drift.stamp_of(body)
    if stamp is not None:
        kept_meta["annotations"] = {drift.DIGEST: stamp}
    kept = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": kept_meta,
        "spec": body.get("spec"),
        "status": body.get("status"),
    }
    return json.dumps(kept, separators=(",", ":"))


_META = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
    "labels",
    "ownerReferences",
)


def owner_key(meta: Mapping[str, Any]) -> Key | None:
    """The app an object of ours names as its owner; None if it names none.

    A namespaced child names its app by its controller ownerReference, which can only point
    within its own namespace: an object planted in another namespace with an app's labels is
    never attributed to that app (the pass checks the reference's uid, which it knows). A
    volume is cluster-scoped and cannot be owned: its labels name the app, and the pass checks
    that its claimRef names the app's claim as well (:func:`names.volume_owned`).
    """
    namespace = meta.get("namespace")
    if namespace:
        ref = names.controller_of(meta)
        return None if ref is None else (str(namespace), str(ref.get("name") or ""))
    labels = meta.get("labels") or {}
    app_namespace, name = labels.get(names.LABEL_APP_NAMESPACE), labels.get(names.LABEL_INSTANCE)
    return (str(app_namespace), str(name)) if app_namespace and name else None


def pack_pod_event(body: Mapping[str, Any]) -> str:
    """What the status says of a pod's event: pod, node, message, when last seen."""
    involved = body.get("involvedObject") or {}
    series = body.get("series") or {}
    seen = (
        series.get("lastObservedTime")
        or body.get("lastTimestamp")
        or body.get("eventTime")
        or (body.get("metadata") or {}).get("creationTimestamp")
    )
    kept = {
        "pod": involved.get("name"),
        "node": (body.get("source") or {}).get("host") or body.get("reportingInstance") or "",
        "message": body.get("message") or "",
        "seen": seen or "",
    }
    return json.dumps(kept, separators=(",", ":"))


def pod_event_key(
    body: Mapping[str, Any], workloads: Mapping[str, Store] | None = None
) -> Key | None:
    """The app whose web pod or backup agent the event is about; None for any other pod.

    ``workloads``: the stores of the apps' StatefulSets and DaemonSets. With them, a pod counts
    only while its app's workload of its component is held there: the watch of events is
    cluster-wide and names a pod by name alone, and any pod named like one of ours (``x-0``)
    must cost no memory.
    """
    involved = body.get("involvedObject") or {}
    owner = names.pod_owner(str(involved.get("name") or ""))
    if owner is None:
        return None
    key = (str(involved.get("namespace") or ""), owner[0])
    if workloads is not None:
        workload = registry.STATEFULSET if owner[1] == names.WEB else registry.DAEMONSET
        if key not in workloads[workload.key]:
            return None
    return key


def _owner(body: Mapping[str, Any]) -> Key | None:
    return owner_key(body.get("metadata") or {})


def date_logger_reading(body: Mapping[str, Any], before: Hashable) -> Hashable:
    """What a pass reads of the date logger's CronJob: its metadata, and how its last run went.

    A change of its spec moves its generation, in the metadata; how its latest finished run
    went is ``status.last_run``. The metadata is kept as a hash: a thousand CronJobs' metadata
    would otherwise be held twice.

    The CronJob controller updates the status twice a run (a run scheduled, then its end): with
    the default schedule, two passes per app per minute that find nothing to do. A healthy
    logger's runs leave this reading as it was. While a run is in progress the reading before
    it stands, as the date log does (``status.date_log``).
    """
    meta = body.get("metadata") or {}
    kept = {key: meta[key] for key in _META if key in meta and key != "resourceVersion"}
    kept["stamp"] = drift.stamp_of(body)
    went = status.last_run(body)
    if went is None and isinstance(before, tuple):
        went = before[1]
    return hash(json.dumps(kept, sort_keys=True)), went


STATUS_READ: Mapping[str, tuple[str, ...]] = {
    registry.STATEFULSET.name: (
        "observedGeneration",
        "replicas",
        "readyReplicas",
        "updatedReplicas",
        "currentRevision",
        "updateRevision",
    ),
    registry.DAEMONSET.name: (
        "observedGeneration",
        "desiredNumberScheduled",
        "numberReady",
        "updatedNumberScheduled",
    ),
    registry.PERSISTENT_VOLUME_CLAIM.name: ("phase",),
    registry.PERSISTENT_VOLUME.name: ("phase",),
}
"""Per kind of child, the status fields passes read (``specs/status.py``, ``specs/pods.py``,
``specs/restoring.py``, a Released volume); of any other kind's status, none."""


def child_reading(read: tuple[str, ...]) -> Callable[[Mapping[str, Any], Hashable], Hashable]:
    """What a pass reads of a child: its metadata, its spec, the status fields ``read``.

    The controllers update their objects' status more often than passes read it: a
    StatefulSet's ``availableReplicas`` a moment after its ``readyReplicas``, a disruption
    budget's counts at every pod's readiness, which no pass reads. A spec is hashed only for a
    kind without a generation (a claim, a volume, a Service): elsewhere the generation moves
    with it, and our rendering's digest is in the metadata.
    """

    def reading(body: Mapping[str, Any], before: Hashable) -> Hashable:
        # A tuple of plain values: hashing a JSON dump of the metadata cost more than it saved.
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        return (
            meta.get("uid"),
            meta.get("generation"),
            meta.get("deletionTimestamp"),
            drift.stamp_of(body),
            tuple(sorted((meta.get("labels") or {}).items())),
            tuple((r.get("uid"), r.get("controller")) for r in meta.get("ownerReferences") or ()),
            None if "generation" in meta else json.dumps(body.get("spec"), sort_keys=True),
            tuple(str(status.get(field)) for field in read),
        )

    return reading


def child_source(child: registry.Child) -> Source:
    """A child, watched by the operator's label (and its role's), stored by its key.

    One with those labels and no owner of ours is held by its name alone: it still takes the
    name a new app's child would have. Only the changes a pass reads are told: of the date
    logger's CronJob, :func:`date_logger_reading`; of any other child, :func:`child_reading`.
    """
    return Source(
        child,
        key=_owner,
        pack=pack,
        labels=child.selector,
        name=child.key,
        unowned=True,
        reading=(
            date_logger_reading
            if child is registry.CRONJOB
            else child_reading(STATUS_READ.get(child.name, ()))
        ),
    )


def _nobody(body: Mapping[str, Any]) -> None:
    return None


def names_source(kind: kinds.Kind) -> Source:
    """The names in use of ``kind`` outside the operator's labels: metadata only, held by name.

    With the children's own stores, they say whether a new app's child would take a name that
    is someone else's, without a read per child. Nothing is told of them: no pass follows an
    object that is not ours.
    """
    return Source(
        kind,
        key=_nobody,
        pack=pack,
        labels=f"{names.LABEL_MANAGED_BY}!={names.MANAGER}",
        name=f"{kind.name}Names",
        metadata_only=True,
        unowned=True,
    )


NAMES: Mapping[str, Source] = {child.name: names_source(child) for child in registry.CHILDREN}
"""Per kind of child (its name), the source of the names in use that are not the operator's."""


def _pod_events(reason: str, name: str) -> Source:
    """The kubelet's ``reason`` events of pods, selected by the server."""
    return Source(
        kinds.EVENT,
        fields=f"reason={reason},involvedObject.kind=Pod",
        key=pod_event_key,
        pack=pack_pod_event,
        name=name,
    )


MOUNT_FAILURES = _pod_events("FailedMount", "MountFailures")
"""The kubelet's FailedMount events of pods, selected by the server: none while mounts work."""

PROBE_FAILURES = _pod_events("Unhealthy", "ProbeFailures")
"""The kubelet's failed probes of pods (``Unhealthy``), selected by the server: none while
every check passes, so a healthy fleet costs this watch nothing."""

BACKOFFS = _pod_events("BackOff", "BackOffs")
"""The kubelet's back-offs of pods' containers (``BackOff``: one crashing, an image it cannot
pull), selected by the server: none while every container runs."""

NOT_READY: Key = ("", "NotReady")
"""Where the nodes' store holds the nodes whose Ready condition is not True."""
_READY: Key = ("", "Ready")


def _node_key(body: Mapping[str, Any]) -> Key:
    return _READY if pods.node_view(body)["ready"] == "True" else NOT_READY


def _pack_node(body: Mapping[str, Any]) -> str:
    return json.dumps(pods.node_view(body), separators=(",", ":"))


def _node_reading(body: Mapping[str, Any], before: Hashable) -> Hashable:
    """A node's Ready condition: its kubelet's heartbeats, every few minutes, change nothing."""
    view = pods.node_view(body)
    return view["ready"], view["reason"], view["since"]


NODES = Source(kinds.NODE, key=_node_key, pack=_pack_node, name="Nodes", reading=_node_reading)
"""The nodes, by whether they are Ready; only a change of their Ready condition is told (every
app then gets a pass: any may have a pod there). A pass reads the ones not Ready
(:data:`NOT_READY`) to name a lost node and the pods on it."""


def _app_key(body: Mapping[str, Any]) -> Key:
    return name_of(body.get("metadata") or {})


def _pack_app(body: Mapping[str, Any]) -> str:
    # With its creation time: of two apps on one export, the older keeps it (policy.py).
    return pack(body, also=("creationTimestamp",))


APPS = Source(kinds.APP, key=_app_key, pack=_pack_app, name="Apps")
"""The apps, by (namespace, name), packed like the children: what a pass reads of its app.

Watched here rather than by kopf: kopf's index of a kind makes every object of its first list
wait on one condition for all the others, whose wake-ups grow with the square of the fleet
(CHANGELOG.md, bench round 4)."""

WAVES: tuple[tuple[Source, ...], ...] = (
    (APPS, *(child_source(child) for child in registry.CHILDREN), *NAMES.values()),
    (MOUNT_FAILURES, PROBE_FAILURES, BACKOFFS, NODES),
)
"""Everything watched, in the order it is listed at start: the apps, their children and the
other names of their kinds, then the pods' failures, which are kept only for pods of the
workloads listed first (:func:`bound`)."""

SOURCES: tuple[Source, ...] = tuple(source for wave in WAVES for source in wave)
"""Every source of :data:`WAVES`."""


def named(
    stores: Mapping[str, Store], child: registry.Child, name: Key, *, others: bool = False
) -> tuple[bool, Obj | None]:
    """Whether the caches can tell who holds ``name`` for ``child``, and the object if one does.

    Every store of the child's kind is looked in: the children's (any app's, or nobody's, with
    the operator's labels) and the other names'; ``others``: only the other names'. (False,
    None) while one of them has not been listed yet.
    """
    held = [] if others else [stores.get(c.key) for c in registry.CHILDREN if c.name == child.name]
    held.append(stores.get(NAMES[child.name].store))
    listed = [store for store in held if store is not None and store.synced]
    if len(listed) < len(held):
        return False, None
    packed = next((p for store in listed if (p := store.named(name)) is not None), None)
    return True, json.loads(packed) if packed is not None else None


def bound(source: Source, stores: Mapping[str, Store]) -> Source:
    """``source`` as it is watched next to ``stores``: pods' events only of our apps' pods.

    The workloads' stores are filled first: :data:`WAVES` lists the children first.
    """
    if source.key is pod_event_key:
        return replace(source, key=functools.partial(pod_event_key, workloads=stores))
    return source


def start(
    api: pykube.HTTPClient,
    namespaces: frozenset[str],
    notify: Notify,
    metrics: Metrics | None = None,
) -> dict[str, Store]:
    """List every source now, then watch each in a thread; the stores by :attr:`Source.store`.

    Returns once every kind was listed, so the first pass finds every child there is; a kind
    whose list failed is listed again by its thread, with backoff, until it succeeds.
    """
    return start_informers(api, WAVES, namespaces, notify, metrics, bind=bound)
