"""Taking a backup of a running deployment (``tokensmith backup create PATH``).

One moment: the store is copied first (store_copies.py), and what that copy holds decides which
files follow. Files only ever appear before the rows that name them commit: a project's
repository is created before its row, a release's folder is renamed into place before its row.
So every project and release of the copy has its files on disk when they are read next, and
what appeared after the copy (a project, a release made meanwhile) is left out by name, since
the copy does not know it. Pushes made while the repositories are read are kept (a ref moved
forward: nothing in the store points at it). The hotfix packages have no rows: what is published
when they are read is copied. Folders and files whose names start with a dot (a release being
assembled, metadata being rewritten) are never copied; ``maven-metadata.xml`` is rewritten on
restore from the versions restored.

The file is written next to its destination under a temporary name, mode 0600 from its
creation, and renamed into place once whole and synced; on any failure (a disk that fills up)
the partial file and the scratch folder are removed, and the running server was only ever read.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine

from tokensmith.backups import git_copies, store_copies
from tokensmith.backups.archive import BackupWriter, read_file_chunks
from tokensmith.backups.sealing import seal_for_writing
from tokensmith.backups.store_copies import Contents
from tokensmith.clock import utcnow
from tokensmith.config import Settings
from tokensmith.errors import BackupFailed, ConfigurationError, Conflict, InvalidInput
from tokensmith.projects import git_repositories, maven_repository, releases
from tokensmith.projects.maven_repository import Coordinates
from tokensmith.store import data_dir
from tokensmith.store.database import create_store_engine, require_existing_store
from tokensmith.store.models import Project
from tokensmith.store.server_keys import KEY_FILE_NAME, ServerKeys, parse_keys

KEYS_MEMBER = f"keys/{KEY_FILE_NAME}"
FINGERPRINT_PURPOSE = "backup key fingerprint"


class Progress(Protocol):
    """What a backup or a restore tells whoever watches: each step with its size in bytes when
    known, then how many bytes went through."""

    def start(self, label: str, total: int | None = None) -> None: ...

    def advance(self, amount: int) -> None: ...


class Unwatched:
    def start(self, label: str, total: int | None = None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass


@dataclass(frozen=True)
class Summary:
    path: Path
    size: int
    seconds: float
    encrypted: bool
    manifest: dict[str, Any]

    def line(self) -> str:
        counts = self.manifest["counts"]
        store = self.manifest["store"]
        missing = self.manifest.get("missing_repositories") or []
        sealed = "encrypted" if self.encrypted else "not encrypted"
        return (
            f"Backup written to {self.path}: {human_size(self.size)}, {sealed}; "
            f"the store as of {self.manifest['created_at']} ({store['kind']}, schema {store['schema_revision']}): "
            f"{counts['users']} users, {counts['live_tokens']} live tokens, {counts['projects']} projects, "
            f"{counts['releases']} releases; {counts['repositories']} Git repositories, {counts['package_files']} "
            f"package files"
            + (f" (no repository on disk for {', '.join(missing)})" if missing else "")
            + f"; in {self.seconds:.1f} s."
        )


def human_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    raise AssertionError


def create_backup(
    settings: Settings, path: Path, *, passphrase: str | None, progress: Progress | None = None
) -> Summary:
    """Write a backup of the deployment ``settings`` describe to ``path`` (a new file)."""
    started = time.monotonic()
    watch = progress or Unwatched()
    path = _destination(settings, path)
    seal = seal_for_writing(passphrase)
    require_existing_store(settings)
    keys, key_file = _keys(settings)
    engine = None if settings.sqlite_path else create_store_engine(settings)
    if engine is not None:
        require_existing_store(settings, engine)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    scratch: Path | None = None
    made_partial = False  # unlink on a read-only disk fails (EROFS) even for a file that is not there
    writer: BackupWriter | None = None
    try:
        scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, data_dir.FILE_MODE)
        made_partial = True
        with os.fdopen(descriptor, "wb") as handle:
            writer = BackupWriter(handle, seal, watch.advance)
            contents, store = _store(writer, settings, engine, scratch, watch)
            if key_file is not None:
                writer.add(KEYS_MEMBER, read_file_chunks(key_file), kind="keys")
            repositories, missing = _repositories(writer, settings, contents, scratch, watch)
            package_files = _artifacts(writer, settings, contents, watch)
            manifest = {
                "tokensmith": metadata.version("tokensmith"),
                "created_at": contents.taken_at.isoformat(),
                "finished_at": utcnow().isoformat(),
                "store": {**store, "schema_revision": contents.schema_revision},
                "keys": {"source": "file" if key_file else "environment", "fingerprints": fingerprints(keys)},
                "counts": {**contents.counts(), "repositories": repositories, "package_files": package_files},
                "missing_repositories": missing,
            }
            writer.finish(manifest)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            raise Conflict(f"{path} appeared while the backup was written: the new one is not put in its place.")
        os.rename(partial, path)
        _sync_folder(path.parent)
    except BaseException as error:
        if store_copies.is_disk_full(error):
            written = f" after {human_size(writer.size)}" if writer is not None else ""
            raise BackupFailed(
                f"The disk holding {path.parent} filled up{written}: the backup stopped, its partial file was removed, "
                "and the running server was only read, never changed. Free some space there, or write the backup "
                "to another disk."
            ) from None
        if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise BackupFailed(f"Cannot write in {path.parent}: {error.strerror}. Nothing was written.") from None
        raise
    finally:
        if made_partial:
            partial.unlink(missing_ok=True)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        if engine is not None:
            engine.dispose()
    return Summary(path, path.stat().st_size, time.monotonic() - started, passphrase is not None, manifest)


def _destination(settings: Settings, path: Path) -> Path:
    path = path.expanduser().absolute()
    if path.exists() or path.is_symlink():
        raise Conflict(
            f"{path} exists already: a backup never replaces a file. Choose a new name (with the date, say)."
        )
    if not path.parent.is_dir():
        raise InvalidInput(f"There is no folder {path.parent}: create it first (mode 0700 suits it).")
    if path.resolve().is_relative_to(settings.data_dir.resolve()):
        raise InvalidInput(
            f"{path} is inside the data dir ({settings.data_dir}): a backup there dies with it. Write it elsewhere, "
            "on another disk or another machine."
        )
    return path


def _keys(settings: Settings) -> tuple[ServerKeys, Path | None]:
    """The keys in use, and the file they are in (None when they come from the environment)."""
    if settings.secret_key:
        return parse_keys(settings.secret_key), None
    path = settings.data_dir / KEY_FILE_NAME
    if not path.is_file():
        raise ConfigurationError(
            f"No secret keys at {path} and no TOKENSMITH_SECRET_KEY: without them no token of this deployment can "
            "be checked. Set TOKENSMITH_DATA_DIR to the server's data dir."
        )
    return parse_keys(path.read_text()), path


def fingerprints(keys: ServerKeys) -> dict[str, str]:
    """Each key version's fingerprint: says whether two sets of keys are the same, and nothing else."""
    return {
        str(version): keys.digest(FINGERPRINT_PURPOSE, "tokensmith", version).hex()[:16] for version in keys.versions
    }


def _store(
    writer: BackupWriter, settings: Settings, engine: Engine | None, scratch: Path, watch: Progress
) -> tuple[Contents, dict[str, Any]]:
    if engine is None:
        assert settings.sqlite_path is not None
        watch.start("The store (SQLite)", settings.sqlite_path.stat().st_size)
        copy = scratch / "tokensmith.db"
        contents = store_copies.copy_sqlite(settings.sqlite_path, copy)
        writer.add(store_copies.SQLITE_MEMBER, read_file_chunks(copy), compress=True, kind="store")
        copy.unlink()
        return contents, {"kind": "sqlite"}
    watch.start("The store (PostgreSQL, pg_dump)")
    with store_copies.postgresql_snapshot(engine) as (contents, major, dump):
        writer.add(store_copies.POSTGRESQL_MEMBER, dump, kind="store")
    return contents, {"kind": "postgresql", "server_major": major}


def _repositories(
    writer: BackupWriter, settings: Settings, contents: Contents, scratch: Path, watch: Progress
) -> tuple[int, list[str]]:
    present: list[tuple[str, Path]] = []
    missing: list[tuple[str, Path]] = []
    for project_id in sorted(contents.projects):
        path = git_repositories.repository_path(settings.data_dir, project_id)
        (present if path.is_dir() else missing).append((project_id, path))
    watch.start(f"Git repositories ({len(present)})")
    for project_id, path in present:
        git_copies.back_up(writer, path, project_id, scratch)
    return len(present), [project_id for project_id, _path in missing]


def _artifacts(writer: BackupWriter, settings: Settings, contents: Contents, watch: Progress) -> int:
    """The Studio repository's releases the store knows, and every published hotfix package;
    how many package files."""
    studio = maven_repository.studio_root(settings.data_dir)
    hotfix = maven_repository.hotfix_root(settings.data_dir)
    studio_files = list(_studio_files(studio, contents))
    package_files = sorted(_published_files(hotfix))
    files = studio_files + package_files
    watch.start(f"Maven and package files ({len(files)})", sum(path.stat().st_size for path in files))
    for path in files:
        writer.add(path.relative_to(settings.data_dir).as_posix(), read_file_chunks(path), kind="file")
    return len(package_files)


def _studio_files(root: Path, contents: Contents) -> Iterator[Path]:
    artifact_dirs: set[Path] = set()
    for project_id, version in sorted(contents.releases):
        project = Project(id=project_id, group_id=contents.projects.get(project_id, ""))
        for coordinates in releases.published_at(project, version):
            artifact_dirs.add(root / coordinates.artifact_dir)
            yield from _files_of_version(root, coordinates)
    for artifact_dir in sorted(artifact_dirs):
        yield from sorted(path for path in artifact_dir.glob("maven-metadata.xml*") if path.is_file())


def _files_of_version(root: Path, coordinates: Coordinates) -> list[Path]:
    folder = root / coordinates.artifact_dir / coordinates.version
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))


def _published_files(root: Path) -> Iterator[Path]:
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            path = Path(folder) / name
            if not name.startswith(".") and path.is_file() and not path.is_symlink():
                yield path


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
