"""Pure renderers: one function per child, from the typed spec to a manifest dict.

Nothing here talks to the API server, reads the clock or the environment, so every manifest
is a function of the :class:`~statefulwebapp.api.model.AppSpec` alone; the golden tests pin them
and the e2e tests reuse them to compute what the cluster must show.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from statefulwebapp.api.model import GROUP, KIND, VERSION, AppSpec, NfsSource
from statefulwebapp.api.objects import Manifest
from statefulwebapp.specs import names


def compact(script: str) -> str:
    """``script`` as a pod spec carries it: without its comment lines and blank lines.

    The comments are for whoever reads ``scripts/``; in a spec every byte is stored by the API
    server and sent, and decoded by the operator, with every event of every app's child. A
    line is kept whatever it holds inside a here-document, inside a quoted string that spans
    lines, and after a line continued with a backslash: there a blank or ``#`` line is text.
    The unit tests check that bash reads both forms as the same program.
    """
    kept: list[str] = []
    quote = ""  # The quote still open at the end of the lines kept so far.
    ending = ""  # The word that ends the here-document being read.
    for line in script.splitlines():
        if ending:
            kept.append(line)
            # "-EOF" (from <<-EOF): the word may follow tabs.
            if line == ending or (ending[0] == "-" and line.lstrip("\t") == ending[1:]):
                ending = ""
            continue
        bare = line.strip()
        continued = bool(kept) and kept[-1].endswith("\\")
        if not quote and not continued and (not bare or bare.startswith("#")):
            continue
        kept.append(line)
        quote, ending = _scan(line, quote)
    return "\n".join(kept) + "\n"


def _scan(line: str, quote: str) -> tuple[str, str]:
    """The quote open after ``line``, and what ends a here-document it starts ("": none).

    ``quote``: the quote open before it. The here-document's end is its word, after a ``-``
    for ``<<-``.
    """
    ending = ""
    i = 0
    while i < len(line):
        char = line[i]
        if quote == "'":
            quote = "" if char == "'" else quote
        elif char == "\\":
            i += 1  # Escaped: the next character is text.
        elif quote == '"':
            quote = "" if char == '"' else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t;"):
            break  # A comment: the rest of the line.
        elif line.startswith("<<", i) and not line.startswith("<<<", i):
            word = re.match(r"<<(-?)\s*(['\"]?)(\w+)\2", line[i:])
            if word:
                ending = word.group(1) + word.group(3)
        i += 1
    return quote, ending


_SCRIPTS = resources.files("statefulwebapp").joinpath("scripts")
BACKUP_SCRIPT = compact(_SCRIPTS.joinpath("backup.sh").read_text())
"""The backup agent, run by ``sh -c`` so any image with a busybox-like shell works."""
BACKUP_CHECK_SCRIPT = compact(_SCRIPTS.joinpath("backup-check.sh").read_text())
"""The agent's readiness check: its last archive run succeeded, within two intervals."""
RESTORE_SCRIPT = compact(_SCRIPTS.joinpath("restore.sh").read_text())
"""A restore's Job: the chosen archive into the app's volume, the old content kept until then."""
RESTORE_KIND = "StatefulWebAppRestore"

DATA_VOLUME = "data"
WRITABLE_VOLUME = "writable-{}"
"""The web container's writable directories' volumes, by their place in ``writablePaths``: a
path need not make a valid volume name."""
HOSTNAME = "kubernetes.io/hostname"
"""The topology the web pods spread over: one domain per node."""
WEB_PORT = "http"
"""The web container's port name: the probes name it, so they follow ``spec.port``."""
BACKUP_VOLUME = "backups"
BACKUP_SOURCE = "/data"
BACKUP_DEST = "/backup"
BACKUP_STATE_VOLUME = "state"
BACKUP_STATE = "/run/backup/state"
"""Where the agent says how its last archive run went, for its readiness check."""
BACKUP_CHECK_SECONDS = 30
"""How often the kubelet runs the agent's check: no API request while it passes."""
RESTORE_BACKOFF_LIMIT = 2
"""Retries of a restore pod that died (a node drained, a kill): each resumes the last swap."""
CONTROL_PLANE_TAINTS = ("node-role.kubernetes.io/master", "node-role.kubernetes.io/control-plane")
NOBODY = 65534
"""busybox's unprivileged user: enough for ``date`` and for reading world-readable content."""


def _restricted(pod_spec: dict[str, Any], uid: int) -> None:
    """Make ``pod_spec`` meet the Pod Security "restricted" profile, running as ``uid``."""
    pod_spec["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if uid == NOBODY:
        # Its group too (nogroup): left unset, it is the image's for that user, which an image
        # may map to a group that owns files.
        pod_spec["securityContext"]["runAsGroup"] = NOBODY
    for container in pod_spec["containers"]:
        # Added to what the container has: a read-only root stays read-only.
        container.setdefault("securityContext", {}).update(
            {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        )


AGENT_CAPABILITIES = ("DAC_OVERRIDE",)
"""The one capability a backup agent running as root keeps: reading every file of the volume,
whoever owns it (a web image running as its own user may write files only it can read). Not
the narrower DAC_READ_SEARCH: Pod Security "baseline", where an agent writing to an NFS target
may run, admits DAC_OVERRIDE only."""
RESTORE_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER")
"""What a restore running as root keeps: giving each restored file back its owner (CHOWN) and
mode (FOWNER), and moving the volume's entries aside whoever owns them (DAC_OVERRIDE)."""


def _unprivileged(pod_spec: dict[str, Any], add: tuple[str, ...] = ()) -> None:
    """No privilege beyond the capabilities ``add``, whatever the pod's user.

    The agents and restores run on every node with a host directory or a tenant's volume
    mounted. No escalation, every capability dropped but ``add``, the runtime's seccomp profile, a
    read-only root filesystem (they write only to their volumes).
    """
    pod_spec.setdefault("securityContext", {})["seccompProfile"] = {"type": "RuntimeDefault"}
    capabilities: dict[str, list[str]] = {"drop": ["ALL"]}
    if add:
        capabilities["add"] = list(add)
    for container in pod_spec["containers"]:
        container["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "capabilities": capabilities,
            "readOnlyRootFilesystem": True,
        }


def _meta(app: AppSpec, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": app.namespace,
        "labels": names.labels(app, component),
        "ownerReferences": [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": app.name,
                "uid": app.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def render_service(app: AppSpec) -> Manifest:
    """The headless Service that gives each web pod a stable DNS name."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(app, names.service(app), names.WEB),
        "spec": {
            "clusterIP": "None",
            "selector": names.selector(app, names.WEB),
            "ports": [{"name": "http", "port": app.port, "targetPort": app.port}],
        },
    }


BACKUP_TARGET_CAPACITY = "1Gi"
"""The archives' volume and claim size: required by the API, enforced by no NFS server."""


def render_volume(app: AppSpec) -> Manifest:
    """The NFS PersistentVolume, pre-bound to the app's claim.

    Cluster-scoped, so it cannot carry an owner reference to a namespaced app: labels tie it
    to its app and the operator deletes it once the app is gone. Retain keeps the data on the
    NFS server whatever happens to the claim. No storageClassName: the API server drops an
    empty one, and an absent class is already the "no class" the claim asks for.
    """
    storage = app.storage
    return _nfs_volume(
        app, (names.volume(app), names.claim(app), names.STORAGE), storage.nfs, storage.capacity
    )


def render_claim(app: AppSpec) -> Manifest:
    """The claim the web pods and the backup agents mount, bound to exactly our volume."""
    return _claim(app, (names.volume(app), names.claim(app), names.STORAGE), app.storage.request)


def render_backup_volume(app: AppSpec) -> Manifest | None:
    """The archives' NFS PersistentVolume (``backup.target.nfs``), as :func:`render_volume`.

    None when the archives stay on the nodes or backups are disabled.
    """
    nfs = app.backup.target.nfs
    if not app.backup.enabled or nfs is None:
        return None
    return _nfs_volume(app, _backup_target(app), nfs, BACKUP_TARGET_CAPACITY)


def render_backup_claim(app: AppSpec) -> Manifest | None:
    """The claim of the archives' volume, which the agents and restore Jobs mount."""
    if not app.backup.enabled or app.backup.target.nfs is None:
        return None
    return _claim(app, _backup_target(app), BACKUP_TARGET_CAPACITY)


def _backup_target(app: AppSpec) -> tuple[str, str, str]:
    return names.backup_volume(app), names.backup_claim(app), names.BACKUP_TARGET


def _nfs_volume(
    app: AppSpec, which: tuple[str, str, str], nfs: NfsSource, capacity: str
) -> Manifest:
    """A PersistentVolume of ``nfs`` pre-bound to a claim; ``which``: (volume, claim, component)."""
    volume, claim, component = which
    spec: dict[str, Any] = {
        "capacity": {"storage": capacity},
        "accessModes": ["ReadWriteMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "claimRef": {"namespace": app.namespace, "name": claim},
        "nfs": {"server": nfs.server, "path": nfs.path},
    }
    if nfs.mount_options:
        # Unlike the NFS source, mountOptions may change on a live volume; the kubelet uses
        # them at the next mount.
        spec["mountOptions"] = list(nfs.mount_options)
    labels = names.labels(app, component) | {names.LABEL_APP_NAMESPACE: app.namespace}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": volume, "labels": labels},
        "spec": spec,
    }


def _claim(app: AppSpec, which: tuple[str, str, str], request: str) -> Manifest:
    volume, claim, component = which
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(app, claim, component),
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "volumeName": volume,
            "resources": {"requests": {"storage": request}},
        },
    }


def render_statefulset(app: AppSpec) -> Manifest:
    """The web StatefulSet: ordered pods ``<name>-0..N-1`` sharing the NFS claim."""
    mounts: list[dict[str, Any]] = [{"name": DATA_VOLUME, "mountPath": app.storage.mount_path}]
    volumes: list[dict[str, Any]] = [
        {"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": names.claim(app)}}
    ]
    container: dict[str, Any] = {
        "name": "web",
        "image": app.image,
        "imagePullPolicy": app.image_pull_policy,
        "ports": [{"name": WEB_PORT, "containerPort": app.port}],
        "volumeMounts": mounts,
    }
    if app.read_only_root_filesystem:
        container["securityContext"] = {"readOnlyRootFilesystem": True}
        for i, path in enumerate(app.writable_paths):
            mounts.append({"name": WRITABLE_VOLUME.format(i), "mountPath": path})
            volumes.append({"name": WRITABLE_VOLUME.format(i), "emptyDir": {}})
    if app.resources.to_k8s():
        container["resources"] = app.resources.to_k8s()
    if app.probes.readiness.enabled:
        container["readinessProbe"] = app.probes.readiness.to_k8s(WEB_PORT)
    if app.probes.liveness.enabled:
        container["livenessProbe"] = app.probes.liveness.to_k8s(WEB_PORT)
    pod_spec: dict[str, Any] = {"containers": [container], "volumes": volumes}
    spread = app.topology_spread
    if spread.enabled:
        pod_spec["topologySpreadConstraints"] = [
            {
                "maxSkew": spread.max_skew,
                "topologyKey": HOSTNAME,
                "whenUnsatisfiable": spread.when_unsatisfiable,
                "labelSelector": {"matchLabels": names.selector(app, names.WEB)},
            }
        ]
    if app.node_selector:
        pod_spec["nodeSelector"] = dict(app.node_selector)
    if app.tolerations:
        pod_spec["tolerations"] = [t.to_k8s() for t in app.tolerations]
    if app.restricted:
        _restricted(pod_spec, app.run_as_user)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(app, names.statefulset(app), names.WEB),
        "spec": {
            # No pod may serve the volume while a restore rewrites it.
            "replicas": 0 if app.restoring else app.replicas,
            "serviceName": names.service(app),
            "selector": {"matchLabels": names.selector(app, names.WEB)},
            "template": {
                "metadata": {"labels": names.labels(app, names.WEB)},
                "spec": pod_spec,
            },
        },
    }


def render_disruption_budget(app: AppSpec) -> Manifest | None:
    """The web pods' PodDisruptionBudget, or None when disabled or with one replica at most.

    With a single replica a budget of one unavailable would never let a drain evict it (or,
    of zero, would let it go at once): either way it blocks or protects nothing, so a drain
    goes through, as CloudNativePG users asked of theirs.
    """
    budget = app.disruption_budget
    if not budget.enabled or app.replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(app, names.disruption_budget(app), names.WEB),
        "spec": {
            "maxUnavailable": budget.max_unavailable,
            "selector": {"matchLabels": names.selector(app, names.WEB)},
        },
    }


def network_policy_selector(app: AppSpec) -> dict[str, Any]:
    """Every pod the operator makes for ``app``, by the labels each one's template carries."""
    return {
        "matchLabels": {names.LABEL_INSTANCE: app.name, names.LABEL_MANAGED_BY: names.MANAGER},
        "matchExpressions": [
            {
                "key": names.LABEL_COMPONENT,
                "operator": "In",
                "values": list(names.POD_COMPONENTS),
            }
        ],
    }


def render_network_policy(app: AppSpec) -> Manifest | None:
    """The NetworkPolicy over the app's pods, or None when turned off.

    One policy, one rule: TCP to the port named ``http`` (:data:`WEB_PORT`), from anywhere.
    A named port admits traffic only to pods that declare it, and only the web container
    does, so the web pods accept their port and nothing else while the backup agents, the
    date logger's and the restores' pods (no ports) accept nothing. It follows ``spec.port``
    without a new rendering, as the probes do. Egress is left alone: what a web image needs to
    reach is its user's to know (the NFS mounts are the kubelet's, not the pods', either way).
    """
    if not app.network_policy.enabled:
        return None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(app, names.network_policy(app), names.NETWORK),
        "spec": {
            "podSelector": network_policy_selector(app),
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": WEB_PORT}]}],
        },
    }


def render_cronjob(app: AppSpec) -> Manifest | None:
    """The date-logging CronJob, or None when the date logger is disabled."""
    logger = app.date_logger
    if not logger.enabled:
        return None
    container: dict[str, Any] = {
        "name": "date",
        "image": logger.image,
        "imagePullPolicy": logger.image_pull_policy,
        "command": ["sh", "-c", "date"],
    }
    if logger.resources.to_k8s():
        container["resources"] = logger.resources.to_k8s()
    if logger.read_only_root_filesystem:
        container["securityContext"] = {"readOnlyRootFilesystem": True}
    job_pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    # `date` needs no privilege at all, so its pods meet "restricted" whatever podSecurity says.
    _restricted(job_pod, NOBODY)
    spec: dict[str, Any] = {
        "schedule": logger.schedule,
        "suspend": logger.suspend,
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": logger.successful_jobs_history_limit,
        "failedJobsHistoryLimit": logger.failed_jobs_history_limit,
        "jobTemplate": {
            "metadata": {"labels": names.labels(app, names.DATELOG)},
            "spec": {
                "template": {
                    "metadata": {"labels": names.labels(app, names.DATELOG)},
                    "spec": job_pod,
                }
            },
        },
    }
    if logger.starting_deadline_seconds:
        spec["startingDeadlineSeconds"] = logger.starting_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(app, names.cronjob(app), names.DATELOG),
        "spec": spec,
    }
