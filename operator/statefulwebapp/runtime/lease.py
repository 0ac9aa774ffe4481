"""Leader election on a ``coordination.k8s.io`` Lease: one active operator, any number waiting.

The rules are client-go's leader election, so that they hold without synchronised clocks:

- A lease is free when nobody holds it, or when its record (holder, renew time, version) has
  not changed for ``leaseDurationSeconds`` *as measured by the candidate's own clock* since it
  first saw that record. A standby therefore takes over at most ``duration + retry`` seconds
  after the leader's last renewal, however the leader died (``kill -9`` included).
- Taking and renewing are updates with the lease's resourceVersion: of two candidates, the API
  server lets exactly one through.
- The leader renews every ``retry`` seconds. If it has not renewed for ``deadline`` seconds
  (< ``duration``) it has lost the lease and stops at once (``on_lost``; the command exits the
  process): it has stopped writing before anyone can take over, ``duration - deadline``
  seconds of margin.
- On a clean stop the leader releases the lease (holder emptied), so the standby takes over
  within ``retry`` seconds instead of waiting out the duration.

No kopf here; ``cli.py`` holds kopf back until :meth:`Elector.acquire` returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykube
import requests

from statefulwebapp.api.objects import timestamp
from statefulwebapp.runtime import kube

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """Seconds of the election; ``deadline < duration`` is what keeps two leaders apart."""

    duration: float = 15.0
    """How long a lease not renewed stays taken (``leaseDurationSeconds``)."""
    deadline: float = 10.0
    """A leader that has not renewed for this long stops."""
    retry: float = 2.0
    """Between two attempts to take or renew."""


class NoLeaseNamespaceError(RuntimeError):
    """The lease's namespace does not exist, so no candidate can ever hold the lease."""

    def __init__(self, namespace: str) -> None:
        """Say what is missing and the two ways out."""
        super().__init__(
            f"the namespace {namespace!r} of the leader-election lease does not exist: create "
            f"it (kubectl create namespace {namespace}) or choose another with "
            "--lease NAMESPACE/NAME"
        )
        self.namespace = namespace


class Elector:
    """One candidate for the lease ``namespace/name``."""

    def __init__(
        self,
        api: pykube.HTTPClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        kind: kube.Resource,
        timing: Timing = Timing(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """A candidate called ``identity`` (unique per process); ``kind``: the Lease's location."""
        self.api = api
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self._clock = clock
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.holder = ""
        """Who held the lease at the last look."""
        self.renewed_at: float | None = None
        """Our clock when we last took or renewed the lease."""
        self.answered_at: float | None = None
        """Our clock when the API server last showed us the lease (or its absence)."""
        self._stop = threading.Event()

    @property
    def where(self) -> str:
        """``namespace/name`` of the lease."""
        return f"{self.namespace}/{self.name}"

    def try_acquire(self) -> bool:
        """One attempt to take the lease, or renew it if ours; True if we hold it now."""
        now = self._clock()
        lease = kube.get(self.api, self.kind, self.name, self.namespace)
        self.answered_at = now
        if lease is None:
            return self._write(self._record(None), create=True, now=now)
        spec = lease.get("spec") or {}
        observed = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            lease["metadata"].get("resourceVersion"),
        )
        if observed != self._observed:
            self._observed, self._observed_at = observed, now
        self.holder = str(spec.get("holderIdentity") or "")
        duration = float(spec.get("leaseDurationSeconds") or self.timing.duration)
        if self.holder and self.holder != self.identity and now < self._observed_at + duration:
            return False
        return self._write(self._record(lease), create=False, now=now)

    def _record(self, lease: dict[str, Any] | None) -> dict[str, Any]:
        now = timestamp(micro=True)
        spec = (lease or {}).get("spec") or {}
        ours = spec.get("holderIdentity") == self.identity
        transitions = int(spec.get("leaseTransitions") or 0)
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if lease is not None:
            meta["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.timing.duration),
                "acquireTime": spec.get("acquireTime") if ours else now,
                "renewTime": now,
                "leaseTransitions": transitions if ours or lease is None else transitions + 1,
            },
        }

    def _write(self, record: dict[str, Any], *, create: bool, now: float) -> bool:
        try:
            (kube.create if create else kube.replace)(self.api, self.kind, record)
        except kube.ApiError as err:
            if err.status in (409, 422):  # Someone else wrote first: not ours this round.
                return False
            if create and err.status == 404:
                # No lease can ever be created there: waiting as a standby would wait for ever.
                raise NoLeaseNamespaceError(self.namespace) from err
            raise
        self.holder = self.identity
        self.renewed_at = now
        return True

    def unready(self) -> str | None:
        """Why this candidate could not take over now, or None if it could (the readiness check).

        It could if the API server showed it the lease within the lease's duration: a standby
        that cannot reach the API server, or may not read leases, is no failover, whatever its
        process does. The duration, not one attempt: a slow answer or two is no reason.
        """
        if self.answered_at is None:
            return f"the lease {self.where} has not been read yet"
        silent = self._clock() - self.answered_at
        if silent >= self.timing.duration:
            return f"the lease {self.where} could not be read for {silent:.0f}s"
        return None

    def acquire(self) -> None:
        """Block until the lease is ours, saying once (and on each change of holder) why not.

        Raises :class:`NoLeaseNamespaceError` at once when the lease's namespace is missing.
        """
        said = None
        while not self._stop.is_set():
            try:
                if self.try_acquire():
                    log.info("leader: took the lease %s as %s", self.where, self.identity)
                    return
                reason = f"the lease {self.where} is held by {self.holder}"
            except (kube.ApiError, requests.RequestException) as err:
                reason = f"cannot read or take the lease {self.where}: {err}"
            if reason != said:
                log.warning("standby: %s; waiting to take over", reason)
                said = reason
            self._stop.wait(self.timing.retry)

    def keep(self, on_lost: Callable[[str], None]) -> threading.Thread:
        """Renew in a thread; call ``on_lost(reason)`` once the lease is no longer surely ours."""

        def renew() -> None:
            while not self._stop.wait(self.timing.retry):
                if self.renewed_at is not None and (
                    self._clock() - self.renewed_at >= self.timing.deadline
                ):
                    on_lost(f"the lease {self.where} was not renewed for {self.timing.deadline}s")
                    return
                try:
                    if self.try_acquire():
                        continue
                    reason = f"the lease {self.where} was taken by {self.holder}"
                except (kube.ApiError, requests.RequestException) as err:
                    reason = f"cannot renew the lease {self.where}: {err}"
                    if self.renewed_at is not None and (
                        self._clock() - self.renewed_at < self.timing.deadline
                    ):
                        log.warning("%s; retrying", reason)
                        continue
                on_lost(reason)
                return

        thread = threading.Thread(target=renew, name="lease", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Stop renewing and, if the lease is still ours, hand it back at once."""
        self._stop.set()
        try:
            lease = kube.get(self.api, self.kind, self.name, self.namespace)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
            kube.replace(self.api, self.kind, lease)
            log.info("released the lease %s", self.where)
        except (kube.ApiError, requests.RequestException) as err:
            log.warning("could not release the lease %s: %s", self.where, err)
