"""The command's options, and what it answers before it reaches any cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from statefulwebapp import cli, controller, workqueue


def test_the_defaults_are_the_controllers() -> None:
    args = cli.parser().parse_args([])
    assert args.resync_seconds == controller.RESYNC_SECONDS
    assert args.max_rollouts_per_minute == workqueue.ROLLOUTS_PER_MINUTE
    assert args.namespace in (None, [])


def test_outside_a_pod_the_lease_lives_in_swa_system(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cli, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "absent")
    assert cli.default_lease() == f"{cli.OUTSIDE_NAMESPACE}/{cli.LEASE_NAME}"
    pod = tmp_path / "namespace"
    pod.write_text("apps\n")
    monkeypatch.setattr(cli, "SERVICE_ACCOUNT_NAMESPACE", pod)
    assert cli.default_lease() == f"apps/{cli.LEASE_NAME}"


def test_a_lease_without_a_namespace_is_refused_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["--lease", "just-a-name", "--health", "none"]) == 2
    assert "--lease 'just-a-name': write NAMESPACE/NAME" in capsys.readouterr().err
