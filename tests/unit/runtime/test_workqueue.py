"""When passes run: coalescing, retries, held status writes and their budget, the resume line.

Real threads with short windows; every wait is for an event, with a generous timeout, so the
tests check order and counts, never speed.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable

import pytest

from statefulwebapp.runtime.workqueue import Delays, Result, Resume, WorkQueue

TIMEOUT = 10.0


class Recorder:
    """A step factory that records which steps ran, in which thread."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.threads: list[str] = []
        self.changed = threading.Condition()

    def step(self, label: str, result: Result | None = None) -> Callable[[], Result]:
        def run() -> Result:
            with self.changed:
                self.ran.append(label)
                self.threads.append(threading.current_thread().name)
                self.changed.notify_all()
            return result or Result()

        return run

    def wait_for(self, count: int) -> list[str]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.ran) >= count, TIMEOUT), self.ran
            return list(self.ran)


def test_a_lone_request_runs_at_once_on_the_pool_never_blocking_the_caller() -> None:
    passes, rec = WorkQueue(coalesce=0.05), Recorder()
    release = threading.Event()

    def slow() -> Result:
        assert release.wait(TIMEOUT)
        return rec.step("first")()

    passes.add("a", slow)  # Returns while the step still waits: the caller is not blocked.
    release.set()
    assert rec.wait_for(1) == ["first"]
    assert rec.threads[0].startswith("pass")


def test_a_burst_shares_one_trailing_pass_with_the_newest_step() -> None:
    passes, rec = WorkQueue(coalesce=0.2), Recorder()
    passes.add("a", rec.step("lead"))
    for i in range(5):
        passes.add("a", rec.step(f"burst-{i}"))
    assert rec.wait_for(2) == ["lead", "burst-4"]
    time.sleep(0.5)  # Two windows later: still no third pass, nothing was left over.
    assert rec.ran == ["lead", "burst-4"]


def test_a_lone_app_waits_only_the_idle_window() -> None:
    """No load: the burst after a pass is passed after ``coalesce_idle``, not ``coalesce``."""
    passes, rec = WorkQueue(workers=1, coalesce=60, coalesce_idle=0.01), Recorder()
    passes.add("a", rec.step("lead"))
    rec.wait_for(1)
    for i in range(3):
        passes.add("a", rec.step(f"burst-{i}"))
    assert rec.wait_for(2) == ["lead", "burst-2"]  # Long before the 60 s window would close.


def test_under_load_a_burst_waits_the_whole_window() -> None:
    """More apps in a pass or a window than workers: the long window, so passes are shared."""
    passes, rec = WorkQueue(workers=1, coalesce=1.0, coalesce_idle=0.01), Recorder()
    for key in ("b", "c", "a"):  # One worker: b runs while c and a wait, all three busy.
        passes.add(key, rec.step(key))
    assert sorted(rec.wait_for(3)) == ["a", "b", "c"]
    passes.add("a", rec.step("a-burst"))
    time.sleep(0.3)
    assert "a-burst" not in rec.ran, "a loaded queue passed a burst before its window closed"
    assert rec.wait_for(4)[-1] == "a-burst"


def test_apps_do_not_wait_for_each_other() -> None:
    passes, rec = WorkQueue(coalesce=5), Recorder()
    passes.add("a", rec.step("a"))
    passes.add("b", rec.step("b"))
    assert sorted(rec.wait_for(2)) == ["a", "b"]  # Long before a's 5 s window closes.


def test_a_failed_pass_is_tried_again() -> None:
    passes, rec = WorkQueue(coalesce=0.01, retry=0.05), Recorder()
    attempts: list[int] = []

    def flaky() -> Result:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("the API server said no")
        return rec.step("ok", Result(failed=len(attempts) < 3))()

    passes.add("a", flaky)
    rec.wait_for(2)
    assert len(attempts) == 3  # Raised, then reported failure, then succeeded.


def test_retries_back_off_exponentially_with_jitter_up_to_a_ceiling() -> None:
    passes = WorkQueue(retry=2.0, retry_max=60.0)
    for failures, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (6, 60.0), (20, 60.0)]:
        delays = [passes.backoff(failures) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (failures, min(delays))
        assert len(set(delays)) > 100  # Jittered: apps failing together do not retry together.


def test_a_retry_waits_at_least_what_the_server_asked() -> None:
    passes, rec = WorkQueue(coalesce=0.01, retry=0.01), Recorder()
    started = time.monotonic()
    outcomes = iter([Result(failed=True, retry_after=0.5), Result()])

    def step() -> Result:
        return rec.step("run", next(outcomes))()

    passes.add("a", step)
    rec.wait_for(2)
    assert time.monotonic() - started >= 0.5


def test_when_the_server_answers_again_long_backoffs_are_cut_short() -> None:
    passes, rec = WorkQueue(coalesce=0.01, retry=0.05), Recorder()
    b_results = iter([Result(failed=True), Result(failed=True, retry_after=60.0), Result()])
    a_results = iter([Result(failed=True), Result()])

    def b() -> Result:
        return rec.step("b", next(b_results))()

    def a() -> Result:
        return rec.step("a", next(a_results))()

    passes.add("b", b)
    rec.wait_for(2)  # "b" failed twice; its next try is a minute away.
    passes.add("a", a)
    # "a" fails, then goes through: the server answers again, so "b" is tried at once.
    ran = rec.wait_for(5)
    assert ran.count("b") == 3
    assert ran.index("a") < len(ran) - 1


def test_rollouts_nobody_asked_for_are_paced_across_the_fleet() -> None:
    passes = WorkQueue(rollouts_per_minute=60)
    assert passes.rollout_due()
    assert not passes.rollout_due()  # The next one in a second, not now.


def test_a_held_status_write_comes_back_until_written() -> None:
    passes, rec = WorkQueue(coalesce=0.01, progress_interval=0.05), Recorder()
    holds = iter([True, True, True, False])

    def step() -> Result:
        held = next(holds)
        return rec.step("held" if held else "written", Result(held=held))()

    passes.add("a", step)
    passes.add("a", step)  # Held again in the trailing pass: still one revisit pending.
    assert rec.wait_for(4) == ["held", "held", "held", "written"]
    time.sleep(0.2)  # Written: nothing more comes back.
    assert len(rec.ran) == 4


def test_a_requeued_pass_comes_back_until_it_asks_no_more() -> None:
    passes, rec = WorkQueue(coalesce=0.01), Recorder()
    waits = iter([0.05, 0.05, None])

    def step() -> Result:
        return rec.step("pass", Result(requeue_after=next(waits)))()

    passes.add("restore", step)
    assert rec.wait_for(3) == ["pass"] * 3
    time.sleep(0.2)  # The third asked for no requeue: nothing more comes back.
    assert len(rec.ran) == 3


def test_requeues_of_one_key_keep_only_the_earliest() -> None:
    """A pass per event, each asking to come back: one timer per key, as client-go's AddAfter
    keeps one entry per item, at the earliest time asked."""
    passes, rec = WorkQueue(coalesce=0.01), Recorder()

    def once(label: str, wait: float) -> Callable[[], Result]:
        waits = iter([wait])

        def step() -> Result:  # Asks to come back once: its requeued pass asks no more.
            return rec.step(label, Result(requeue_after=next(waits, None)))()

        return step

    for label, wait in (("a", 0.3), ("b", 0.2), ("c", 0.25)):
        passes.add("app", once(label, wait))
        idle(passes, "app")
    started = time.monotonic()
    # The 0.2 s asked by the second pass, not the 0.3 s of the first or the third's 0.25 s.
    assert rec.wait_for(4) == ["a", "b", "c", "b"]
    assert time.monotonic() - started < 0.25
    time.sleep(0.4)  # The overtaken timers fire to no effect.
    assert len(rec.ran) == 4


def idle(passes: WorkQueue, key: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not passes.idle(key):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def written(passes: WorkQueue, key: str) -> None:
    passes.add(key, lambda: Result(status_written=True))
    idle(passes, key)


def test_progress_writes_per_app_and_operator_wide() -> None:
    passes = WorkQueue(coalesce=0.01, progress_interval=60, progress_rate=1000)
    assert passes.progress_due("a")
    written(passes, "a")
    assert not passes.progress_due("a")  # Written just now: the app waits its interval.
    time.sleep(0.002)
    assert passes.progress_due("b")  # Another app, the budget allows it.
    slow = WorkQueue(progress_interval=0, progress_rate=0.001)
    assert slow.progress_due("a")
    assert not slow.progress_due("b")  # The operator-wide budget is spent.


def test_no_progress_write_while_more_apps_pass_than_there_are_workers() -> None:
    """A burst: the apps' children first; a count held meanwhile is written once it passed."""
    passes = WorkQueue(workers=2, coalesce=0.01, progress_interval=0, progress_rate=1000)
    release = threading.Event()

    def busy() -> Result:
        release.wait(TIMEOUT)
        return Result()

    for key in ("a", "b", "c"):
        passes.add(key, busy)
    assert not passes.progress_due("d"), "three apps passing, two workers: loaded"
    release.set()
    for key in ("a", "b", "c"):
        idle(passes, key)
    assert passes.progress_due("d")


def test_forgotten_apps_start_afresh() -> None:
    passes = WorkQueue(coalesce=0.01, progress_interval=60, progress_rate=1000)
    written(passes, "a")
    passes.forget("a")
    assert passes.progress_due("a")


def test_resume_says_once_when_every_app_known_at_start_had_its_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    resume = Resume()
    known = {"a", "b", "c"}
    caplog.set_level("INFO")
    assert resume.passed("a", lambda: set(known)) is None
    assert resume.passed("a", lambda: set(known)) is None
    assert resume.passed("b", lambda: set(known)) is None
    assert resume.passed("c", lambda: set(known)) is not None
    assert resume.passed("c", lambda: set(known)) is None
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == ["resumed 3 apps"]


def test_delays_run_in_due_order_whichever_came_first() -> None:
    # The delays thread is woken only by a new earliest entry: a later entry must still run
    # once due, and an earlier one added after it must not wait for it.
    delays, rec = Delays(), Recorder()
    start = time.monotonic()
    early_ran = threading.Event()
    ran_at: list[float] = []

    def early() -> Result:
        ran_at.append(time.monotonic())
        early_ran.set()
        return rec.step("early")()

    delays.call_later(2.0, rec.step("late"))
    delays.call_later(2.5, rec.step("latest"))
    time.sleep(0.2)  # The thread now sleeps until the late entry is due.
    delays.call_later(0.05, early)
    assert early_ran.wait(TIMEOUT)
    assert ran_at[0] - start < 2.0, "the early entry waited for the later one"
    assert rec.wait_for(3) == ["early", "late", "latest"]


def test_a_pass_whose_window_closes_with_nothing_new_costs_one_hand_over_to_the_pool() -> None:
    """The trailing call of a window finds nothing to run and ends on the delays' thread; a
    request within the window gets its pass on the pool."""
    passes, rec = WorkQueue(coalesce=0.01), Recorder()
    handed: list[object] = []
    submit = passes._pool.submit

    def counted(fn: Callable[..., object], /, *args: object) -> concurrent.futures.Future[object]:
        handed.append(fn)
        return submit(fn, *args)

    passes._pool.submit = counted  # type: ignore[method-assign,assignment]
    passes.add("a", rec.step("first"))
    idle(passes, "a")
    assert len(handed) == 1, handed
    passes.add("a", rec.step("second"))
    passes.add("a", rec.step("third"))  # Within the window: one trailing pass.
    idle(passes, "a")
    assert rec.wait_for(3) == ["first", "second", "third"]
    assert len(handed) == 3, handed


def test_apps_that_come_and_go_leave_nothing_behind() -> None:
    """Thousands of apps, each passed (failed once, then written, requeued or held) and deleted:
    the queue remembers none of them once they are idle; the live one stays."""
    passes = WorkQueue(
        coalesce=0.001, coalesce_idle=0.001, retry=0.001, retry_max=0.002, progress_interval=0.001
    )
    second = [Result(status_written=True), Result(requeue_after=0.001), Result(held=True)]

    def step(n: int) -> Callable[[], Result]:
        runs = iter([Result(failed=True), second[n % len(second)]])
        return lambda: next(runs, Result())

    for round_ in range(4):
        keys = [f"app-{round_}-{n}" for n in range(500)]
        for n, key in enumerate(keys):
            passes.add(key, step(n))
        for key in keys:
            idle(passes, key)
            passes.forget(key)
    written(passes, "live")

    assert passes.remembered() == {"live"}
