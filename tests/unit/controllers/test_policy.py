"""The admin's decisions, pure: which exports are allowed, which overlap, which app holds one."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from statefulwebapp.api.parse import parse
from statefulwebapp.controllers.policy import Export, ExportClaims, Policy, exports_of
from tests.unit.scenario import SCENARIO


def app(namespace: str, path: str, created: str, **backup: Any) -> dict[str, Any]:
    body = copy.deepcopy(SCENARIO)
    body["metadata"].update(namespace=namespace, creationTimestamp=created)
    body["spec"]["storage"]["nfs"]["path"] = path
    if backup:
        body["spec"]["backup"] = backup
    return body


@pytest.mark.parametrize(
    ("text", "export"),
    [
        ("nfs.example.com", Export("nfs.example.com", "/")),
        ("nfs.example.com:/exports", Export("nfs.example.com", "/exports")),
        ("10.0.0.1:/", Export("10.0.0.1", "/")),
    ],
)
def test_an_allowed_export_is_a_server_and_a_tree(text: str, export: Export) -> None:
    assert Export.parse(text) == export


@pytest.mark.parametrize("text", ["", ":/x", "nfs:exports", "nfs:"])
def test_a_malformed_allowed_export_says_how_to_write_it(text: str) -> None:
    with pytest.raises(ValueError, match="write SERVER or SERVER:/PATH"):
        Export.parse(text)


def test_an_export_contains_itself_and_what_lies_inside_it_on_the_same_server() -> None:
    shared = Export("nfs", "/bar/shared")
    assert shared.contains(Export("nfs", "/bar/shared"))
    assert shared.contains(Export("NFS", "/bar/shared/inner/"))
    assert not shared.contains(Export("nfs", "/bar/shared-other"))
    assert not shared.contains(Export("nfs", "/bar"))
    assert not shared.contains(Export("other", "/bar/shared"))
    assert Export("nfs", "/bar").overlaps(shared)
    assert shared.overlaps(Export("nfs", "/bar/"))
    assert Export("nfs", "/").contains(shared)
    # Another spelling of the same directory is the same export.
    assert Export("nfs", "/bar//shared/./inner/").contains(Export("nfs", "/bar/shared/inner"))
    assert shared.contains(Export("nfs", "//bar/./shared//x"))
    assert Export("nfs", "/bar//shared/") == shared


def test_without_allowed_exports_every_export_is_allowed() -> None:
    assert Policy().refusal(parse(SCENARIO)) is None


def test_a_disabled_backup_mounts_no_archives_export() -> None:
    target = {"target": {"nfs": {"server": "nfs", "path": "/b"}}}
    assert len(exports_of(parse(app("a", "/a", "", **target)))) == 2
    assert len(exports_of(parse(app("a", "/a", "", enabled=False, **target)))) == 1


def test_the_older_app_holds_an_export_and_each_change_names_whom_it_touches() -> None:
    claims = ExportClaims()
    older, newer = ("a", "web"), ("b", "web")
    assert claims.update(newer, app("b", "/bar/shared/inner", "2026-02-01T00:00:00Z")) == set()
    assert claims.update(older, app("a", "/bar/shared", "2026-01-01T00:00:00Z")) == {newer}
    mine = exports_of(parse(app("b", "/bar/shared/inner", "")))
    problem = claims.holder(newer, mine)
    assert problem is not None
    assert problem.reason == "ExportInUse"
    assert "StatefulWebApp a/web, which came first" in problem.message
    assert claims.holder(older, exports_of(parse(app("a", "/bar/shared", "")))) is None
    # A backup target on the other app's export is a claim as well.
    third = ("c", "web")
    target = {"target": {"nfs": {"server": "211.183.3.100", "path": "/bar/shared"}}}
    claims.update(third, app("c", "/c", "2026-03-01T00:00:00Z", **target))
    problem = claims.holder(third, exports_of(parse(app("c", "/c", "", **target))))
    assert problem is not None
    assert problem.message.startswith("spec.backup.target.nfs 211.183.3.100:/bar/shared is")
    assert claims.remove(older) == {newer, third}
    assert claims.holder(newer, mine) is None


def test_an_invalid_spec_claims_nothing() -> None:
    claims = ExportClaims()
    body = app("a", "/x", "2026-01-01T00:00:00Z")
    body["spec"]["replicas"] = "three"
    assert claims.update(("a", "web"), body) == set()
    assert claims.holder(("b", "web"), exports_of(parse(app("b", "/x", "")))) is None


def test_siblings_never_touch_and_a_whole_server_touches_every_export_of_it() -> None:
    claims = ExportClaims()
    for i, path in enumerate(("/bar/shared", "/bar/shared-other", "/bar/sharedx/y")):
        claims.update((f"n{i}", "web"), app(f"n{i}", path, f"2026-01-0{i + 1}T00:00:00Z"))
    for i, path in enumerate(("/bar/shared", "/bar/shared-other", "/bar/sharedx/y")):
        own = exports_of(parse(app(f"n{i}", path, "")))
        assert claims.holder((f"n{i}", "web"), own) is None, f"{path} is its alone"
    whole = app("w", "/", "2026-02-01T00:00:00Z")
    assert claims.update(("w", "web"), whole) == {("n0", "web"), ("n1", "web"), ("n2", "web")}
    problem = claims.holder(("w", "web"), exports_of(parse(whole)))
    assert problem is not None
    assert "StatefulWebApp n0/web" in problem.message, "the oldest is named"


def test_an_event_that_changes_no_claim_owes_no_other_app_a_pass() -> None:
    """A status write of the older app: the newer one on its export is not passed again."""
    claims = ExportClaims()
    claims.update(("b", "web"), app("b", "/s/inner", "2026-02-01T00:00:00Z"))
    older = app("a", "/s", "2026-01-01T00:00:00Z")
    assert claims.update(("a", "web"), older) == {("b", "web")}
    assert claims.update(("a", "web"), {**older, "status": {"observedGeneration": 1}}) == set()
