"""Bare Git repositories on disk, one per project, under ``DATA_DIR/git``.

Paths are built only from validated project ids, never from raw request text.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tokensmith.errors import ConfigurationError

DEFAULT_BRANCH = "master"


def repositories_root(data_dir: Path) -> Path:
    return (data_dir / "git").resolve()


def repository_path(data_dir: Path, project_id: str) -> Path:
    """Where a project's bare repository lives. ``project_id`` must be validated already."""
    path = repositories_root(data_dir) / f"{project_id}.git"
    if path.parent != repositories_root(data_dir):
        raise ValueError("project id escapes the repositories folder")
    return path


def git_executable() -> str:
    git = shutil.which("git")
    if git is None:
        raise ConfigurationError("git is not installed: Tokensmith serves repositories with git's own tools.")
    return git


def create_bare_repository(path: Path) -> None:
    """A bare repository ready for smart HTTP; re-running on an existing one is harmless."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [git_executable(), "init", "--quiet", "--bare", f"--initial-branch={DEFAULT_BRANCH}", str(path)],
        check=True,
        capture_output=True,
    )
    # Refs of a push are updated all together or not at all; their reflog says who pushed.
    for key, value in (("receive.atomic", "true"), ("core.logAllRefUpdates", "true")):
        subprocess.run([git_executable(), "-C", str(path), "config", key, value], check=True, capture_output=True)
