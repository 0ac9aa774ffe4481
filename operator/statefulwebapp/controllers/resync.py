"""The periodic full check: what the watches may have missed, found by comparing with lists.

After a watch gap (a 410 Gone, a dropped stream, an API server outage) the informers list
again and report what vanished meanwhile (runtime/informer.py). This check is the net under
them, for a store that still went stale (a bug, a relist that keeps failing): every ``period``
seconds the operator lists the apps and its labelled children (metadata only, paginated) and
compares them with the stores (:func:`compare`, pure):

- a child the index shows but the cluster lacks: the app gets a pass that sees it missing;
- an app the index shows but the cluster lacks: its volume is collected (after a direct read
  confirms the app is gone) and it gets no more passes;
- a volume whose app the cluster lacks: collected.

When everything is in sync it writes nothing: lists only, a handful of requests per period
whatever the number of apps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pykube

from statefulwebapp.api import kinds
from statefulwebapp.api.objects import Key
from statefulwebapp.controllers.sources import owner_key
from statefulwebapp.runtime import kube
from statefulwebapp.specs import registry


@dataclass(frozen=True)
class Snapshot:
    """Apps and which child kinds each has, as one side sees them."""

    apps: frozenset[Key]
    """(namespace, name) of every app."""
    children: Mapping[Key, frozenset[str]]
    """Per app key (from the children's labels): the kinds of its children that exist."""


@dataclass
class Plan:
    """What a resync does; empty when the indexes agree with the cluster."""

    repair: dict[Key, frozenset[str]] = field(default_factory=dict)
    """Apps to pass, with the kinds the index wrongly shows as present."""
    gone: set[Key] = field(default_factory=set)
    """Apps deleted while unwatched: collect their volumes, pass them no more."""
    orphans: set[Key] = field(default_factory=set)
    """Apps without an app object whose volume still exists."""

    def __bool__(self) -> bool:
        """Whether there is anything to do."""
        return bool(self.repair or self.gone or self.orphans)


def compare(index: Snapshot, cluster: Snapshot) -> Plan:
    """What differs between the operator's indexes and a fresh list of the cluster."""
    plan = Plan(gone=set(index.apps - cluster.apps))
    for key in index.apps & cluster.apps:
        missing = index.children.get(key, frozenset()) - cluster.children.get(key, frozenset())
        if missing:
            plan.repair[key] = missing
    for key, present in cluster.children.items():
        volumes = {child.key for child in registry.CHILDREN if not child.namespaced}
        if volumes & present and key not in cluster.apps:
            plan.orphans.add(key)
    plan.orphans -= plan.gone
    return plan


def list_apps(api: pykube.HTTPClient, namespaces: Iterable[str]) -> frozenset[Key]:
    """(namespace, name) of every app in the served namespaces (all when none), metadata only."""
    return frozenset(
        (str(m.get("namespace")), str(m.get("name")))
        for scope in sorted(namespaces) or [""]
        for m in kube.list_metadata(api, kinds.APP, namespace=scope)
    )


def from_cluster(api: pykube.HTTPClient, namespaces: Iterable[str]) -> Snapshot:
    """List the apps and the operator's children (metadata only) in the served namespaces."""
    scopes = sorted(namespaces) or [""]
    apps = list_apps(api, namespaces)
    children: dict[Key, set[str]] = {}
    for child in registry.CHILDREN:
        for meta in _listed(api, child, scopes):
            key = owner_key(meta)
            if key is not None:
                children.setdefault(key, set()).add(child.key)
    if scopes != [""]:
        children = {key: kinds_ for key, kinds_ in children.items() if key[0] in scopes}
    return Snapshot(apps, {key: frozenset(present) for key, present in children.items()})


def _listed(api: pykube.HTTPClient, child: registry.Child, scopes: list[str]) -> Iterator[Any]:
    for scope in scopes if child.namespaced else [""]:
        yield from kube.list_metadata(api, child, namespace=scope, selector=child.selector)
