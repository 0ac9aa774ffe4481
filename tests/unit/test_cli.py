"""The command's options, and what it answers before it reaches any cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from statefulwebapp import cli
from statefulwebapp.settings import DEFAULTS


def test_no_option_gives_the_default_settings() -> None:
    assert cli.settings(cli.parser().parse_args([])) == DEFAULTS


def test_each_option_reaches_the_settings() -> None:
    told = cli.settings(
        cli.parser().parse_args(
            [
                "-n",
                "a",
                "-n",
                "b",
                "--resync-seconds",
                "0",
                "--max-rollouts-per-minute",
                "5",
                "--backup-root",
                "/srv/archives",
                "--nfs-allow",
                "10.0.0.9:/exports",
            ]
        )
    )
    assert told.namespaces == frozenset({"a", "b"})
    assert (told.resync_seconds, told.max_rollouts_per_minute) == (0.0, 5.0)
    assert told.policy.backup_root == "/srv/archives"
    assert [str(export) for export in told.policy.nfs_allow] == ["10.0.0.9:/exports"]


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


def test_the_admin_chooses_the_backup_root_and_the_exports_allowed() -> None:
    args = cli.parser().parse_args([])
    assert args.backup_root == "/var/backups/statefulwebapp"
    assert args.nfs_allow == []
    args = cli.parser().parse_args(
        ["--backup-root", "/srv/b", "--nfs-allow", "nfs", "--nfs-allow", "nfs2:/exports"]
    )
    assert args.backup_root == "/srv/b"
    assert [str(e) for e in args.nfs_allow] == ["nfs:/", "nfs2:/exports"]


def test_a_malformed_allowed_export_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.parser().parse_args(["--nfs-allow", "nfs:exports"])
    assert exit_.value.code == 2
    assert "write SERVER or SERVER:/PATH" in capsys.readouterr().err


@pytest.mark.parametrize("root", ["relative", "/", "//", "/var/../etc"])
def test_a_backup_root_must_be_a_clean_absolute_directory(
    root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--backup-root", root, "--health", "none"]) == 2
    assert f"--backup-root {root!r}: write" in capsys.readouterr().err
