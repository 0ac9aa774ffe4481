"""The backup agents' DaemonSet and a restore's Job: pure renderers, as in ``render.py``.

Both run the scripts under ``scripts/`` on the nodes' archives; their shared pieces (the
archives' volume, the agents' tolerations) are here, the rest of the renderers' in ``render.py``.
"""

from __future__ import annotations

from typing import Any

from statefulwebapp.api.model import GROUP, VERSION, AppSpec, RestoreSpec
from statefulwebapp.api.objects import Manifest
from statefulwebapp.specs import names
from statefulwebapp.specs.render import (
    AGENT_CAPABILITIES,
    BACKUP_CHECK_SCRIPT,
    BACKUP_CHECK_SECONDS,
    BACKUP_DEST,
    BACKUP_SCRIPT,
    BACKUP_SOURCE,
    BACKUP_STATE,
    BACKUP_STATE_VOLUME,
    BACKUP_VOLUME,
    CONTROL_PLANE_TAINTS,
    DATA_VOLUME,
    NOBODY,
    RESTORE_BACKOFF_LIMIT,
    RESTORE_CAPABILITIES,
    RESTORE_KIND,
    RESTORE_SCRIPT,
    _meta,
    _restricted,
    _unprivileged,
)


def render_daemonset(app: AppSpec) -> Manifest | None:
    """The per-node backup agent, or None when backups are disabled."""
    backup = app.backup
    if not backup.enabled:
        return None
    shared = backup.target.nfs is not None
    env = {
        "BACKUP_SOURCE": BACKUP_SOURCE,
        # On the shared export each node has its directory, made by the agent itself (as its
        # own user: a directory the kubelet made for a subPath would be root's).
        "BACKUP_DEST": f"{BACKUP_DEST}/$({NODE_NAME_ENV})" if shared else BACKUP_DEST,
        "BACKUP_CREATE_DEST": "true" if shared else "",  # left out when empty
        "BACKUP_PREFIX": names.backup_prefix(app),
        "BACKUP_INTERVAL_SECONDS": str(backup.interval_seconds),
        "BACKUP_KEEP": str(backup.keep),
        "BACKUP_STATE": BACKUP_STATE,
    }
    container: dict[str, Any] = {
        "name": "backup",
        "image": backup.image,
        "imagePullPolicy": backup.image_pull_policy,
        "command": ["sh", "-c", BACKUP_SCRIPT],
        # The node's name first: BACKUP_DEST refers to it.
        "env": [_NODE_NAME] * shared + [{"name": k, "value": v} for k, v in env.items() if v],
        "volumeMounts": [
            {"name": DATA_VOLUME, "mountPath": BACKUP_SOURCE, "readOnly": True},
            {"name": BACKUP_VOLUME, "mountPath": BACKUP_DEST},
            {"name": BACKUP_STATE_VOLUME, "mountPath": BACKUP_STATE.rsplit("/", 1)[0]},
        ],
        # Ready means an archive was made, not that the loop runs: a full disk or an
        # unreadable volume turns the agent unready, and the kubelet's event says why.
        "readinessProbe": {
            "exec": {"command": ["sh", "-c", BACKUP_CHECK_SCRIPT]},
            # The first run starts with the container and takes well under a second for a
            # small site: checked then, a new agent is ready at once, not one period later.
            "initialDelaySeconds": 3,
            "periodSeconds": BACKUP_CHECK_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": 1,
        },
    }
    if backup.resources.to_k8s():
        container["resources"] = backup.resources.to_k8s()
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [
            {
                "name": DATA_VOLUME,
                "persistentVolumeClaim": {"claimName": names.claim(app), "readOnly": True},
            },
            _archives_volume(app, read_only=False),
            {"name": BACKUP_STATE_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ],
    }
    if app.restricted:
        _restricted(pod_spec, NOBODY)
    # As root ("default") it keeps the one capability reading the volume takes; as nobody
    # ("restricted") none.
    _unprivileged(pod_spec, () if app.restricted else AGENT_CAPABILITIES)
    tolerations = _agent_tolerations(app)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(app, names.daemonset(app), names.BACKUP),
        "spec": {
            "selector": {"matchLabels": names.selector(app, names.BACKUP)},
            "template": {
                "metadata": {"labels": names.labels(app, names.BACKUP)},
                "spec": pod_spec,
            },
        },
    }


NODE_NAME_ENV = "NODE_NAME"
_NODE_NAME: dict[str, Any] = {
    "name": NODE_NAME_ENV,
    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
}
"""The pod's node, from the downward API."""


def _archives_volume(app: AppSpec, *, read_only: bool) -> dict[str, Any]:
    """Where the archives are: the shared export's claim, or the node's directory."""
    if app.backup.target.nfs is not None:
        claim = {"claimName": names.backup_claim(app)} | ({"readOnly": True} if read_only else {})
        return {"name": BACKUP_VOLUME, "persistentVolumeClaim": claim}
    if app.restricted:
        # "restricted" admits no hostPath: archives then live as long as the agent pod.
        return {"name": BACKUP_VOLUME, "emptyDir": {}}
    return {
        "name": BACKUP_VOLUME,
        "hostPath": {"path": app.backup.host_path, "type": "DirectoryOrCreate"},
    }


def _agent_tolerations(app: AppSpec, *, with_web: bool = False) -> list[dict[str, Any]]:
    """What the backup agents tolerate, the control plane first if asked.

    ``with_web``: the web pods' tolerations too, for a pod that may run where either does.
    """
    backup = app.backup
    tolerations = [
        t.to_k8s() for t in (*(app.tolerations if with_web else ()), *backup.tolerations)
    ]
    if backup.tolerate_control_plane:
        tolerations[:0] = [
            {"key": taint, "operator": "Exists", "effect": "NoSchedule"}
            for taint in CONTROL_PLANE_TAINTS
        ]
    return tolerations


def render_restore_job(app: AppSpec, restore: RestoreSpec) -> Manifest:
    """The Job that puts ``restore``'s archive into ``app``'s volume, owned by the restore.

    It runs where the archives are: on ``restore.node_name`` when given, else where the web
    pods may run (their node selector), tolerating what the backup agents tolerate. Exit 2
    and 3 (bad configuration, no such archive, a corrupt one) fail the Job at once; a pod
    that died otherwise is retried, and the retry resumes the interrupted swap.
    """
    backup = app.backup
    env: list[dict[str, Any]] = [
        {"name": k, "value": v}
        for k, v in {
            "RESTORE_PREFIX": names.backup_prefix(app),
            "RESTORE_ARCHIVE": restore.archive,
            "RESTORE_FROM": BACKUP_DEST,
            "RESTORE_NODE": restore.node_name,
            "RESTORE_TARGET": BACKUP_SOURCE,
            "RESTORE_ID": restore.uid or restore.name,
            # The shared export holds one directory per node; a node's own directory is flat.
            "RESTORE_LAYOUT": "flat" if backup.target.nfs is None else "nodes",
        }.items()
    ]
    env.append({**_NODE_NAME, "name": "RESTORE_NODE_NAME"})
    container: dict[str, Any] = {
        "name": "restore",
        "image": backup.image,
        "imagePullPolicy": backup.image_pull_policy,
        "command": ["sh", "-c", RESTORE_SCRIPT],
        "env": env,
        "volumeMounts": [
            {"name": DATA_VOLUME, "mountPath": BACKUP_SOURCE},
            {"name": BACKUP_VOLUME, "mountPath": BACKUP_DEST, "readOnly": True},
        ],
        # The result (archive, node, candidates) is read from the pod's status.
        "terminationMessagePolicy": "File",
    }
    if backup.resources.to_k8s():
        container["resources"] = backup.resources.to_k8s()
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [
            {"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": names.claim(app)}},
            _archives_volume(app, read_only=True),
        ],
    }
    _unprivileged(pod_spec, RESTORE_CAPABILITIES)
    if restore.node_name and backup.target.nfs is None:
        # By the node's name: its hostname label may differ, and a label value stops at 63
        # characters where a node name does not.
        pod_spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {
                                    "key": "metadata.name",
                                    "operator": "In",
                                    "values": [restore.node_name],
                                }
                            ]
                        }
                    ]
                }
            }
        }
    elif app.node_selector:
        pod_spec["nodeSelector"] = dict(app.node_selector)
    tolerations = _agent_tolerations(app, with_web=True)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    labels = {**names.labels(app, names.RESTORE), names.LABEL_RESTORE: restore.name}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": names.restore_job(restore),
            "namespace": restore.namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": RESTORE_KIND,
                    "name": restore.name,
                    "uid": restore.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": RESTORE_BACKOFF_LIMIT,
            # A guard for when the operator is not there to end it: the Job controller stops
            # its pods past the restore's own deadline.
            "activeDeadlineSeconds": restore.timeout_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "restore",
                            "operator": "In",
                            "values": [2, 3],
                        },
                    }
                ]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
