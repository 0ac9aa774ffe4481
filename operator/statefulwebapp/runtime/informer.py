"""Informers: a paged list, then a watch, each object packed as it arrives into a store.

An :class:`Informer` lists one :class:`Source` page by page, then watches it from the list's
resourceVersion; every object is packed (the source says how) and its parsed body dropped as
soon as it is read. Passes read the packed objects from a :class:`Store`, shaped like kopf's
indexes. What the operator watches, and why it does not let kopf watch it, is
``controllers/sources.py``.

A watch that ends (the server's timeout, a dropped connection, an API server restart) resumes
from the last resourceVersion it saw; bookmarks keep that version fresh. When the server no
longer has it (410 Gone), the kind is listed again and every object that changed, appeared or
vanished meanwhile is reported (kopf's relisting never reports the vanished ones).
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pykube
import requests

from statefulwebapp.api.objects import Key, Manifest
from statefulwebapp.runtime import kube
from statefulwebapp.runtime.metrics import Metrics

Notify = Callable[[kube.Resource, Key, str], None]
"""Told of a change: the object's kind, its key, the event (ADDED, MODIFIED, DELETED)."""

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


@dataclass(frozen=True)
class Source:
    """What one watch follows: a kind, a server-side selector, and what is kept of an object."""

    kind: kube.Resource
    """The kind watched."""
    key: Callable[[Mapping[str, Any]], Key | None]
    """The key an object is stored (and told) under; None: not kept."""
    pack: Callable[[Mapping[str, Any]], str]
    """The packed form kept in the store."""
    labels: str = ""
    """Label selector."""
    fields: str = ""
    """Field selector."""
    name: str = ""
    """The store's name, when several sources watch one kind; else the kind's name."""
    metadata_only: bool = False
    """Ask for PartialObjectMetadata: the server sends no spec or status, so nothing of them is
    decoded (for sources whose objects are wanted for their names and owners alone)."""
    unowned: bool = False
    """Hold the objects ``key`` gives no app as well, by name only (:meth:`Store.named`): an
    object with the operator's labels but no owner of ours still takes its name."""
    reading: Callable[[Mapping[str, Any], Hashable], Hashable] | None = None
    """What passes read of an object, given what they read of it before (None: not held). A
    change that leaves it the same is stored and told to nobody. None: every change is told."""

    @property
    def store(self) -> str:
        """Name of the store this source fills (the stores returned by :func:`start`)."""
        return self.name or self.kind.name


Entry = tuple[Key | None, str, Key, Hashable]
"""What a store holds of one object: the app it belongs to (None: none), its packed form, its
(namespace, name), and what passes read of it (:attr:`Source.reading`; None: not said)."""


def news(before: Entry | None, after: Entry) -> bool:
    """Whether a pass must hear of an object that was ``before`` and is now ``after``.

    It must if the object is new or another app's now, if its source does not say what passes
    read of it, or if that changed.
    """
    return before is None or before[0] != after[0] or after[3] is None or before[3] != after[3]


class Store(Mapping[Key, tuple[str, ...]]):
    """The packed objects of one kind, by the app they belong to, and by name.

    Written by that kind's watches, read by passes in other threads; reads see whole entries.
    """

    def __init__(self, informers: int = 0) -> None:
        """Empty until the first list of each of its ``informers`` (one per served scope)."""
        self._lock = threading.Lock()
        self._objects: dict[str, Entry] = {}
        self._by_key: dict[Key, dict[str, str]] = {}
        self._by_name: dict[Key, str] = {}
        self._unlisted = informers

    @property
    def synced(self) -> bool:
        """Whether each informer filling it has listed once (before, an absent name is no proof)."""
        return self._unlisted <= 0

    def listed(self) -> None:
        """One of its informers has listed for the first time."""
        with self._lock:
            self._unlisted -= 1

    def named(self, name: Key) -> str | None:
        """The packed object called ``name`` ((namespace, name); "" for cluster-scoped), if held."""
        with self._lock:
            uid = self._by_name.get(name)
            return self._objects[uid][1] if uid is not None else None

    def __getitem__(self, key: Key) -> tuple[str, ...]:
        """The packed objects belonging to app ``key`` (usually one)."""
        with self._lock:
            return tuple(self._by_key[key].values())

    def __contains__(self, key: object) -> bool:
        """Whether app ``key`` has an object here, its entries not copied (asked per pod event)."""
        with self._lock:
            return key in self._by_key

    def __iter__(self) -> Iterator[Key]:
        """The apps that have an object of this kind (a snapshot)."""
        with self._lock:
            return iter(list(self._by_key))

    def __len__(self) -> int:
        """How many apps have an object of this kind."""
        with self._lock:
            return len(self._by_key)

    def entry(self, uid: str) -> Entry | None:
        """The app, packed form and name of the object ``uid``, if held."""
        with self._lock:
            return self._objects.get(uid)

    def put(
        self,
        uid: str,
        key: Key | None,
        packed: str,
        name: Key = ("", ""),
        reading: Hashable = None,
    ) -> Key | None:
        """Hold the object; the app it belonged to before, if its labels moved it.

        ``key`` None: it belongs to no app, and is found by its ``name`` alone. ``reading``:
        what passes read of it (:attr:`Source.reading`).
        """
        with self._lock:
            before = self._drop(uid)
            self._objects[uid] = (key, packed, name, reading)
            if key is not None:
                self._by_key.setdefault(key, {})[uid] = packed
            if name[1]:
                self._by_name[name] = uid
        return before if before != key else None

    def pop(self, uid: str) -> Key | None:
        """Forget the object; the app it belonged to, if it was held."""
        with self._lock:
            return self._drop(uid)

    def _drop(self, uid: str) -> Key | None:
        entry = self._objects.pop(uid, None)
        if entry is None:
            return None
        key, _, name, _ = entry
        if self._by_name.get(name) == uid:
            del self._by_name[name]
        if key is None:
            return None
        held = self._by_key.get(key, {})
        held.pop(uid, None)
        if not held:
            self._by_key.pop(key, None)
        return key


class VersionGoneError(Exception):
    """The server no longer has the resourceVersion a watch asked to resume from."""


def changes(
    before: Mapping[str, Entry], after: Mapping[str, Entry]
) -> Iterator[tuple[str, str, Entry | None]]:
    """What a relist found: (event, uid, the entry listed or None), by uid, in a stable order.

    An object held and listed the same is no change; one held and not listed is DELETED.
    """
    for uid in sorted(before.keys() - after.keys()):
        yield "DELETED", uid, None
    for uid in sorted(after):
        if before.get(uid) != after[uid]:
            yield ("MODIFIED" if uid in before else "ADDED"), uid, after[uid]


def name_of(meta: Mapping[str, Any]) -> Key:
    """An object's (namespace, name): "" for a cluster-scoped one's namespace."""
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


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
        self._listed_once = False
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
        for event, uid, entry in changes(held, listed):
            if entry is None:
                key, moved = held[uid][0], None
                self.store.pop(uid)
            else:
                key, moved = entry[0], self.store.put(uid, *entry)
            changed += 1
            if report and (entry is None or news(held.get(uid), entry)):
                self._tell(key, event, moved)
        if not self._listed_once:
            self._listed_once = True
            self.store.listed()
        self._uids = set(listed)
        return changed

    def _listed(self) -> dict[str, Entry]:
        """Every object, by uid: its entry; sets the list's resourceVersion."""
        listed: dict[str, Entry] = {}
        for page in kube.pages(
            self.api,
            self.path,
            selector=self.source.labels,
            fields=self.source.fields,
            limit=PAGE,
            accept=kube.METADATA_LIST if self.source.metadata_only else None,
            timeout=LIST_TIMEOUT,
        ):
            for body in page.get("items") or []:
                # A list's items carry no kind (a metadata list's say PartialObjectMetadata);
                # the watch's objects and a get's do.
                body["apiVersion"], body["kind"] = self.api_version, self.kind.name
                uid = str((body.get("metadata") or {}).get("uid"))
                entry = self._entry(body, self._held(uid))
                if entry is not None:
                    listed[uid] = entry
            self.version = str((page.get("metadata") or {}).get("resourceVersion") or "")
        return listed

    def _held(self, uid: str) -> Entry | None:
        """The object as the store holds it, if the source compares readings; else None.

        Without a reading (``Source.reading``) every change is told: no lookup is needed.
        """
        return self.store.entry(uid) if self.source.reading is not None else None

    def _entry(self, body: Mapping[str, Any], before: Entry | None) -> Entry | None:
        """What the store holds of ``body``, held as ``before`` until now; None: nothing."""
        key = self.source.key(body)
        if key is None and not self.source.unowned:
            return None
        reading = self.source.reading
        return (
            key,
            self.source.pack(body),
            name_of(body.get("metadata") or {}),
            None if reading is None else reading(body, None if before is None else before[3]),
        )

    def _tell(self, key: Key | None, event: str, moved_from: Key | None) -> None:
        if moved_from is not None:  # Relabelled to another app: gone from the first.
            self.notify(self.kind, moved_from, "DELETED")
        if key is not None:
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
            headers={"Accept": kube.METADATA} if self.source.metadata_only else None,
            stream=True,
            timeout=CLIENT_TIMEOUT,
        ) as response:
            if response.status_code == 410:
                raise VersionGoneError
            if not response.ok:
                raise kube.ApiError("watch", self.path, response)
            for line in response.iter_lines(chunk_size=None):
                if line:
                    if self.metrics is not None:
                        self.metrics.received("watch", self.kind.plural, len(line))
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
        if self.source.metadata_only:
            body["apiVersion"], body["kind"] = self.api_version, self.kind.name
        if kind == "DELETED":
            entry = self.store.entry(uid)
            self.store.pop(uid)
            self._uids.discard(uid)
            self._tell(entry[0] if entry is not None else self.source.key(body), "DELETED", None)
            return
        before = self._held(uid)
        entry = self._entry(body, before)
        if entry is None:
            return
        self._uids.add(uid)
        moved = self.store.put(uid, *entry)
        if news(before, entry):
            self._tell(entry[0], str(kind), moved)


LISTERS = 4
"""Lists sent at once at start: the API server filters one (the kubelet's events, say) while the
operator decodes another's pages."""


def start(
    api: pykube.HTTPClient,
    waves: Iterable[Iterable[Source]],
    namespaces: frozenset[str],
    notify: Notify,
    metrics: Metrics | None = None,
    *,
    bind: Callable[[Source, Mapping[str, Store]], Source] = lambda source, _: source,
) -> dict[str, Store]:
    """List every source now, then watch each in a thread; the stores by :attr:`Source.store`.

    ``waves``: the sources of each wave are listed at once (:data:`LISTERS` at a time), a wave
    after the one before it; ``bind``: a source as it is watched next to the stores filled by
    the waves before. Returns once every kind was listed, so the first pass finds every object
    there is; a kind whose list failed is listed again by its thread, with backoff, until it
    succeeds.
    """
    stores: dict[str, Store] = {}
    watches: list[Informer] = []
    unlisted: set[str] = set()
    failures: list[Exception] = []

    def list_one(one: Informer) -> None:
        if any(not isinstance(failure, kube.ApiError) for failure in failures):
            # The server did not answer (etcd down, say): the other kinds would wait as long.
            unlisted.add(one.name)
            return
        try:
            one.list(report=False)
        except (kube.ApiError, requests.RequestException) as err:
            # Not waited for: the operator serves what it can (RBAC denied one kind, say),
            # and a pass that finds no such child reads it directly until the list succeeds.
            _log.error("list of %s: %s; listing again in the background", one.kind.plural, err)
            unlisted.add(one.name)
            failures.append(err)

    with ThreadPoolExecutor(LISTERS, thread_name_prefix="list") as pool:
        for wave in waves:
            listing: list[Informer] = []
            for listed in wave:
                source = bind(listed, stores)
                scopes = sorted(namespaces) if source.kind.namespaced and namespaces else [""]
                store = stores[source.store] = Store(informers=len(scopes))
                listing += [
                    Informer(api, source, store, notify, scope, metrics=metrics) for scope in scopes
                ]
            list(pool.map(list_one, listing))
            watches += listing
    for one in watches:
        # Each thread runs in a copy of the caller's context (kopf's settings, when kopf
        # started the caller).
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(one.run, one.name in unlisted), name=one.name, daemon=True
        ).start()
    return stores
