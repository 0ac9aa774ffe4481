"""Tests for the backup agent script, run for real under busybox sh.

The script is executed the way the DaemonSet runs it: its whole text is passed
as the ``-c`` argument of ``busybox sh``. PATH holds only busybox applets, as in
the busybox image, so a GNU-only option in the script would fail here too.
"""

import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "operator/statefulwebapp/scripts/backup.sh"
PREFIX = "default-web"
ARCHIVE_RE = re.compile(rf"^{re.escape(PREFIX)}-\d{{8}}T\d{{6}}Z\.tar\.gz$")


@pytest.fixture(scope="session")
def busybox() -> str:
    path = shutil.which("busybox")
    if path is None:
        pytest.fail(
            "busybox not found on PATH: run `make tools` or install it "
            "(e.g. `apt-get install -y busybox`)"
        )
    return path


@pytest.fixture(scope="session")
def applet_path(busybox: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Directory with one symlink per busybox applet, to use as the only PATH entry."""
    bindir = tmp_path_factory.mktemp("busybox-bin")
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        (bindir / applet).symlink_to(busybox)
    return str(bindir)


@pytest.fixture
def run(busybox: str, applet_path: str):
    script = SCRIPT.read_text()

    def _run(prelude: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        full_env = {"PATH": applet_path, "BACKUP_ONCE": "1", "BACKUP_PREFIX": PREFIX, **env}
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


def test_run_creates_archive_with_source_contents(run, src: Path, dest: Path) -> None:
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


def test_empty_source_gives_valid_empty_archive(run, src: Path, dest: Path) -> None:
    result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))

    assert result.returncode == 0, result.stderr
    (name,) = archives(dest)
    content = members(dest / name)
    assert all(data is None for data in content.values()), content


def test_retention_keeps_newest_and_ignores_other_files(run, src: Path, dest: Path) -> None:
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


def test_two_runs_in_same_second_do_not_overwrite(run, src: Path, dest: Path) -> None:
    (src / "f").write_text("x")
    first = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))
    second = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest))

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert len(archives(dest)) == 2


def test_stale_partial_of_own_prefix_is_swept(run, src: Path, dest: Path) -> None:
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
def test_failed_run_reports_and_keeps_existing_archives(run, tmp_path: Path, broken: str) -> None:
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
def test_invalid_config_is_rejected(run, src: Path, dest: Path, var: str, value: str) -> None:
    (src / "f").write_text("x")
    fake_archive(dest, "20200101T000000Z")
    before = snapshot(dest)

    result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest), **{var: value})

    assert result.returncode == 2
    error_lines = result.stderr.splitlines()
    assert len(error_lines) == 1, result.stderr
    assert var in error_lines[0]
    assert snapshot(dest) == before


def test_leading_zeros_are_accepted(run, src: Path, dest: Path) -> None:
    fake_archive(dest, "20200101T000000Z")
    result = run(BACKUP_SOURCE=str(src), BACKUP_DEST=str(dest), BACKUP_KEEP="08")

    assert result.returncode == 0, result.stderr
    assert len(archives(dest)) == 2


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def test_loop_mode_survives_failed_run(
    busybox: str, applet_path: str, tmp_path: Path, dest: Path
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
    }
    with stdout_path.open("w") as out, stderr_path.open("w") as err:
        proc = subprocess.Popen(
            [busybox, "sh", "-c", SCRIPT.read_text()], env=env, stdout=out, stderr=err
        )
    try:
        wait_for(lambda: "run failed" in stderr_path.read_text(), 5, "the first run to fail")
        assert proc.poll() is None, "loop exited after a failed run"
        src.mkdir()
        (src / "f").write_text("x")
        wait_for(lambda: archives(dest), 5, "an archive after the source appeared")
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
