"""Verifying a backup file and restoring it (``tokensmith backup verify|restore PATH``).

A restore touches nothing before it knows it can finish: the data dir (and, on PostgreSQL, the
database) must be empty; the whole file is read once and checked (every frame, every member's
checksum, the manifest, each member's name), then held against this Tokensmith (its store kind,
its schema revision, the secret keys). Only then is it read a second time, into a staging folder
inside the data dir (checked again as it goes), the store loaded last (PostgreSQL: pg_restore in
one transaction), and everything renamed into place. A failure on the way removes the staging
folder: the data dir is as empty as it was.

Then the window a restore opens (revocation_journal.py): browser sessions and pending device
logins of the backup are ended, the journal of revocations is replayed, and the report says
what came back and what did not.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete
from sqlalchemy.orm import Session

from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.backups import revocation_journal, store_copies
from tokensmith.backups.archive import BackupReader
from tokensmith.backups.git_copies import Restorer
from tokensmith.backups.revocation_journal import Journal, Replayed
from tokensmith.backups.snapshot import KEYS_MEMBER, Progress, Unwatched, fingerprints
from tokensmith.clock import display
from tokensmith.config import Settings
from tokensmith.errors import BackupUnusable, ConfigurationError, Conflict, InvalidInput
from tokensmith.projects import maven_repository
from tokensmith.projects.catalog import PROJECT_ID
from tokensmith.projects.maven_repository import SEGMENT, Coordinates
from tokensmith.store import data_dir
from tokensmith.store.database import MIGRATIONS_DIR, create_store_engine, migrate, session_factory, unit_of_work
from tokensmith.store.models import BrowserSession, DeviceAuthorization
from tokensmith.store.server_keys import KEY_FILE_NAME, parse_keys

ACTOR = "admin (shell)"
STAGING = ".restoring"
_GIT_BUNDLE = re.compile(r"^git/(?P<project>[a-z0-9-]{1,64})\.git$")
_GIT_FILE = re.compile(r"^git/(?P<project>[a-z0-9-]{1,64})\.git/(?P<file>config|logs/[A-Za-z0-9._/-]{1,400})$")
_REPOSITORY_FILES = ("maven/studio/", "packages/hotfix/")
_IGNORED_IN_AN_EMPTY_DIR = {"lost+found"}  # a fresh filesystem's


def _placed(name: str) -> str:
    """Where a member goes in the data dir, or BackupUnusable for a name no backup holds (a
    hostile file's ``../../etc/passwd``): checked on the first reading, before anything is written."""
    if name in (store_copies.SQLITE_MEMBER, store_copies.POSTGRESQL_MEMBER, KEYS_MEMBER):
        return name
    git = _GIT_BUNDLE.match(name) or _GIT_FILE.match(name)
    if git and PROJECT_ID.match(git.group("project")) and ".." not in name.split("/"):
        return name
    if name.startswith(_REPOSITORY_FILES):
        segments = name.split("/")[2:]
        if segments and all(SEGMENT.match(part) and part not in (".", "..") for part in segments):
            return name
    raise BackupUnusable(f"The backup holds a member named {name[:120]!r}, which no Tokensmith backup holds.")


def verify_backup(path: Path, passphrase: str | None, progress: Progress | None = None) -> dict[str, Any]:
    """Read the whole file and check everything, touching nothing; its manifest."""
    watch = progress or Unwatched()
    handle = _open(path)
    with handle:
        watch.start(f"Checking {path.name}", os.fstat(handle.fileno()).st_size)
        reader = BackupReader(handle, passphrase, watch.advance)
        for member in reader.members():
            _placed(member.name)
        assert reader.manifest is not None
        _check_manifest(reader.manifest)
        return reader.manifest


def _open(path: Path) -> Any:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InvalidInput(f"No backup file at {path}.") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a folder, not a backup file.") from None
    except PermissionError:
        raise InvalidInput(f"{path} cannot be read by this user.") from None


def _check_manifest(manifest: dict[str, Any]) -> None:
    try:
        datetime.fromisoformat(manifest["created_at"])
        assert manifest["store"]["kind"] in ("sqlite", "postgresql")
        assert isinstance(manifest["keys"]["fingerprints"], dict)
        assert isinstance(manifest["counts"], dict)
    except (KeyError, TypeError, ValueError, AssertionError):
        raise BackupUnusable("The backup's manifest lacks what a Tokensmith backup's holds.") from None


def describe(manifest: dict[str, Any], path: Path) -> str:
    """What ``backup verify`` says of a good file."""
    counts, store = manifest["counts"], manifest["store"]
    return (
        f"{path} is a whole Tokensmith backup: the store as of {_moment(manifest)} ({store['kind']}, schema "
        f"{store['schema_revision']}), {counts.get('users', 0)} users, {counts.get('live_tokens', 0)} live tokens, "
        f"{counts.get('projects', 0)} projects, {counts.get('releases', 0)} releases, "
        f"{counts.get('repositories', 0)} Git repositories, {counts.get('package_files', 0)} package files; "
        f"written by Tokensmith {manifest.get('tokensmith', '?')}. Every part matches its checksum."
    )


def _moment(manifest: dict[str, Any]) -> str:
    return datetime.fromisoformat(manifest["created_at"]).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class Restored:
    manifest: dict[str, Any]
    data_dir: Path
    journal_path: Path | None = None
    journal: Journal | None = None
    replayed: Replayed = field(default_factory=Replayed)
    sessions_ended: int = 0

    def report(self) -> str:
        moment, counts = _moment(self.manifest), self.manifest["counts"]
        lines = [
            (
                f"Restored the backup of {moment} into {self.data_dir}"
                f" ({self.manifest['store']['kind']} store): {counts.get('users', 0)} users, "
                f"{counts.get('live_tokens', 0)} tokens live at that moment, {counts.get('projects', 0)} projects, "
                f"{counts.get('releases', 0)} releases."
            ),
            (
                "Everything made after that moment is not in it: tokens, accounts, projects, releases, passwords "
                "changed since, and pushes made after the backup was written."
            ),
            (
                "Second factors are as they were then: one removed since (a lost phone's) works again, and so does a "
                "recovery code used since; `tokensmith users reset-2fa USER` removes a person's."
            ),
            f"Browser sessions ended: {self.sessions_ended} (everyone signs in again); pending device logins dropped.",
        ]
        if self.journal is None:
            lines += [
                (
                    f"WARNING: no revocation journal was replayed. Any token revoked after {moment} works again, and "
                    f"any account disabled since then is enabled again ({counts.get('live_tokens', 0)} tokens were "
                    "live then)."
                ),
                (
                    "Close that window now: replay the journal the old deployment kept (TOKENSMITH_REVOCATION_JOURNAL;"
                    " by default DATA_DIR/revocations of the old data dir), before or after starting the server:"
                ),
                "  tokensmith backup replay-revocations /path/to/the/old/revocations",
            ]
        else:
            lines.append(
                f"Replayed the revocation journal {self.journal_path} ({revocation_journal.age_note(self.journal)}):"
            )
            lines += replay_lines(self.replayed)
        lines.append("Start the server: tokensmith serve (with the same TOKENSMITH_* settings).")
        return "\n".join(lines)


def replay_lines(replayed: Replayed) -> list[str]:
    """Exactly what a replay revoked and disabled again, one line each."""
    if not replayed.tokens and not replayed.accounts:
        return ["  nothing to revoke again: no token or account it names was live in the store."]
    lines = [
        f"  revoked again: token “{entry.name}” ({entry.label}) of {owner}, revoked {display(entry.at)}"
        + (f" ({entry.reason})" if entry.reason else "")
        for entry, owner in replayed.tokens
    ]
    lines += [
        f"  disabled again: account {entry.label}, disabled {display(entry.at)} (its {revoked} live token(s) revoked)"
        for entry, revoked in replayed.accounts
    ]
    return lines


def restore_backup(
    settings: Settings,
    path: Path,
    *,
    passphrase: str | None,
    journal: Path | None = None,
    progress: Progress | None = None,
) -> Restored:
    """Restore the backup at ``path`` into the empty data dir and store ``settings`` name."""
    watch = progress or Unwatched()
    engine = None if settings.sqlite_path else create_store_engine(settings)
    try:
        _ensure_empty(settings, engine)
        manifest = verify_backup(path, passphrase, watch)
        _ensure_compatible(manifest, settings)
        journal_path = journal or _configured_journal(settings)
        journal_read = revocation_journal.read(journal_path) if journal_path is not None else None
        created = not settings.data_dir.exists()
        staging = data_dir.ensure(settings.data_dir) / STAGING
        try:
            staging.mkdir(mode=data_dir.DIR_MODE)
            _extract(path, passphrase, staging, watch)
            if engine is not None:
                watch.start("Loading the store (pg_restore)")
                store_copies.load_postgresql(
                    engine,
                    staging / Path(store_copies.POSTGRESQL_MEMBER).name,
                    manifest["store"].get("server_major", 0),
                )
                (staging / Path(store_copies.POSTGRESQL_MEMBER).name).unlink()
            for entry in staging.iterdir():
                os.rename(entry, settings.data_dir / entry.name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if created:
                shutil.rmtree(settings.data_dir, ignore_errors=True)
            raise
        staging.rmdir()
        restored = Restored(manifest, settings.data_dir.resolve(), journal_path, journal_read)
        _after(settings, engine, restored)
        return restored
    finally:
        if engine is not None:
            engine.dispose()


def _ensure_empty(settings: Settings, engine: Engine | None) -> None:
    folder = settings.data_dir
    if folder.exists():
        if not folder.is_dir():
            raise Conflict(f"The data dir {folder} is a file: set TOKENSMITH_DATA_DIR to an empty folder.")
        present = sorted(entry.name for entry in folder.iterdir() if entry.name not in _IGNORED_IN_AN_EMPTY_DIR)
        if present:
            shown = ", ".join(present[:4]) + ("…" if len(present) > 4 else "")
            raise Conflict(
                f"The data dir {folder.resolve()} is not empty ({shown}): "
                "a backup is restored into an empty data dir only, with the server stopped. Move the old one aside "
                f"(mv {folder} {folder}.old) or set TOKENSMITH_DATA_DIR to a new folder. Nothing was changed."
            )
    if engine is not None:
        store_copies.ensure_empty_postgresql(engine)


def _ensure_compatible(manifest: dict[str, Any], settings: Settings) -> None:
    kind = manifest["store"]["kind"]
    if kind == "sqlite" and settings.database_url:
        raise ConfigurationError(
            "This backup holds a SQLite store, and TOKENSMITH_DATABASE_URL names another store: restore it with "
            "TOKENSMITH_DATABASE_URL unset (SQLite in the data dir). Nothing was changed."
        )
    if kind == "postgresql" and not settings.database_url:
        raise ConfigurationError(
            "This backup holds a PostgreSQL store: set TOKENSMITH_DATABASE_URL to an empty PostgreSQL database to "
            "restore it into. Nothing was changed."
        )
    revision = str(manifest["store"]["schema_revision"])
    known = sorted(path.name.split("_", 1)[0] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"))
    if revision not in known:
        raise BackupUnusable(
            f"This backup's store is at schema revision {revision}, which this Tokensmith does not know (it knows "
            f"{known[0]} to {known[-1]}): it was made by a newer Tokensmith ({manifest.get('tokensmith', '?')}). "
            "Restore it with that version or a newer one; a store is never taken back to an older schema. "
            "Nothing was changed."
        )
    _ensure_keys(manifest, settings)


def _ensure_keys(manifest: dict[str, Any], settings: Settings) -> None:
    """Every key version the backup's tokens may have been made with must be here after the restore."""
    wanted: dict[str, str] = manifest["keys"]["fingerprints"]
    versions = ", ".join(sorted(wanted))
    if settings.secret_key:
        here = fingerprints(parse_keys(settings.secret_key))
        if any(here.get(version) != fingerprint for version, fingerprint in wanted.items()):
            raise ConfigurationError(
                f"TOKENSMITH_SECRET_KEY here does not hold the keys this backup's tokens were made with (version(s) "
                f"{versions}): every token would be refused. Set it to those keys"
                + (", or unset it to use the keys the backup holds" if manifest["keys"]["source"] == "file" else "")
                + ". Nothing was changed."
            )
    elif manifest["keys"]["source"] == "environment":
        raise ConfigurationError(
            f"The deployment this backup comes from took its secret keys from TOKENSMITH_SECRET_KEY (version(s) "
            f"{versions}), which a backup does not hold: set TOKENSMITH_SECRET_KEY to those keys and restore again. "
            "Nothing was changed."
        )


def _configured_journal(settings: Settings) -> Path | None:
    """The journal this deployment is configured to keep, when it lives outside the (empty) data
    dir and holds something: the old deployment's, kept apart as the docs advise."""
    folder = settings.revocation_journal_dir
    if folder.resolve().is_relative_to(settings.data_dir.resolve()) or not folder.is_dir():
        return None
    return folder if any(folder.glob("*.jsonl")) else None


def _extract(path: Path, passphrase: str | None, staging: Path, watch: Progress) -> None:
    with _open(path) as handle:
        watch.start(f"Restoring {path.name}", os.fstat(handle.fileno()).st_size)
        reader = BackupReader(handle, passphrase, watch.advance)
        git = Restorer(staging / "git", staging)
        for member in reader.members():
            name = _placed(member.name)
            bundle, file = _GIT_BUNDLE.match(name), _GIT_FILE.match(name)
            if bundle:
                git.bundle(bundle.group("project"), member)
            elif file:
                git.file(file.group("project"), file.group("file"), member)
            else:
                target = staging / _staged_name(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                _write(target, member.chunks(), private=not name.startswith(_REPOSITORY_FILES))
        if reader.manifest is None:  # the reader raised already; this is the belt to its braces
            raise BackupUnusable("The backup ended before its manifest.")
        git.finish()
    for repository_root in (maven_repository.studio_root(staging), maven_repository.hotfix_root(staging)):
        _rewrite_metadata(repository_root)


def _staged_name(name: str) -> str:
    """A member's path in the data dir: the store and the keys at its top, the files as named."""
    if name in (store_copies.SQLITE_MEMBER, store_copies.POSTGRESQL_MEMBER):
        return Path(name).name
    if name == KEYS_MEMBER:
        return KEY_FILE_NAME
    return name


def _write(target: Path, chunks: Iterator[bytes], *, private: bool) -> None:
    if private:
        data_dir.create_private_file(target)
    with target.open("r+b" if private else "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)


def _rewrite_metadata(root: Path) -> None:
    """Each artifact's ``maven-metadata.xml`` written again from the versions restored: the copy in
    the backup may list a release the store's moment did not know."""
    if not root.is_dir():
        return
    for metadata_file in sorted(root.rglob("maven-metadata.xml")):
        artifact_dir = metadata_file.parent
        parts = artifact_dir.relative_to(root).parts
        if len(parts) >= 2:
            maven_repository.write_metadata(artifact_dir, Coordinates(".".join(parts[:-1]), parts[-1], ""))


def _after(settings: Settings, engine: Engine | None, restored: Restored) -> None:
    """The store brought to this Tokensmith's schema, the backup's sessions ended, the journal replayed."""
    store = engine or create_store_engine(settings)
    try:
        migrate(store)
        with unit_of_work(session_factory(store)) as session:
            restored.sessions_ended = _end_sessions(session)
            if restored.journal is not None:
                restored.replayed = revocation_journal.replay(session, restored.journal)
            trail.record(
                session,
                AuditAction.BACKUP_RESTORED,
                actor=ACTOR,
                taken_at=_moment(restored.manifest),
                tokens_revoked_again=len(restored.replayed.tokens),
                accounts_disabled_again=len(restored.replayed.accounts),
            )
    finally:
        if engine is None:
            store.dispose()


def _end_sessions(session: Session) -> int:
    """Sessions of the backup's moment may have been signed out since (a cookie copied from a
    stolen laptop): all of them end, and so do device logins that were waiting."""
    ended = cast(CursorResult[Any], session.execute(delete(BrowserSession))).rowcount
    session.execute(delete(DeviceAuthorization))
    return ended
