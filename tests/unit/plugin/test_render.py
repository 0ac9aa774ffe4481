"""What ``kubectl swa`` prints, from objects and a clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from statefulwebapp.plugin import gather, render
from statefulwebapp.plugin.archives import AgentState, Archive, Listing
from tests.unit.plugin.fake import NS, FakeSource, app, world

NOW = datetime(2026, 12, 7, 21, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "0s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (47 * 3600, "47h"),
        (50 * 3600, "2d"),
    ],
)
def test_ages_read_as_kubectl_says_them(seconds: int, said: str) -> None:
    assert render.age(datetime.fromtimestamp(NOW.timestamp() - seconds, UTC), NOW) == said


def test_an_unreadable_time_has_no_age() -> None:
    assert render.age("yesterday", NOW) == "-"
    assert render.age(None, NOW) == "-"


@pytest.mark.parametrize(
    ("count", "said"),
    [(512, "512B"), (1536, "1.5KiB"), (20 * 2**20, "20.0MiB"), (3 * 2**30, "3.0GiB")],
)
def test_sizes(count: int, said: str) -> None:
    assert render.size(count) == said


def test_the_apps_table_shows_each_apps_columns_reason_and_message() -> None:
    broken = app(
        ready="0/2",
        storage="Pending",
        backup="0/2",
        dateLog="ok",
        conditions=[
            {
                "type": "Ready",
                "status": "False",
                "reason": "StorageNotBound",
                "message": "claim web-data is Pending: " + "waiting " * 20,
            }
        ],
    )
    broken["metadata"]["name"] = "blog"
    new = app()
    new["metadata"]["name"] = "new"
    new["metadata"]["namespace"] = "other"
    del new["status"]
    text = render.status_table([app(), broken, new], NOW, all_namespaces=True)
    lines = text.splitlines()
    assert lines[0].split() == [
        "NAMESPACE",
        "NAME",
        "READY",
        "STORAGE",
        "BACKUP",
        "DATE-LOG",
        "STATUS",
        "AGE",
        "MESSAGE",
    ]
    assert lines[1].split()[:8] == ["other", "new", "-", "-", "-", "-", "NoStatus", "60m"]
    assert "no status yet: has an operator seen this app?" in lines[1]
    assert lines[2].split()[:8] == [
        "shop",
        "blog",
        "0/2",
        "Pending",
        "0/2",
        "ok",
        "StorageNotBound",
        "60m",
    ]
    assert lines[2].endswith("...")
    assert len(lines[2].split("60m   ", 1)[1]) == render.MESSAGE_WIDTH
    assert lines[3].split()[:7] == ["shop", "web", "2/2", "Bound", "2/2", "ok", "Ready"]
    # Columns line up: every row's READY starts where the header's does.
    column = lines[0].index("READY")
    assert all(line[column - 1] == " " and line[column] != " " for line in lines[1:])
    assert "NAMESPACE" not in render.status_table([app()], NOW, all_namespaces=False)


def test_one_app_in_detail() -> None:
    source = FakeSource(world())
    view = gather.view_app(source, NS, "web")
    view.listings = {
        "web-backup-b2c4d": Listing(
            AgentState("ok", int(NOW.timestamp()) - 30, "shop-web-20261207T205930Z.tar.gz"),
            (Archive("real", "shop-web-20261207T205930Z.tar.gz", 10, 0),),
        ),
        "web-backup-f6g7h": "cannot list: exec refused",
    }
    text = render.detail(view, NOW)
    lines = text.splitlines()
    assert lines[0] == "StatefulWebApp shop/web"
    assert lines[1] == "  Ready:       True (Ready), since 2026-12-07T20:01:00Z (59m ago)"
    assert lines[2] == "  Message:     2/2 web pods ready, storage bound"
    assert "  Web pods:    2/2 ready" in lines
    web1 = next(line for line in lines if "web-1" in line).split()
    assert web1 == ["web-1", "worker2", "false", "Running", "2", "60m"]
    assert (
        "  Storage:     Bound (claim web-data, volume shop.web-data, NFS 10.0.0.9:/srv/web)"
        in lines
    )
    assert "  Backup:      2/2 agents ready, every 600 s, keep 5 on each node" in lines
    real = next(line for line in lines if "web-backup-b2c4d" in line).split()
    assert real == [
        "real",
        "web-backup-b2c4d",
        "true",
        "Running",
        "ok",
        "30s",
        "ago",
        "30s",
        "shop-web-20261207T205930Z.tar.gz",
    ]
    other = next(line for line in lines if "web-backup-f6g7h" in line)
    assert other.split()[:4] == ["worker1", "web-backup-f6g7h", "true", "Running"]
    assert other.endswith("cannot list: exec refused")
    assert (
        "  Date log:    ok (CronJob web-datelog, schedule */1 * * * *, last run 60s ago, last "
        "success none yet)" in lines
    )
    assert "  Restores:    1" in lines
    restore = next(line for line in lines if "web-restore-abcde" in line).split()
    assert restore[:5] == ["web-restore-abcde", "latest", "Succeeded", "a.tar.gz", "real"]


def test_a_failed_run_and_an_app_not_yet_seen() -> None:
    view = gather.view_app(FakeSource(world()), NS, "web")
    view.listings = {
        "web-backup-b2c4d": Listing(
            AgentState("failed", int(NOW.timestamp()) - 5, "cannot create a file in /backup"), ()
        )
    }
    view.app = {k: v for k, v in view.app.items() if k != "status"}
    text = render.detail(view, NOW)
    assert "  Ready:       Unknown: no status yet: has an operator seen this app?" in text
    assert "Generation:  1, observed - (the operator has not acted on the latest spec)" in text
    real = next(line for line in text.splitlines() if "web-backup-b2c4d" in line)
    assert "failed 5s ago: cannot create a file in /backup" in real
    assert real.endswith("none yet")


def test_archives_table() -> None:
    text = render.backups_table(
        [
            Archive("real", "shop-web-20261207T205930Z.tar.gz", 2048, 0),
            Archive("worker1", "shop-web-20261207T200000Z.tar.gz", 10, 0),
        ],
        NOW,
    )
    assert [line.split() for line in text.splitlines()] == [
        ["NODE", "ARCHIVE", "SIZE", "MADE", "(UTC)", "AGE"],
        ["real", "shop-web-20261207T205930Z.tar.gz", "2.0KiB", "2026-12-07", "20:59:30", "30s"],
        ["worker1", "shop-web-20261207T200000Z.tar.gz", "10B", "2026-12-07", "20:00:00", "60m"],
    ]


def test_a_restores_progress_line() -> None:
    restore = {
        "metadata": {"name": "r"},
        "status": {
            "phase": "Pending",
            "message": "stopping the web pods of web (1 left)",
            "conditions": [{"type": "Complete", "status": "False", "reason": "WaitingForWebPods"}],
        },
    }
    assert render.progress(restore, 3.2) == (
        "[    3s] Pending  WaitingForWebPods: stopping the web pods of web (1 left)"
    )
    assert render.progress({"metadata": {"name": "r"}}, 0) == "[    0s] (not picked up yet)"
