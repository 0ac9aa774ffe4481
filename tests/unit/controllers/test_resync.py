"""The full check's comparison (resync.compare): pure, on snapshots."""

from __future__ import annotations

from statefulwebapp.controllers.resync import Plan, Snapshot, compare

ALL = frozenset(
    {"CronJob", "PersistentVolume", "PersistentVolumeClaim", "Service", "StatefulSet", "DaemonSet"}
)
A, B = ("ns", "a"), ("ns", "b")


def snap(apps: set[tuple[str, str]], **children: frozenset[str]) -> Snapshot:
    by_key = {("ns", name): kinds for name, kinds in children.items()}
    return Snapshot(frozenset(apps), by_key)


def test_in_sync_is_an_empty_plan() -> None:
    same = snap({A, B}, a=ALL, b=ALL)
    plan = compare(same, same)
    assert plan == Plan()
    assert not plan


def test_child_deleted_in_a_gap_is_repaired() -> None:
    plan = compare(snap({A, B}, a=ALL, b=ALL), snap({A, B}, a=ALL - {"Service"}, b=ALL))
    assert plan.repair == {A: frozenset({"Service"})}
    assert not plan.gone
    assert not plan.orphans


def test_app_deleted_in_a_gap_is_gone_and_its_volume_collected_once() -> None:
    plan = compare(snap({A, B}, a=ALL, b=ALL), snap({A}, a=ALL, b=frozenset({"PersistentVolume"})))
    assert plan.gone == {B}
    assert plan.orphans == set()  # Collected as part of "gone".
    assert plan.repair == {}


def test_orphaned_volume_without_app_anywhere_is_collected() -> None:
    plan = compare(snap({A}, a=ALL), snap({A}, a=ALL, b=frozenset({"PersistentVolume"})))
    assert plan.orphans == {B}


def test_new_objects_the_index_has_not_seen_yet_are_left_to_the_watches() -> None:
    plan = compare(snap({A}, a=ALL), snap({A, B}, a=ALL, b=ALL))
    assert not plan
