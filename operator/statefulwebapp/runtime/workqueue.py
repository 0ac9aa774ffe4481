"""The work queue: when an app gets a pass (a reconcile), with client-go's workqueue in mind.

Per-app coalescing, retries with backoff, requeues, held status writes, a write budget.

No kopf and no API here. ``controller.py`` hands :meth:`WorkQueue.add` a step (one reconcile of
one app, as a zero-argument callable) and everything about *when* steps run lives in this one
class, so it can be tested without a cluster:

- the first request for an app runs at once on the pool, never in the caller's thread (kopf's
  event loop must not wait on the API): a deleted child is repaired without waiting;
- requests arriving while that pass runs, or within the coalescing window after it, share one
  trailing pass: a DaemonSet reporting 0/4 ... 4/4 within a second costs two passes, not five.
  The window is ``coalesce`` seconds under load (more apps in a pass or a window than there
  are workers) and ``coalesce_idle`` otherwise: a lone app is not kept waiting for a burst
  that is not coming, and a fleet still shares its passes;
- a step that fails (server trouble, anything unexpected) is tried again with exponential
  backoff and jitter: ``retry`` seconds, doubling per failure in a row up to ``retry_max``,
  each delay drawn from its upper half so that apps failing together do not retry together;
  no app is ever left without a pass;
- a step that held back a status write (only progress, see ``status.urgent``) is run again once
  that write is due;
- :meth:`WorkQueue.progress_due` is the budget for those writes: per app at most one every
  ``progress_interval`` seconds, across the operator at most ``progress_rate`` per second, and
  none while the queue is loaded (more apps in a pass or a window than there are workers): a
  burst's API server has the apps' children to make first, and a held count is written once
  the burst has passed;
- :meth:`WorkQueue.rollout_due` is the budget for re-rendered workloads nobody asked for (a new
  operator version rendering a pod template differently): at most ``rollouts_per_minute``
  apps roll across the fleet per minute; a pass that had to wait is run again later.

Delayed steps wait on one heap served by one thread and run on a pool of ``workers`` threads,
so a burst of a thousand apps costs a heap entry each, not a thread each, and no more than
``workers`` delayed passes talk to the API at once.
"""

from __future__ import annotations

import concurrent.futures
import functools
import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """What one pass reports back about its own timing needs."""

    failed: bool = False
    """The pass could not finish (server trouble, an error): run it again, with backoff."""
    held: bool = False
    """A progress-only status change was not written: run again when such writes are due."""
    status_written: bool = False
    """The pass wrote the app's status: the per-app progress interval starts again."""
    retry_after: float | None = None
    """With ``failed``: the API server asked to wait at least this long (``Retry-After``)."""
    requeue_after: float | None = None
    """The pass went through but waits for something no watch tells of (a restore's Job):
    run it again after this many seconds (controller-runtime's ``RequeueAfter``)."""


Step = Callable[[], Result]


class Delays:
    """One thread that runs each callable when it is due.

    The callables must be quick: each takes a lock and, if a pass is due, hands it to the pool.
    Handing every one to the pool cost a pool hand-over per pass (most trails find nothing to
    run), the operator's second-largest CPU cost in a thousand-app burst.
    """

    def __init__(self) -> None:
        """No thread until the first call."""
        self._due: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, call: Callable[[], object]) -> None:
        """Run ``call`` on the pool in ``delay`` seconds."""
        with self._wake:
            entry = (time.monotonic() + delay, next(self._seq), call)
            heapq.heappush(self._due, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="delays", daemon=True)
                self._thread.start()
            # The thread sleeps until the earliest entry: only a new earliest one changes
            # that. Waking it for every entry (a pass's trail each) is a thread switch for
            # nothing, once per pass.
            if self._due[0] is entry:
                self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, call = heapq.heappop(self._due)
            try:
                call()
            except Exception:  # A bug in one callable must not stop every later one.
                log.exception("a delayed call failed")


ROLLOUTS_PER_MINUTE = 30.0
"""Default of ``--max-rollouts-per-minute``: apps whose workloads a new operator version renders
differently, the spec unchanged, that may roll per minute."""


class WorkQueue:
    """Per-app pass scheduling; see the module's docstring for the rules."""

    def __init__(
        self,
        *,
        workers: int = 4,
        coalesce: float = 0.5,
        coalesce_idle: float | None = None,
        retry: float = 10.0,
        retry_max: float = 300.0,
        progress_interval: float = 30.0,
        progress_rate: float = 1.0,
        rollouts_per_minute: float = ROLLOUTS_PER_MINUTE,
    ) -> None:
        """Timings in seconds; ``progress_rate`` in writes per second.

        ``coalesce_idle``: the window while the queue is not loaded (default: ``coalesce``).
        """
        self.workers = workers
        self.coalesce = coalesce
        self.coalesce_idle = coalesce if coalesce_idle is None else coalesce_idle
        self.retry = retry
        self.retry_max = retry_max
        self.progress_interval = progress_interval
        self.progress_rate = progress_rate
        self.rollouts_per_minute = rollouts_per_minute
        self._next_rollout = 0.0
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="pass")
        self._delays = Delays()
        self._lock = threading.Lock()
        self._busy: set[Hashable] = set()
        self._dirty: dict[Hashable, Step] = {}
        self._revisits: set[Hashable] = set()
        self._requeues: dict[Hashable, float] = {}
        """Per key, when its pending requeue is due: one at a time, the earliest (client-go's
        ``AddAfter``), so that a pass per event does not pile up timers."""
        self._written: dict[Hashable, float] = {}
        self._failures: dict[Hashable, int] = {}
        self._waits: dict[Hashable, int] = {}
        """Per busy key, the token of the one trailing call that may take its next pass."""
        self._tokens = itertools.count(1)
        """Per key, the number of its latest scheduled trail: an earlier one, overtaken by an
        early retry, does nothing."""
        self._next_progress_write = 0.0
        self._queued = 0
        """First passes handed to the pool that no worker has started yet."""

    def add(self, key: Hashable, step: Step) -> None:
        """A pass for ``key`` now, or, if one ran within ``coalesce`` seconds, one soon.

        Never blocks: the pass runs on the pool.

        The newest step of a burst is the one run, so it sees the newest state.
        """
        with self._lock:
            if key in self._busy:
                self._dirty[key] = step
                return
            self._busy.add(key)
            self._queued += 1
        self._pool.submit(self._start, key, step)

    def depth(self) -> int:
        """Apps with a pass waiting to run: for a worker, a coalescing window or a backoff.

        The work queue's depth (a metric); passes running now are not counted.
        """
        with self._lock:
            return self._queued + len(self._dirty)

    def progress_due(self, key: Hashable) -> bool:
        """Whether a progress-only status write for ``key`` may go now; if so, it is counted."""
        now = time.monotonic()
        with self._lock:
            if self._loaded():
                return False
            if now - self._written.get(key, -self.progress_interval) < self.progress_interval:
                return False
            if now < self._next_progress_write:
                return False
            self._next_progress_write = now + 1 / self.progress_rate
            return True

    def rollout_due(self) -> bool:
        """Whether one more app may roll its workloads for a new rendering now; if so, counted."""
        now = time.monotonic()
        with self._lock:
            if now < self._next_rollout:
                return False
            self._next_rollout = now + 60 / self.rollouts_per_minute
            return True

    def idle(self, key: Hashable) -> bool:
        """Whether no pass for ``key`` runs or waits, and its window has closed."""
        with self._lock:
            return key not in self._busy

    def remembered(self) -> set[Hashable]:
        """Every key the queue holds anything of: with apps coming and going, only live ones."""
        with self._lock:
            return {
                *self._busy,
                *self._dirty,
                *self._revisits,
                *self._requeues,
                *self._written,
                *self._failures,
                *self._waits,
            }

    def forget(self, key: Hashable) -> None:
        """The app is gone: drop what is remembered of it (a pending pass finds no app)."""
        with self._lock:
            self._written.pop(key, None)
            self._failures.pop(key, None)
            self._requeues.pop(key, None)

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed passes in a row (jittered)."""
        ceiling = min(self.retry_max, self.retry * 2.0 ** (failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _start(self, key: Hashable, step: Step) -> None:
        with self._lock:
            self._queued -= 1
        self._run(key, step)

    def _window(self) -> float:
        """The coalescing window now (under the lock): long only while apps outnumber workers."""
        return self.coalesce if self._loaded() else self.coalesce_idle

    def _loaded(self) -> bool:
        """Whether more apps are in a pass or a window than there are workers (under the lock)."""
        return len(self._busy) > self.workers

    def _run(self, key: Hashable, step: Step) -> None:
        result = Result(failed=True)
        try:
            result = step()
        except Exception:
            log.exception("pass for %s failed; retrying with backoff", key)
        finally:
            with self._lock:
                delay = window = self._window()
                if result.status_written:
                    self._written[key] = time.monotonic()
                recovered: list[Hashable] = []
                if result.failed:
                    self._dirty.setdefault(key, step)
                    self._failures[key] = self._failures.get(key, 0) + 1
                    delay = max(self.backoff(self._failures[key]), result.retry_after or 0.0)
                elif self._failures.pop(key, None) is not None:
                    # This key failed and now went through: the server answers again, so the
                    # others waiting out a long backoff are tried now rather than up to
                    # retry_max later. A server still in trouble fails them again, backing off
                    # further.
                    recovered = [k for k, n in self._failures.items() if n >= 2]
                revisit = result.held and key not in self._revisits
                if revisit:
                    self._revisits.add(key)
                requeue = None
                if result.requeue_after is not None and not result.failed:
                    due = time.monotonic() + result.requeue_after
                    if due < self._requeues.get(key, float("inf")):
                        self._requeues[key] = requeue = due
                trails = [(k, self._next_wait(k)) for k in (key, *recovered)]
            if revisit:
                self._delays.call_later(self.progress_interval, lambda: self._revisit(key, step))
            if requeue is not None:
                self._delays.call_later(
                    result.requeue_after or 0.0,
                    functools.partial(self._requeue, key, step, requeue),
                )
            for k, wait in trails:
                soon = delay if k == key else window
                self._delays.call_later(soon, functools.partial(self._trail, k, wait))

    def _next_wait(self, key: Hashable) -> int:
        # Tokens are never reused, so a key forgotten when idle and busy again later cannot
        # match a trailing call still waiting from before.
        self._waits[key] = token = next(self._tokens)
        return token

    def _trail(self, key: Hashable, wait: int) -> None:
        with self._lock:
            if self._waits.get(key) != wait:
                return  # Overtaken by an early retry.
            step = self._dirty.pop(key, None)
            if step is None:
                self._busy.discard(key)
                del self._waits[key]
                return
        self._pool.submit(self._run, key, step)

    def _requeue(self, key: Hashable, step: Step, due: float) -> None:
        with self._lock:
            if self._requeues.get(key) != due:
                return  # Overtaken by an earlier requeue, or the app is gone.
            del self._requeues[key]
        self.add(key, step)

    def _revisit(self, key: Hashable, step: Step) -> None:
        with self._lock:
            self._revisits.discard(key)
        self.add(key, step)


class Resume:
    """Says once when every app that existed at start has had its first pass.

    kopf fills every index before any handler runs, so the apps known at the first pass are the
    whole fleet the operator found. The log line is how to tell that a restart has caught up.
    """

    def __init__(self) -> None:
        """Start the clock: the operator is starting."""
        self.started = time.monotonic()
        self._pending: set[Hashable] | None = None
        self._total = 0
        self._lock = threading.Lock()

    def passed(self, key: Hashable, known: Callable[[], set[Hashable]]) -> float | None:
        """Note the pass of ``key``; the seconds since start if it was the last one missing.

        ``known()`` gives every app known at the first call.
        """
        with self._lock:
            if self._pending is None:
                # An app created after the start still closes the count.
                self._pending = {*known(), key}
                self._total = len(self._pending)
            if not self._pending:
                return None
            self._pending.discard(key)
            if self._pending:
                return None
        elapsed = time.monotonic() - self.started
        log.info("resumed %d apps in %.1f s since start", self._total, elapsed)
        return elapsed
