"""The command line: its arguments, what each command prints, exit statuses, errors in one line."""

from __future__ import annotations

import ast
import io
import itertools
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from statefulwebapp.api.objects import Manifest
from statefulwebapp.plugin import cli
from statefulwebapp.plugin.errors import DeniedError, ExpiredError, Request, UnreachableError
from statefulwebapp.plugin.gather import Exec, Source
from tests.unit.plugin.fake import NS, FakeSource, world

REPO = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 12, 7, 21, 0, 0, tzinfo=UTC)


class Run:
    def __init__(self, source: FakeSource, step: float = 1.0) -> None:
        self.source = source
        self.out = io.StringIO()
        self.err = io.StringIO()
        ticks: Iterator[float] = itertools.count(0.0, step)
        self.console = cli.Console(self.out, self.err, lambda: NOW, lambda: next(ticks))
        self.connected: list[tuple[str | None, str | None]] = []

    def connect(self, kubeconfig: str | None, context: str | None) -> Source:
        self.connected.append((kubeconfig, context))
        return self.source

    def __call__(self, *argv: str) -> int:
        return cli.main(list(argv), connect=self.connect, console=self.console)


def test_every_command_takes_the_namespace_kubeconfig_and_context() -> None:
    p = cli.parser()
    args = p.parse_args(["status", "-A", "--kubeconfig", "k", "--context", "c"])
    assert (args.name, args.all_namespaces, args.kubeconfig, args.context) == (None, True, "k", "c")
    args = p.parse_args(["restore", "web", "-n", "shop", "--archive", "a.tar.gz", "--node", "n1"])
    assert (args.namespace, args.archive, args.node, args.no_follow) == (
        "shop",
        "a.tar.gz",
        "n1",
        False,
    )
    assert p.parse_args(["restore", "web"]).archive == "latest"
    args = p.parse_args(["report", "web", "-o", "out.tar.gz", "--tail", "10"])
    assert (args.output, args.tail) == ("out.tar.gz", 10)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["restore"], "the following arguments are required: NAME"),
        (["backups", "web", "-A"], "unrecognized arguments: -A"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_a_wrong_command_line_exits_2_saying_why(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(argv, connect=Run(FakeSource()).connect)
    assert stop.value.code == 2
    assert said in capsys.readouterr().err


def test_status_prints_every_app_or_says_there_is_none() -> None:
    run = Run(FakeSource(world()))
    assert run("status") == 0
    assert run.out.getvalue().splitlines()[1].split()[:7] == [
        "web",
        "2/2",
        "Bound",
        "2/2",
        "ok",
        "Ready",
        "60m",
    ]
    assert run.connected == [(None, None)]
    empty = Run(FakeSource([], namespace="nothing"))
    assert empty("status") == 0
    assert empty.err.getvalue() == 'No StatefulWebApps in namespace "nothing".\n'


def test_status_of_one_app_is_its_detail_with_its_agents_archives() -> None:
    listing = "archive 2048 0 shop-web-20261207T205930Z.tar.gz\n"
    run = Run(FakeSource(world(), execs={"web-backup-b2c4d": Exec(listing, "", 0)}))
    assert run("status", "web") == 0
    assert "shop-web-20261207T205930Z.tar.gz" in run.out.getvalue()
    no_exec = Run(FakeSource(world(), execs={"web-backup-b2c4d": Exec(listing, "", 0)}))
    assert no_exec("status", "web", "--no-archives") == 0
    assert "shop-web-20261207T205930Z.tar.gz" not in no_exec.out.getvalue()


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (
            UnreachableError("cannot reach the API server at https://127.0.0.1:1: refused"),
            "kubectl swa: error: cannot reach the API server at https://127.0.0.1:1: refused\n",
        ),
        (
            DeniedError(Request("list", "statefulwebapps", "apps.k8slab.io", NS), "no"),
            "kubectl swa: error: permission denied: you may not list "
            'statefulwebapps.apps.k8slab.io in namespace "shop"',
        ),
    ],
)
def test_a_failure_is_one_line_on_stderr_and_exit_1(failure: Exception, said: str) -> None:
    def refuse(kubeconfig: str | None, context: str | None) -> Source:
        raise failure

    run = Run(FakeSource(world(), fail={"list statefulwebapps": failure}))
    unreachable = isinstance(failure, UnreachableError)
    out = cli.main(["status"], connect=refuse if unreachable else run.connect, console=run.console)
    assert out == 1
    assert run.out.getvalue() == ""
    assert run.err.getvalue().startswith(said)
    assert run.err.getvalue().count("\n") == 1


def test_a_missing_app_says_how_to_list_the_apps() -> None:
    for command in ("status", "backups", "restore", "report"):
        run = Run(FakeSource(world()))
        assert run(command, "blog") == 1
        assert run.err.getvalue() == (
            'kubectl swa: error: no StatefulWebApp "blog" in namespace "shop" (apps there: '
            "web); list them with: kubectl swa status -n shop (every namespace: kubectl swa "
            "status -A)\n"
        )


def test_backups_lists_what_the_agents_answered_and_warns_of_the_others() -> None:
    listing = "archive 2048 0 shop-web-20261207T205930Z.tar.gz\n"
    refused = DeniedError(Request("create", "pods", "", NS, "web-backup-f6g7h", "exec"), "no")
    run = Run(
        FakeSource(
            world(), execs={"web-backup-b2c4d": Exec(listing, "", 0), "web-backup-f6g7h": refused}
        )
    )
    assert run("backups", "web") == 0
    rows = [line.split() for line in run.out.getvalue().splitlines()]
    assert rows[1][:3] == ["real", "shop-web-20261207T205930Z.tar.gz", "2.0KiB"]
    (warning,) = run.err.getvalue().splitlines()
    assert warning.startswith("warning: agent web-backup-f6g7h on node worker1: cannot list: ")
    nobody = Run(
        FakeSource(world(), execs={"web-backup-b2c4d": refused, "web-backup-f6g7h": refused})
    )
    assert nobody("backups", "web") == 1
    assert nobody.err.getvalue().splitlines()[-1] == (
        "kubectl swa: error: no backup agent of app web could be asked"
    )


def restore_state(
    phase: str = "", reason: str = "", message: str = "", **extra: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase:
        status = {
            "phase": phase,
            "message": message,
            "conditions": [{"type": "Complete", "status": "False", "reason": reason}],
            **extra,
        }
    return {
        "apiVersion": "apps.k8slab.io/v1alpha1",
        "kind": "StatefulWebAppRestore",
        "metadata": {"name": "web-restore-x1y2z", "namespace": NS, "resourceVersion": "7"},
        "spec": {"appName": "web", "archive": "latest", "timeoutSeconds": 600},
        "status": status,
    }


def made(body: Manifest) -> dict[str, Any]:
    assert body["metadata"] == {"generateName": "web-restore-"}
    assert body["spec"]["appName"] == "web"
    return restore_state()


def test_restore_follows_to_success_and_exits_0() -> None:
    source = FakeSource(world(), on_create=made)
    source.events = [
        [("MODIFIED", restore_state("Pending", "WaitingForWebPods", "stopping the web pods"))],
        [],  # a watch that ended with nothing: read again
        [
            ("MODIFIED", restore_state("Running", "Restoring", "restoring latest into web-data")),
            ("MODIFIED", restore_state("Running", "Restoring", "restoring latest into web-data")),
            (
                "MODIFIED",
                restore_state(
                    "Succeeded",
                    "Restored",
                    "restored a.tar.gz",
                    archive={"file": "shop-web-20261207T205930Z.tar.gz", "node": "real"},
                ),
            ),
        ],
    ]
    run = Run(source)
    assert run("restore", "web") == 0
    lines = run.out.getvalue().splitlines()
    assert lines[0] == "statefulwebapprestore shop/web-restore-x1y2z created (latest of web)"
    assert [line.split("]", 1)[1] for line in lines[1:-1]] == [
        " (not picked up yet)",
        " Pending  WaitingForWebPods: stopping the web pods",
        " Running  Restoring: restoring latest into web-data",  # told once
        " Succeeded  Restored: restored a.tar.gz",
    ]
    assert lines[-1] == "restored shop-web-20261207T205930Z.tar.gz from node real"
    assert run.err.getvalue() == ""


def test_restore_that_fails_exits_1_with_its_reason() -> None:
    source = FakeSource(world(), on_create=made)
    failed = restore_state("Failed", "RestoreFailed", "no archive shop-web-x.tar.gz; newest y")
    source.events = [ExpiredError("gone"), [("MODIFIED", failed)]]
    run = Run(source)
    assert run("restore", "web", "--archive", "shop-web-20200101T000000Z.tar.gz") == 1
    assert run.err.getvalue() == (
        "kubectl swa: error: restore web-restore-x1y2z failed: RestoreFailed: no archive "
        "shop-web-x.tar.gz; newest y\n"
    )
    assert "get statefulwebapprestores" in source.calls  # read again after the 410


def test_restore_deleted_while_followed_exits_1() -> None:
    source = FakeSource(world(), on_create=made)
    source.events = [[("DELETED", restore_state())]]
    run = Run(source)
    assert run("restore", "web") == 1
    assert run.err.getvalue() == (
        "kubectl swa: error: restore web-restore-x1y2z was deleted before it ended\n"
    )


def test_a_restore_nobody_picks_up_is_told_then_given_up_on() -> None:
    source = FakeSource(world(), on_create=made)
    run = Run(source, step=20.0)
    assert run("restore", "web") == 1
    err = run.err.getvalue().splitlines()
    assert err[0].startswith("note: no operator has picked restore web-restore-x1y2z up after")
    assert err[-1] == (
        "kubectl swa: error: stopped following restore web-restore-x1y2z after 720 s; it is "
        "still not picked up: kubectl get swar web-restore-x1y2z -n shop"
    )


def test_restore_options_reach_the_restore_and_no_follow_returns_at_once() -> None:
    bodies: list[Manifest] = []

    def keep(body: Manifest) -> dict[str, Any]:
        bodies.append(body)
        return {**body, "metadata": {"name": body["metadata"]["name"], "namespace": NS}}

    run = Run(FakeSource(world(), on_create=keep))
    argv = ["restore", "web", "--archive", "a", "--node", "real", "--timeout", "60"]
    assert run(*argv, "--restore-name", "mine", "--no-follow") == 0
    assert bodies[0]["metadata"] == {"name": "mine"}
    assert bodies[0]["spec"] == {
        "appName": "web",
        "archive": "a",
        "nodeName": "real",
        "timeoutSeconds": 60,
    }
    assert run.out.getvalue().splitlines()[-1] == "follow it with: kubectl get swar mine -n shop -w"


def test_report_writes_the_bundle_and_says_where(tmp_path: Path) -> None:
    run = Run(FakeSource(world()))
    out = tmp_path / "bundle.tar.gz"
    assert run("report", "web", "-o", str(out)) == 0
    assert run.out.getvalue().startswith(f"wrote {out} (")
    assert "note: the operator: no Deployment labelled" in run.err.getvalue()
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert "swa-report-shop-web-20261207T210000Z/app.yaml" in names
    assert "swa-report-shop-web-20261207T210000Z/logs/web-0/web.log" in names


def test_report_finds_the_charts_operator_its_logs_and_leader(tmp_path: Path) -> None:
    objects = world()
    selector = {
        "app.kubernetes.io/name": "statefulwebapp-operator",
        "app.kubernetes.io/instance": "swa",
    }
    labels = {
        **selector,
        "app.kubernetes.io/component": "operator",
        "app.kubernetes.io/part-of": "statefulwebapp-operator",
    }
    objects.append(
        {
            "kind": "Deployment",
            "metadata": {
                "name": "swa-statefulwebapp-operator",
                "namespace": "swa-system",
                "labels": labels,
            },
            "spec": {"selector": {"matchLabels": selector}},
        }
    )
    objects.append(
        {
            "kind": "Pod",
            "metadata": {"name": "swa-op-1", "namespace": "swa-system", "labels": labels},
            "status": {"containerStatuses": [{"name": "operator", "restartCount": 1}]},
        }
    )
    objects.append(
        {
            "kind": "Lease",
            "metadata": {"name": "statefulwebapp-operator", "namespace": "swa-system"},
            "spec": {"holderIdentity": "swa-op-1"},
        }
    )
    run = Run(FakeSource(objects))
    assert run("report", "web", "-o", str(tmp_path / "dir")) == 0
    assert (tmp_path / "dir/operator/logs/swa-op-1/operator.log").exists()
    assert (tmp_path / "dir/operator/logs/swa-op-1/operator.previous.log").exists()
    readme = (tmp_path / "dir/README.txt").read_text()
    assert "the lease is held by swa-op-1 (lease swa-system/statefulwebapp-operator)" in readme


PACKAGE = REPO / "operator/statefulwebapp"


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_only_the_wrapper_imports_the_client_and_nothing_of_the_operator_imports_the_plugin() -> (
    None
):
    for path in PACKAGE.rglob("*.py"):
        mods = imports(path)
        rel = path.relative_to(PACKAGE).as_posix()
        if rel != "plugin/kube.py":
            assert not [m for m in mods if m == "kubernetes" or m.startswith("kubernetes.")], rel
        if not rel.startswith("plugin/"):
            assert not [m for m in mods if m.startswith("statefulwebapp.plugin")], rel


def test_the_operator_process_never_loads_the_client() -> None:
    """kopf imports the client at its own import when it is installed; the operator's process
    (its console script, ``entry.main``) refuses it first."""
    code = (
        "import sys\n"
        "from statefulwebapp import entry\n"
        "try:\n"
        "    entry.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "import kopf\n"
        "loaded = [m for m, v in sys.modules.items() if m.split('.')[0] == 'kubernetes' and v]\n"
        "print('kopf' in sys.modules, loaded, file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "--help"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("usage: statefulwebapp-operator")
    assert out.stderr.strip() == "True []"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["statefulwebapp-operator"] == "statefulwebapp.entry:main"


def test_kubectl_finds_the_plugin_as_a_console_script() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-swa"] == "statefulwebapp.plugin.cli:main"
    help_ = subprocess.run(
        [sys.executable, "-m", "statefulwebapp.plugin", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert help_.stdout.startswith("usage: kubectl swa ")
