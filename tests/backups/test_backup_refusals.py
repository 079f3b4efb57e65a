"""What a backup and a restore refuse, each in words, leaving everything as it was: a data dir that
is not empty, a file cut short or altered, a backup of a newer schema, other secret keys, a
passphrase on the command line; and a disk that fills up during a backup, for real (a small
tmpfs this test mounts), after which the partial file is gone and the server works on."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.conftest import unavailable
from tests.support.git import GitUser
from tests.support.ledger import remember, watch
from tests.support.servers import LiveServer

PASSPHRASE = remember("the passphrase of the refusals test")
PACKAGE_SIZE = 3 * 1024 * 1024  # incompressible: a backup far larger than the small disk below


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("refusals")
    live = LiveServer(base / "data").start()
    try:
        live.create_user("erin")
        live.create_project("tools", "com.acme.tools", owner="erin")
        erin = GitUser(base / "erin", "erin", live.create_token("erin", "pusher"))
        erin.remember_credentials(live.base_url)
        erin.git("clone", "-q", f"{live.base_url}/git/tools.git", str(base / "erin" / "work"))
        erin.publish(base / "erin" / "work", {"tool.sh": "echo tool\n"}, "a tool")
        package = base / "hotfix-7.zip"
        package.write_bytes(os.urandom(PACKAGE_SIZE))
        published = live.cli("packages", "publish", str(package), "--coordinates", "com.acme.hotfix:hotfix-7:1.0.0")
        assert published.returncode == 0, published.stderr
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def backup(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = watch(tmp_path_factory.mktemp("backups") / "plain.tsbackup")  # no secret in it (its store: zlib)
    made = server.cli("backup", "create", str(path))
    assert made.returncode == 0, made.stderr
    return path


def restore_into(
    server: LiveServer, folder: Path, backup: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return server.cli("backup", "restore", str(backup), *args, env={"TOKENSMITH_DATA_DIR": str(folder), **env})


def listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(path.relative_to(folder)), path.stat().st_size) for path in folder.rglob("*") if path.is_file())


def test_a_restore_into_a_data_dir_that_is_not_empty_is_refused_and_changes_nothing(server, backup, tmp_path):
    before = listing(server.data_dir)
    refused = restore_into(server, server.data_dir, backup)  # the running server's own
    assert refused.returncode == 4 and refused.stdout == ""
    assert "is not empty" in refused.stderr and "Nothing was changed" in refused.stderr
    assert "tokensmith.db" in refused.stderr and "mv " in refused.stderr
    after = listing(server.data_dir)
    assert {name for name, _size in after} >= {name for name, _size in before}  # the server's files, untouched
    stray = tmp_path / "almost-empty"
    stray.mkdir()
    (stray / "notes.txt").write_text("someone's notes\n")
    refused = restore_into(server, stray, backup)
    assert refused.returncode == 4 and listing(stray) == [("notes.txt", 16)]


def test_verify_and_restore_refuse_a_file_cut_short_or_altered_before_touching_anything(server, backup, tmp_path):
    whole = backup.read_bytes()
    cut = tmp_path / "cut.tsbackup"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    altered = tmp_path / "altered.tsbackup"
    changed = bytearray(whole)
    changed[len(whole) // 2] ^= 0x20
    altered.write_bytes(bytes(changed))
    good = server.cli("backup", "verify", str(backup))
    assert good.returncode == 0 and "is a whole Tokensmith backup" in good.stdout, good.stderr
    assert "2 projects" in good.stdout and "2 Git repositories" in good.stdout
    for bad, words in ((cut, "is incomplete"), (altered, "is damaged")):
        said = server.cli("backup", "verify", str(bad))
        assert said.returncode == 2 and words in said.stderr and "Traceback" not in said.stderr, said.stderr
        target = tmp_path / f"restored-from-{bad.stem}"
        refused = restore_into(server, target, bad)
        assert refused.returncode == 2 and words in refused.stderr
        assert not target.exists()  # not even the data dir was made


def test_a_backup_of_a_newer_schema_is_refused_with_which_version_to_use(server, backup, tmp_path):
    """A deployment one migration ahead (its store says so), backed up by that newer version and
    handed to this one: refused before anything is touched, in words."""
    newer = tmp_path / "newer"
    assert restore_into(server, newer, backup).returncode == 0
    with contextlib.closing(sqlite3.connect(newer / "tokensmith.db")) as store, store:
        store.execute("UPDATE alembic_version SET version_num = '0999'")
    newer_backup = tmp_path / "from-a-newer-version.tsbackup"
    made = server.cli("backup", "create", str(newer_backup), env={"TOKENSMITH_DATA_DIR": str(newer)})
    assert made.returncode == 0 and "schema 0999" in made.stdout, made.stderr
    target = tmp_path / "older"
    refused = restore_into(server, target, newer_backup)
    assert refused.returncode == 2 and not target.exists()
    assert "schema revision 0999" in refused.stderr and "made by a newer Tokensmith" in refused.stderr
    assert "Restore it with that version or a newer one" in refused.stderr


def test_other_secret_keys_than_the_backups_are_refused_since_every_token_would_die(server, backup, tmp_path):
    target = tmp_path / "other-keys"
    refused = restore_into(server, target, backup, TOKENSMITH_SECRET_KEY="1:" + "o" * 40)
    assert refused.returncode == 2 and not target.exists()
    assert "does not hold the keys this backup's tokens were made with" in refused.stderr


def test_the_passphrase_comes_from_a_file_or_stdin_never_from_the_command_line(server, tmp_path):
    sealed = tmp_path / "sealed.tsbackup"
    as_argument = server.cli("backup", "create", str(sealed), "--passphrase", PASSPHRASE)
    assert as_argument.returncode == 2 and "No such option" in as_argument.stderr and not sealed.exists()
    made = server.cli("backup", "create", str(sealed), "--passphrase-stdin", input=PASSPHRASE + "\n")
    assert made.returncode == 0 and "encrypted" in made.stdout, made.stderr
    assert sealed.stat().st_mode & 0o777 == 0o600
    assert PASSPHRASE.encode() not in sealed.read_bytes()
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    assert server.cli("backup", "verify", str(sealed), "--passphrase-file", str(tmp_path / "pass")).returncode == 0
    without = server.cli("backup", "verify", str(sealed))
    assert without.returncode == 2 and "encrypted: give its passphrase" in without.stderr
    wrong = server.cli("backup", "verify", str(sealed), "--passphrase-stdin", input="not the passphrase at all\n")
    assert wrong.returncode == 2 and "passphrase does not open this backup" in wrong.stderr
    both = server.cli(
        "backup", "verify", str(sealed), "--passphrase-stdin", "--passphrase-file", str(tmp_path / "pass")
    )
    assert both.returncode == 2 and "one way" in both.stderr
    short = server.cli("backup", "create", str(tmp_path / "short.tsbackup"), "--passphrase-stdin", input="short\n")
    assert short.returncode == 2 and "at least 12 characters" in short.stderr


def test_a_backup_never_replaces_a_file_nor_goes_into_the_data_dir(server, backup):
    size = backup.stat().st_size
    again = server.cli("backup", "create", str(backup))
    assert again.returncode == 4 and "never replaces a file" in again.stderr and backup.stat().st_size == size
    inside = server.cli("backup", "create", str(server.data_dir / "backup.tsbackup"))
    assert inside.returncode == 2 and "inside the data dir" in inside.stderr
    assert not (server.data_dir / "backup.tsbackup").exists()


def test_on_a_terminal_each_step_shows_its_progress_and_elsewhere_one_line(server, backup):
    at_a_terminal = pexpect.spawn(
        sys.executable,
        ["-m", "tokensmith", "backup", "verify", str(backup)],
        env=server.env,
        encoding="utf-8",
        dimensions=(24, 160),
        timeout=60,
    )
    at_a_terminal.expect(pexpect.EOF)
    shown = at_a_terminal.before
    assert f"Checking {backup.name}" in shown and "✓" in shown and "is a whole Tokensmith backup" in shown
    in_a_script = server.cli("backup", "verify", str(backup))
    assert in_a_script.stderr == "" and in_a_script.stdout.count("\n") == 1


@contextlib.contextmanager
def small_disk(folder: Path, size: str, *options: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder`` for the block's length: a disk that fills up for
    real (ENOSPC on the write that does not fit), unlike RLIMIT_FSIZE, which fails the one
    process with EFBIG whatever the disk holds."""
    folder.mkdir()
    mount_options = ",".join([f"size={size}", "mode=0700", *options])
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", mount_options, "tmpfs", str(folder)])
    if mounted.returncode != 0:
        unavailable("a tmpfs cannot be mounted here (the test needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.skipif(shutil.which("mount") is None, reason="no mount(8)")
@pytest.mark.parametrize("size", ["64k", "1m"], ids=["full while the store is copied", "full while files are written"])
def test_a_disk_that_fills_up_during_a_backup_leaves_no_file_behind_and_the_server_unharmed(server, tmp_path, size):
    with small_disk(tmp_path / "small-disk", size) as disk:
        failed = server.cli("backup", "create", str(disk / "nightly.tsbackup"))
        left = sorted(path.name for path in disk.iterdir())
    assert failed.returncode == 1 and failed.stdout == "", failed.stdout
    assert "filled up" in failed.stderr and "partial file was removed" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    assert left == []  # no partial file, no scratch folder
    # The server works on: it answers a token, takes a write, and its store is sound.
    token = server.create_token("erin", f"after a full disk ({size})")
    with server.client() as client:
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with contextlib.closing(sqlite3.connect(f"file:{server.data_dir / 'tokensmith.db'}?mode=ro", uri=True)) as store:
        assert store.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.skipif(shutil.which("mount") is None, reason="no mount(8)")
def test_a_disk_that_cannot_be_written_is_said_so_in_one_line(server, tmp_path):
    with small_disk(tmp_path / "read-only", "1m", "ro") as disk:
        failed = server.cli("backup", "create", str(disk / "nightly.tsbackup"))
    assert failed.returncode == 1 and "Cannot write in" in failed.stderr and "Read-only file system" in failed.stderr
    assert "Traceback" not in failed.stderr and failed.stderr.count("\n") == 1
