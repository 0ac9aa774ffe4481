"""The support bundle: no Secret ever, no managedFields, the app's own objects and events."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import yaml

from statefulwebapp.api import kinds
from statefulwebapp.plugin import gather, report
from tests.unit.plugin.fake import NS, FakeSource, obj, world

SECRET = obj("Secret", "web-password", data={"password": "c2VjcmV0"})


def test_scrub_drops_a_secret_and_managed_fields_and_leaves_the_original() -> None:
    assert report.scrub(SECRET) is None
    pod = obj("Pod", "web-0")
    clean = report.scrub(pod)
    assert clean is not None
    assert "managedFields" not in clean["metadata"]
    assert "managedFields" in pod["metadata"]
    listed = report.scrub(
        {"kind": "List", "items": [pod, SECRET, {"kind": "SecretList", "items": [SECRET]}]}
    )
    assert listed is not None
    assert [i["kind"] for i in listed["items"]] == ["Pod", "SecretList"]
    assert listed["items"][1]["items"] == []
    assert "managedFields" not in listed["items"][0]["metadata"]


def gathered() -> report.Gathered:
    source = FakeSource(world())
    view = gather.view_app(source, NS, "web", volumes=True)
    # A Secret that reached every list anyway (a bug upstream): still never written.
    view.children["Secret"] = [SECRET]
    view.pods.append(SECRET)
    found = report.Gathered(view, tail=50, status="StatefulWebApp shop/web")
    found.events = [*source.list(kinds.EVENT, NS), SECRET]
    found.logs = {"web-0/web": "GET / 200\n"}
    found.problems = ["log of web-backup-f6g7h/backup: no preferred addresses"]
    found.operator.note = "no Deployment labelled ... in any namespace"
    return found


def test_the_bundles_files_hold_the_app_its_children_and_events_and_no_secret() -> None:
    files = report.files(gathered(), "2026-12-07 21:00:00 UTC", "0.1.0")
    assert "children/Secret.yaml" not in files  # an empty List is not written
    objects: dict[str, list[dict[str, Any]]] = {
        name: yaml.safe_load(text)["items"]
        for name, text in files.items()
        if name.endswith(".yaml")
    }
    every = [o for items in objects.values() for o in items]
    assert not [o for o in every if o["kind"] == "Secret"]
    assert not [o for o in every if "managedFields" in o["metadata"]]
    assert "c2VjcmV0" not in "".join(files.values())
    assert [o["metadata"]["name"] for o in objects["app.yaml"]] == ["web"]
    assert [o["metadata"]["name"] for o in objects["restores.yaml"]] == ["web-restore-abcde"]
    assert [o["metadata"]["name"] for o in objects["children/StatefulSet.yaml"]] == ["web"]
    assert "web-9" not in [o["metadata"]["name"] for o in objects["children/Pod.yaml"]]
    # Events about the app's objects only.
    assert [o["metadata"]["name"] for o in objects["events.yaml"]] == ["web-0.1"]
    assert files["logs/web-0/web.log"] == "GET / 200\n"
    assert files["status.txt"] == "StatefulWebApp shop/web\n"
    readme = files["README.txt"]
    assert readme.startswith(
        "Support bundle of StatefulWebApp shop/web\nmade 2026-12-07 21:00:00 UTC"
    )
    assert "Never included: a Secret" in readme
    assert "The operator: no Deployment labelled" in readme
    assert "- log of web-backup-f6g7h/backup: no preferred addresses" in readme
    assert not any(name.startswith("operator/") for name in files)


def test_written_as_a_tarball_under_one_folder_or_as_a_directory(tmp_path: Path) -> None:
    files = {"app.yaml": "kind: List\n", "logs/web-0/web.log": "hello\n"}
    tarball = report.write(files, tmp_path / "out/bundle.tar.gz", "swa-report-shop-web-x")
    with tarfile.open(tarball) as tar:
        assert sorted(tar.getnames()) == [
            "swa-report-shop-web-x/app.yaml",
            "swa-report-shop-web-x/logs/web-0/web.log",
        ]
    folder = report.write(files, tmp_path / "folder", "ignored")
    assert (folder / "logs/web-0/web.log").read_text() == "hello\n"
