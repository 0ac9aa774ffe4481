"""The ``kubectl swa`` command line: ``status``, ``backups``, ``restore``, ``report``.

Every failure is one line on stderr and exit status 1 (2 for a command line argparse refuses);
never a traceback. The cluster is reached through :func:`kube.connect`, imported only when a
command runs, so that ``--help`` and the tests of this module need no cluster and no client.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, TextIO

from statefulwebapp.api import kinds
from statefulwebapp.api.kinds import Kind
from statefulwebapp.api.model import GROUP, VERSION
from statefulwebapp.api.objects import Manifest, Obj
from statefulwebapp.plugin import archives, gather, render, report
from statefulwebapp.plugin.errors import ExpiredError, PluginError
from statefulwebapp.plugin.gather import Source, meta
from statefulwebapp.specs import names

PROG = "kubectl swa"
Connect = Callable[[str | None, str | None], Source]

DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments", namespaced=True)
OPERATOR_SELECTOR = (
    "app.kubernetes.io/part-of=statefulwebapp-operator,app.kubernetes.io/component=operator"
)
"""The chart's operator Deployment (deploy/statefulwebapp-operator/templates/_helpers.tpl)."""
LEASE_NAME = "statefulwebapp-operator"
"""The chart's lease, in its release's namespace."""
PICKUP_SECONDS = 30.0
"""A restore with no status after this long: say that no operator may be serving it."""
WATCH_SECONDS = 30
"""The longest one watch of a followed restore lasts before it is read again."""
FOLLOW_MARGIN = 120
"""Seconds a followed restore is given beyond its own ``timeoutSeconds``."""


def _common(p: argparse.ArgumentParser, *, every_namespace: bool = False) -> None:
    p.add_argument("-n", "--namespace", help="the app's namespace (default: the context's)")
    if every_namespace:
        p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace's apps")
    p.add_argument("--kubeconfig", help="the kubeconfig (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="the kubeconfig context (default: its current one)")


def parser() -> argparse.ArgumentParser:
    """The command line, documented for ``--help``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Look at StatefulWebApps, list and restore their archives, make a support "
        "bundle. Talks to the cluster of the kubeconfig, as kubectl does.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = sub.add_parser(
        "status",
        help="every app (a table), or one app in detail",
        description="Without NAME, every app of the namespace (-A: of every namespace), one "
        "line each. With NAME, the app in detail: Ready and why, its web pods, storage, each "
        "node's backup agent with its last run and newest archive, the date log, its restores.",
    )
    status.add_argument("name", nargs="?", metavar="NAME")
    status.add_argument(
        "--no-archives",
        action="store_true",
        help="do not ask the agents for their archives (no exec into their pods)",
    )
    _common(status, every_namespace=True)

    backups = sub.add_parser(
        "backups",
        help="an app's archives, node by node",
        description="Every archive of the app, asked of each backup agent in its pod (exec): "
        "node, file, size, when it was made. Exit 1 when no agent could be asked.",
    )
    backups.add_argument("name", metavar="NAME")
    _common(backups)

    restore = sub.add_parser(
        "restore",
        help="put an archive back, and follow it to its end",
        description="Create a StatefulWebAppRestore of the app and follow it until it ends: "
        "exit 0 when it succeeded, 1 when it failed (with the reason).",
    )
    restore.add_argument("name", metavar="NAME")
    restore.add_argument(
        "--archive", default="latest", help="an archive's file name (default: latest)"
    )
    restore.add_argument("--node", default="", help="whose archives (default: where it runs)")
    restore.add_argument(
        "--timeout",
        type=int,
        default=0,
        metavar="SECONDS",
        help="the restore's timeoutSeconds (default: the CRD's, 600)",
    )
    restore.add_argument(
        "--restore-name", default="", help="the restore's name (default: <app>-restore-<random>)"
    )
    restore.add_argument("--no-follow", action="store_true", help="create it and return at once")
    _common(restore)

    rep = sub.add_parser(
        "report",
        help="a support bundle of one app (no Secret in it)",
        description="Write a support bundle: the app, its restores, its children, their "
        "events, its pods' states and recent logs, the operator's logs where its Deployment "
        "is found. Never a Secret; managedFields dropped.",
    )
    rep.add_argument("name", metavar="NAME")
    rep.add_argument(
        "-o",
        "--output",
        default="",
        help="a .tar.gz (the default: swa-report-<ns>-<name>-<time>.tar.gz here) or a directory",
    )
    rep.add_argument("--tail", type=int, default=200, help="log lines per container (200)")
    _common(rep)
    return p


def _version() -> str:
    return version("statefulwebapp-operator")


def _connect(kubeconfig: str | None, context: str | None) -> Source:
    from statefulwebapp.plugin import kube  # noqa: PLC0415 (the client only when a command runs)

    return kube.connect(kubeconfig, context)


class Console:
    """Where output goes, and the clock: swapped in the tests."""

    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.clock = clock or (lambda: datetime.now(UTC))
        self.monotonic = monotonic

    def say(self, text: str) -> None:
        """A line of the command's output."""
        print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        """A line on stderr."""
        print(text, file=self.err, flush=True)


def main(
    argv: Sequence[str] | None = None,
    *,
    connect: Connect = _connect,
    console: Console | None = None,
) -> int:
    """Run ``kubectl swa`` with ``argv``; the exit status."""
    console = console or Console()
    args = parser().parse_args(argv)
    try:
        source = connect(args.kubeconfig, args.context)
        namespace = args.namespace or source.namespace
        command = {"status": status, "backups": backups, "restore": restore, "report": report_}
        return command[args.command](source, namespace, args, console)
    except PluginError as err:
        console.warn(f"{PROG}: error: {err}")
        return 1
    except KeyboardInterrupt:
        console.warn(f"{PROG}: interrupted")
        return 130


def status(source: Source, namespace: str, args: argparse.Namespace, console: Console) -> int:
    """``status [NAME]``: the apps' table, or one app in detail."""
    if args.name is None:
        every = args.all_namespaces
        apps = source.list(kinds.APP, "" if every else namespace)
        if not apps:
            where = "any namespace" if every else f'namespace "{namespace}"'
            console.warn(f"No StatefulWebApps in {where}.")
            return 0
        console.say(render.status_table(apps, console.clock(), all_namespaces=every))
        return 0
    view = gather.view_app(source, namespace, args.name)
    if not args.no_archives:
        gather.list_archives(source, view)
    console.say(render.detail(view, console.clock()))
    return 0


def backups(source: Source, namespace: str, args: argparse.Namespace, console: Console) -> int:
    """``backups NAME``: every archive, asked of each agent."""
    view = gather.view_app(source, namespace, args.name, kinds_read=(kinds.DAEMONSET,))
    gather.list_archives(source, view)
    if not view.listings:
        console.warn(
            f"{PROG}: error: no backup agent of app {args.name} is running (backup disabled, "
            f"or its DaemonSet has no running pod: kubectl swa status {args.name} -n "
            f"{namespace})"
        )
        return 1
    nodes = {
        str(meta(p).get("name")): str((p.get("spec") or {}).get("nodeName") or "")
        for p in view.pods_of(names.BACKUP)
    }
    listed = [found for found in view.listings.values() if not isinstance(found, str)]
    for pod, found in sorted(view.listings.items()):
        if isinstance(found, str):
            console.warn(f"warning: agent {pod} on node {nodes.get(pod) or '?'}: {found}")
    if not listed:
        console.warn(f"{PROG}: error: no backup agent of app {args.name} could be asked")
        return 1
    merged = archives.merge(listed)
    if merged:
        console.say(render.backups_table(merged, console.clock()))
    else:
        console.say(f"No archive of app {args.name} yet.")
    return 0


def restore(source: Source, namespace: str, args: argparse.Namespace, console: Console) -> int:
    """``restore NAME``: create the restore, and follow it to its end."""
    gather.find_app(source, namespace, args.name)
    spec: dict[str, object] = {"appName": args.name, "archive": args.archive}
    if args.node:
        spec["nodeName"] = args.node
    if args.timeout:
        spec["timeoutSeconds"] = args.timeout
    metadata: dict[str, str] = (
        {"name": args.restore_name}
        if args.restore_name
        else {"generateName": f"{args.name}-restore-"}
    )
    body: Manifest = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kinds.RESTORE.name,
        "metadata": metadata,
        "spec": spec,
    }
    made = source.create(kinds.RESTORE, namespace, body)
    name = str(meta(made).get("name"))
    console.say(f"statefulwebapprestore {namespace}/{name} created ({args.archive} of {args.name})")
    if args.no_follow:
        console.say(f"follow it with: kubectl get swar {name} -n {namespace} -w")
        return 0
    timeout = int((made.get("spec") or {}).get("timeoutSeconds") or 600) + FOLLOW_MARGIN
    return follow(source, namespace, made, timeout, console)


def follow(source: Source, namespace: str, made: Obj, timeout: int, console: Console) -> int:
    """Print a restore's progress as it changes until it ends; 0 if it succeeded, else 1.

    Watched from the version created (each watch at most ``WATCH_SECONDS``, then read again:
    a watch that ended or expired loses nothing). A restore with no status after
    ``PICKUP_SECONDS`` gets a note: no operator may be serving its namespace.
    """
    name = str(meta(made).get("name"))
    start = console.monotonic()
    shown = ""
    told_pickup = False

    def show(restore: Obj | None) -> int | None:
        nonlocal shown
        if restore is None:
            console.warn(f"{PROG}: error: restore {name} was deleted before it ended")
            return 1
        line = render.progress(restore, console.monotonic() - start)
        said = line.split("]", 1)[1]
        if said != shown:
            shown = said
            console.say(line)
        return _ended(restore, console)

    current: Obj | None = made
    while True:
        ended = show(current)
        if ended is not None:
            return ended
        assert current is not None  # show() ends the follow of a deleted restore.
        elapsed = console.monotonic() - start
        if not told_pickup and not current.get("status") and elapsed >= PICKUP_SECONDS:
            told_pickup = True
            console.warn(
                f"note: no operator has picked restore {name} up after {elapsed:.0f} s: is one "
                f'running, and serving namespace "{namespace}"?'
            )
        if elapsed >= timeout:
            phase = (current.get("status") or {}).get("phase") or "not picked up"
            console.warn(
                f"{PROG}: error: stopped following restore {name} after {timeout} s; it is "
                f"still {phase}: kubectl get swar {name} -n {namespace}"
            )
            return 1
        seen = str(meta(current).get("resourceVersion") or "")
        window = int(min(timeout - elapsed, WATCH_SECONDS)) + 1
        try:
            for kind, obj in source.watch(kinds.RESTORE, namespace, name, seen, window):
                if kind == "DELETED":
                    current = None
                    break
                if kind in {"ADDED", "MODIFIED"}:
                    current = obj
                    ended = show(current)
                    if ended is not None:
                        return ended
            else:
                current = source.get(kinds.RESTORE, name, namespace)
        except ExpiredError:
            current = source.get(kinds.RESTORE, name, namespace)


def _ended(restore: Obj, console: Console) -> int | None:
    status = restore.get("status") or {}
    phase = status.get("phase")
    if phase not in {"Succeeded", "Failed"}:
        return None
    archive = status.get("archive") or {}
    condition: Mapping[str, Any] = next(iter(status.get("conditions") or []), {})
    if phase == "Succeeded":
        console.say(f"restored {archive.get('file') or '?'} from node {archive.get('node') or '?'}")
        return 0
    console.warn(
        f"{PROG}: error: restore {meta(restore).get('name')} failed: "
        f"{condition.get('reason') or 'Failed'}: {status.get('message') or 'no message'}"
    )
    return 1


def report_(source: Source, namespace: str, args: argparse.Namespace, console: Console) -> int:
    """``report NAME``: write the support bundle."""
    now = console.clock()
    view = gather.view_app(source, namespace, args.name, volumes=True)
    gather.list_archives(source, view)
    gathered = report.Gathered(view, tail=args.tail)
    gathered.status = render.detail(view, now)
    try:
        gathered.events = source.list(kinds.EVENT, namespace)
    except PluginError as err:
        gathered.problems.append(f"events: {err}")
    for pod in view.pods:
        _logs(source, pod, args.tail, gathered.logs, gathered.problems)
    gathered.operator = find_operator(source, args.tail)
    made = now.strftime("%Y%m%dT%H%M%SZ")
    top = f"swa-report-{namespace}-{args.name}-{made}"
    path = Path(args.output or f"{top}.tar.gz")
    bundle = report.files(gathered, now.strftime("%Y-%m-%d %H:%M:%S UTC"), _version())
    written = report.write(bundle, path, top)
    console.say(f"wrote {written} ({len(bundle)} files)")
    if gathered.operator.note:
        console.warn(f"note: the operator: {gathered.operator.note}")
    return 0


def _logs(source: Source, pod: Obj, tail: int, into: dict[str, str], problems: list[str]) -> None:
    """Each container's recent log of ``pod`` into ``into``, and what could not be read.

    A container that restarted gives its previous run's log too (``.previous``).
    """
    name = str(meta(pod).get("name"))
    namespace = str(meta(pod).get("namespace"))
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        runs = [False] + ([True] if int(container.get("restartCount") or 0) else [])
        for previous in runs:
            key = f"{name}/{container.get('name')}" + (".previous" if previous else "")
            try:
                into[key] = source.logs(namespace, name, str(container.get("name")), tail, previous)
            except PluginError as err:
                problems.append(f"log of {key}: {err}")


def find_operator(source: Source, tail: int) -> report.Operator:
    """The chart's operator: its Deployments, pods, their logs, the lease's holder; or why not."""
    found = report.Operator()
    try:
        found.deployments = source.list(DEPLOYMENT, "", OPERATOR_SELECTOR)
    except PluginError as err:
        found.note = f"could not look for its Deployment in every namespace: {err}"
        return found
    if not found.deployments:
        found.note = (
            f"no Deployment labelled {OPERATOR_SELECTOR} in any namespace (the chart's): its "
            "logs are not included; if it runs another way (make run), attach its log yourself"
        )
        return found
    problems: list[str] = []
    for deployment in found.deployments:
        namespace = str(meta(deployment).get("namespace"))
        labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        try:
            pods = source.list(kinds.POD, namespace, selector)
        except PluginError as err:
            problems.append(f"its pods in {namespace}: {err}")
            continue
        found.pods += pods
        for pod in pods:
            _logs(source, pod, tail, found.logs, problems)
        try:
            lease = source.get(kinds.LEASE, LEASE_NAME, namespace)
        except PluginError as err:
            problems.append(f"its lease: {err}")
        else:
            holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
            if holder:
                found.leader = f"{holder} (lease {namespace}/{LEASE_NAME})"
    if problems:
        found.note = "; ".join(problems)
    return found
