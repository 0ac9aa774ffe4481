"""A restore's steps (restoring.decide) and its Job (render_restore_job), without a cluster.

The Job's manifest is pinned as a golden file (``UPDATE_GOLDEN=1 make unit`` rewrites it); the
script it runs is tested under busybox in test_restore_script.py, and the whole restore on the
real node in tests/e2e/test_restore.py.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, cast

import pytest
import yaml

from statefulwebapp.api import kinds
from statefulwebapp.api.model import RestoreSpec
from statefulwebapp.api.objects import timestamp
from statefulwebapp.api.parse import parse
from statefulwebapp.controllers import restore
from statefulwebapp.runtime import kube
from statefulwebapp.specs import failures, restoring
from statefulwebapp.specs.render import render_statefulset
from statefulwebapp.specs.render_backup import render_restore_job
from tests.unit.fakeapi import FakeApi, error
from tests.unit.scenario import ARCHIVED, GOLDEN, SCENARIO

NOW = "2026-12-02T03:00:00Z"
SPEC = RestoreSpec(name="back", namespace="default", uid="0000-restore", app_name="web")
APP = dict(SCENARIO, metadata={**SCENARIO["metadata"]})


def sts(spec_replicas: int, replicas: int, ready: int = 0, uid: str = "0000-uid") -> dict[str, Any]:
    """The app's StatefulSet (owned by the app's uid unless ``uid`` says otherwise)."""
    owner = {"apiVersion": "apps.k8slab.io/v1alpha1", "kind": "StatefulWebApp", "name": "web"}
    return {
        "metadata": {
            "name": "web",
            "namespace": "default",
            "ownerReferences": [{**owner, "uid": uid, "controller": True}],
        },
        "spec": {"replicas": spec_replicas},
        "status": {"replicas": replicas, "readyReplicas": ready},
    }


def job(condition: str = "") -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True"}] if condition else []
    return {"metadata": {"name": "back"}, "status": {"conditions": conditions}}


def test_the_job_is_pinned_and_owned_by_the_restore() -> None:
    manifest = render_restore_job(parse(APP), SPEC)
    path = GOLDEN / "restore-job.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    assert manifest == yaml.safe_load(path.read_text())
    owner = manifest["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "StatefulWebAppRestore",
        "back",
        "0000-restore",
    )
    pod = manifest["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "web-data"
    assert "nodeSelector" not in pod


def test_a_named_node_pins_the_job_there_by_its_name_of_any_valid_length() -> None:
    """By ``metadata.name``: a hostname label may differ from the name, and a label value stops
    at 63 characters where a node name does not (a 100-character one was refused, 422)."""
    long_name = "n" * 100
    for node in ("n2", long_name):
        pod = render_restore_job(parse(APP), dataclasses.replace(SPEC, node_name=node))["spec"][
            "template"
        ]["spec"]
        assert "nodeSelector" not in pod
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"] == [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        ]
    pod = render_restore_job(parse(APP), dataclasses.replace(SPEC, node_name="n2"))["spec"][
        "template"
    ]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["RESTORE_NODE"] == "n2"
    assert env["RESTORE_PREFIX"] == "default-web"


def test_archives_on_nfs_are_read_from_every_nodes_directory_wherever_the_job_runs() -> None:
    archived = parse(ARCHIVED)
    pod = render_restore_job(archived, dataclasses.replace(SPEC, node_name="n2"))["spec"][
        "template"
    ]["spec"]
    # Every node's archives are on the export: the Job need not run where they were made.
    assert "nodeSelector" not in pod
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert (env["RESTORE_LAYOUT"], env["RESTORE_NODE"]) == ("nodes", "n2")
    assert pod["volumes"][1] == {
        "name": "backups",
        "persistentVolumeClaim": {"claimName": "web-backups", "readOnly": True},
    }
    plain = render_restore_job(parse(APP), SPEC)["spec"]["template"]["spec"]
    assert {"name": "RESTORE_LAYOUT", "value": "flat"} in plain["containers"][0]["env"]
    assert plain["volumes"][1]["hostPath"]["path"] == "/var/backups/statefulwebapp/default/web"


def test_a_restoring_app_renders_no_web_pod() -> None:
    app = parse(APP)
    assert render_statefulset(app)["spec"]["replicas"] == 3
    assert render_statefulset(dataclasses.replace(app, restoring="back"))["spec"]["replicas"] == 0


def test_a_new_restore_is_accepted_adopted_and_stops_the_web_pods() -> None:
    action = restoring.decide(SPEC, {}, restoring.Observed(app=APP, first="back"), NOW)
    assert action.status is not None
    assert (action.status["phase"], action.status["startTime"]) == ("Pending", NOW)
    assert action.adopt is not None
    assert action.adopt["uid"] == "0000-uid"
    assert action.wake_app
    assert action.requeue_after
    assert action.job is None


@pytest.mark.parametrize(
    ("seen", "reason", "says"),
    [
        (
            restoring.Observed(app=None, apps=("shop", "blog")),
            "NoSuchApp",
            "no StatefulWebApp 'web' in namespace default (apps there: blog, shop)",
        ),
        (
            restoring.Observed(app=APP, first="earlier"),
            "AnotherRestoreRunning",
            "restore earlier of app web came first",
        ),
        (
            restoring.Observed(app={**APP, "spec": {**APP["spec"], "podSecurity": "restricted"}}),
            "NoArchives",
            "podSecurity: restricted",
        ),
        (
            restoring.Observed(
                app={
                    **ARCHIVED,
                    "spec": {**ARCHIVED["spec"], "podSecurity": "restricted"},
                }
            ),
            "PodSecurityRestricted",
            "runs as root, which that profile does not admit; its archives are on "
            "10.0.0.9:/archives",
        ),
    ],
    ids=["no such app", "a second restore", "restricted", "restricted, archives on NFS"],
)
def test_what_cannot_be_restored_fails_at_once_saying_why(
    seen: restoring.Observed, reason: str, says: str
) -> None:
    action = restoring.decide(SPEC, {}, seen, NOW)
    assert action.status is not None
    assert action.status["phase"] == "Failed"
    assert action.status["conditions"][0]["reason"] == reason
    assert says in action.status["message"]
    assert action.job is None
    assert not action.wake_app
    assert action.app_event is not None or seen.app is None


def test_the_job_starts_only_once_no_web_pod_is_left() -> None:
    pending = {"phase": "Pending"}
    for left in (sts(3, 3, 3), sts(0, 1), sts(0, 0, 1)):
        waiting = restoring.decide(
            SPEC, pending, restoring.Observed(app=APP, statefulset=left), NOW
        )
        assert waiting.job is None
        assert waiting.requeue_after
    # A StatefulSet that is not the app's (planted with its labels, or an earlier app's) says
    # nothing of the app's pods.
    planted = restoring.Observed(app=APP, statefulset=sts(0, 0, uid="someone-else"))
    assert restoring.decide(SPEC, pending, planted, NOW).job is None
    go = restoring.decide(SPEC, pending, restoring.Observed(app=APP, statefulset=sts(0, 0)), NOW)
    assert go.job is not None
    assert go.status is not None
    assert go.status["phase"] == "Running"


def test_a_finished_job_is_told_with_the_scripts_result() -> None:
    running = {"phase": "Running", "startTime": NOW}
    result = restoring.parse_result(
        "result=restored\narchive=default-web-20261202T010203Z.tar.gz\nnode=n1\n"
        "message=restored default-web-20261202T010203Z.tar.gz from node n1 (3 files)\n"
        "candidate=n1/default-web-20261202T010203Z.tar.gz\n"
        "candidate=n1/default-web-20261202T000203Z.tar.gz\n"
    )
    still = restoring.decide(SPEC, running, restoring.Observed(app=APP, job=job()), NOW)
    assert still.status is None
    assert still.requeue_after
    done = restoring.decide(
        SPEC, running, restoring.Observed(app=APP, job=job("Complete"), result=result), NOW
    )
    assert done.status is not None
    assert done.status["phase"] == "Succeeded"
    assert done.status["archive"] == {"file": "default-web-20261202T010203Z.tar.gz", "node": "n1"}
    assert done.status["candidates"] == [
        "n1/default-web-20261202T010203Z.tar.gz",
        "n1/default-web-20261202T000203Z.tar.gz",
    ]
    assert done.status["conditions"][0]["status"] == "True"
    assert done.wake_app
    assert done.requeue_after is None
    assert done.app_event is not None
    assert done.app_event[1] == "Restored"
    failed = restoring.decide(
        SPEC,
        running,
        restoring.Observed(
            app=APP,
            job=job("Failed"),
            result={"result": "failed", "message": "no archive x", "candidates": []},
        ),
        NOW,
    )
    assert failed.status is not None
    assert (failed.status["phase"], failed.status["message"]) == ("Failed", "no archive x")
    assert failed.wake_app  # The web pods come back either way.
    # Finished is finished.
    assert (
        restoring.decide(SPEC, done.status, restoring.Observed(app=APP), NOW) == restoring.Action()
    )


def test_one_restore_per_app_goes_the_started_one_else_the_oldest() -> None:
    def r(name: str, created: str, phase: str = "") -> dict[str, Any]:
        return {
            "metadata": {"name": name, "creationTimestamp": created},
            "status": {"phase": phase} if phase else {},
        }

    assert restoring.first_active([]) == ""
    assert restoring.first_active([r("b", "T2"), r("a", "T2"), r("c", "T1")]) == "c"
    assert restoring.first_active([r("c", "T1"), r("z", "T3", "Pending")]) == "z"
    assert restoring.first_active([r("c", "T1", "Succeeded"), r("z", "T3")]) == "z"
    assert restoring.under_way([r("c", "T1"), r("z", "T3", "Running")]) == "z"
    assert restoring.under_way([r("c", "T1"), r("z", "T3", "Failed")]) == ""


def test_a_restore_past_its_deadline_fails_saying_what_waited_and_stops_its_job() -> None:
    spec = dataclasses.replace(SPEC, timeout_seconds=30)
    started = {"phase": "Running", "startTime": "2026-12-02T03:00:00Z", "message": "restoring x"}
    seen = restoring.Observed(app=APP, statefulset=sts(0, 0), job=job())
    within = restoring.decide(spec, started, seen, "2026-12-02T03:00:30Z")
    assert within.status is None
    assert not within.stop_job
    late = restoring.decide(spec, started, seen, "2026-12-02T03:00:31Z")
    assert late.status is not None
    assert late.status["phase"] == "Failed"
    assert late.status["conditions"][0]["reason"] == "DeadlineExceeded"
    assert "within timeoutSeconds (30 s) while restoring x" in late.status["message"]
    assert "Job back was stopped" in late.status["message"]
    assert late.stop_job
    assert late.wake_app, "the app's web pods start again"
    # Web pods that never stop: the same, without a Job to stop.
    pending = {**started, "phase": "Pending", "message": "stopping the web pods of web (1 left)"}
    stuck = restoring.Observed(app=APP, statefulset=sts(0, 1))
    late = restoring.decide(spec, pending, stuck, "2026-12-02T03:01:00Z")
    assert late.status is not None
    assert "while stopping the web pods of web (1 left)" in late.status["message"]
    assert not late.stop_job
    # A Job that has finished is read, whatever the clock says.
    done = restoring.Observed(app=APP, statefulset=sts(0, 0), job=job("Complete"), result={})
    assert restoring.decide(spec, started, done, "2026-12-02T04:00:00Z").stop_job is False


def test_a_job_the_api_server_refuses_ends_the_restore_in_its_words() -> None:
    """No retry changes a refusal (422): the restore fails at once and the app comes back."""
    api = FakeApi()
    body = {
        "apiVersion": "apps.k8slab.io/v1alpha1",
        "kind": "StatefulWebAppRestore",
        "metadata": {"name": "back", "namespace": "default", "uid": "0000-restore"},
        "spec": {"appName": "web"},
        "status": {"phase": "Pending", "startTime": timestamp(), "message": "stopping web pods"},
    }
    path = kube.path(kinds.RESTORE, "back", "default")
    api.objects[path] = body
    job = kube.path(kinds.JOB, "back", "default")
    api.answers[("PATCH", job)] = error(422, "Invalid", "must be no more than 63 bytes", "spec")
    action = restore.reconcile_restore(
        cast(Any, api),
        body,
        app=APP,
        apps=["web"],
        siblings=[body],
        statefulset=sts(0, 0),
        post_event=lambda *_: None,
    )
    assert action.status is not None
    assert action.status["phase"] == "Failed"
    assert action.status["conditions"][0]["reason"] == "JobRefused"
    assert "must be no more than 63 bytes" in action.status["message"]
    assert action.wake_app
    assert api.objects[path]["status"]["phase"] == "Failed"


def test_reports_of_a_restores_own_work_files_end_with_it() -> None:
    """While a restore runs the agents find its work files; once it has ended, their reports
    of that (fresh for minutes more) must not read as a restore stopped half-way."""
    reports = [
        {"pod": "web-backup-a", "seen": "2026-11-25T10:19:59Z"},
        {"pod": "web-backup-b", "seen": "2026-11-25T10:20:00Z"},
        {"pod": "web-backup-c", "seen": "2026-11-25T10:20:01Z"},
        {"pod": "web-backup-d", "seen": "2026-11-25T10:20:01.250000Z"},
        {"pod": "web-backup-e", "seen": ""},
    ]
    ended = {"status": {"phase": restoring.SUCCEEDED, "completionTime": "2026-11-25T10:20:00Z"}}
    earlier = {"status": {"phase": restoring.FAILED, "completionTime": "2026-11-25T09:00:00Z"}}
    running = {"status": {"phase": restoring.RUNNING}}

    kept = failures.told_after(reports, restoring.last_ended([earlier, ended, running]))

    assert [r["pod"] for r in kept] == ["web-backup-c", "web-backup-d"]
    # No restore has ended (none, or one deleted with its record): every report counts.
    assert failures.told_after(reports, restoring.last_ended([running])) == reports
    assert failures.told_after(reports, restoring.last_ended([])) == reports
