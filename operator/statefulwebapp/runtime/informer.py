"""The children's informers: a paged list, then a watch, each object packed as it arrives.

kopf gives every object it watches a queue and a worker of its own, fed with the object's full
body (managed fields included). At a thousand apps that is seven thousand bodies alive at once
at every start, and the peak stays as the process's RSS: Python's allocator rarely hands its
arenas back. A pass needs far less of a child: the fields :func:`pack` keeps, and which app to
pass. So kopf watches the apps (its handlers and their index) and the children are watched
here: one thread per kind (and per served namespace) lists page by page, then watches from the
list's resourceVersion; every object is packed and its parsed body dropped as soon as it is
read. WorkQueue read the packed children from a :class:`Store`, shaped like kopf's indexes.

The kubelet's FailedMount events are watched the same way (:data:`MOUNT_FAILURES`): a pod
waiting for its volume says only ``ContainerCreating``; the event says why, and the status
repeats it. So are its failed readiness checks (:data:`PROBE_FAILURES`): a backup agent that is
not ready says only that; the check's output says what its last archive run met.

A watch that ends (the server's timeout, a dropped connection, an API server restart) resumes
from the last resourceVersion it saw; bookmarks keep that version fresh. When the server no
longer has it (410 Gone), the kind is listed again and every object that changed, appeared or
vanished meanwhile is reported (kopf's relisting never reports the vanished ones).
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pykube
import requests

from statefulwebapp.api import kinds
from statefulwebapp.api.objects import Key, Manifest
from statefulwebapp.runtime import kube
from statefulwebapp.runtime.metrics import Metrics
from statefulwebapp.specs import drift, names, registry

Notify = Callable[[kinds.Kind, Key, str], None]
"""Told of a change: the object's kind, its app, the event (ADDED, MODIFIED, DELETED)."""

PAGE = 200
"""Objects per list page: the parsed page is the largest transient the watches hold."""
SERVER_TIMEOUT = 300
"""The server ends each watch after this many seconds; it is then resumed (bounds a watch
that silently stopped, kopf's best-known failure)."""
CLIENT_TIMEOUT = (30.0, 330.0)
"""Connect and read timeouts of a watch request: the read outlasts the server's timeout, and
bookmarks arrive well within it."""
LIST_TIMEOUT = (30.0, 30.0)
"""Connect and read timeouts of one list page: with etcd down the API server holds a list
for its own request timeout (60 s), and a start must not wait that long per kind."""
BACKOFF = (1.0, 30.0)
"""First and longest wait after a failed list or watch, doubling in between."""

_log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Source:
    """What one watch follows: a kind, a server-side selector, and what is kept of an object."""

    kind: kinds.Kind
    """The kind watched."""
    labels: str = ""
    """Label selector."""
    fields: str = ""
    """Field selector."""
    key: Callable[[Mapping[str, Any]], Key | None] = lambda body: owner_key(
        body.get("metadata") or {}
    )
    """The app an object belongs to; None: none of ours, not kept."""
    pack: Callable[[Mapping[str, Any]], str] = pack
    """The packed form kept in the store."""
    name: str = ""
    """The store's name, when several sources watch one kind; else the kind's name."""

    @property
    def store(self) -> str:
        """Name of the store this source fills (the stores returned by :func:`start`)."""
        return self.name or self.kind.name


def child_source(child: registry.Child) -> Source:
    """A child, watched by the operator's label (and its role's), stored by its key."""
    return Source(child, labels=child.selector, name=child.key)


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


class Store(Mapping[Key, tuple[str, ...]]):
    """The packed objects of one kind, by the app they belong to.

    Written by that kind's watches, read by passes in other threads; reads see whole entries.
    """

    def __init__(self) -> None:
        """Empty until the first list."""
        self._lock = threading.Lock()
        self._objects: dict[str, tuple[Key, str]] = {}
        self._by_key: dict[Key, dict[str, str]] = {}

    def __getitem__(self, key: Key) -> tuple[str, ...]:
        """The packed objects belonging to app ``key`` (usually one)."""
        with self._lock:
            return tuple(self._by_key[key].values())

    def __iter__(self) -> Iterator[Key]:
        """The apps that have an object of this kind (a snapshot)."""
        with self._lock:
            return iter(list(self._by_key))

    def __len__(self) -> int:
        """How many apps have an object of this kind."""
        with self._lock:
            return len(self._by_key)

    def entry(self, uid: str) -> tuple[Key, str] | None:
        """The app and packed form of the object ``uid``, if held."""
        with self._lock:
            return self._objects.get(uid)

    def put(self, uid: str, key: Key, packed: str) -> Key | None:
        """Hold the object; the app it belonged to before, if its labels moved it."""
        with self._lock:
            before = self._drop(uid)
            self._objects[uid] = (key, packed)
            self._by_key.setdefault(key, {})[uid] = packed
        return before if before != key else None

    def pop(self, uid: str) -> Key | None:
        """Forget the object; the app it belonged to, if it was held."""
        with self._lock:
            return self._drop(uid)

    def _drop(self, uid: str) -> Key | None:
        entry = self._objects.pop(uid, None)
        if entry is None:
            return None
        key = entry[0]
        held = self._by_key.get(key, {})
        held.pop(uid, None)
        if not held:
            self._by_key.pop(key, None)
        return key


class VersionGoneError(Exception):
    """The server no longer has the resourceVersion a watch asked to resume from."""


def changes(
    before: Mapping[str, tuple[Key, str]], after: Mapping[str, tuple[Key, str]]
) -> Iterator[tuple[str, str, Key, str | None]]:
    """What a relist found: (event, uid, app, packed or None), by uid, in a stable order.

    An object held and listed the same is no change; one held and not listed is DELETED.
    """
    for uid in sorted(before.keys() - after.keys()):
        yield "DELETED", uid, before[uid][0], None
    for uid in sorted(after):
        if before.get(uid) != after[uid]:
            yield ("MODIFIED" if uid in before else "ADDED"), uid, *after[uid]


class Informer:
    """Lists, then watches, one source (a child kind) in one scope (a namespace, or all)."""

    def __init__(
        self,
        api: pykube.HTTPClient,
        source: Source,
        store: Store,
        notify: Notify,
        namespace: str = "",
        *,
        metrics: Metrics | None = None,
    ) -> None:
        """Watch the objects ``source`` selects in ``namespace`` ("": all) into ``store``.

        ``metrics``: where its relists are counted (its requests are, by ``api``'s adapter).
        """
        self.api = api
        self.metrics = metrics
        if metrics is not None:
            metrics.watch_kind(source.store)
        self.source = source
        self.kind = kind = source.kind
        self.store = store
        self.notify = notify
        scope = f"/namespaces/{namespace}" if kind.namespaced and namespace else ""
        self.path = f"{kind.api_base}{scope}/{kind.plural}"
        self.api_version = f"{kind.group}/{kind.version}" if kind.group else kind.version
        watched = source.name.lower() if source.name else kind.plural
        self.name = f"watch-{watched}" + (f"-{namespace}" if scope else "")
        self.version = ""
        self._uids: set[str] = set()
        """The objects this watch put in the store (a store may be shared by scopes)."""

    def list(self, *, report: bool) -> int:
        """List every object into the store; ``report``: notify what changed since.

        Returns how many objects changed, appeared or vanished since the store last saw them.
        """
        while True:
            try:
                listed = self._listed()
                break
            except kube.ApiError as err:
                if err.status != 410:
                    raise
                # The continue token expired between two pages: start over.
        held = {uid: entry for uid in self._uids if (entry := self.store.entry(uid))}
        changed = 0
        for event, uid, key, packed in changes(held, listed):
            moved = self.store.pop(uid) if packed is None else self.store.put(uid, key, packed)
            changed += 1
            if report:
                self._tell(key, event, moved if packed is not None else None)
        self._uids = set(listed)
        return changed

    def _listed(self) -> dict[str, tuple[Key, str]]:
        """Every object, by uid: its app and packed form; sets the list's resourceVersion."""
        listed: dict[str, tuple[Key, str]] = {}
        for page in kube.pages(
            self.api,
            self.path,
            selector=self.source.labels,
            fields=self.source.fields,
            limit=PAGE,
            timeout=LIST_TIMEOUT,
        ):
            for body in page.get("items") or []:
                # A list's items carry no kind; the watch's objects and a get's do.
                body.setdefault("apiVersion", self.api_version)
                body.setdefault("kind", self.kind.name)
                key = self.source.key(body)
                if key is not None:
                    uid = str((body.get("metadata") or {}).get("uid"))
                    listed[uid] = (key, self.source.pack(body))
            self.version = str((page.get("metadata") or {}).get("resourceVersion") or "")
        return listed

    def _tell(self, key: Key, event: str, moved_from: Key | None) -> None:
        if moved_from is not None:  # Relabelled to another app: gone from the first.
            self.notify(self.kind, moved_from, "DELETED")
        self.notify(self.kind, key, event)

    def run(self, relist: bool = False) -> None:
        """Watch for ever (a thread's target): resume after a gap, list again after a 410.

        ``relist``: list first (the list at start failed).
        """
        wait = BACKOFF[0]
        while True:
            try:
                if relist:
                    why = (
                        f"the server no longer had version {self.version}"
                        if self.version
                        else "the list at start failed"
                    )
                    changed = self.list(report=True)
                    relist = False
                    if self.metrics is not None:
                        self.metrics.relisted(self.source.store)
                    _log.info(
                        "watch of %s: %s; listed again: %d changed, appeared or vanished",
                        self.kind.plural,
                        why,
                        changed,
                    )
                self.watch()
                wait = BACKOFF[0]
            except VersionGoneError:
                relist = True
            except Exception as err:  # Server trouble or RBAC: said, waited out, tried again.
                _log.warning("watch of %s: %s; again in %.0f s", self.kind.plural, err, wait)
                time.sleep(wait)
                wait = min(wait * 2, BACKOFF[1])

    def watch(self) -> None:
        """One watch request from ``self.version``, until the server ends it."""
        params = {
            "watch": "true",
            **kube.selectors(self.source.labels, self.source.fields),
            "resourceVersion": self.version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(SERVER_TIMEOUT),
        }
        with self.api.session.get(
            f"{self.api.url.rstrip('/')}{self.path}",
            params=params,
            stream=True,
            timeout=CLIENT_TIMEOUT,
        ) as response:
            if response.status_code == 410:
                raise VersionGoneError
            if not response.ok:
                raise kube.ApiError("watch", self.path, response)
            for line in response.iter_lines(chunk_size=None):
                if line:
                    self.event(json.loads(line))

    def event(self, event: Manifest) -> None:
        """Take one watch event into the store and tell of it."""
        kind, body = event.get("type"), event.get("object") or {}
        meta = body.get("metadata") or {}
        if kind == "ERROR":
            if body.get("code") == 410:
                raise VersionGoneError
            raise RuntimeError(f"the server ended the watch: {body.get('message') or body}")
        self.version = str(meta.get("resourceVersion") or self.version)
        if kind == "BOOKMARK":
            return
        uid = str(meta.get("uid"))
        key = self.source.key(body)
        if kind == "DELETED":
            held = self.store.pop(uid)
            self._uids.discard(uid)
            gone = held if held is not None else key
            if gone is not None:
                self._tell(gone, "DELETED", None)
            return
        if key is None:
            return
        self._uids.add(uid)
        self._tell(key, str(kind), self.store.put(uid, key, self.source.pack(body)))


SOURCES: tuple[Source, ...] = (
    *(child_source(child) for child in registry.CHILDREN),
    MOUNT_FAILURES,
    PROBE_FAILURES,
)
"""Everything watched besides the apps: the children, then the pods' failures."""


def bound(source: Source, stores: Mapping[str, Store]) -> Source:
    """``source`` as it is watched next to ``stores``: pods' events only of our apps' pods.

    The workloads' stores are filled first: :data:`SOURCES` lists the children first.
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
    stores: dict[str, Store] = {}
    watches: list[Informer] = []
    for listed in SOURCES:
        source = bound(listed, stores)
        store = stores[source.store] = Store()
        scopes = sorted(namespaces) if source.kind.namespaced and namespaces else [""]
        watches += [
            Informer(api, source, store, notify, scope, metrics=metrics) for scope in scopes
        ]
    unlisted: set[str] = set()
    failure: Exception | None = None
    for one in watches:
        if failure is not None and not isinstance(failure, kube.ApiError):
            # The server did not answer (etcd down, say): the other kinds would wait as long.
            unlisted.add(one.name)
            continue
        try:
            one.list(report=False)
        except (kube.ApiError, requests.RequestException) as err:
            # Not waited for: the operator serves what it can (RBAC denied one kind, say),
            # and a pass that finds no such child reads it directly until the list succeeds.
            _log.error("list of %s: %s; listing again in the background", one.kind.plural, err)
            unlisted.add(one.name)
            failure = err
    for one in watches:
        # Each thread runs in a copy of the caller's context: kopf's (its event queue, for
        # warnings posted by the passes these watches request).
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(one.run, one.name in unlisted), name=one.name, daemon=True
        ).start()
    return stores
