"""What ``kubectl swa`` prints: the apps' table, one app in detail, archives, a restore's progress.

Pure: objects (dicts as the API server gives them) and a clock in, text out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from statefulwebapp.api import kinds
from statefulwebapp.api.objects import Obj
from statefulwebapp.plugin.archives import Archive, Listing
from statefulwebapp.plugin.gather import AppView, meta
from statefulwebapp.specs import names

NONE = "-"
MESSAGE_WIDTH = 80
"""How much of a message the apps' table shows (the detail shows it whole)."""


def parse_time(text: str) -> datetime | None:
    """An API timestamp (``2026-12-02T06:11:08Z``, fractions allowed); None if unreadable."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def age(since: datetime | str | None, now: datetime) -> str:
    """How long ago, as kubectl says it: ``45s``, ``3m10s``, ``12m``, ``5h``, ``3d``."""
    at = parse_time(since) if isinstance(since, str) else since
    if at is None:
        return NONE
    seconds = max(0, int((now - at).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def size(count: int) -> str:
    """Bytes as ``512B``, ``1.5KiB``, ``20.0MiB``, ``1.2GiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count}B" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{count}B"  # pragma: no cover


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns as kubectl prints them: left-aligned, three spaces apart, the last unpadded."""
    lines = [list(header), *(list(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "   ".join(
            cell if i == len(line) - 1 else cell.ljust(widths[i]) for i, cell in enumerate(line)
        ).rstrip()
        for line in lines
    )


def _get(obj: Obj | None, *keys: str) -> Any:
    cur: Any = obj
    for key in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def ready_condition(app: Obj) -> Mapping[str, Any]:
    """The app's Ready condition; empty before the operator has written one."""
    conditions = _get(app, "status", "conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def one_line(text: str, width: int = 0) -> str:
    """``text`` on one line, cut to ``width`` characters (``...`` at the end) when given."""
    flat = " ".join(str(text).split())
    return flat if not width or len(flat) <= width else flat[: width - 3] + "..."


def status_table(apps: Sequence[Obj], now: datetime, *, all_namespaces: bool) -> str:
    """Every app on one line: what ``kubectl get swa`` shows, the Ready reason and message."""
    header = ["NAME", "READY", "STORAGE", "BACKUP", "DATE-LOG", "STATUS", "AGE", "MESSAGE"]
    if all_namespaces:
        header.insert(0, "NAMESPACE")
    rows = []
    for app in sorted(apps, key=lambda a: (meta(a).get("namespace"), meta(a).get("name"))):
        status = app.get("status") or {}
        ready = ready_condition(app)
        row = [
            str(meta(app).get("name")),
            str(status.get("ready") or NONE),
            str(status.get("storage") or NONE),
            str(status.get("backup") or NONE),
            str(status.get("dateLog") or NONE),
            str(ready.get("reason") or "NoStatus"),
            age(meta(app).get("creationTimestamp"), now),
            one_line(ready.get("message") or _no_status(app), MESSAGE_WIDTH),
        ]
        if all_namespaces:
            row.insert(0, str(meta(app).get("namespace")))
        rows.append(row)
    return table(header, rows)


def _no_status(app: Obj) -> str:
    if ready_condition(app):
        return ""
    return "no status yet: has an operator seen this app? (is one running for this namespace?)"


def _pod_ready(pod: Obj) -> bool:
    conditions = _get(pod, "status", "conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _restarts(pod: Obj) -> int:
    return sum(
        int(c.get("restartCount") or 0) for c in _get(pod, "status", "containerStatuses") or []
    )


def pod_state(pod: Obj) -> str:
    """The pod's phase, or why its first container waits or ended (``CrashLoopBackOff``)."""
    if meta(pod).get("deletionTimestamp"):
        return "Terminating"
    for container in _get(pod, "status", "containerStatuses") or []:
        state = container.get("state") or {}
        for key in ("waiting", "terminated"):
            reason = (state.get(key) or {}).get("reason")
            if reason:
                return str(reason)
    return str(_get(pod, "status", "phase") or "Unknown")


def _last_run(listing: Listing | str | None, now: datetime) -> tuple[str, str, str]:
    """(last run, newest archive, its age) of an agent's listing."""
    if listing is None:
        return NONE, NONE, NONE
    if isinstance(listing, str):
        return NONE, one_line(listing, 100), NONE
    run = NONE
    if listing.state is not None:
        at = datetime.fromtimestamp(listing.state.at, UTC)
        run = f"{listing.state.outcome} {age(at, now)} ago"
        if listing.state.outcome == "failed":
            run += f": {one_line(listing.state.detail, 60)}"
    newest = listing.archives[0] if listing.archives else None
    if newest is None:
        return run, "none yet", NONE
    return run, newest.file, age(newest.made, now)


def detail(view: AppView, now: datetime) -> str:
    """One app in full.

    Its Ready condition, web pods, storage, each agent's last run and newest archive, the
    date log, the last restores, and what could not be read.
    """
    lines = [f"StatefulWebApp {view.namespace}/{view.name}"]
    lines += _readiness(view.app, now)
    lines += _web(view, now)
    lines.append(_storage(view))
    lines += _backup(view, now)
    lines.append(_date_log(view, now))
    lines.append(f"  Restores:    {len(view.restores) or 'none'}")
    if view.restores:
        lines.append(_indent(restores_table(view.restores[-5:], now)))
    lines += [f"  Not read:    {problem}" for problem in view.problems]
    return "\n".join(lines)


def _readiness(app: Obj, now: datetime) -> list[str]:
    ready = ready_condition(app)
    status = app.get("status") or {}
    if ready:
        since = ready.get("lastTransitionTime")
        lines = [
            f"  Ready:       {ready.get('status')} ({ready.get('reason')}), since {since} "
            f"({age(since, now)} ago)",
            f"  Message:     {one_line(ready.get('message') or NONE)}",
        ]
    else:
        lines = [f"  Ready:       Unknown: {_no_status(app)}"]
    generation = meta(app).get("generation")
    observed = status.get("observedGeneration")
    behind = "" if observed == generation else " (the operator has not acted on the latest spec)"
    lines.append(f"  Generation:  {generation}, observed {observed or NONE}{behind}")
    return lines


def _web(view: AppView, now: datetime) -> list[str]:
    web = view.pods_of(names.WEB)
    lines = [f"  Web pods:    {(view.app.get('status') or {}).get('ready') or NONE} ready"]
    if web:
        lines.append(_indent(_pods_table(web, now)))
    return lines


def _storage(view: AppView) -> str:
    claim = view.child(kinds.PERSISTENT_VOLUME_CLAIM)
    nfs = _get(view.app, "spec", "storage", "nfs") or {}
    where = [f"claim {meta(claim).get('name')}"] if claim else ["no claim"]
    if _get(claim, "spec", "volumeName"):
        where.append(f"volume {_get(claim, 'spec', 'volumeName')}")
    if nfs:
        where.append(f"NFS {nfs.get('server')}:{nfs.get('path')}")
    phase = (view.app.get("status") or {}).get("storage") or NONE
    return f"  Storage:     {phase} ({', '.join(where)})"


def _backup(view: AppView, now: datetime) -> list[str]:
    backup = _get(view.app, "spec", "backup") or {}
    if backup.get("enabled", True) is False:
        return ["  Backup:      disabled"]
    target = _get(backup, "target", "nfs")
    kept = f"on NFS {target.get('server')}:{target.get('path')}" if target else "on each node"
    lines = [
        f"  Backup:      {(view.app.get('status') or {}).get('backup') or NONE} agents ready, "
        f"every {backup.get('intervalSeconds', 3600)} s, keep {backup.get('keep', 24)} {kept}"
    ]
    rows = []
    for pod in view.pods_of(names.BACKUP):
        listing = view.listings.get(str(meta(pod).get("name")))
        run, newest, newest_age = _last_run(listing, now)
        rows.append(
            [
                str(_get(pod, "spec", "nodeName") or NONE),
                str(meta(pod).get("name")),
                "true" if _pod_ready(pod) else "false",
                pod_state(pod),
                run,
                newest_age,
                newest,
            ]
        )
    if rows:
        header = ["NODE", "AGENT", "READY", "STATE", "LAST RUN", "ARCHIVE AGE", "NEWEST ARCHIVE"]
        lines.append(_indent(table(header, sorted(rows))))
    return lines


def _date_log(view: AppView, now: datetime) -> str:
    cron = next(iter(view.children.get(kinds.CRONJOB.name) or []), None)
    date_log = (view.app.get("status") or {}).get("dateLog") or NONE
    if cron is None:
        return f"  Date log:    {date_log}"
    last = _get(cron, "status", "lastScheduleTime")
    ok = _get(cron, "status", "lastSuccessfulTime")
    return (
        f"  Date log:    {date_log} (CronJob {meta(cron).get('name')}, "
        f"schedule {_get(cron, 'spec', 'schedule')}, last run "
        f"{age(last, now) + ' ago' if last else 'none yet'}, last success "
        f"{age(ok, now) + ' ago' if ok else 'none yet'})"
    )


def _indent(text: str, by: str = "    ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def _pods_table(pods: Sequence[Obj], now: datetime) -> str:
    rows = [
        [
            str(meta(p).get("name")),
            str(_get(p, "spec", "nodeName") or NONE),
            "true" if _pod_ready(p) else "false",
            pod_state(p),
            str(_restarts(p)),
            age(meta(p).get("creationTimestamp"), now),
        ]
        for p in pods
    ]
    return table(["POD", "NODE", "READY", "STATE", "RESTARTS", "AGE"], rows)


def restores_table(restores: Sequence[Obj], now: datetime) -> str:
    """Restores as ``kubectl get swar`` shows them, with their message."""
    rows = [
        [
            str(meta(r).get("name")),
            str(_get(r, "spec", "archive") or "latest"),
            str(_get(r, "status", "phase") or NONE),
            str(_get(r, "status", "archive", "file") or NONE),
            str(_get(r, "status", "archive", "node") or NONE),
            age(meta(r).get("creationTimestamp"), now),
            one_line(str(_get(r, "status", "message") or NONE), MESSAGE_WIDTH),
        ]
        for r in restores
    ]
    header = ["NAME", "ARCHIVE", "PHASE", "RESTORED", "NODE", "AGE", "MESSAGE"]
    return table(header, rows)


def backups_table(archives: Sequence[Archive], now: datetime) -> str:
    """Every archive: node, file, size, when it was made (UTC, from its name) and how long ago."""
    rows = [
        [
            a.node or NONE,
            a.file,
            size(a.size),
            a.made.strftime("%Y-%m-%d %H:%M:%S") if a.made else NONE,
            age(a.made, now),
        ]
        for a in archives
    ]
    return table(["NODE", "ARCHIVE", "SIZE", "MADE (UTC)", "AGE"], rows)


def progress(restore: Obj, elapsed: float) -> str:
    """One line of a followed restore: time since it was created, phase, reason, message."""
    status = restore.get("status") or {}
    condition: Mapping[str, Any] = next(iter(status.get("conditions") or []), {})
    phase = status.get("phase") or "(not picked up yet)"
    reason = condition.get("reason") or ""
    message = one_line(status.get("message") or "")
    said = ": ".join(filter(None, (reason, message)))
    return f"[{elapsed:5.0f}s] {phase}" + (f"  {said}" if said else "")
