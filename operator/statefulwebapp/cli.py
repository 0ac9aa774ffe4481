"""The ``statefulwebapp-operator`` command: kopf with the project's settings baked in."""

from __future__ import annotations

import argparse
import asyncio
import sys

import kopf

from statefulwebapp import handlers


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
        help="liveness endpoint to serve (default: %(default)s); 'none' disables it",
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


def main(argv: list[str] | None = None) -> int:
    """Run the operator until interrupted."""
    args = parser().parse_args(argv)
    kopf.configure(
        verbose=args.verbose,
        quiet=args.quiet,
        log_format=kopf.LogFormat[args.log_format.upper()],
    )
    assert handlers.APP  # The import registers the handlers; keep it visibly used.
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=None if args.health == "none" else args.health,
            standalone=True,
            memo=kopf.Memo(namespaces=frozenset(args.namespace or ())),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
