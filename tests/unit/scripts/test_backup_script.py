"""Tests for the backup agent script, run for real under busybox sh.

The script is executed the way the DaemonSet runs it: its whole text, as the pod spec carries
it (``render.compact``), is passed as the ``-c`` argument of ``busybox sh``. PATH holds only
busybox applets, as in the busybox image, so a GNU-only option in the script would fail here
too.
"""

import os
import re
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest

from statefulwebapp.specs import render

PREFIX = "default-web"
ARCHIVE_RE = re.compile(rf"^{re.escape(PREFIX)}-\d{{8}}T\d{{6}}Z\.tar\.gz$")


class Run(Protocol):
    """The ``run`` fixture: backup.sh once (after ``prelude``), with ``env`` added."""

    def __call__(self, prelude: str = "", **env: str) -> subprocess.CompletedProcess[str]: ...


class Check(Protocol):
    """The ``check`` fixture: backup-check.sh, with ``env`` added."""

    def __call__(self, **env: str) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """State file path; its directory holds nothing else, to spot a left-over .tmp file."""
    directory = tmp_path / "state"
    directory.mkdir()
    return directory / "backup.state"


@pytest.fixture
def run(busybox: str, applet_path: str, state: Path) -> Run:
    script = render.BACKUP_SCRIPT

    def _run(prelude: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        full_env = {
            "PATH": applet_path,
            "BACKUP_ONCE": "1",
            "BACKUP_PREFIX": PREFIX,
            # Never the default /tmp/backup.state of the machine running the tests.
            "BACKUP_STATE": str(state),
            **env,
        }
        return subprocess.run(
            [busybox, "sh", "-c", prelude + script],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    return _run


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    path = tmp_path / "backup"
    path.mkdir()
    return path


def archives(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if ARCHIVE_RE.match(p.name))


def fake_archive(dest: Path, stamp: str, prefix: str = PREFIX) -> Path:
    path = dest / f"{prefix}-{stamp}.tar.gz"
    path.write_bytes(b"old archive " + stamp.encode())
    return path


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()}


def members(archive: Path) -> dict[str, bytes | None]:
    """Map normalised member name to file content (None for non-files)."""
    result: dict[str, bytes | None] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for info in tar.getmembers():
            name = os.path.normpath(info.name)
            assert not os.path.isabs(name), f"absolute member path {info.name!r}"
            assert not name.startswith(".."), f"member escapes the archive {info.name!r}"
            fileobj = tar.extractfile(info) if info.isfile() else None
            result[name] = fileobj.read() if fileobj else None
    return result


def test_run_creates_archive_with_source_contents(run: Run, src: Path, dest: Path) -> None:
    (src / "index.html").write_text("hello")
    (src / ".hidden").write_text("secret")
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "sub" / "deeper" / "data.bin").write_bytes(b"\x00\x01\x02")

    result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    names = archives(dest)
    assert len(names) == 1
    assert sorted(p.name for p in dest.iterdir()) == names, "left a stray/partial file"
    content = members(dest / names[0])
    assert content["index.html"] == b"hello"
    assert content[".hidden"] == b"secret"
    assert content["sub/deeper/data.bin"] == b"\x00\x01\x02"
    log_lines = result.stdout.splitlines()
    assert len(log_lines) == 1
    size = (dest / names[0]).stat().st_size
    assert names[0] in log_lines[0]
    assert f"{size} bytes" in log_lines[0]


def test_empty_source_gives_valid_empty_archive(run: Run, src: Path, dest: Path) -> None:
    result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))

    assert result.returncode == 0, result.stderr
    (name,) = archives(dest)
    content = members(dest / name)
    assert all(data is None for data in content.values()), content


def test_retention_keeps_newest_and_ignores_other_files(run: Run, src: Path, dest: Path) -> None:
    (src / "f").write_text("x")
    old = [fake_archive(dest, f"2020010{day}T000000Z") for day in range(1, 6)]
    unrelated = [
        dest / "notes.txt",
        dest / f"{PREFIX}-manual.tar.gz",
        dest / f"{PREFIX}.tar.gz",
        dest / f"{PREFIX}-20200101T000000Z.tar.gz.bak",
        fake_archive(dest, "20190101T000000Z", prefix="other"),
        # Another app whose name starts with ours must not be pruned by us.
        fake_archive(dest, "20190101T000000Z", prefix=f"{PREFIX}-2"),
    ]
    for path in unrelated:
        if not path.exists():
            path.write_text("keep me")
    before = snapshot(dest)

    result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest), BACKUP_KEEP="3")

    assert result.returncode == 0, result.stderr
    names = archives(dest)
    new = [n for n in names if not n.startswith(f"{PREFIX}-2020")]
    assert len(new) == 1
    assert names == sorted([old[3].name, old[4].name, new[0]])
    after = snapshot(dest)
    for path in [*unrelated, old[3], old[4]]:
        assert after[path.name] == before[path.name], f"{path.name} was modified"


def test_two_runs_in_same_second_do_not_overwrite(run: Run, src: Path, dest: Path) -> None:
    (src / "f").write_text("x")
    first = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))
    second = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert len(archives(dest)) == 2


def test_stale_partial_of_own_prefix_is_swept(run: Run, src: Path, dest: Path) -> None:
    own = dest / f".{PREFIX}-20200101T000000Z.tar.gz.partial"
    other = dest / ".other-20200101T000000Z.tar.gz.partial"
    own.write_text("half")
    other.write_text("half")

    result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))

    assert result.returncode == 0, result.stderr
    assert not own.exists()
    assert other.exists()


# A shell function, not a program on PATH: a busybox built to prefer its own applets (Debian's
# busybox-static) runs its internal tar whatever PATH says, but a function always comes first.
FAILING_TAR = (
    "tar() {\n"
    '  while [ $# -gt 0 ]; do [ "$1" = -czf ] && printf half > "$2"; shift; done\n'
    "  echo 'tar: write error: No space left on device' >&2\n"
    "  return 1\n"
    "}\n"
)
"""A ``tar`` that writes half an archive to its -f file, then fails."""


@pytest.mark.parametrize("broken", ["missing-source", "dest-is-file", "tar-fails"])
def test_failed_run_reports_and_keeps_existing_archives(
    run: Run, tmp_path: Path, broken: str
) -> None:
    src = tmp_path / "data"
    dest = tmp_path / "backup"
    src.mkdir()
    dest.mkdir()
    (src / "f").write_text("x")
    fake_archive(dest, "20200101T000000Z")
    fake_archive(dest, "20200102T000000Z")
    before = snapshot(dest)
    env = {"BACKUP_SOURCE": str(src), "BACKUP_DEST": str(dest), "BACKUP_KEEP": "1"}
    prelude = ""
    if broken == "missing-source":
        env["BACKUP_SOURCE"] = str(tmp_path / "does-not-exist")
        expected = "BACKUP_SOURCE"
    elif broken == "dest-is-file":
        not_a_dir = tmp_path / "regular-file"
        not_a_dir.write_text("")
        env["BACKUP_DEST"] = str(not_a_dir)
        expected = "BACKUP_DEST"
    else:
        prelude = FAILING_TAR
        expected = "No space left on device"

    result = run(prelude, **env)

    assert result.returncode != 0
    error_lines = result.stderr.splitlines()
    assert len(error_lines) == 1, result.stderr
    assert "error" in error_lines[0]
    assert expected in error_lines[0]
    assert snapshot(dest) == before, "existing archives were touched or a partial file was left"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("BACKUP_KEEP", "0"),
        ("BACKUP_KEEP", "abc"),
        ("BACKUP_KEEP", "-1"),
        ("BACKUP_KEEP", "1.5"),
        ("BACKUP_INTERVAL_SECONDS", "0"),
        ("BACKUP_INTERVAL_SECONDS", "1h"),
        ("BACKUP_ONCE", "yes"),
        ("BACKUP_PREFIX", ""),
        ("BACKUP_PREFIX", "a/b"),
        ("BACKUP_PREFIX", "web*"),
    ],
)
def test_invalid_config_is_rejected(run: Run, src: Path, dest: Path, var: str, value: str) -> None:
    (src / "f").write_text("x")
    fake_archive(dest, "20200101T000000Z")
    before = snapshot(dest)

    result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest), **{var: value})

    assert result.returncode == 2
    error_lines = result.stderr.splitlines()
    assert len(error_lines) == 1, result.stderr
    assert var in error_lines[0]
    assert snapshot(dest) == before


def test_leading_zeros_are_accepted(run: Run, src: Path, dest: Path) -> None:
    fake_archive(dest, "20200101T000000Z")
    result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest), BACKUP_KEEP="08")

    assert result.returncode == 0, result.stderr
    assert len(archives(dest)) == 2


def read_state(state: Path) -> tuple[str, int, str]:
    """Split the state file into (kind, epoch, rest), checking it is exactly one line."""
    text = state.read_text()
    assert text.endswith("\n"), repr(text)
    assert text.count("\n") == 1, repr(text)
    kind, epoch, rest = text[:-1].split(" ", 2)
    return kind, int(epoch), rest


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def test_loop_mode_survives_failed_run(
    busybox: str, applet_path: str, tmp_path: Path, dest: Path, state: Path
) -> None:
    src = tmp_path / "later"
    stdout_path = tmp_path / "stdout"
    stderr_path = tmp_path / "stderr"
    env = {
        "PATH": applet_path,
        "BACKUP_PREFIX": PREFIX,
        "BACKUP_SOURCE": str(src),
        "BACKUP_DEST": str(dest),
        "BACKUP_INTERVAL_SECONDS": "1",
        "BACKUP_STATE": str(state),
    }
    with stdout_path.open("w") as out, stderr_path.open("w") as err:
        proc = subprocess.Popen(
            [busybox, "sh", "-c", render.BACKUP_SCRIPT], env=env, stdout=out, stderr=err
        )
    try:
        wait_for(lambda: "run failed" in stderr_path.read_text(), 5, "the first run to fail")
        assert proc.poll() is None, "loop exited after a failed run"
        # Written before "run failed; retrying": the state holds the cause, not that line.
        kind, _, error = read_state(state)
        assert kind == "failed"
        assert (
            error == f"source directory {src} (BACKUP_SOURCE) does not exist or is not a directory"
        )
        src.mkdir()
        (src / "f").write_text("x")
        wait_for(lambda: archives(dest), 5, "an archive after the source appeared")
        wait_for(lambda: read_state(state)[0] == "ok", 5, "an ok state after the archive")
        assert read_state(state)[2] in archives(dest)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("backup loop did not stop on SIGTERM")
    assert proc.returncode == 143
    assert "does not exist" in stderr_path.read_text()
    assert "created" in stdout_path.read_text()
    assert [p.name for p in dest.iterdir() if p.name.startswith(".")] == []


# ------------------------------------------------------------- state file ---


def error_of(result: subprocess.CompletedProcess[str]) -> str:
    """The text of the single error line the run printed."""
    (line,) = result.stderr.splitlines()
    prefix = "backup: error: "
    assert line.startswith(prefix), line
    return line[len(prefix) :]


def test_successful_run_writes_ok_state(run: Run, src: Path, dest: Path, state: Path) -> None:
    (src / "f").write_text("x")
    before = time.time()

    result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))

    assert result.returncode == 0, result.stderr
    kind, epoch, name = read_state(state)
    assert kind == "ok"
    assert int(before) - 1 <= epoch <= time.time() + 1
    assert archives(dest) == [name]
    assert [p.name for p in state.parent.iterdir()] == [state.name], "left a .tmp file"


# Names the partial file, as busybox tar does when it cannot open it: its timestamp changes
# every run, so the script must mask it.
TAR_NAMING_PARTIAL = (
    "tar() {\n"
    "  while [ $# -gt 0 ]; do\n"
    '    [ "$1" = -czf ] && echo "tar: can\'t open \'$2\': No space left on device" >&2\n'
    "    shift\n"
    "  done\n"
    "  return 1\n"
    "}\n"
)

# rm fails for every archive of 2020: pruning them fails, in a different order of names each
# run as new archives pile up.
FAILING_RM = (
    "rm() {\n"
    '  case "$*" in *"$BACKUP_PREFIX"-2020*) echo "rm: Permission denied" >&2; return 1 ;; esac\n'
    '  command rm "$@"\n'
    "}\n"
)


@pytest.mark.parametrize("broken", ["missing-source", "tar-fails", "tar-names-partial"])
def test_failed_run_writes_failed_state_with_its_error(
    run: Run, tmp_path: Path, src: Path, dest: Path, state: Path, broken: str
) -> None:
    (src / "f").write_text("x")
    env = {"BACKUP_SOURCE": str(src), "BACKUP_DEST": str(dest)}
    prelude = ""
    if broken == "missing-source":
        env["BACKUP_SOURCE"] = str(tmp_path / "does-not-exist")
        expected = f"source directory {tmp_path / 'does-not-exist'} (BACKUP_SOURCE) does not exist"
    elif broken == "tar-fails":
        prelude = FAILING_TAR
        expected = f"archiving {src} into {dest} failed: tar: write error: No space left on device"
    else:
        prelude = TAR_NAMING_PARTIAL
        expected = (
            f"archiving {src} into {dest} failed: tar: can't open "
            f"'{dest}/.{PREFIX}-YYYYmmddTHHMMSSZ.tar.gz.partial': No space left on device"
        )
    before = time.time()

    try:
        result = run(prelude, **env)
    finally:
        src.chmod(0o700)

    assert result.returncode == 1
    kind, epoch, error = read_state(state)
    assert kind == "failed"
    assert int(before) - 1 <= epoch <= time.time() + 1
    # Long temporary paths can push the text past the 300 characters kept in the state.
    assert error == error_of(result)[:300]
    assert error_of(result).startswith(expected), error_of(result)
    assert [p.name for p in state.parent.iterdir()] == [state.name], "left a .tmp file"


@pytest.mark.parametrize("broken", ["missing-source", "tar-names-partial", "prune-fails"])
def test_same_cause_gives_same_error_text(
    run: Run, tmp_path: Path, src: Path, dest: Path, state: Path, broken: str
) -> None:
    env = {"BACKUP_SOURCE": str(src), "BACKUP_DEST": str(dest)}
    prelude = ""
    if broken == "missing-source":
        env["BACKUP_SOURCE"] = str(tmp_path / "does-not-exist")
    elif broken == "tar-names-partial":
        prelude = TAR_NAMING_PARTIAL
    else:
        prelude = FAILING_RM
        env["BACKUP_KEEP"] = "1"
        for day in range(1, 4):
            fake_archive(dest, f"2020010{day}T000000Z")

    errors = []
    epochs = []
    for attempt in range(2):
        if attempt:
            # A new second: a new archive timestamp and a new epoch.
            time.sleep(1.1)
        result = run(prelude, **env)
        assert result.returncode == 1, result.stderr
        kind, epoch, error = read_state(state)
        assert kind == "failed"
        errors.append(error)
        epochs.append(epoch)

    assert errors[0] == errors[1]
    assert epochs[1] > epochs[0]
    if broken == "prune-fails":
        # The oldest archive that would not go, not the last one tried (that moves each run).
        assert errors[0] == f"could not delete old archive {dest}/{PREFIX}-20200101T000000Z.tar.gz"
        # The three undeletable ones and the second run's; it pruned the first run's.
        assert len(archives(dest)) == 4


def test_error_in_state_is_one_short_printable_line(
    run: Run, src: Path, dest: Path, state: Path
) -> None:
    noisy_tar = (
        "tar() {\n"
        "  printf 'tar: caf\\303\\251\\tbad\\033%0400d\\n' 0 >&2\n"
        "  i=0; while [ $i -lt 50 ]; do echo 'tar: one more line of noise' >&2; i=$((i+1)); done\n"
        "  return 1\n"
        "}\n"
    )

    result = run(noisy_tar, BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))

    assert result.returncode == 1
    kind, _, error = read_state(state)
    assert kind == "failed"
    assert len(error) <= 300
    assert error.isascii(), repr(error)
    assert error.isprintable(), repr(error)
    # Every byte outside printable ASCII becomes "?" (two for the UTF-8 "é").
    printed = error_of(result).encode()
    assert error == "".join(chr(b) if 32 <= b < 127 else "?" for b in printed)[:300]
    # Only tar's first line, the cause: the rest is noise that may differ from run to run.
    assert error.startswith(f"archiving {src} into {dest} failed: tar: caf???bad?0000")
    assert "one more" not in error_of(result)
    assert len(error) == 300


def test_state_is_replaced_by_rename(run: Run, src: Path, dest: Path, state: Path) -> None:
    state.write_text("ok 1 older-run.tar.gz\n")
    (state.parent / f"{state.name}.tmp").write_text("left by a killed agent")
    with state.open() as old:
        first = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))
        # The file open before the run still holds the old line: it was replaced, not rewritten.
        assert old.read() == "ok 1 older-run.tar.gz\n"
    assert first.returncode == 0, first.stderr
    assert read_state(state)[0] == "ok"
    assert [p.name for p in state.parent.iterdir()] == [state.name]

    second = run(BACKUP_SOURCE=str(src / "gone"), BACKUP_DEST=str(dest))

    assert second.returncode == 1
    assert read_state(state)[0] == "failed"
    assert [p.name for p in state.parent.iterdir()] == [state.name]


@pytest.mark.parametrize("where", ["missing-directory", "is-a-directory"])
def test_bad_state_path_is_a_config_error(
    run: Run, tmp_path: Path, src: Path, dest: Path, where: str
) -> None:
    if where == "missing-directory":
        state = tmp_path / "no-such-dir" / "backup.state"
    else:
        state = tmp_path / "a-directory"
        state.mkdir()

    result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest), BACKUP_STATE=str(state))

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "BACKUP_STATE" in line
    assert str(state) in line
    assert archives(dest) == []
    assert not (tmp_path / "no-such-dir").exists()


# ----------------------------------------------------------- check script ---


@pytest.fixture
def check(busybox: str, applet_path: str, state: Path, src: Path, dest: Path) -> Check:
    """Run backup-check.sh as the readiness probe does: its text as the -c argument of sh, in
    the agent's environment (the volume ``src``, the archives ``dest``)."""
    script = render.BACKUP_CHECK_SCRIPT

    def _check(**env: str) -> subprocess.CompletedProcess[str]:
        full_env = {
            "PATH": applet_path,
            "BACKUP_STATE": str(state),
            "BACKUP_SOURCE": str(src),
            "BACKUP_DEST": str(dest),
            **env,
        }
        return subprocess.run(
            [busybox, "sh", "-c", script],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )

    return _check


def test_check_script_is_short() -> None:
    """It is embedded in every agent pod's spec."""
    assert len(render.BACKUP_CHECK_SCRIPT.splitlines()) <= 40


def test_check_passes_after_successful_run(run: Run, check: Check, src: Path, dest: Path) -> None:
    assert run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest)).returncode == 0

    result = check()

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_check_fails_before_first_run(check: Check, state: Path) -> None:
    result = check()

    assert result.returncode == 1
    assert result.stdout == "backup: no archive run has finished yet\n"
    assert not state.exists()


def test_check_reports_failed_run(run: Run, check: Check, tmp_path: Path, dest: Path) -> None:
    failed = run(BACKUP_SOURCE=str(tmp_path / "does-not-exist"), BACKUP_DEST=str(dest))
    assert failed.returncode == 1

    result = check()

    assert result.returncode == 1
    assert result.stdout == f"backup: last archive run failed: {error_of(failed)}\n"
    assert "does not exist" in result.stdout


@pytest.mark.parametrize(("interval", "twice"), [(None, 7200), ("10", 20), ("010", 20)])
def test_check_fails_when_newest_archive_is_too_old(
    check: Check, state: Path, dest: Path, interval: str | None, twice: int
) -> None:
    name = fake_archive(dest, "20200101T000000Z").name
    env = {} if interval is None else {"BACKUP_INTERVAL_SECONDS": interval}
    state.write_text(f"ok {int(time.time()) - twice - 5} {name}\n")

    result = check(**env)

    assert result.returncode == 1
    assert result.stdout == (
        f"backup: no archive made in two intervals ({twice} s); the newest is {name}\n"
    )
    # Still within two intervals: ready.
    state.write_text(f"ok {int(time.time()) - twice + 5} {name}\n")
    assert check(**env).returncode == 0


def test_check_passes_again_after_later_success(
    run: Run, check: Check, src: Path, dest: Path, state: Path
) -> None:
    state.write_text(f"ok {int(time.time()) - 86400} {PREFIX}-20200101T000000Z.tar.gz\n")
    assert check().returncode == 1
    broken = run(BACKUP_SOURCE=str(src / "gone"), BACKUP_DEST=str(dest))
    assert broken.returncode == 1
    assert check().returncode == 1

    assert run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest)).returncode == 0

    result = check()
    assert result.returncode == 0, result.stdout
    assert result.stdout == ""


@pytest.mark.parametrize(
    "content",
    [
        "",
        "\n",
        "ok\n",
        "ok 1700000000\n",
        "ok soon name.tar.gz\n",
        "ok 0900000000 name.tar.gz\n",
        "ok -5 name.tar.gz\n",
        "okay 1700000000 name.tar.gz\n",
        "failed later because\n",
        None,
    ],
)
def test_check_rejects_garbled_state(check: Check, state: Path, content: str | None) -> None:
    if content is None:
        state.mkdir()  # exists, but cannot be read as a file
    else:
        state.write_text(content)

    result = check()

    assert result.returncode == 1
    assert result.stdout == f"backup: state file {state} (BACKUP_STATE) is unreadable or garbled\n"


@pytest.mark.parametrize("interval", ["0", "1h", "-1"])
def test_check_rejects_bad_interval(check: Check, state: Path, interval: str) -> None:
    state.write_text(f"ok {int(time.time())} name.tar.gz\n")

    result = check(BACKUP_INTERVAL_SECONDS=interval)

    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert "BACKUP_INTERVAL_SECONDS" in line


def test_a_destination_that_takes_no_file_is_said_plainly_and_the_same_each_run(
    run: Run, src: Path, dest: Path, state: Path
) -> None:
    """tar and gzip race to report it (broken pipe, short write, ...); the agent does not."""
    subprocess.run(["chattr", "+i", str(dest)], check=True)
    try:
        errors = []
        for _ in range(2):
            result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))
            assert result.returncode == 1
            errors.append(read_state(state)[2])
    finally:
        subprocess.run(["chattr", "-i", str(dest)], check=True)
    assert (
        errors[0]
        == errors[1]
        == (f"cannot create a file in {dest} (BACKUP_DEST): check that it is writable")
    )


def restore_starts_during_tar(src: Path, *, fails: bool) -> str:
    """A ``tar`` during which a restore begins (its work directory appears in the source), then
    archives what it was given or, ``fails``, fails as tar does when entries move under it."""
    work = src / ".swa-restore-uid.work"
    then = (
        "echo 'tar: ./a: No such file or directory' >&2; return 1" if fails else 'command tar "$@"'
    )
    return f"tar() {{\n  mkdir '{work}'\n  {then}\n}}\n"


@pytest.mark.parametrize(
    "when", ["before-the-run", "during-a-run-that-succeeds", "during-a-run-that-fails"]
)
def test_a_restore_in_the_volume_pauses_the_runs_and_keeps_no_archive(
    run: Run, check: Check, src: Path, dest: Path, state: Path, when: str
) -> None:
    """A restore's work entries (restore.sh) mean the content is being swapped: an archive of
    it could be half old, half new, and the newest, the one a restore of "latest" takes."""
    (src / "a").write_text("content")
    fake_archive(dest, "20200101T000000Z")
    before = snapshot(dest)
    prelude = ""
    if when == "before-the-run":
        (src / ".swa-restore-uid.partial").mkdir()
    else:
        prelude = restore_starts_during_tar(src, fails=when.endswith("fails"))

    started = int(time.time())
    result = run(prelude, BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))

    assert result.returncode == 3, result.stderr
    assert "paused: a restore is writing" in result.stdout, result.stdout
    assert result.stderr == ""
    assert snapshot(dest) == before, "an archive or a partial file was left"
    kind, epoch, since = read_state(state)
    assert kind == "paused"
    assert started <= epoch <= time.time()
    assert int(since) == epoch
    said = check()
    assert (said.returncode, said.stdout) == (1, PAUSED), "the pause is told from the first check"


def test_a_pause_goes_on_from_its_start_and_ends_with_the_next_archive(
    run: Run, check: Check, src: Path, dest: Path, state: Path
) -> None:
    work = src / ".swa-restore-uid.partial"
    work.mkdir()
    began = int(time.time()) - 600
    state.write_text(f"paused {began} {began}\n")

    assert run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest)).returncode == 3

    kind, _, since = read_state(state)
    assert (kind, int(since)) == ("paused", began)
    work.rmdir()
    assert run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest)).returncode == 0
    kind, _, name = read_state(state)
    assert kind == "ok"
    assert archives(dest) == [name]


PAUSED = "backup: paused: a restore's work files (.swa-restore-*) are in the volume\n"


@pytest.mark.parametrize("entry", [".swa-restore-uid.partial", ".swa-restore-uid.swap"])
def test_restore_work_files_make_the_agent_unready_at_once_whatever_its_state(
    check: Check, src: Path, dest: Path, state: Path, entry: str
) -> None:
    """An interrupted restore leaves them: the operator names it on the app from this line."""
    state.write_text(f"ok {int(time.time())} {fake_archive(dest, '20200101T000000Z').name}\n")
    assert check().returncode == 0
    (src / entry).mkdir()

    said = check()

    assert (said.returncode, said.stdout) == (1, PAUSED)


@pytest.mark.parametrize("interval", ["10", "3000"])
def test_a_pause_whose_work_files_are_gone_counts_as_a_run(
    check: Check, state: Path, interval: str
) -> None:
    """The restore ended: the agent is ready until the next run archives, if it runs."""
    now = int(time.time())
    twice = 2 * int(interval)
    state.write_text(f"paused {now - twice + 5} {now - 86400}\n")
    assert check(BACKUP_INTERVAL_SECONDS=interval).returncode == 0

    state.write_text(f"paused {now - twice - 5} {now - 86400}\n")
    result = check(BACKUP_INTERVAL_SECONDS=interval)

    assert (result.returncode, result.stdout) == (
        1,
        f"backup: no archive made in two intervals ({twice} s)\n",
    )


def test_a_missing_newest_archive_makes_the_agent_unready(
    run: Run, check: Check, src: Path, dest: Path, state: Path
) -> None:
    assert run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest)).returncode == 0
    assert check().returncode == 0
    (newest,) = archives(dest)
    (dest / newest).unlink()

    said = check()

    assert (said.returncode, said.stdout) == (
        1,
        f"backup: the newest archive is gone from {dest} (deleted by hand?); the next run "
        "makes one\n",
    )


@pytest.mark.parametrize(("interval", "limit"), [("10", 3600), ("3000", 6000)])
def test_a_run_under_way_is_alive_until_it_is_hung(
    check: Check, state: Path, dest: Path, interval: str, limit: int
) -> None:
    """A slow agent (a big volume, a low CPU limit) is not failing; a run past two intervals or
    an hour, whichever is longer, is stuck."""
    now = int(time.time())
    name = fake_archive(dest, "20200101T000000Z").name
    state.write_text(f"ok {now - 86400} {name}\n")
    assert check(BACKUP_INTERVAL_SECONDS=interval).returncode == 1
    marker = state.with_name(state.name + ".run")
    marker.write_text(f"{now - limit + 5}\n")
    assert check(BACKUP_INTERVAL_SECONDS=interval).returncode == 0

    marker.write_text(f"{now - limit - 5}\n")
    said = check(BACKUP_INTERVAL_SECONDS=interval)

    assert (said.returncode, said.stdout) == (
        1,
        f"backup: an archive run has gone on for over {limit} s: is the volume or {dest} hung?\n",
    )


def test_a_run_marks_itself_under_way_until_its_state_is_written(
    run: Run, src: Path, dest: Path, state: Path, tmp_path: Path
) -> None:
    seen = tmp_path / "seen"
    spy = f'tar() {{\n  cp "$BACKUP_STATE.run" {seen}\n  command tar "$@"\n}}\n'
    before = int(time.time())

    assert run(spy, BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest)).returncode == 0

    assert before <= int(seen.read_text()) <= time.time()
    assert sorted(p.name for p in state.parent.iterdir()) == [state.name]


@pytest.mark.parametrize("keep", ["1", "2"])
def test_an_archive_dated_in_the_future_never_makes_new_ones_vanish(
    run: Run, src: Path, dest: Path, keep: str
) -> None:
    """Its name outranks every new one: by name alone, each new archive would be pruned right
    after it was made (a clock set back, a file put there by hand)."""
    (src / "f").write_text("x")
    future = fake_archive(dest, "29991231T235959Z")
    made = []
    for _ in range(3):
        result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest), BACKUP_KEEP=keep)
        assert result.returncode == 0, result.stderr
        made.append(next(n for n in archives(dest) if n not in made and n != future.name))

    assert archives(dest) == made[-int(keep) :]


def test_an_archive_dated_within_the_clock_skew_is_an_ordinary_one(
    run: Run, src: Path, dest: Path
) -> None:
    """Another node's clock a little ahead is no clock jump."""
    (src / "f").write_text("x")
    ahead = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + 120))
    early = fake_archive(dest, ahead)
    old = fake_archive(dest, "20200101T000000Z")

    assert run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest), BACKUP_KEEP="2").returncode == 0

    assert early.exists()
    assert not old.exists()


@pytest.mark.parametrize("since", ["", "soon", "0123", "-5"])
def test_a_garbled_pause_is_garbled(check: Check, state: Path, since: str) -> None:
    state.write_text(f"paused {int(time.time())} {since}\n")

    result = check()

    assert result.returncode == 1
    assert "unreadable or garbled" in result.stdout


def test_a_nodes_own_directory_is_made_only_when_asked(run: Run, src: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (src / "index.html").write_text("hello")
    node_dir = export / "node-a"
    # Not asked: a missing destination is a failed run, as it always was.
    missing = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(node_dir))
    assert missing.returncode == 1
    assert "does not exist or is not a directory" in missing.stderr
    assert not node_dir.exists()
    # Asked (the agents of a shared export): the node's directory is made, its parent is not.
    made = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(node_dir), BACKUP_CREATE_DEST="true")
    assert made.returncode == 0, made.stderr
    assert f"created {node_dir}\n" in made.stdout
    assert len(archives(node_dir)) == 1
    again = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(node_dir), BACKUP_CREATE_DEST="true")
    assert again.returncode == 0, again.stderr
    assert f"created {node_dir}\n" not in again.stdout
    no_parent = tmp_path / "gone" / "node-a"
    failed = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(no_parent), BACKUP_CREATE_DEST="true")
    assert failed.returncode == 1
    assert f"could not create destination {no_parent} (BACKUP_DEST)" in failed.stderr
    assert not no_parent.parent.exists()
