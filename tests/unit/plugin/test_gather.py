"""What the commands read: an app's own children and pods, by owner, and its agents' archives."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from statefulwebapp.api.objects import Obj
from statefulwebapp.plugin import gather
from statefulwebapp.plugin.errors import DeniedError, NotFoundError, Request
from statefulwebapp.plugin.gather import Exec
from statefulwebapp.specs import names
from tests.unit.plugin.fake import NS, FakeSource, world


def names_of(objects: Sequence[Obj]) -> list[str]:
    return sorted(str(o["metadata"]["name"]) for o in objects)


def test_the_app_its_children_jobs_and_pods_are_what_it_owns() -> None:
    view = gather.view_app(FakeSource(world()), NS, "web")
    assert names_of(view.children["StatefulSet"]) == ["web"]  # not web-copy, someone else's
    assert names_of(view.children["DaemonSet"]) == ["web-backup"]
    assert names_of(view.jobs) == ["web-datelog-123"]
    assert names_of(view.pods) == [  # not web-9: labelled alike, owned by nothing of the app
        "web-0",
        "web-1",
        "web-backup-b2c4d",
        "web-backup-f6g7h",
        "web-datelog-123-xyz",
    ]
    assert names_of(view.restores) == ["web-restore-abcde"]
    assert [p["metadata"]["name"] for p in view.pods_of(names.BACKUP)] == [
        "web-backup-b2c4d",
        "web-backup-f6g7h",
    ]
    assert view.problems == []


def test_a_missing_app_says_which_there_are_and_how_to_list_them() -> None:
    with pytest.raises(NotFoundError) as err:
        gather.view_app(FakeSource(world()), NS, "blog")
    assert str(err.value) == (
        'no StatefulWebApp "blog" in namespace "shop" (apps there: web); list them with: '
        "kubectl swa status -n shop (every namespace: kubectl swa status -A)"
    )
    with pytest.raises(NotFoundError, match=r'in namespace "empty" \(there is none\)'):
        gather.view_app(FakeSource(world()), "empty", "web")


def test_a_list_refused_is_a_problem_told_not_the_end() -> None:
    refused = DeniedError(Request("list", "persistentvolumes"), "no")
    source = FakeSource(world(), fail={"list persistentvolumes": refused})
    view = gather.view_app(source, NS, "web", volumes=True)
    assert view.children["PersistentVolume"] == []
    assert len(view.problems) == 1
    assert view.problems[0].startswith("persistentvolumes: permission denied")


def test_each_running_agent_is_asked_for_its_archives() -> None:
    listing = (
        "state ok 1796673817 shop-web-20261207T100000Z.tar.gz\n"
        "archive 2048 1796673817 shop-web-20261207T100000Z.tar.gz\n"
    )
    refused = DeniedError(Request("create", "pods", "", NS, "web-backup-f6g7h", "exec"), "no")
    source = FakeSource(
        world(),
        execs={"web-backup-b2c4d": Exec(listing, "", 0), "web-backup-f6g7h": refused},
    )
    view = gather.view_app(source, NS, "web")
    gather.list_archives(source, view)
    real = view.listings["web-backup-b2c4d"]
    assert not isinstance(real, str)
    assert [(a.node, a.file, a.size) for a in real.archives] == [
        ("real", "shop-web-20261207T100000Z.tar.gz", 2048)
    ]
    other = view.listings["web-backup-f6g7h"]
    assert isinstance(other, str)
    assert other.startswith("cannot list: permission denied: you may not create pods/exec")


@pytest.mark.parametrize(
    ("ran", "said"),
    [
        (Exec("", "", None), "cannot list: no answer within 20 s"),
        (
            Exec("", "sh: cd: can't cd to /backup\n", 2),
            "cannot list: exit 2: sh: cd: can't cd to /backup",
        ),
    ],
)
def test_an_agent_that_does_not_answer_or_fails_is_said_so(ran: Exec, said: str) -> None:
    source = FakeSource(world(), execs={"web-backup-b2c4d": ran})
    view = gather.view_app(source, NS, "web")
    gather.list_archives(source, view)
    assert view.listings["web-backup-b2c4d"] == said
