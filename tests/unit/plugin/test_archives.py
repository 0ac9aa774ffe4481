"""The archive listing: the command run in an agent's pod (under busybox, as there) and its
output read."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from statefulwebapp.plugin import archives
from statefulwebapp.plugin.archives import AgentState, Archive, Listing

PREFIX = "shop-web"


def run(applet_path: str, dest: Path, state: Path) -> subprocess.CompletedProcess[str]:
    command = archives.listing_command(PREFIX, str(dest), str(state))
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={"PATH": applet_path},
        check=False,
        timeout=30,
    )


def archive(directory: Path, stamp: str, size: int, prefix: str = PREFIX) -> Path:
    path = directory / f"{prefix}-{stamp}.tar.gz"
    path.write_bytes(b"x" * size)
    os.utime(path, (1_000, 1_000))
    return path


def test_the_command_lists_the_agents_archives_and_state_under_busybox(
    applet_path: str, tmp_path: Path
) -> None:
    dest = tmp_path / "backup"
    dest.mkdir()
    archive(dest, "20261207T100000Z", 10)
    archive(dest, "20261207T110000Z", 2048)
    (dest / f".{PREFIX}-20261207T120000Z.tar.gz.partial").write_bytes(b"half")  # a run under way
    archive(dest, "20261207T100000Z", 5, prefix="other-web")  # not this app's
    (dest / "notes.txt").write_text("left by hand")
    state = tmp_path / "state"
    state.write_text(f"ok 1796673817 {PREFIX}-20261207T110000Z.tar.gz\n")

    ran = run(applet_path, dest, state)
    assert ran.returncode == 0, ran.stderr
    listing = archives.parse_listing(ran.stdout, PREFIX, "real")
    assert listing == Listing(
        AgentState("ok", 1796673817, f"{PREFIX}-20261207T110000Z.tar.gz"),
        (
            Archive("real", f"{PREFIX}-20261207T110000Z.tar.gz", 2048, 1000),
            Archive("real", f"{PREFIX}-20261207T100000Z.tar.gz", 10, 1000),
        ),
    )


def test_on_an_nfs_target_each_nodes_directory_is_its_node(
    applet_path: str, tmp_path: Path
) -> None:
    dest = tmp_path / "backup"
    for node, stamp in (("real", "20261207T100000Z"), ("worker1", "20261207T100500Z")):
        (dest / node).mkdir(parents=True)
        archive(dest / node, stamp, 7)
    ran = run(applet_path, dest, tmp_path / "no-state-yet")
    assert ran.returncode == 0, ran.stderr
    listing = archives.parse_listing(ran.stdout, PREFIX, "real")
    assert listing.state is None
    assert [(a.node, a.file) for a in listing.archives] == [
        ("worker1", f"{PREFIX}-20261207T100500Z.tar.gz"),
        ("real", f"{PREFIX}-20261207T100000Z.tar.gz"),
    ]


def test_a_missing_destination_fails_the_command(applet_path: str, tmp_path: Path) -> None:
    ran = run(applet_path, tmp_path / "absent", tmp_path / "state")
    assert ran.returncode == 2


@pytest.mark.parametrize(
    ("line", "state"),
    [
        (
            "state ok 100 shop-web-20261207T100000Z.tar.gz",
            AgentState("ok", 100, "shop-web-20261207T100000Z.tar.gz"),
        ),
        (
            "state failed 200 cannot create a file in /backup (BACKUP_DEST): check that it is "
            "writable",
            AgentState(
                "failed",
                200,
                "cannot create a file in /backup (BACKUP_DEST): check that it is writable",
            ),
        ),
        ("state paused 300 250", AgentState("paused", 300, "250")),
        ("state garbage", None),
    ],
)
def test_the_state_line_is_read(line: str, state: AgentState | None) -> None:
    assert archives.parse_listing(line, PREFIX, "real").state == state


def test_lines_that_are_not_an_archive_of_the_app_are_ignored() -> None:
    output = "\n".join(
        [
            "archive 10 100 shop-web-20261207T100000Z.tar.gz",
            "archive x 100 shop-web-20261207T110000Z.tar.gz",  # no size
            "archive 10 100 shop-web-latest.tar.gz",  # not a time
            "archive 10 100 shop-web-2-20261207T100000Z.tar.gz",  # app web-2's
            "archive 10 100",
            "something else",
        ]
    )
    listing = archives.parse_listing(output, PREFIX, "n")
    assert [a.file for a in listing.archives] == ["shop-web-20261207T100000Z.tar.gz"]


def test_an_archive_is_dated_by_its_name() -> None:
    found = Archive("n", "shop-web-20261207T213012Z.tar.gz", 1, 0)
    assert found.made == datetime(2026, 12, 7, 21, 30, 12, tzinfo=UTC)


def test_agents_on_one_export_are_merged_once_each_by_node_newest_first() -> None:
    a = Archive("real", "shop-web-20261207T100000Z.tar.gz", 1, 0)
    b = Archive("real", "shop-web-20261207T110000Z.tar.gz", 1, 0)
    c = Archive("worker1", "shop-web-20261207T120000Z.tar.gz", 1, 0)
    merged = archives.merge([Listing(None, (b, a, c)), Listing(None, (c, b))])
    assert merged == (b, a, c)
