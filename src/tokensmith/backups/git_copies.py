"""The Git repositories' part of a backup: each one as a bundle, its config and its reflogs.

Copying a repository's folder while people push could copy a ref that points at objects not yet
copied, or miss objects that ``git gc --auto`` (which receive-pack runs after a push) moved from
loose files into a new pack between two reads. ``git bundle create --all`` instead reads the refs
once and packs every object they reach through git's own object store, which follows a pack
being rewritten: whatever the bundle names, it holds. Restoring fetches it into a new bare
repository (index-pack checks every object, and fetch checks that every ref's history is
whole).

The reflogs (who pushed what, when: the repositories keep them) are copied *before* the bundle
is made, and the bundle is made with ``--reflog``, so every object a copied reflog names is in
it; a line naming one that is not (``git gc`` expired it meanwhile) is dropped on restore, so
that ``git fsck --full`` finds nothing to say.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tokensmith.backups.archive import CHUNK, BackupWriter, Member, read_file_chunks
from tokensmith.errors import BackupFailed, BackupUnusable
from tokensmith.projects import git_repositories

NO_OBJECT = "0" * 40


def _git(repository: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [git_repositories.git_executable(), "--git-dir", str(repository), *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=600,
    )


def back_up(writer: BackupWriter, repository: Path, project_id: str, scratch: Path) -> None:
    """The members of one repository: ``git/ID.git`` (the bundle), its config, its reflogs."""
    name = f"git/{project_id}.git"
    head = (
        _git(repository, "symbolic-ref", "-q", "HEAD").stdout.strip() or f"refs/heads/{git_repositories.DEFAULT_BRANCH}"
    )
    logs = scratch / "logs"
    if (repository / "logs").is_dir():
        shutil.copytree(repository / "logs", logs, symlinks=False)  # before the bundle: see the module's doc
    try:
        empty = not _git(repository, "for-each-ref", "--count=1").stdout.strip()
        writer.add(name, [] if empty else _bundle(repository), kind="git", head=head, empty=empty)
        writer.add(f"{name}/config", read_file_chunks(repository / "config"))
        for log in sorted(path for path in logs.rglob("*") if path.is_file()) if logs.is_dir() else []:
            writer.add(f"{name}/logs/{log.relative_to(logs).as_posix()}", read_file_chunks(log))
    finally:
        shutil.rmtree(logs, ignore_errors=True)


def _bundle(repository: Path) -> Iterator[bytes]:
    command = [
        git_repositories.git_executable(),
        "--git-dir",
        str(repository),
        "bundle",
        "create",
        "--quiet",
        "-",
        "--all",
        "--reflog",
    ]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
        try:
            assert process.stdout is not None
            while chunk := process.stdout.read(CHUNK):
                yield chunk
            if process.wait() != 0:
                errors.seek(0)
                said = errors.read().decode(errors="replace").strip().splitlines()
                raise BackupFailed(f"git bundle failed on {repository.name}: {said[-1] if said else 'no message'}")
        finally:
            if process.poll() is None:  # its reader failed (a full disk): ended by its own id
                process.kill()
            process.wait()
            assert process.stdout is not None
            process.stdout.close()


class Restorer:
    """Puts repositories back from their members, into ``root`` (a staging folder's ``git``)."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root, self.scratch = root, scratch
        self.restored: list[Path] = []

    def bundle(self, project_id: str, member: Member) -> None:
        repository = self.root / f"{project_id}.git"
        git_repositories.create_bare_repository(repository)
        bundle = self.scratch / f"{project_id}.bundle"
        with bundle.open("wb") as handle:
            for chunk in member.chunks():
                handle.write(chunk)
        try:
            if not member.meta.get("empty"):
                fetched = _git(
                    repository, "-c", "core.logAllRefUpdates=false", "fetch", "--quiet", str(bundle), "+refs/*:refs/*"
                )
                if fetched.returncode != 0:
                    raise BackupUnusable(
                        f"The repository of {project_id} in the backup cannot be read back: {_last(fetched)}"
                    )
            head = str(member.meta.get("head", ""))
            if head.startswith("refs/heads/"):
                _git(repository, "symbolic-ref", "HEAD", head)
        finally:
            bundle.unlink()
        self.restored.append(repository)

    def file(self, project_id: str, relative: str, member: Member) -> None:
        """The repository's config, or one of its reflogs."""
        path = self.root / f"{project_id}.git" / relative
        if not (self.root / f"{project_id}.git").is_dir():
            raise BackupUnusable(f"The backup is damaged: {member.name} comes before its repository.")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            for chunk in member.chunks():
                handle.write(chunk)

    def finish(self) -> None:
        """Reflog lines naming an object the bundle did not hold are dropped (see the module's doc)."""
        for repository in self.restored:
            for log in (path for path in (repository / "logs").rglob("*") if path.is_file()):
                _keep_known_entries(repository, log)


def _keep_known_entries(repository: Path, log: Path) -> None:
    lines = log.read_text(errors="surrogateescape").splitlines(keepends=True)
    named = {word for line in lines for word in line.split(" ", 2)[:2] if len(word) == 40 and word != NO_OBJECT}
    if not named:
        return
    checked = _git(repository, "cat-file", "--batch-check=%(objectname)", input="".join(f"{sha}\n" for sha in named))
    present = set(checked.stdout.split())
    kept = [line for line in lines if all(word in present or word == NO_OBJECT for word in line.split(" ", 2)[:2])]
    if len(kept) != len(lines):
        log.write_text("".join(kept), errors="surrogateescape")


def _last(result: subprocess.CompletedProcess[str]) -> str:
    said = result.stderr.strip().splitlines()
    return said[-1][:300] if said else "git said nothing"
