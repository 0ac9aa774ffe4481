"""The support bundle of ``kubectl swa report``: its files, made from what was read, and written.

What goes in: the app, its restores, its children (owned by the app), their Jobs and pods,
the events of all of them, the pods' recent logs, the operator's Deployment, pods and logs
where they were found, and a status summary. What never goes in: a Secret (an object of kind
``Secret`` is dropped wherever it appears, lists included) and ``metadata.managedFields``
(bulky, and nothing a reader needs). Every object passes :func:`scrub` on its way in.

Pure but for :func:`write`: objects in, ``{path: text}`` out.
"""

from __future__ import annotations

import copy
import io
import tarfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from statefulwebapp.api.objects import Obj
from statefulwebapp.plugin.gather import AppView, meta, uid

NEVER = frozenset({"Secret"})
"""Kinds never put in a bundle."""


def scrub(obj: Obj) -> dict[str, Any] | None:
    """A copy of ``obj`` fit for a bundle; None for a Secret.

    ``managedFields`` are dropped, and a List's items scrubbed the same way.
    """
    if obj.get("kind") in NEVER:
        return None
    clean = copy.deepcopy(dict(obj))
    metadata = clean.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    if isinstance(clean.get("items"), list):
        clean["items"] = [
            s for s in (scrub(i) for i in clean["items"] if isinstance(i, Mapping)) if s
        ]
    return clean


def as_yaml(objects: Iterable[Obj]) -> str:
    """Objects as one YAML List, each scrubbed (a Secret among them is left out)."""
    items = [s for s in (scrub(o) for o in objects) if s is not None]
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "List", "items": items}, sort_keys=False, width=100
    )


@dataclass
class Operator:
    """The operator as found in the cluster (the chart's Deployment), or why not."""

    deployments: list[Obj] = field(default_factory=list)
    pods: list[Obj] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    """``<pod>/<container>`` -> its recent log (or why it could not be read)."""
    leader: str = ""
    """Who holds the chart's lease, if it was read."""
    note: str = ""
    """Why there is nothing, or only part (not found, not allowed)."""


@dataclass
class Gathered:
    """What a report is made of, read from the cluster."""

    view: AppView
    events: list[Obj] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    """``<pod>/<container>`` (``.previous`` for a restarted one's last run) -> its log."""
    operator: Operator = field(default_factory=Operator)
    problems: list[str] = field(default_factory=list)
    status: str = ""
    """The app's status as ``kubectl swa status NAME`` prints it."""
    tail: int = 0
    """How many lines of each log were asked for."""


def related_uids(view: AppView) -> set[str]:
    """The uids of the app and of everything the bundle holds of it: their events belong."""
    objects = [view.app, *view.restores, *view.jobs, *view.pods]
    objects += [o for group in view.children.values() for o in group]
    return {uid(o) for o in objects} - {""}


def events_of(events: Sequence[Obj], uids: set[str]) -> list[Obj]:
    """The events about an object of ``uids``, oldest first."""
    mine = [e for e in events if str((e.get("involvedObject") or {}).get("uid") or "") in uids]

    def when(event: Obj) -> str:
        return str(
            event.get("lastTimestamp")
            or event.get("eventTime")
            or meta(event).get("creationTimestamp")
            or ""
        )

    return sorted(mine, key=when)


def files(gathered: Gathered, made: str, version: str) -> dict[str, str]:
    """The bundle's files by path, from what was ``gathered`` at ``made`` (UTC)."""
    view = gathered.view
    out: dict[str, str] = {}
    out["status.txt"] = gathered.status + "\n"
    out["app.yaml"] = as_yaml([view.app])
    out["restores.yaml"] = as_yaml(view.restores)
    for kind, objects in sorted(view.children.items()):
        kept = [o for o in objects if o.get("kind") not in NEVER]
        if kept and kind not in NEVER:
            out[f"children/{kind}.yaml"] = as_yaml(kept)
    out["children/Job.yaml"] = as_yaml(view.jobs)
    out["children/Pod.yaml"] = as_yaml(view.pods)
    out["events.yaml"] = as_yaml(events_of(gathered.events, related_uids(view)))
    for key, text in sorted(gathered.logs.items()):
        out[f"logs/{key}.log"] = text
    operator = gathered.operator
    if operator.deployments:
        out["operator/deployments.yaml"] = as_yaml(operator.deployments)
        out["operator/pods.yaml"] = as_yaml(operator.pods)
        for key, text in sorted(operator.logs.items()):
            out[f"operator/logs/{key}.log"] = text
    problems = [*view.problems, *gathered.problems]
    out["README.txt"] = _readme(gathered, made, version, problems)
    return out


def _readme(gathered: Gathered, made: str, version: str, problems: Sequence[str]) -> str:
    view = gathered.view
    operator = gathered.operator
    if operator.deployments:
        where = ", ".join(
            f"{meta(d).get('namespace')}/{meta(d).get('name')}" for d in operator.deployments
        )
        said = f"the chart's Deployment {where}: its pods and their last {gathered.tail} log lines"
        if operator.leader:
            said += f"; the lease is held by {operator.leader}"
    else:
        said = "not included"
    lines = [
        f"Support bundle of StatefulWebApp {view.namespace}/{view.name}",
        f"made {made} by kubectl-swa {version}",
        "",
        "status.txt         the app's status, as kubectl swa status prints it",
        "app.yaml           the app",
        "restores.yaml      its StatefulWebAppRestores",
        "children/          what it owns (ownerReference to its uid; volumes by label and claim),",
        "                   the Jobs of its CronJob and restores, and its pods",
        "events.yaml        the events of all of these, oldest first",
        f"logs/              each pod's containers, the last {gathered.tail} lines "
        "(.previous: a restarted container's last run)",
        f"operator/          {said}",
        "",
        "Never included: a Secret (not even inside a list), nor metadata.managedFields.",
    ]
    if operator.note:
        lines += ["", f"The operator: {operator.note}"]
    if problems:
        lines += ["", "Not collected:", *(f"- {p}" for p in problems)]
    return "\n".join(lines) + "\n"


def write(bundle: Mapping[str, str], path: Path, top: str) -> Path:
    """Write ``bundle`` as ``path``; returns what was written.

    A path ending in ``.tar.gz`` or ``.tgz`` is a gzipped tar whose files are under ``top/``;
    any other a directory.
    """
    if path.name.endswith((".tar.gz", ".tgz")):
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w:gz") as tar:
            for name, text in sorted(bundle.items()):
                data = text.encode()
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size = len(data)
                info.mtime = int(time.time())
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        return path
    for name, text in bundle.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return path
