"""The data dir (``TOKENSMITH_DATA_DIR``): the server's private folder.

It holds the secret keys, the SQLite store, the Git repositories and the Maven artifacts, so it
is made readable by the server's own user only (0700), and the files that hold secrets or the
store are created 0600 whatever the umask. SQLite gives its ``-wal`` and ``-shm`` files the mode
of the database file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def ensure(path: Path) -> Path:
    """The folder, created 0700 (with its parents) when it does not exist yet."""
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process made it first
            path.mkdir(mode=DIR_MODE)
            path.chmod(DIR_MODE)  # mkdir's mode passes through the umask
    return path


def create_private_file(path: Path) -> bool:
    """Create an empty file readable by its owner only; False when it already existed."""
    ensure(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    return True
