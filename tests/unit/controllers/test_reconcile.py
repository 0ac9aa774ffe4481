"""``reconcile()`` against a fake API server that records requests: the exact set each pass
sends, per-child failures, and nothing sent when nothing changed. No network.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, cast

import pytest
import requests

from statefulwebapp.api.parse import parse
from statefulwebapp.controllers.app_state import Memory
from statefulwebapp.controllers.policy import Export, ExportClaims, Policy
from statefulwebapp.controllers.volumes import collect_volume
from statefulwebapp.specs import drift, registry
from statefulwebapp.specs.drift import DIGEST
from tests.unit.fakeapi import FakeApi, Obj, error
from tests.unit.harness import Pass, ready, ready_children
from tests.unit.scenario import APP_PATH, APPLY_ORDER, NS, PATHS, RENDERED, SCENARIO


@pytest.fixture
def app() -> Pass:
    api = FakeApi()
    api.objects[APP_PATH] = copy.deepcopy(SCENARIO)
    return Pass(api)


def test_a_new_app_gets_every_child_in_order_then_one_status(app: Pass) -> None:
    outcome = app.run()
    # One look at the app itself (is it still there? no event of its own showed it), the names
    # from the caches, then one apply each.
    assert app.api.sent("GET") == [APP_PATH]
    assert app.api.sent("PATCH") == [*APPLY_ORDER, f"{APP_PATH}/status"]
    assert outcome.problems == []
    assert outcome.applied == [f"{c.name}/{PATHS[c.key].rsplit('/', 1)[1]}" for c in RENDERED]


def test_nothing_changed_sends_nothing(app: Pass) -> None:
    ready(app)
    app.run()
    assert app.api.requests == []


def test_emptied_resources_are_applied_without_them(app: Pass) -> None:
    app.edit(resources={"limits": {"cpu": "1"}})
    ready(app)
    app.edit(resources={})
    app.run()
    assert app.api.sent("PATCH") == [PATHS["StatefulSet"], f"{APP_PATH}/status"]
    container = app.api.objects[PATHS["StatefulSet"]]["spec"]["template"]["spec"]["containers"][0]
    assert "resources" not in container


def test_tolerations_turned_off_are_applied_without_them(app: Pass) -> None:
    ready(app)
    app.edit(backup={"tolerateControlPlane": False})
    app.run()
    assert app.api.sent("PATCH") == [PATHS["DaemonSet"], f"{APP_PATH}/status"]
    assert "tolerations" not in app.api.objects[PATHS["DaemonSet"]]["spec"]["template"]["spec"]


def test_canonical_forms_cost_one_apply_not_one_per_pass(app: Pass) -> None:
    def canonical(obj: Obj) -> Obj:
        if obj["kind"] == "StatefulSet":
            limits = obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
            limits["cpu"] = {"0.5": "500m"}.get(limits["cpu"], limits["cpu"])
        return obj

    app.api.canonical = canonical
    app.edit(resources={"limits": {"cpu": "0.5"}})
    ready(app)
    app.run()
    assert app.api.requests == []
    # A new operator process (no memory) applies it once and is quiet from then on.
    app.memory = Memory()
    app.run()
    assert app.api.sent("PATCH") == [PATHS["StatefulSet"]]
    app.run()
    assert app.api.requests == []


def test_a_refused_child_freezes_no_other(app: Pass) -> None:
    ready(app)
    app.api.answers[("PATCH", PATHS["PersistentVolumeClaim"])] = error(
        403,
        "Forbidden",
        'persistentvolumeclaims "web-data" is forbidden: only dynamically provisioned pvc can '
        "be resized and the storageclass that provisions the pvc must support resize",
    )
    storage = {**SCENARIO["spec"]["storage"], "request": "20Mi"}
    app.edit(storage=storage, replicas=4)
    outcome = app.run()
    assert app.api.sent("PATCH") == [
        PATHS["PersistentVolumeClaim"],
        PATHS["StatefulSet"],
        f"{APP_PATH}/status",
    ]
    assert app.api.objects[PATHS["StatefulSet"]]["spec"]["replicas"] == 4
    (problem,) = outcome.problems
    assert problem.reason == "Refused"
    assert "PersistentVolumeClaim default/web-data was refused" in problem.message
    assert "only dynamically provisioned pvc" in problem.message
    assert not outcome.retry
    condition = app.body["status"]["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "Refused")
    assert app.warnings[-1][0] == "Refused"
    # The refusal waits for a spec change: the next pass does not send it again.
    ready_children(app.api)
    app.run()
    assert PATHS["PersistentVolumeClaim"] not in app.api.sent("PATCH")
    assert app.body["status"]["conditions"][0]["reason"] == "Refused"
    # A spec change brings a new try.
    app.edit(storage={**storage, "request": "30Mi"})
    app.run()
    assert app.api.sent("PATCH")[0] == PATHS["PersistentVolumeClaim"]
    # Back to what the claim has: nothing to send, nothing refused any more.
    app.edit(storage=SCENARIO["spec"]["storage"])
    app.run()
    assert PATHS["PersistentVolumeClaim"] not in app.api.sent("PATCH")
    assert app.body["status"]["conditions"][0]["reason"] == "Ready"


def test_every_failed_child_is_named(app: Pass) -> None:
    ready(app)
    app.api.answers[("PATCH", PATHS["StatefulSet"])] = error(
        403,
        "Forbidden",
        'statefulsets.apps "web" is forbidden: User "system:serviceaccount:x:op" cannot patch '
        'resource "statefulsets" in API group "apps" in the namespace "default"',
    )
    app.api.answers[("PATCH", PATHS["DaemonSet"])] = error(503, "ServiceUnavailable", "etcd down")
    app.edit(replicas=2, backup={"keep": 5})
    outcome = app.run()
    assert [p.reason for p in outcome.problems] == ["Forbidden", "ServerTrouble"]
    assert outcome.retry
    message = app.body["status"]["conditions"][0]["message"]
    assert message.startswith("2 children not applied: StatefulSet default/web:")
    assert "grant the operator this permission" in message
    assert "DaemonSet default/web-backup: etcd down; retrying" in message


def test_unreachable_server_is_server_trouble(app: Pass) -> None:
    ready(app)
    app.api.answers[("PATCH", PATHS["Service"])] = requests.ConnectionError("refused")
    app.edit(port=8080)
    outcome = app.run()
    assert [p.reason for p in outcome.problems] == ["ServerTrouble"]
    assert outcome.retry
    assert PATHS["StatefulSet"] in app.api.sent("PATCH")


def test_schedule_refused_by_the_api_server_writes_nothing(app: Pass) -> None:
    app.edit(dateLogger={"schedule": "* * * * 7"})
    app.api.answers[("PATCH", PATHS["CronJob"])] = error(
        422,
        "Invalid",
        'CronJob.batch "web-datelog" is invalid: spec.schedule: Invalid value: "* * * * 7": '
        "end of range (7) above maximum (6): 7",
        "spec.schedule",
    )
    outcome = app.run()
    assert app.api.sent("PATCH") == [PATHS["CronJob"], f"{APP_PATH}/status"]
    (problem,) = outcome.problems
    assert problem.reason == "InvalidSpec"
    assert problem.message.startswith("spec.dateLogger.schedule: the API server refused CronJob")
    assert "above maximum (6)" in problem.message
    assert not outcome.retry
    # Still refused on the next event: not sent again, still nothing else written.
    app.run()
    assert app.api.sent("PATCH") == []
    del app.api.answers[("PATCH", PATHS["CronJob"])]
    app.edit(dateLogger={"schedule": "*/5 * * * *"})
    app.run()
    assert app.api.sent("PATCH")[: len(APPLY_ORDER)] == APPLY_ORDER


def test_disabled_child_is_deleted(app: Pass) -> None:
    ready(app)
    app.edit(dateLogger={"enabled": False})
    outcome = app.run()
    assert app.api.sent("DELETE") == [PATHS["CronJob"]]
    assert outcome.deleted == ["CronJob/web-datelog"]
    assert PATHS["CronJob"] not in app.api.objects


def test_an_app_gone_from_the_cluster_gets_nothing_created(app: Pass) -> None:
    # The index still shows the app (a watch gap); the cluster does not.
    del app.api.objects[APP_PATH]
    outcome = app.run()
    assert outcome.app_gone
    # Only a look at the app: nothing written.
    assert app.api.sent("GET") == [APP_PATH]
    assert app.api.sent("PATCH") == []


def test_a_deleted_child_of_a_gone_app_is_not_recreated(app: Pass) -> None:
    ready(app)
    del app.api.objects[PATHS["Service"]]
    del app.api.objects[APP_PATH]
    outcome = app.run()
    assert outcome.app_gone
    assert app.api.sent("PATCH") == []


def test_a_deleted_child_is_recreated_after_one_look_at_the_app(app: Pass) -> None:
    ready(app)
    del app.api.objects[PATHS["Service"]]
    app.run()
    assert app.api.sent("GET") == [APP_PATH]
    assert app.api.sent("PATCH") == [PATHS["Service"]]


def test_a_volume_is_collected_only_after_a_direct_read_says_its_app_is_gone(app: Pass) -> None:
    ready(app)
    # The app is there (whatever an index says): its volume stays.
    assert not collect_volume(app.api, NS, "web")
    assert app.api.sent("DELETE") == []
    del app.api.objects[APP_PATH]
    app.api.requests.clear()
    assert collect_volume(app.api, NS, "web")
    assert app.api.requests == [
        ("GET", APP_PATH),
        ("GET", PATHS["PersistentVolume"]),
        ("DELETE", PATHS["PersistentVolume"]),
        ("GET", PATHS["BackupVolume"]),
    ]


ARCHIVES_NFS = {"server": "nfs.example.com", "path": "/archives", "mountOptions": ["port=2049"]}


def test_archives_on_nfs_add_their_volume_and_claim_and_go_with_the_switch_back(
    app: Pass,
) -> None:
    ready(app)
    app.edit(backup={"target": {"nfs": ARCHIVES_NFS}})
    outcome = app.run()
    assert outcome.applied == [
        "PersistentVolume/default.web-backups",
        "PersistentVolumeClaim/web-backups",
        "DaemonSet/web-backup",
    ]
    volume = app.api.objects[PATHS["BackupVolume"]]
    assert volume["spec"]["nfs"] == {"server": "nfs.example.com", "path": "/archives"}
    assert volume["spec"]["mountOptions"] == ["port=2049"]
    # The data's volume is not the archives': each role is its own child.
    assert app.api.objects[PATHS["PersistentVolume"]]["spec"]["nfs"]["path"] == "/shared"
    ready(app)
    app.run()
    assert app.api.requests == []
    app.edit(backup=None)
    outcome = app.run()
    assert outcome.deleted == [
        "PersistentVolume/default.web-backups",
        "PersistentVolumeClaim/web-backups",
    ]
    assert outcome.applied == ["DaemonSet/web-backup"]
    assert PATHS["BackupVolume"] not in app.api.objects


def test_both_volumes_of_a_gone_app_are_collected(app: Pass) -> None:
    app.edit(backup={"target": {"nfs": ARCHIVES_NFS}})
    ready(app)
    del app.api.objects[APP_PATH]
    app.api.requests.clear()
    assert collect_volume(app.api, NS, "web")
    assert app.api.sent("DELETE") == [PATHS["PersistentVolume"], PATHS["BackupVolume"]]


def test_server_trouble_is_retried_after_what_the_server_asked_without_an_event(
    app: Pass,
) -> None:
    ready(app)
    busy = error(429, "TooManyRequests", "too many requests, please try again later")
    busy.headers["Retry-After"] = "7"
    app.api.answers[("PATCH", PATHS["StatefulSet"])] = busy
    app.warnings.clear()
    app.edit(replicas=5)
    outcome = app.run()
    assert [p.reason for p in outcome.problems] == ["ServerTrouble"]
    assert outcome.retry
    assert outcome.retry_after == 7.0
    assert app.body["status"]["conditions"][0]["reason"] == "ServerTrouble"
    assert app.warnings == []


def test_an_upgrade_that_re_renders_workloads_rolls_within_the_budget(app: Pass) -> None:
    ready(app)
    # What an older operator version left: another rendering of the same spec.
    for kind in ("StatefulSet", "DaemonSet"):
        app.api.objects[PATHS[kind]]["metadata"]["annotations"][DIGEST] = "older-rendering"
    outcome = app.run(rollout_due=False)
    assert outcome.rollouts_held == ["StatefulSet/web", "DaemonSet/web-backup"]
    assert app.api.sent("PATCH") == []
    assert app.body["status"]["conditions"][0]["reason"] == "Ready"
    outcome = app.run(rollout_due=True)
    assert outcome.rollouts_held == []
    assert app.api.sent("PATCH") == [PATHS["StatefulSet"], PATHS["DaemonSet"]]


def test_a_spec_change_is_never_held_by_the_rollout_budget(app: Pass) -> None:
    ready(app)
    app.edit(replicas=4)
    outcome = app.run(rollout_due=False)
    assert outcome.rollouts_held == []
    assert PATHS["StatefulSet"] in app.api.sent("PATCH")


def test_each_pass_says_how_it_ended_and_the_ready_reason_it_computed(app: Pass) -> None:
    """What ``statefulwebapp_reconcile_passes_total`` and ``statefulwebapp_apps`` count."""
    first = app.run()
    assert (first.label, first.ready_reason) == ("changed", "StorageNotBound")
    ready_children(app.api)
    assert (app.run().label, app.body["status"]["conditions"][0]["reason"]) == ("changed", "Ready")
    quiet = app.run()
    assert (quiet.label, quiet.ready_reason) == ("in_sync", "Ready")
    app.api.answers[("PATCH", PATHS["StatefulSet"])] = error(503, "ServiceUnavailable", "down")
    app.edit(replicas=4)
    trouble = app.run()
    assert (trouble.label, trouble.ready_reason) == ("retry", "ServerTrouble")
    del app.api.answers[("PATCH", PATHS["StatefulSet"])]
    app.edit(replicas="many")
    invalid = app.run()
    assert (invalid.label, invalid.ready_reason) == ("problem", "InvalidSpec")
    del app.api.objects[APP_PATH], app.api.objects[PATHS["Service"]]
    app.edit(replicas=3)
    gone = app.run()
    assert (gone.label, gone.ready_reason) == ("gone", None)


def test_a_child_already_being_deleted_is_not_asked_again(app: Pass) -> None:
    ready(app)
    app.api.objects[PATHS["CronJob"]]["metadata"]["deletionTimestamp"] = "2026-12-02T00:00:00Z"
    app.edit(dateLogger={"enabled": False})
    outcome = app.run()
    assert app.api.sent("DELETE") == []
    assert outcome.deleted == []


def test_a_child_checked_before_is_not_compared_again_until_it_changes(
    app: Pass, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[str] = []
    up_to_date = drift.up_to_date

    def counted(stamped: Mapping[str, Any], live: Any, stored: Any = None) -> bool:
        compared.append(stamped["kind"])
        return up_to_date(stamped, live, stored)

    ready(app)
    monkeypatch.setattr(drift, "up_to_date", counted)
    # A pass from the StatefulSet's status event: only that child changed since last time.
    app.api.objects[PATHS["StatefulSet"]]["status"]["readyReplicas"] = 2
    assert app.run().applied == []
    assert compared == ["StatefulSet"]
    # Someone edits a child compared and found in sync before: it is repaired.
    compared.clear()
    app.api.objects[PATHS["Service"]]["spec"]["clusterIP"] = "10.0.0.9"
    assert app.run().applied == ["Service/nginx"]
    assert compared == ["Service"]


def test_a_spec_is_digested_once_whatever_the_passes(
    app: Pass, monkeypatch: pytest.MonkeyPatch
) -> None:
    digested: list[str] = []
    digest = drift.digest

    def counted(manifest: Mapping[str, Any]) -> str:
        digested.append(manifest["kind"])
        return digest(manifest)

    monkeypatch.setattr(drift, "digest", counted)
    kinds_rendered = sorted(c.name for c in RENDERED)
    ready(app)
    app.run()
    # Three passes (new, children ready, in sync), one digest of each child.
    assert sorted(digested) == kinds_rendered
    app.edit(image="nginx:1.27")
    outcome = app.run()
    assert sorted(digested[len(RENDERED) :]) == kinds_rendered
    assert outcome.applied == ["StatefulSet/web"]
    # The stamps are those a fresh digest gives.
    live = app.api.objects[PATHS["StatefulSet"]]
    assert live["metadata"]["annotations"][DIGEST] == digest(
        cast("Obj", registry.STATEFULSET.render(parse(app.body)))
    )
    app.memory.forget(("default", "web"))
    app.run()
    assert len(digested) == 3 * len(RENDERED)


def test_an_export_the_admin_did_not_allow_gets_nothing_created(app: Pass) -> None:
    allow = (Export("nfs.example.com", "/exports"), Export("211.183.3.100", "/other"))
    outcome = app.run(policy=Policy(nfs_allow=allow))
    assert app.api.sent("PATCH") == [f"{APP_PATH}/status"], "nothing but the status"
    assert app.api.sent("GET") == []
    ready = app.body["status"]["conditions"][0]
    assert ready["reason"] == "ExportNotAllowed"
    assert "spec.storage.nfs 211.183.3.100:/shared is not an export" in ready["message"]
    assert "allowed: nfs.example.com:/exports, 211.183.3.100:/other" in ready["message"]
    assert outcome.label == "problem"
    # Allowed (the server's every export, or a tree holding it): created as usual.
    for allowed in (Export("211.183.3.100"), Export("211.183.3.100", "/")):
        assert app.run(policy=Policy(nfs_allow=(allowed,))).problems == []
    assert app.api.objects.get(PATHS["StatefulSet"]) is not None


def test_the_archives_export_must_be_allowed_too(app: Pass) -> None:
    app.edit(backup={"target": {"nfs": {"server": "elsewhere.example.com", "path": "/b"}}})
    app.run(policy=Policy(nfs_allow=(Export("211.183.3.100", "/shared"),)))
    message = app.body["status"]["conditions"][0]["message"]
    assert message.startswith("spec.backup.target.nfs elsewhere.example.com:/b is not an export")


def test_an_export_an_older_app_uses_gets_nothing_created(app: Pass) -> None:
    claims = ExportClaims()
    older = copy.deepcopy(SCENARIO)
    older["metadata"].update(namespace="team-a", creationTimestamp="2026-01-01T00:00:00Z")
    older["spec"]["storage"]["nfs"]["path"] = "/shared/inner/"  # inside ours, written loosely
    claims.update(("team-a", "web"), older)
    claims.update(
        (NS, "web"),
        {
            **app.body,
            "metadata": {**app.body["metadata"], "creationTimestamp": "2026-02-01T00:00:00Z"},
        },
    )
    app.run(claims=claims)
    assert app.api.sent("PATCH") == [f"{APP_PATH}/status"]
    ready = app.body["status"]["conditions"][0]
    assert ready["reason"] == "ExportInUse"
    assert "export 211.183.3.100:/shared/inner of StatefulWebApp team-a/web" in ready["message"]
    # The older app goes: the export is ours.
    assert claims.remove(("team-a", "web")) == {(NS, "web")}
    assert app.run(claims=claims).problems == []
    assert app.api.objects.get(PATHS["StatefulSet"]) is not None


def test_a_new_app_gets_its_network_policy_before_any_pod(app: Pass) -> None:
    outcome = app.run()
    assert "NetworkPolicy/web-ingress" in outcome.applied
    sent = app.api.sent("PATCH")
    assert sent.index(PATHS["NetworkPolicy"]) < sent.index(PATHS["StatefulSet"])
    assert sent.index(PATHS["NetworkPolicy"]) < sent.index(PATHS["DaemonSet"])
    live = app.api.objects[PATHS["NetworkPolicy"]]
    assert live["spec"] == registry.NETWORK_POLICY.render(parse(SCENARIO))["spec"]  # type: ignore[index]


def test_the_network_policy_turned_off_is_deleted_and_back_when_on(app: Pass) -> None:
    ready(app)
    app.edit(networkPolicy={"enabled": False})
    outcome = app.run()
    assert app.api.sent("DELETE") == [PATHS["NetworkPolicy"]]
    assert outcome.deleted == ["NetworkPolicy/web-ingress"]
    assert PATHS["NetworkPolicy"] not in app.api.objects
    assert app.body["status"]["conditions"][0]["reason"] == "Ready"
    app.run()
    assert app.api.requests == []

    app.edit(networkPolicy=None)
    outcome = app.run()
    assert outcome.applied == ["NetworkPolicy/web-ingress"]
    assert app.api.sent("DELETE") == []
    assert PATHS["NetworkPolicy"] in app.api.objects


def test_a_network_policy_edited_or_deleted_by_hand_is_repaired(app: Pass) -> None:
    ready(app)
    rendered = copy.deepcopy(app.api.objects[PATHS["NetworkPolicy"]]["spec"])
    # Someone opens every port of every pod of the app.
    app.api.objects[PATHS["NetworkPolicy"]]["spec"]["ingress"] = [{}]
    outcome = app.run()
    assert outcome.applied == ["NetworkPolicy/web-ingress"]
    assert app.api.objects[PATHS["NetworkPolicy"]]["spec"] == rendered
    app.run()
    assert app.api.requests == []

    del app.api.objects[PATHS["NetworkPolicy"]]
    app.run()
    assert app.api.sent("GET") == [APP_PATH]
    assert app.api.sent("PATCH")[0] == PATHS["NetworkPolicy"]
    assert app.api.objects[PATHS["NetworkPolicy"]]["spec"] == rendered
