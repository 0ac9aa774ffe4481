"""Volume collection: the cluster-scoped PersistentVolumes of an app that is gone.

No owner reference can tie a PersistentVolume to a namespaced app, so the garbage collector does
not remove it: the operator deletes it once a direct read says its app is gone.
"""

from __future__ import annotations

import pykube

from statefulwebapp.api import kinds
from statefulwebapp.runtime import kube
from statefulwebapp.specs import names, registry


def collect_volume(api: pykube.HTTPClient, namespace: str, app_name: str) -> bool:
    """Delete the cluster-scoped volumes (data, archives) of an app that is gone; True if any.

    No owner reference can tie a PersistentVolume to a namespaced app, so the operator
    collects it itself, from the app's deletion event or, if it was not running then, from the
    volume's own event at its next start. Retain keeps the exported data on the NFS server; only
    the PersistentVolume object goes. Namespaced children are removed by the garbage collector
    through their owner references.
    """
    # The caller's index may lag behind the cluster (a watch gap, a second instance): only a
    # direct read may say the app is gone.
    if kube.get(api, kinds.APP, app_name, namespace) is not None:
        return False
    deleted = False
    for name in (names.volume_of(namespace, app_name), names.backup_volume_of(namespace, app_name)):
        live = kube.get(api, registry.PERSISTENT_VOLUME, name)
        if live is None or live.get("metadata", {}).get("deletionTimestamp"):
            continue
        if names.volume_owned(live, namespace, app_name):
            uid = str(live["metadata"].get("uid") or "")
            deleted |= kube.delete(api, registry.PERSISTENT_VOLUME, name, uid=uid)
    return deleted
