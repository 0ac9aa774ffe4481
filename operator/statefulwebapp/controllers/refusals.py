"""What the API server's "no" to a child means for the user: pure, no I/O.

A write of a child can fail for reasons that call for different actions, and the status must
say which, from what the server actually answered:

==================  ======================================  =====================================
reason              the server said                         what happens
==================  ======================================  =====================================
``InvalidSpec``     422 Invalid: the object breaks a rule   waits for a spec change; names the
                    the schema could not check (a cron      spec field the server pointed at
                    schedule)
``Refused``         403 from admission (not RBAC): resize   waits for a spec change; the server's
                    of a static claim, a quota, a policy    own message
``Forbidden``       403 from RBAC: the operator's role      retried with backoff: granting the
                    lacks a verb                            permission makes no event
``Conflict``        409                                     retried with backoff
``ServerTrouble``   429, 5xx, timeouts, connection errors   retried with backoff
==================  ======================================  =====================================
"""

from __future__ import annotations

import re

import requests

from statefulwebapp.api import kinds
from statefulwebapp.runtime.kube import ApiError
from statefulwebapp.specs import registry, status

_RBAC = re.compile(r"\bcannot \S+ resource\b")
"""How the API server words an RBAC denial (the authorizer's message; admission never says it)."""


def problem(child: kinds.Kind, where: str, err: Exception) -> status.Problem:
    """The status problem for a failed request about ``child`` (``where``: its namespace/name)."""
    what = f"{child.name} {where}"
    if not isinstance(err, ApiError):
        return status.Problem(
            "ServerTrouble",
            f"{what}: the API server could not be reached ({type(err).__name__}); retrying",
            child=child.name,
            retry=True,
        )
    if err.status == 403 and _RBAC.search(err.message):
        return status.Problem(
            "Forbidden",
            f"{what}: {err.message}; grant the operator this permission (the chart's "
            "ClusterRole has it); retrying",
            child=child.name,
            retry=True,
        )
    if err.status == 422:
        spec_field = registry.spec_field(child, err.fields[0] if err.fields else "")
        return status.Problem(
            "InvalidSpec",
            f"{spec_field}: the API server refused {what}: {err.message}; fix {spec_field} "
            "and re-apply",
            child=child.name,
        )
    if err.status == 409:
        return status.Problem("Conflict", f"{what}: {err.message}; retrying", child.name, True)
    if err.status == 429 or err.status >= 500:
        return status.Problem(
            "ServerTrouble",
            f"{what}: {err.message}; retrying",
            child=child.name,
            retry=True,
            retry_after=err.retry_after,
        )
    return status.Problem(
        "Refused",
        f"{what} was refused by the API server: {err.message}; change the spec (or what "
        "refused it) and re-apply",
        child=child.name,
    )


TRANSIENT = (requests.ConnectionError, requests.Timeout)
"""Request errors that are server trouble rather than a bug of ours."""
