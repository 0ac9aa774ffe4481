"""Print the children the operator renders for a StatefulWebApp, as multi-document YAML.

    .venv/bin/python hack/render-sample.py [--pod-security default|restricted] [FILE]

FILE defaults to the sample app, crds/samples/web.yaml. The operator's own pure renderers
(``registry.render_all(parse.parse(body))``) make them, offline, exactly as a pass would apply them:
`make lint-k8s` hands them to the Kubernetes linter. ``--pod-security`` overrides the app's
``spec.podSecurity``, so one sample covers both modes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from statefulwebapp.api import parse
from statefulwebapp.specs import registry

SAMPLE = Path(__file__).resolve().parents[1] / "crds/samples/web.yaml"


def main() -> int:
    """Render the app in FILE and print its children."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("file", nargs="?", type=Path, default=SAMPLE)
    p.add_argument("--pod-security", choices=["default", "restricted"])
    args = p.parse_args()
    body = yaml.safe_load(args.file.read_text())
    # An applied app has a namespace and a uid; the renderers put them in every child.
    body["metadata"].setdefault("namespace", "default")
    body["metadata"].setdefault("uid", "00000000-0000-0000-0000-000000000000")
    if args.pod_security:
        body["spec"]["podSecurity"] = args.pod_security
    children = [c for c in registry.render_all(parse.parse(body)).values() if c is not None]
    yaml.safe_dump_all(children, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
