"""What each command reads of the cluster, through :class:`Source` (``kube.py``, or a fake).

An app's children are what it owns: objects whose controller ownerReference carries its uid
(``names.owned``), found among those labelled with its name; its pods are those owned by its
StatefulSet, its DaemonSet, and the Jobs of its CronJob and of its restores. A label alone is
anyone's to write, so it only narrows the lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from statefulwebapp.api import kinds
from statefulwebapp.api.kinds import Kind
from statefulwebapp.api.objects import Manifest, Obj
from statefulwebapp.plugin import archives
from statefulwebapp.plugin.errors import NotFoundError, PluginError
from statefulwebapp.specs import names, registry


@dataclass(frozen=True)
class Exec:
    """What a command run in a container gave."""

    stdout: str
    stderr: str
    code: int | None
    """Its exit status; None when it did not end in time."""


class Source(Protocol):
    """The cluster, as the commands read and write it.

    Every method raises a :class:`~statefulwebapp.plugin.errors.PluginError` when the request
    fails.
    """

    @property
    def namespace(self) -> str:
        """The namespace of the kubeconfig's context (``default`` when it names none)."""

    def get(self, kind: Kind, name: str, namespace: str = "") -> Obj | None:
        """One object; None when there is none of that name."""

    def list(
        self, kind: Kind, namespace: str = "", selector: str = "", fields: str = ""
    ) -> list[Obj]:
        """The objects of ``kind`` in ``namespace`` (every namespace when empty)."""

    def create(self, kind: Kind, namespace: str, body: Manifest) -> Obj:
        """Create ``body``; the object the API server made."""

    def watch(
        self, kind: Kind, namespace: str, name: str, resource_version: str, timeout: int
    ) -> Iterator[tuple[str, Obj]]:
        """The events (type, object) of one object from ``resource_version`` on.

        For at most ``timeout`` seconds.
        """

    def logs(
        self, namespace: str, pod: str, container: str, tail: int, previous: bool = False
    ) -> str:
        """The last ``tail`` lines a container logged (of its previous run: ``previous``)."""

    def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], timeout: float
    ) -> Exec:
        """Run ``command`` in a container and wait for it at most ``timeout`` seconds."""


def meta(obj: Obj) -> Mapping[str, Any]:
    """The object's metadata (empty when it has none)."""
    return obj.get("metadata") or {}


def uid(obj: Obj) -> str:
    """The object's uid."""
    return str(meta(obj).get("uid") or "")


def controller_uid(obj: Obj) -> str:
    """The uid of the object's controller (its ownerReference with ``controller: true``)."""
    for ref in meta(obj).get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid") or "")
    return ""


def instance(name: str) -> str:
    """The label selector of every object the operator made for app ``name``."""
    return f"{names.LABEL_INSTANCE}={name}"


def find_app(source: Source, namespace: str, name: str) -> Obj:
    """The app, or a :class:`NotFoundError` saying which apps there are and how to list them."""
    app = source.get(kinds.APP, name, namespace)
    if app is not None:
        return app
    try:
        there = sorted(str(meta(a).get("name")) for a in source.list(kinds.APP, namespace))
    except PluginError:
        there = []
    listed = f" (apps there: {', '.join(there)})" if there else " (there is none)"
    raise NotFoundError(
        f'no StatefulWebApp "{name}" in namespace "{namespace}"{listed}; list them with: '
        f"kubectl swa status -n {namespace} (every namespace: kubectl swa status -A)"
    )


CHILD_KINDS: tuple[Kind, ...] = tuple(
    {child.plural: kinds.BY_NAME[child.name] for child in registry.CHILDREN}.values()
)
"""Each kind of the app's children once (the data's and the archives' volumes share one)."""


@dataclass
class AppView:
    """An app and what the operator made of it, as read now."""

    app: Obj
    children: dict[str, list[Obj]] = field(default_factory=dict)
    """The app's own children by kind name (volumes by their labels and claim)."""
    jobs: list[Obj] = field(default_factory=list)
    """The Jobs of its CronJob and of its restores."""
    pods: list[Obj] = field(default_factory=list)
    restores: list[Obj] = field(default_factory=list)
    """The restores that name it, oldest first."""
    listings: dict[str, archives.Listing | str] = field(default_factory=dict)
    """Each backup agent's archives by pod name, or why they could not be listed."""
    problems: list[str] = field(default_factory=list)
    """What could not be read (a list refused, a volume out of reach), one line each."""

    @property
    def namespace(self) -> str:
        """The app's namespace."""
        return str(meta(self.app).get("namespace") or "")

    @property
    def name(self) -> str:
        """The app's name."""
        return str(meta(self.app).get("name") or "")

    def child(self, kind: Kind) -> Obj | None:
        """The app's one child of ``kind`` (its data's, for a claim or a volume)."""
        found = [
            o
            for o in self.children.get(kind.name, [])
            if (meta(o).get("labels") or {}).get(names.LABEL_COMPONENT) != names.BACKUP_TARGET
        ]
        return found[0] if found else None

    def pods_of(self, component: str) -> list[Obj]:
        """The app's pods of ``component`` (``names.WEB``, ``names.BACKUP``, ...), by name."""
        return sorted(
            (
                p
                for p in self.pods
                if (meta(p).get("labels") or {}).get(names.LABEL_COMPONENT) == component
            ),
            key=lambda p: str(meta(p).get("name")),
        )


def _tolerant(view: AppView, what: str, read: Callable[[], list[Obj]]) -> list[Obj]:
    """``read()``, or nothing and a line in ``view.problems`` when the cluster says no."""
    try:
        return read()
    except PluginError as err:
        view.problems.append(f"{what}: {err}")
        return []


def view_app(
    source: Source,
    namespace: str,
    name: str,
    *,
    kinds_read: Sequence[Kind] = CHILD_KINDS,
    volumes: bool = False,
) -> AppView:
    """The app ``namespace/name``, its children, Jobs, pods and restores.

    :class:`NotFoundError` when there is no such app.

    ``kinds_read``: the child kinds to read; ``volumes``: the cluster-scoped volumes too (a
    cluster-wide list, which a namespace's user may not be allowed).
    """
    app = find_app(source, namespace, name)
    view = AppView(app)
    app_uid = uid(app)
    for kind in kinds_read:
        if not kind.namespaced:
            continue
        listed = _tolerant(view, kind.plural, partial(source.list, kind, namespace, instance(name)))
        view.children[kind.name] = [o for o in listed if names.owned(o, namespace, name, app_uid)]
    if volumes:
        selector = f"{instance(name)},{names.LABEL_APP_NAMESPACE}={namespace}"
        listed = _tolerant(
            view, "persistentvolumes", partial(source.list, kinds.PERSISTENT_VOLUME, "", selector)
        )
        view.children[kinds.PERSISTENT_VOLUME.name] = [
            v for v in listed if names.volume_owned(v, namespace, name)
        ]
    view.restores = sorted(
        (
            r
            for r in _tolerant(view, "restores", partial(source.list, kinds.RESTORE, namespace))
            if (r.get("spec") or {}).get("appName") == name
        ),
        key=lambda r: (str(meta(r).get("creationTimestamp")), str(meta(r).get("name"))),
    )
    owners = {uid(o) for o in view.children.get(kinds.CRONJOB.name, [])}
    owners |= {uid(r) for r in view.restores}
    jobs = _tolerant(view, "jobs", partial(source.list, kinds.JOB, namespace, instance(name)))
    view.jobs = [j for j in jobs if controller_uid(j) in owners]
    workloads = {
        uid(o)
        for kind in (kinds.STATEFULSET, kinds.DAEMONSET)
        for o in view.children.get(kind.name, [])
    } | {uid(j) for j in view.jobs}
    pods = _tolerant(view, "pods", partial(source.list, kinds.POD, namespace, instance(name)))
    view.pods = [p for p in pods if controller_uid(p) in workloads]
    return view


EXEC_SECONDS = 20.0
"""How long one agent may take to list its archives."""


def list_archives(source: Source, view: AppView, workers: int = 8) -> None:
    """Each running backup agent's archives into ``view.listings``, the agents asked at once."""
    prefix = f"{view.namespace}-{view.name}"
    agents = [
        p for p in view.pods_of(names.BACKUP) if (p.get("status") or {}).get("phase") == "Running"
    ]

    def one(pod: Obj) -> archives.Listing | str:
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        try:
            ran = source.exec(
                view.namespace,
                str(meta(pod).get("name")),
                archives.CONTAINER,
                archives.listing_command(prefix),
                EXEC_SECONDS,
            )
        except PluginError as err:
            return f"cannot list: {err}"
        if ran.code is None:
            return f"cannot list: no answer within {EXEC_SECONDS:.0f} s"
        if ran.code != 0:
            said = " ".join((ran.stderr or ran.stdout).split())[:200]
            return f"cannot list: exit {ran.code}" + (f": {said}" if said else "")
        return archives.parse_listing(ran.stdout, prefix, node)

    if not agents:
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(agents))) as pool:
        results = list(pool.map(one, agents))
    for pod, result in zip(agents, results, strict=True):
        view.listings[str(meta(pod).get("name"))] = result
