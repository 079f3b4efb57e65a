"""The build backend of tokensmith-client (PEP 517): setuptools, run on the client's files
taken from the repository's sources, which stay where they are (src/tokensmith/).

In a checkout, setuptools runs in a temporary folder holding this folder's files and, under
``src/``, the client's files copied from ``../../src``; nothing is written into the checkout.
An sdist carries those files already (and ``PKG-INFO``): built from one, setuptools runs in it.
There is no editable install of the client: the server's (``make serve``) holds it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from setuptools import build_meta as setuptools

HERE = Path(__file__).resolve().parent
REPOSITORY_SOURCES = HERE.parents[1] / "src"
# The client: the `tokensmith` entry point, its command tree (whose server commands load only
# in the server's distribution), and tokensmith.client, which imports nothing of the server
# (tests/client/test_imports.py).
CLIENT_SOURCES = (
    "tokensmith/__init__.py",
    "tokensmith/__main__.py",
    "tokensmith/cli/__init__.py",
    "tokensmith/cli/entry.py",
    "tokensmith/cli/main.py",
    "tokensmith/client",
)
OWN_FILES = ("pyproject.toml", "README.md", "MANIFEST.in", "build_client.py")


@contextlib.contextmanager
def _project() -> Iterator[None]:
    """setuptools' working folder: an sdist's own, or a copy of this folder with the client's
    sources, removed afterwards."""
    if (HERE / "PKG-INFO").exists():
        yield
        return
    with tempfile.TemporaryDirectory(prefix="tokensmith-client-") as folder:
        root = Path(folder)
        for name in OWN_FILES:
            shutil.copy2(HERE / name, root / name)
        for source in CLIENT_SOURCES:
            origin, target = REPOSITORY_SOURCES / source, root / "src" / source
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)
        previous = os.getcwd()
        os.chdir(root)
        try:
            yield
        finally:
            os.chdir(previous)


def get_requires_for_build_wheel(config_settings=None):
    with _project():
        return setuptools.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_sdist(config_settings=None):
    with _project():
        return setuptools.get_requires_for_build_sdist(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    metadata_directory = os.path.abspath(metadata_directory)
    with _project():
        return setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    wheel_directory = os.path.abspath(wheel_directory)
    with _project():
        return setuptools.build_wheel(wheel_directory, config_settings)


def build_sdist(sdist_directory, config_settings=None):
    sdist_directory = os.path.abspath(sdist_directory)
    with _project():
        return setuptools.build_sdist(sdist_directory, config_settings)
