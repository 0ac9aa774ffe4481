"""Tests for the restore job script, run for real under busybox sh.

The script is executed the way the restore Job runs it: its whole text, as the Job's spec
carries it (``render.compact``), is passed as the ``-c`` argument of ``busybox sh``. PATH
holds only busybox applets, as in the busybox image, so a GNU-only option in the script would
fail here too.

Archives are real: made with :mod:`tarfile` the way ``backup.sh`` lays them out
(members relative to the volume root, ``./`` first), and once by running
``backup.sh`` itself. Interrupted swaps are set up by hand, as a killed run
would have left them.
"""

import gzip
import io
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from statefulwebapp.specs import render

PREFIX = "default-web"
T1 = "20261201T010203Z"
T2 = "20261202T010203Z"
T3 = "20261203T010203Z"

# A tree maps a path relative to the root to its content: bytes for a regular
# file, None for a directory, ("link", target) for a symlink.
Tree = Mapping[str, bytes | tuple[str, str] | None]

OLD: Tree = {
    "index.html": b"old index",
    "old.txt": b"old",
    ".oldhidden": b"x",
    "olddir": None,
    "olddir/f": b"f",
}
NEW: Tree = {
    "index.html": b"<h1>new</h1>",
    ".htaccess": b"Deny from all\n",
    "empty.txt": b"",
    "emptydir": None,
    "sub": None,
    "sub/deeper": None,
    "sub/deeper/data.bin": bytes(range(256)) * 40,
    "link": ("link", "index.html"),
}
NEW_FILES = 4  # regular files in NEW
OLDER: Tree = {"index.html": b"<h1>older</h1>", "older.txt": b"older"}


def archive_name(stamp: str, prefix: str = PREFIX) -> str:
    return f"{prefix}-{stamp}.tar.gz"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """The app's volume (RESTORE_TARGET), holding OLD."""
    path = tmp_path / "data"
    path.mkdir()
    write_tree(path, OLD)
    return path


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    """The archive directory (RESTORE_FROM), empty."""
    path = tmp_path / "backup"
    path.mkdir()
    return path


@pytest.fixture
def result_file(tmp_path: Path) -> Path:
    return tmp_path / "termination-log"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    fields: dict[str, str]
    candidates: list[str]


class Env(Protocol):
    """The ``env`` fixture: the restore environment with ``overrides`` (None removes one)."""

    def __call__(self, **overrides: str | None) -> dict[str, str]: ...


class Run(Protocol):
    """The ``run`` fixture: the script after ``prelude``, in ``env(**overrides)``.

    ``prelude`` is positional only: no override (a variable, maybe None) can land in it.
    """

    def __call__(self, prelude: str = "", /, **overrides: str | None) -> Result: ...


def parse_result(text: str) -> tuple[dict[str, str], list[str]]:
    """Parse the key=value result lines, checking their order and keys."""
    fields: dict[str, str] = {}
    candidates: list[str] = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        if key == "candidate":
            candidates.append(value)
            continue
        assert not candidates, f"{key} after the candidates"
        assert key not in fields, f"{key} repeated"
        fields[key] = value
    keys = list(fields)
    expected_order = [k for k in ("result", "archive", "node", "message") if k in fields]
    assert keys == expected_order, f"unexpected keys or order: {keys}"
    assert fields["result"] in {"restored", "failed"}
    assert "message" in fields
    return fields, candidates


@pytest.fixture
def env(applet_path: str, data: Path, backup: Path, result_file: Path) -> Env:
    """Build the restore environment: defaults, overridden; None removes a variable."""

    def _env(**overrides: str | None) -> dict[str, str]:
        full = {
            "PATH": applet_path,
            "RESTORE_PREFIX": PREFIX,
            "RESTORE_ID": "r1",
            "RESTORE_NODE_NAME": "n1",
            "RESTORE_FROM": str(backup),
            "RESTORE_TARGET": str(data),
            "RESTORE_RESULT": str(result_file),
        }
        for key, value in overrides.items():
            if value is None:
                full.pop(key, None)
            else:
                full[key] = value
        return full

    return _env


@pytest.fixture
def run(busybox: str, env: Env, result_file: Path) -> Run:
    script = render.RESTORE_SCRIPT

    def _run(prelude: str = "", /, **overrides: str | None) -> Result:
        result_file.unlink(missing_ok=True)
        proc = subprocess.run(
            [busybox, "sh", "-c", prelude + script],
            env=env(**overrides),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result_file.read_text() == proc.stdout, "result file and stdout differ"
        assert len(proc.stdout.encode()) < 4096
        fields, candidates = parse_result(proc.stdout)
        return Result(proc.returncode, proc.stdout, proc.stderr, fields, candidates)

    return _run


def write_tree(root: Path, tree: Tree) -> None:
    for rel, content in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir(exist_ok=True)
        elif isinstance(content, tuple):
            path.symlink_to(content[1])
        else:
            path.write_bytes(content)


def read_tree(root: Path) -> dict[str, bytes | tuple[str, str] | None]:
    tree: dict[str, bytes | tuple[str, str] | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                tree[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                tree[rel] = None
            else:
                tree[rel] = path.read_bytes()
    return tree


def snapshot(root: Path) -> dict[str, tuple[bytes | tuple[str, str] | None, int, int]]:
    """Everything below root (not root itself): content, mode and mtime of each entry."""
    result: dict[str, tuple[bytes | tuple[str, str] | None, int, int]] = {}
    for rel, content in read_tree(root).items():
        st = (root / rel).lstat()
        result[rel] = (content, st.st_mode, st.st_mtime_ns)
    return result


def make_archive(
    directory: Path,
    stamp: str,
    tree: Tree,
    prefix: str = PREFIX,
    setup: Callable[[Path], None] | None = None,
) -> Path:
    """Write an archive of tree as backup.sh would (``tar -czf A -C src .``)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / archive_name(stamp, prefix)
    with tempfile.TemporaryDirectory() as src:
        write_tree(Path(src), tree)
        if setup is not None:
            setup(Path(src))
        with tarfile.open(path, "w:gz") as tar:
            tar.add(src, arcname=".")
    return path


def work_entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".swa-restore-"))


# ------------------------------------------------------------ flat layout ----


def test_latest_restores_newest_archive_exactly(run: Run, data: Path, backup: Path) -> None:
    def setup(src: Path) -> None:
        os.chmod(src / "sub/deeper/data.bin", 0o640)
        os.utime(src / "index.html", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))

    make_archive(backup, T1, OLDER)
    make_archive(backup, T2, NEW, setup=setup)

    result = run()

    assert result.returncode == 0, result.stderr
    assert read_tree(data) == NEW, "content differs from the archive (or old entries remain)"
    assert (data / "sub/deeper/data.bin").stat().st_mode & 0o777 == 0o640
    assert (data / "index.html").stat().st_mtime_ns == 1_600_000_000_000_000_000
    assert result.fields == {
        "result": "restored",
        "archive": archive_name(T2),
        "node": "n1",
        "message": f"restored {archive_name(T2)} from node n1 ({NEW_FILES} files)",
    }
    assert result.candidates == [f"n1/{archive_name(T2)}", f"n1/{archive_name(T1)}"]


def test_named_older_archive(run: Run, data: Path, backup: Path) -> None:
    make_archive(backup, T1, OLDER)
    make_archive(backup, T2, NEW)

    result = run(RESTORE_ARCHIVE=archive_name(T1))

    assert result.returncode == 0, result.stderr
    assert read_tree(data) == OLDER
    assert result.fields["archive"] == archive_name(T1)
    assert result.fields["message"] == f"restored {archive_name(T1)} from node n1 (2 files)"


def test_archive_made_by_backup_script(
    run: Run, busybox: str, applet_path: str, tmp_path: Path, data: Path, backup: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_tree(src, NEW)
    made = subprocess.run(
        [busybox, "sh", "-c", render.BACKUP_SCRIPT],
        env={
            "PATH": applet_path,
            "BACKUP_ONCE": "1",
            "BACKUP_PREFIX": PREFIX,
            "BACKUP_SOURCE": str(src),
            "BACKUP_DEST": str(backup),
            "BACKUP_STATE": str(tmp_path / "backup.state"),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert made.returncode == 0, made.stderr

    result = run()

    assert result.returncode == 0, result.stderr
    assert read_tree(data) == read_tree(src)
    (name,) = [p.name for p in backup.iterdir()]
    assert result.fields["archive"] == name


@pytest.mark.skipif(os.geteuid() != 0, reason="only root restores owners")
def test_owners_are_restored_by_number(run: Run, data: Path, backup: Path) -> None:
    # The names in an archive come from the image that made it; the volume's owners are
    # the numbers. "root" here must not turn uid 4242 into 0.
    path = backup / archive_name(T1)
    with tarfile.open(path, "w:gz") as tar:
        root = tarfile.TarInfo(".")
        root.type = tarfile.DIRTYPE
        root.mode = 0o755
        tar.addfile(root)
        info = tarfile.TarInfo("./owned")
        info.size = 2
        info.uid, info.gid, info.uname, info.gname = 4242, 4343, "root", "root"
        tar.addfile(info, io.BytesIO(b"ok"))

    result = run()

    assert result.returncode == 0, result.stderr
    st = (data / "owned").stat()
    assert (st.st_uid, st.st_gid) == (4242, 4343)


def test_only_exact_archive_names_are_candidates(run: Run, data: Path, backup: Path) -> None:
    make_archive(backup, T1, NEW)
    # Newer, but not archives of this prefix: a partial, another app whose name starts
    # with ours, odd names, and a directory with an archive's name.
    make_archive(backup, T3, OLDER, prefix=f"{PREFIX}-2")
    (backup / f".{archive_name(T3)}.partial").write_bytes(b"half")
    (backup / f"{PREFIX}-latest.tar.gz").write_bytes(b"x")
    (backup / f"{archive_name(T3)}.bak").write_bytes(b"x")
    (backup / archive_name(T2)).mkdir()

    result = run()

    assert result.returncode == 0, result.stderr
    assert read_tree(data) == NEW
    assert result.candidates == [f"n1/{archive_name(T1)}"]


def test_restore_node_equal_to_node_name_is_accepted_on_flat(
    run: Run, data: Path, backup: Path
) -> None:
    make_archive(backup, T1, NEW)

    result = run(RESTORE_NODE="n1")

    assert result.returncode == 0, result.stderr
    assert read_tree(data) == NEW


def test_work_entries_in_archive_are_not_restored(run: Run, data: Path, backup: Path) -> None:
    # A backup taken while a restore was swapping holds its work entries; bringing a
    # marker back would make the next run "resume" a swap that does not exist.
    tree = {
        "keep.txt": b"keep",
        ".swa-restore-x.swap": b"old\n",
        ".swa-restore-x.partial": None,
        ".swa-restore-x.partial/f": b"f",
    }
    make_archive(backup, T1, tree)

    first = run()
    second = run()

    assert first.returncode == 0, first.stderr
    assert first.fields["message"].endswith("(1 file)")
    assert second.returncode == 0, second.stderr
    assert read_tree(data) == {"keep.txt": b"keep"}


# ----------------------------------------------------------- nodes layout ----


@pytest.fixture
def nodes_backup(backup: Path) -> Path:
    """n1: T1 (OLDER); n2 and n3: T3, each its own content; n4: T2 (NEW)."""
    make_archive(backup / "n1", T1, OLDER)
    make_archive(backup / "n2", T3, {"from": b"n2"})
    make_archive(backup / "n3", T3, {"from": b"n3"})
    make_archive(backup / "n4", T2, NEW)
    # Neither nodes nor archives: a file, a hidden dir, a dir with an invalid name.
    make_archive(backup, T3, {"from": b"top"})
    make_archive(backup / ".hidden", T3, {"from": b"hidden"})
    make_archive(backup / "bad name", T3, {"from": b"bad"})
    return backup


def test_nodes_latest_across_nodes_tie_takes_first_node(
    run: Run, data: Path, nodes_backup: Path
) -> None:
    result = run(RESTORE_LAYOUT="nodes", RESTORE_NODE_NAME=None)

    assert result.returncode == 0, result.stderr
    assert read_tree(data) == {"from": b"n2"}
    assert result.fields["node"] == "n2"
    assert result.fields["archive"] == archive_name(T3)
    assert result.candidates == [
        f"n2/{archive_name(T3)}",
        f"n3/{archive_name(T3)}",
        f"n4/{archive_name(T2)}",
        f"n1/{archive_name(T1)}",
    ]


def test_latest_is_never_an_archive_dated_in_the_future(run: Run, data: Path, backup: Path) -> None:
    """A name after the clock (a clock set back since, a file put there) says nothing of what is
    newest: taking it would restore stale data as the latest."""
    make_archive(backup, T1, OLDER)
    make_archive(backup, T2, NEW)
    make_archive(backup, "29991231T235959Z", {"stale": b"planted"})

    result = run()

    assert result.returncode == 0, result.stderr
    assert read_tree(data) == NEW
    assert result.fields["archive"] == archive_name(T2)
    assert result.candidates == [
        f"n1/{archive_name(T2)}",
        f"n1/{archive_name(T1)}",
        f"n1/{archive_name('29991231T235959Z')}",
    ]


def test_nodes_restore_node_limits_to_that_node(run: Run, data: Path, nodes_backup: Path) -> None:
    result = run(RESTORE_LAYOUT="nodes", RESTORE_NODE="n4", RESTORE_NODE_NAME="n1")

    assert result.returncode == 0, result.stderr
    assert read_tree(data) == NEW
    assert result.fields["node"] == "n4"
    assert result.candidates == [f"n4/{archive_name(T2)}"]


@pytest.mark.parametrize(
    ("node", "expected_node"),
    [("n3", "n3"), ("n2", "n2"), ("", "n2")],
    ids=["on-n3", "on-n2", "any-node-first-in-order"],
)
def test_nodes_named_archive(
    run: Run, data: Path, nodes_backup: Path, node: str, expected_node: str
) -> None:
    result = run(RESTORE_LAYOUT="nodes", RESTORE_NODE=node, RESTORE_ARCHIVE=archive_name(T3))

    assert result.returncode == 0, result.stderr
    assert read_tree(data) == {"from": expected_node.encode()}
    assert result.fields["node"] == expected_node


def test_nodes_named_archive_not_on_that_node(run: Run, data: Path, nodes_backup: Path) -> None:
    before = snapshot(data)

    result = run(RESTORE_LAYOUT="nodes", RESTORE_NODE="n1", RESTORE_ARCHIVE=archive_name(T2))

    assert result.returncode == 3
    assert snapshot(data) == before
    assert "archive" not in result.fields
    assert archive_name(T2) in result.fields["message"]
    assert "node n1" in result.fields["message"]
    assert result.candidates == [f"n1/{archive_name(T1)}"]


# ------------------------------------------------------- permanent failures ----


def test_missing_archive_lists_candidates_and_leaves_target(
    run: Run, data: Path, backup: Path
) -> None:
    for stamp in (T1, T2, T3):
        make_archive(backup, stamp, NEW)
    before = snapshot(data)
    wanted = archive_name("20250101T000000Z")

    result = run(RESTORE_ARCHIVE=wanted)

    assert result.returncode == 3
    assert snapshot(data) == before
    assert work_entries(data) == []
    assert result.fields["result"] == "failed"
    assert "archive" not in result.fields
    assert "node" not in result.fields
    message = result.fields["message"]
    assert f"no archive {wanted} on node n1" in message
    assert "3 archives there" in message
    assert f"newest {archive_name(T3)}" in message
    assert result.candidates == [f"n1/{archive_name(s)}" for s in (T3, T2, T1)]


@pytest.mark.parametrize(
    "layout",
    [{}, {"RESTORE_LAYOUT": "nodes"}, {"RESTORE_LAYOUT": "nodes", "RESTORE_NODE": "n9"}],
    ids=["flat", "nodes", "nodes-missing-node-dir"],
)
def test_no_archives_at_all(run: Run, data: Path, backup: Path, layout: dict[str, str]) -> None:
    (backup / "n1").mkdir()
    (backup / f".{archive_name(T1)}.partial").write_bytes(b"half")
    make_archive(backup / "n1", T1, NEW, prefix="other")
    before = snapshot(data)

    result = run(**layout)

    assert result.returncode == 3
    assert snapshot(data) == before
    assert work_entries(data) == []
    assert result.fields["result"] == "failed"
    assert result.fields["message"].startswith(f"no archives {PREFIX}-<timestamp>.tar.gz")
    assert result.candidates == []


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)


def _not_a_tar(path: Path) -> None:
    path.write_bytes(gzip.compress(b"just some text, not a tar archive\n" * 40))


def _flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("corrupt", [_truncate, _garbage, _not_a_tar, _flip_byte])
def test_corrupt_archive_fails_permanently(
    run: Run, data: Path, backup: Path, corrupt: Callable[[Path], None]
) -> None:
    make_archive(backup, T1, OLDER)
    corrupt(make_archive(backup, T2, NEW))
    before = snapshot(data)

    result = run()

    assert result.returncode == 3
    assert snapshot(data) == before
    assert work_entries(data) == [], "left a partial or work dir"
    assert result.fields["archive"] == archive_name(T2)
    assert result.fields["node"] == "n1"
    assert "corrupt" in result.fields["message"]
    assert len(result.candidates) == 2


# ------------------------------------------------------ retryable failures ----

# Shell functions, not programs on PATH: a busybox built to prefer its own applets (Debian's
# busybox-static) runs its internal applets whatever PATH says, but a function always comes
# first. The script runs them as: tar -xzf ARCHIVE -C DIR ...; mv -f -- SRC DEST/.
FAILING_EXTRACT = (
    "tar() {\n"
    '  if [ "$1" = -xzf ]; then\n'
    '    mkdir -p "$4/half" && echo x >"$4/half/file"\n'
    "    echo 'tar: write error: No space left on device' >&2\n"
    "    return 1\n"
    "  fi\n"
    '  command tar "$@"\n'
    "}\n"
)


def failing_mv(pattern: str) -> str:
    """A mv that fails for a source path matching the shell pattern."""
    return (
        "mv() {\n"
        f"  case $3 in {pattern}) echo \"mv: can't rename '$3': Device or resource busy\" >&2;"
        " return 1 ;; esac\n"
        '  command mv "$@"\n'
        "}\n"
    )


def test_extraction_failure_leaves_target_untouched(run: Run, data: Path, backup: Path) -> None:
    make_archive(backup, T1, NEW)
    before = snapshot(data)

    result = run(FAILING_EXTRACT)

    assert result.returncode == 1
    assert snapshot(data) == before
    assert work_entries(data) == [], "left a partial or work dir"
    assert "No space left on device" in result.fields["message"]
    assert result.fields["archive"] == archive_name(T1)


def test_archive_pruned_while_checked_is_retryable(run: Run, data: Path, backup: Path) -> None:
    make_archive(backup, T1, NEW)
    # The backup agent deletes the archive between listing and reading it.
    prelude = 'tar() { if [ "$1" = -tzf ]; then rm -f "$2"; fi; command tar "$@"; }\n'
    before = snapshot(data)

    result = run(prelude)

    assert result.returncode == 1
    assert "disappeared" in result.fields["message"]
    assert snapshot(data) == before
    assert work_entries(data) == []


def test_failed_move_of_old_content_is_rolled_back(run: Run, data: Path, backup: Path) -> None:
    make_archive(backup, T1, NEW)
    (data / "stuck").write_text("a mount point, say")
    before = snapshot(data)

    result = run(failing_mv("*/stuck"))

    assert result.returncode == 1
    assert "Device or resource busy" in result.fields["message"]
    assert "content unchanged" in result.fields["message"]
    assert snapshot(data) == before
    assert work_entries(data) == []


def test_failed_move_of_new_content_is_resumed_by_next_run(
    run: Run, data: Path, backup: Path
) -> None:
    make_archive(backup, T1, NEW)

    failed = run(failing_mv("*.partial/sub"))

    assert failed.returncode == 1
    assert "next restore run finishes it" in failed.fields["message"]
    assert (data / ".swa-restore-r1.swap").read_text() == "new\n"

    result = run(RESTORE_ID="r2")

    assert result.returncode == 0, result.stderr
    assert read_tree(data) == NEW


# ------------------------------------------------------- interrupted swaps ----

EARLIER: Tree = {
    "restored-earlier.txt": b"earlier",
    ".hidden-earlier": b"h",
    "edir": None,
    "edir/f": b"ef",
}


def leave_swap(data: Path, swap_id: str, phase: str) -> None:
    """Leave data as a run killed mid-swap (OLD -> EARLIER) would have."""
    shutil.rmtree(data)
    data.mkdir()
    work = data / f".swa-restore-{swap_id}"
    partial = Path(f"{work}.partial")
    previous = Path(f"{work}.previous")
    if phase == "old":
        # Some old entries already moved away.
        write_tree(data, {"old.txt": OLD["old.txt"], "index.html": OLD["index.html"]})
        write_tree(previous, {k: v for k, v in OLD.items() if k not in ("old.txt", "index.html")})
        write_tree(partial, EARLIER)
    else:
        # All old entries moved away, some new ones moved in.
        write_tree(previous, OLD)
        write_tree(data, {"restored-earlier.txt": EARLIER["restored-earlier.txt"]})
        write_tree(partial, {k: v for k, v in EARLIER.items() if k != "restored-earlier.txt"})
    Path(f"{work}.swap").write_text(f"{phase}\n")


@pytest.mark.parametrize("phase", ["old", "new"])
@pytest.mark.parametrize("swap_id", ["r1", "earlier-1"], ids=["same-id", "earlier-id"])
def test_interrupted_swap_is_rolled_forward(
    run: Run, data: Path, backup: Path, phase: str, swap_id: str
) -> None:
    make_archive(backup, T1, NEW)
    leave_swap(data, swap_id, phase)

    # A run that then fails to find its archive still finishes the earlier swap first.
    missing = run(RESTORE_ARCHIVE=archive_name(T2))

    assert missing.returncode == 3
    assert read_tree(data) == EARLIER, "the interrupted swap was not rolled forward"
    assert work_entries(data) == []

    leave_swap(data, swap_id, phase)
    result = run()

    assert result.returncode == 0, result.stderr
    assert read_tree(data) == NEW
    assert work_entries(data) == []


def test_old_marker_without_extracted_copy_is_rolled_back(
    run: Run, data: Path, backup: Path
) -> None:
    make_archive(backup, T1, NEW)
    leave_swap(data, "lost", "old")
    shutil.rmtree(data / ".swa-restore-lost.partial")

    result = run(RESTORE_ARCHIVE=archive_name(T2))

    assert result.returncode == 3
    assert read_tree(data) == OLD, "the old content was not put back"


def test_stale_work_dirs_are_removed(run: Run, data: Path, backup: Path) -> None:
    make_archive(backup, T1, NEW)
    write_tree(
        data,
        {
            ".swa-restore-gone.partial": None,
            ".swa-restore-gone.partial/half": b"half",
            ".swa-restore-r1.partial": None,
            ".swa-restore-r1.partial/sub": None,
            ".swa-restore-gone2.previous": None,
            ".swa-restore-gone3.work": None,
            ".swa-restore-gone3.work/err": b"x",
        },
    )

    result = run()

    assert result.returncode == 0, result.stderr
    assert read_tree(data) == NEW


def test_stale_partial_is_removed_even_when_no_archive(run: Run, data: Path, backup: Path) -> None:
    write_tree(data, {".swa-restore-gone.partial": None, ".swa-restore-gone.partial/x": b"x"})

    result = run()

    assert result.returncode == 3
    assert read_tree(data) == OLD


@pytest.mark.parametrize("content", ["", "garbage\n"])
def test_unknown_marker_fails_without_changes(
    run: Run, data: Path, backup: Path, content: str
) -> None:
    make_archive(backup, T1, NEW)
    (data / ".swa-restore-x.swap").write_text(content)
    before = snapshot(data)

    result = run()

    assert result.returncode == 3
    assert snapshot(data) == before
    assert ".swa-restore-x.swap" in result.fields["message"]


# ----------------------------------------------------------- configuration ----


@pytest.mark.parametrize(
    ("overrides", "var"),
    [
        ({"RESTORE_PREFIX": None}, "RESTORE_PREFIX"),
        ({"RESTORE_PREFIX": "a/b"}, "RESTORE_PREFIX"),
        ({"RESTORE_PREFIX": "-web"}, "RESTORE_PREFIX"),
        ({"RESTORE_ARCHIVE": "newest"}, "RESTORE_ARCHIVE"),
        ({"RESTORE_ARCHIVE": archive_name(T1, "other")}, "RESTORE_ARCHIVE"),
        ({"RESTORE_ARCHIVE": f"{PREFIX}-{T1}.tar"}, "RESTORE_ARCHIVE"),
        ({"RESTORE_ARCHIVE": f"{PREFIX}-2026.tar.gz"}, "RESTORE_ARCHIVE"),
        ({"RESTORE_ARCHIVE": f"../{archive_name(T1)}"}, "RESTORE_ARCHIVE"),
        ({"RESTORE_LAYOUT": "tree"}, "RESTORE_LAYOUT"),
        ({"RESTORE_NODE": "n2"}, "RESTORE_NODE"),
        ({"RESTORE_NODE_NAME": None}, "RESTORE_NODE_NAME"),
        ({"RESTORE_LAYOUT": "nodes", "RESTORE_NODE": "../n1"}, "RESTORE_NODE"),
        ({"RESTORE_ID": None}, "RESTORE_ID"),
        ({"RESTORE_ID": "R1"}, "RESTORE_ID"),
        ({"RESTORE_ID": "a_b"}, "RESTORE_ID"),
        ({"RESTORE_TARGET": "/nonexistent/data"}, "RESTORE_TARGET"),
        ({"RESTORE_FROM": "/nonexistent/backup"}, "RESTORE_FROM"),
    ],
)
def test_invalid_config_exits_2(
    run: Run, data: Path, backup: Path, overrides: dict[str, str | None], var: str
) -> None:
    make_archive(backup, T1, NEW)
    before = snapshot(data)

    result = run(**overrides)

    assert result.returncode == 2
    assert snapshot(data) == before
    assert work_entries(data) == []
    assert result.fields["result"] == "failed"
    assert var in result.fields["message"]
    assert result.candidates == []
    error_lines = result.stderr.splitlines()
    assert len(error_lines) == 1, result.stderr
    assert var in error_lines[0]


def test_archives_inside_target_are_rejected(run: Run, data: Path) -> None:
    make_archive(data / "backups", T1, NEW)
    before = snapshot(data)

    result = run(RESTORE_FROM=str(data / "backups"))

    assert result.returncode == 2
    assert snapshot(data) == before


def test_config_error_with_unwritable_result_still_prints(
    busybox: str, env: Env, data: Path
) -> None:
    proc = subprocess.run(
        [busybox, "sh", "-c", render.RESTORE_SCRIPT],
        env=env(RESTORE_PREFIX=None, RESTORE_RESULT="/nonexistent/dir/result"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert proc.returncode == 2
    fields, _ = parse_result(proc.stdout)
    assert "RESTORE_PREFIX" in fields["message"]
    assert "RESTORE_RESULT" in proc.stderr


# ------------------------------------------------------------ result format ----

CANDIDATE_RE = re.compile(r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+-\d{8}T\d{6}Z\.tar\.gz$")


def stamps(count: int) -> list[str]:
    return [f"202512{day:02d}T000000Z" for day in range(1, count + 1)]


def test_result_format_and_candidate_limit(
    run: Run, data: Path, backup: Path, result_file: Path
) -> None:
    for stamp in stamps(25):
        make_archive(backup, stamp, {"day": stamp.encode()})

    result = run()

    assert result.returncode == 0, result.stderr
    lines = result_file.read_text().splitlines()
    assert [line.split("=", 1)[0] for line in lines] == [
        "result",
        "archive",
        "node",
        "message",
        *["candidate"] * 20,
    ]
    newest_first = [f"n1/{archive_name(s)}" for s in reversed(stamps(25))]
    assert result.candidates == newest_first[:20]
    assert result.fields["archive"] == archive_name(stamps(25)[-1])
    assert "\n" not in result.fields["message"]


def test_result_stays_under_termination_message_limit(
    run: Run, data: Path, backup: Path, result_file: Path
) -> None:
    prefix = "p" * 200
    for stamp in stamps(25):
        make_archive(backup, stamp, {"day": stamp.encode()}, prefix=prefix)

    result = run(RESTORE_PREFIX=prefix, RESTORE_ARCHIVE=archive_name("20250101T000000Z", prefix))

    assert result.returncode == 3
    assert len(result_file.read_bytes()) < 4096
    assert 5 < len(result.candidates) < 20, "candidates should be cut to fit, not dropped"
    assert all(CANDIDATE_RE.match(c) for c in result.candidates), "a candidate line was cut"


# ------------------------------------------------------------------ signals ----


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def run_and_terminate(
    busybox: str, env: dict[str, str], prelude: str, ready: Path, tmp_path: Path
) -> tuple[int, str]:
    """Start the script, send SIGTERM once ``ready`` exists; return (status, stdout)."""
    out_path = tmp_path / "stdout"
    with out_path.open("w") as out:
        proc = subprocess.Popen(
            [busybox, "sh", "-c", prelude + render.RESTORE_SCRIPT],
            env=env,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
    try:
        wait_for(ready.exists, 10, "the script to reach the point to interrupt")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            pytest.fail("restore did not stop on SIGTERM")
    return proc.returncode, out_path.read_text()


def test_sigterm_during_extraction_leaves_target_untouched(
    busybox: str, env: Env, tmp_path: Path, data: Path, backup: Path, result_file: Path
) -> None:
    make_archive(backup, T1, NEW)
    ready = tmp_path / "ready"
    # Extract, then hang as if the archive were huge; the script runs tar in the
    # background, so it must kill it and clean up at once.
    prelude = (
        "tar() {\n"
        '  command tar "$@" || return\n'
        f'  if [ "$1" = -xzf ]; then touch {ready}; while :; do sleep 0.1; done; fi\n'
        "}\n"
    )
    before = snapshot(data)

    status, stdout = run_and_terminate(busybox, env(), prelude, ready, tmp_path)

    assert status == 143
    fields, _ = parse_result(stdout)
    assert fields["result"] == "failed"
    assert "terminated" in fields["message"]
    assert result_file.read_text() == stdout
    assert snapshot(data) == before
    assert work_entries(data) == []


@pytest.mark.parametrize("phase", ["old", "new"])
def test_sigterm_mid_swap_is_finished_by_next_run(
    busybox: str, run: Run, env: Env, tmp_path: Path, data: Path, backup: Path, phase: str
) -> None:
    make_archive(backup, T1, NEW)
    ready = tmp_path / "ready"
    # Pause after the first move of the phase (old: into .previous/; new: out of .partial/).
    pattern = "*/.swa-restore-r1.previous/" if phase == "old" else "*"
    source = "*" if phase == "old" else "*/.swa-restore-r1.partial/*"
    prelude = (
        "mv() {\n"
        '  command mv "$@" || return\n'
        f"  case $3 in {source}) ;; *) return 0 ;; esac\n"
        f"  case $4 in {pattern}) ;; *) return 0 ;; esac\n"
        f"  if [ ! -e {ready} ]; then touch {ready}; sleep 1; fi\n"
        "}\n"
    )

    status, stdout = run_and_terminate(busybox, env(), prelude, ready, tmp_path)

    assert status == 143
    fields, _ = parse_result(stdout)
    assert "swap is left in progress" in fields["message"]
    assert (data / ".swa-restore-r1.swap").read_text() == f"{phase}\n"
    assert (data / ".swa-restore-r1.previous").is_dir(), "previous dir deleted mid-swap"
    assert (data / ".swa-restore-r1.partial").is_dir()

    result = run(RESTORE_ID="r2", RESTORE_ARCHIVE=archive_name(T2))

    assert result.returncode == 3
    assert read_tree(data) == NEW, "the interrupted swap was not rolled forward"
    assert work_entries(data) == []
