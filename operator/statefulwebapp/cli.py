"""The ``statefulwebapp-operator`` command: kopf with the project's settings baked in.

It first takes the leader-election lease (lease.py): a second instance (a rollout overlap, a
second replica, ``make run`` beside the chart) waits as a standby, serving only its health
endpoints and its metrics, and starts kopf only once the lease is its own. One endpoint
(metrics.Endpoint) serves ``/healthz``, ``/readyz`` and ``/metrics`` from start to exit, standby
and leader alike; kopf's own liveness endpoint is not used (metrics.py says why, and what ready
means for a standby).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import kopf
import prometheus_client

from statefulwebapp import handlers
from statefulwebapp.api import kinds
from statefulwebapp.api.model import DEFAULT_BACKUP_ROOT
from statefulwebapp.controllers.policy import Export, Policy
from statefulwebapp.runtime import kube, lease
from statefulwebapp.runtime.metrics import Endpoint, Metrics
from statefulwebapp.settings import DEFAULTS, Settings
from statefulwebapp.specs import names

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
LEASE_NAME = "statefulwebapp-operator"
OUTSIDE_NAMESPACE = "swa-system"
"""Where the lease is when running outside a cluster: the README installs the chart there, so
``make run`` beside it waits as its standby."""

log = logging.getLogger(__name__)


def default_identity() -> str:
    """The name of this instance in the lease.

    In a pod, the pod's name: a restarted container takes its own lease back at once (its
    predecessor is dead). Elsewhere host, pid and a random part: two local runs never share.
    """
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return socket.gethostname()
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def default_lease() -> str:
    """``<own namespace>/statefulwebapp-operator`` in a pod, else the README's namespace."""
    try:
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        namespace = OUTSIDE_NAMESPACE
    return f"{namespace}/{LEASE_NAME}"


def parser() -> argparse.ArgumentParser:
    """The command line, documented for ``--help``."""
    p = argparse.ArgumentParser(
        prog="statefulwebapp-operator",
        description=(
            "Reconcile StatefulWebApp objects (apps.k8slab.io/v1alpha1) into a headless "
            "Service, an NFS volume and claim, a StatefulSet, a backup DaemonSet and a "
            "date-logging CronJob. Connects with the in-cluster service account, else "
            "$KUBECONFIG or ~/.kube/config."
        ),
    )
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="serve only this namespace (repeatable, exact names); default: all namespaces",
    )
    p.add_argument(
        "--health",
        default="http://0.0.0.0:8080/healthz",
        metavar="URL",
        help=(
            "liveness endpoint to serve (default: %(default)s); /readyz (readiness) and "
            "/metrics (the Prometheus text format) are served on the same port; 'none' serves "
            "none of them"
        ),
    )
    p.add_argument(
        "--lease",
        default=default_lease(),
        metavar="NAMESPACE/NAME",
        help=(
            "leader-election Lease: one instance per lease is active, the others wait; "
            "the operator stops at once, saying so, if the namespace does not exist "
            "(default: %(default)s; in a pod, the pod's namespace)"
        ),
    )
    p.add_argument(
        "--identity",
        default=default_identity(),
        metavar="ID",
        help=(
            "this instance's name in the lease; must be unique among running instances "
            "(default: the pod's name in a pod, else host_pid_random)"
        ),
    )
    p.add_argument(
        "--resync-seconds",
        type=float,
        default=DEFAULTS.resync_seconds,
        metavar="S",
        help=(
            "period of the full check that repairs what the watches missed in a gap, "
            "longer when one check would take more than 1%% of a core "
            "(default: %(default)s; 0 turns it off)"
        ),
    )
    p.add_argument(
        "--max-rollouts-per-minute",
        type=float,
        default=DEFAULTS.max_rollouts_per_minute,
        metavar="N",
        help=(
            "apps whose web pods or backup agents may roll per minute when a new operator "
            "version renders them differently, the spec unchanged (default: %(default)s)"
        ),
    )
    p.add_argument(
        "--backup-root",
        default=DEFAULTS.policy.backup_root,
        metavar="DIR",
        help=(
            "absolute directory on every node under which the backup agents keep archives, "
            "each app in DIR/<namespace>/<name>; no app chooses a host directory "
            "(default: %(default)s)"
        ),
    )
    p.add_argument(
        "--nfs-allow",
        action="append",
        default=[],
        type=_export,
        metavar="SERVER[:/PATH]",
        help=(
            "an NFS export apps may use, with everything inside it (repeatable); an app on "
            "any other export gets Ready=False, ExportNotAllowed, and nothing is created; "
            "default: every export"
        ),
    )
    p.add_argument(
        "--log-format",
        choices=["plain", "full", "json"],
        default="full",
        help="log line format (default: %(default)s)",
    )
    verbosity = p.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p


def _export(text: str) -> Export:
    """An ``--nfs-allow`` value; argparse turns the ValueError into a usage error."""
    try:
        return Export.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _backup_root(text: str) -> str | None:
    """Why ``text`` is no backup root, or None if it is one."""
    if not text.startswith("/") or text.rstrip("/") == "":
        return "write an absolute directory other than /, such as " + DEFAULT_BACKUP_ROOT
    if any(part in (".", "..") for part in text.split("/")):
        return 'write it without "." or ".." segments'
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the operator until interrupted."""
    args = parser().parse_args(argv)
    kopf.configure(
        verbose=args.verbose,
        quiet=args.quiet,
        log_format=kopf.LogFormat[args.log_format.upper()],
    )
    assert handlers.RESTORE  # The import registers the handlers; keep it visibly used.
    namespace, _, name = args.lease.partition("/")
    if not namespace or not name:
        print(f"--lease {args.lease!r}: write NAMESPACE/NAME", file=sys.stderr)
        return 2
    wrong = _backup_root(args.backup_root)
    if wrong is not None:
        print(f"--backup-root {args.backup_root!r}: {wrong}", file=sys.stderr)
        return 2
    # Counters without their `_created` twins: one series per counter, as most exporters.
    prometheus_client.disable_created_metrics()
    metrics = Metrics()
    elector = lease.Elector(
        kube.connect(
            timeout=lease.Timing.retry, pool=2, metrics=metrics, user_agent=names.USER_AGENT
        ),
        namespace,
        name,
        args.identity,
        kind=kinds.LEASE,
    )
    endpoint = None if args.health == "none" else Endpoint(args.health, metrics)
    if endpoint is not None:
        endpoint.standby = elector.unready
        endpoint.start()
    try:
        try:
            elector.acquire()
        except lease.NoLeaseNamespaceError as err:
            print(f"statefulwebapp-operator: {err}", file=sys.stderr)
            return 1
        metrics.leader.set(1)
        elector.keep(on_lost=_lost)
        try:
            asyncio.run(
                _operator(
                    endpoint,
                    clusterwide=not args.namespace,
                    namespaces=args.namespace,
                    standalone=True,
                    # kopf would otherwise name itself after the login user, and a container
                    # runs under a UID without a passwd entry (getpass fails there).
                    identity=args.identity,
                    memo=kopf.Memo(settings=settings(args), metrics=metrics),
                )
            )
        finally:
            elector.release()
            metrics.leader.set(0)
    finally:
        if endpoint is not None:
            endpoint.stop()
    return 0


def settings(args: argparse.Namespace) -> Settings:
    """The settings the parsed command line gives."""
    return Settings(
        namespaces=frozenset(args.namespace or ()),
        resync_seconds=args.resync_seconds,
        max_rollouts_per_minute=args.max_rollouts_per_minute,
        policy=Policy(args.backup_root, tuple(args.nfs_allow)),
    )


async def _operator(endpoint: Endpoint | None, **kwargs: Any) -> None:
    """kopf, with its event loop shown to the health check (``Endpoint.loop``)."""
    if endpoint is not None:
        endpoint.loop = asyncio.get_running_loop()
    try:
        await kopf.operator(**kwargs)
    finally:
        if endpoint is not None:
            endpoint.loop = None


def _lost(reason: str) -> None:
    # Another instance may take over once the lease's duration has passed: stop writing now,
    # without waiting for kopf's graceful shutdown. The pod restarts and waits as a standby.
    log.error("lost leadership (%s): exiting so that exactly one instance writes", reason)
    logging.shutdown()
    os._exit(3)


if __name__ == "__main__":
    sys.exit(main())
