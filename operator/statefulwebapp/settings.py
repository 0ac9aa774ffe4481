"""What one operator instance is told at start: the command's options, typed, defaulted once.

The command (``cli.py``) builds it, kopf's memo carries it to the startup handler
(``handlers.configure``), which builds the manager from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from statefulwebapp.controllers.policy import NO_POLICY, Policy
from statefulwebapp.manager import RESYNC_SECONDS
from statefulwebapp.runtime.workqueue import ROLLOUTS_PER_MINUTE


@dataclass(frozen=True)
class Settings:
    """The operator's settings; every field has the command's default."""

    namespaces: frozenset[str] = frozenset()
    """The namespaces served (``--namespace``); empty: all."""
    resync_seconds: float = RESYNC_SECONDS
    """Period of the full check (``--resync-seconds``); 0 turns it off."""
    max_rollouts_per_minute: float = ROLLOUTS_PER_MINUTE
    """Apps whose pods may roll per minute when a new rendering nobody asked for changes them
    (``--max-rollouts-per-minute``)."""
    policy: Policy = NO_POLICY
    """The admin's decisions: the archives' root on the nodes, the exports allowed
    (``--backup-root``, ``--nfs-allow``)."""


DEFAULTS = Settings()
