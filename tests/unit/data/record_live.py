"""Record live children for tests/unit/specs/test_drift.py from a running local cluster.

    make cluster-up && make crd
    KUBECONFIG=.cluster/kubeconfig .venv/bin/statefulwebapp-operator --health none &
    KUBECONFIG=.cluster/kubeconfig .venv/bin/python -m tests.unit.data.record_live

Creates one app whose spec the API server stores in other forms (quantities ``0.5``,
``1000m``), turns its backup's control-plane toleration off once Ready, then writes, per child,
the stamped rendering, the API server's answer to applying it again (as the operator's apply
gets it) and the live object read a few seconds later (managed fields and controller status
included) to ``tests/unit/data/live/<kind>-<case>.json``.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from statefulwebapp.api import kinds
from statefulwebapp.api.parse import parse
from statefulwebapp.runtime import kube
from statefulwebapp.specs import drift, names, registry

OUT = Path(__file__).parent / "live"
SPEC: dict[str, Any] = {
    "replicas": 2,
    "serviceName": "web",
    "storage": {"nfs": {"server": "211.183.3.100", "path": "/shared"}, "request": "10Mi"},
    "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "0.5", "memory": "1000Mi"}},
    "backup": {"resources": {"limits": {"cpu": "0.1", "memory": "64Mi"}}},
}
CASES = {"StatefulSet": "quantities", "DaemonSet": "no-tolerations"}


def kubectl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", *args], input=stdin, check=True, capture_output=True, text=True
    ).stdout


def wait_ready(api: Any, ns: str) -> dict[str, Any]:
    for _ in range(120):
        app = kube.get(api, kinds.APP, "web", ns) or {}
        status = app.get("status") or {}
        ready = (status.get("conditions") or [{}])[0].get("status") == "True"
        if ready and status.get("observedGeneration") == app["metadata"]["generation"]:
            return app
        time.sleep(1)
    raise SystemExit(f"web in {ns} never became Ready")


def main() -> None:
    api = kube.connect(user_agent=names.USER_AGENT)
    ns = f"record-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    body: dict[str, Any] = {"apiVersion": "apps.k8slab.io/v1alpha1", "kind": "StatefulWebApp"}
    body |= {"metadata": {"name": "web", "namespace": ns}, "spec": SPEC}
    kubectl("apply", "-f", "-", stdin=json.dumps(body))
    wait_ready(api, ns)
    body["spec"]["backup"]["tolerateControlPlane"] = False
    kubectl("apply", "-f", "-", stdin=json.dumps(body))
    app = wait_ready(api, ns)
    answers = {}
    for kind, manifest in registry.render_all(parse(app)).items():
        assert manifest is not None
        answers[kind] = (
            drift.stamp(manifest),
            kube.apply(api, registry.BY_KEY[kind], drift.stamp(manifest), manager=names.MANAGER),
        )
    time.sleep(5)
    for kind, (rendered, answer) in answers.items():
        meta = rendered["metadata"]
        live = kube.get(api, registry.BY_KEY[kind], meta["name"], meta.get("namespace", ""))
        case = CASES.get(kind, "default")
        path = OUT / f"{kind.lower()}-{case}.json"
        record = {"rendered": rendered, "answer": answer, "live": live}
        path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print("wrote", path)
    kubectl("delete", "namespace", ns, "--wait=false")


if __name__ == "__main__":
    main()
