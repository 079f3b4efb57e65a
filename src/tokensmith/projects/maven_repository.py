"""Maven 2 repositories on disk: publishing artifacts, their checksums and metadata, and
resolving a request path to a file without ever leaving the repository's root.

Two repositories live under ``DATA_DIR/maven``: ``studio`` (project releases) and, under
``DATA_DIR/packages``, ``hotfix`` (packages for registered instances).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

from sqlalchemy.orm import Session

from tokensmith.errors import Conflict, InvalidInput, NotFound
from tokensmith.store.database import transaction_lock


def studio_root(data_dir: Path) -> Path:
    """The Studio repository: project releases."""
    return data_dir / "maven" / "studio"


def hotfix_root(data_dir: Path) -> Path:
    """The package (hotfix) repository: packages for registered instances."""
    return data_dir / "packages" / "hotfix"


CHECKSUMS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")
VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([A-Za-z0-9_.\-]+))?$")
MAX_PATH_LENGTH = 1024


@dataclass(frozen=True)
class Coordinates:
    group_id: str
    artifact_id: str
    version: str

    @classmethod
    def parse(cls, text: str) -> Coordinates:
        parts = text.split(":")
        if len(parts) != 3 or not all(parts):
            raise InvalidInput(f"Maven coordinates are GROUP:ARTIFACT:VERSION, not {text!r}.")
        group_id, artifact_id, version = parts
        for part in (*group_id.split("."), artifact_id, version):
            if not SEGMENT.match(part) or part in (".", ".."):
                raise InvalidInput(f"{text!r} has a part Maven cannot use: {part!r}.")
        return cls(group_id, artifact_id, version)

    def __str__(self) -> str:
        return f"{self.group_id}:{self.artifact_id}:{self.version}"

    @property
    def artifact_dir(self) -> Path:
        return Path(*self.group_id.split("."), self.artifact_id)

    def file_name(self, extension: str) -> str:
        return f"{self.artifact_id}-{self.version}.{extension}"


def pom(coordinates: Coordinates, *, packaging: str = "jar", name: str | None = None) -> bytes:
    """A minimal pom for an artifact without dependencies."""
    named = f"  <name>{escape(name)}</name>\n" if name else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        f"  <groupId>{escape(coordinates.group_id)}</groupId>\n"
        f"  <artifactId>{escape(coordinates.artifact_id)}</artifactId>\n"
        f"  <version>{escape(coordinates.version)}</version>\n"
        f"  <packaging>{escape(packaging)}</packaging>\n"
        f"{named}</project>\n"
    ).encode()


def checksum_files(path: Path) -> None:
    """Write FILE.md5, .sha1, .sha256 and .sha512 beside FILE, as Maven expects them."""
    content = path.read_bytes()
    for name, algorithm in CHECKSUMS.items():
        path.with_name(f"{path.name}.{name}").write_text(algorithm(content).hexdigest())


def publish(session: Session, root: Path, coordinates: Coordinates, files: dict[str, bytes]) -> Path:
    """Publish ``{extension: content}`` for one version, all or nothing.

    The version's folder is assembled aside and renamed into place, so a reader sees all of
    its files or none; a version already there is a Conflict. Publishers of one artifact take
    turns on a lock in the store, held until ``session``'s transaction ends: instances on
    several hosts share the repository's folder (a network filesystem, where file locks are
    not to be trusted), and two of them rewriting ``maven-metadata.xml`` at once would each
    drop the other's version from it.
    """
    artifact_dir = root / coordinates.artifact_dir
    version_dir = artifact_dir / coordinates.version
    transaction_lock(session, publishing_lock(root, coordinates))
    artifact_dir.mkdir(parents=True, exist_ok=True)
    if version_dir.exists():
        raise Conflict(f"{coordinates} is already published.")
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=artifact_dir))
    try:
        for extension, content in files.items():
            path = staging / coordinates.file_name(extension)
            path.write_bytes(content)
            checksum_files(path)
        staging.chmod(0o755)
        os.rename(staging, version_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_metadata(artifact_dir, coordinates)
    return version_dir


def publishing_lock(root: Path, coordinates: Coordinates) -> str:
    """The name of the lock the publishers of one artifact (any version) take turns on."""
    return f"maven {root.parent.name}/{root.name} {coordinates.group_id}:{coordinates.artifact_id}"


def versions(root: Path, coordinates_dir: Path) -> list[str]:
    artifact_dir = root / coordinates_dir
    if not artifact_dir.is_dir():
        return []
    return sorted(
        (entry.name for entry in artifact_dir.iterdir() if entry.is_dir() and not entry.name.startswith(".")),
        key=version_key,
    )


def version_key(version: str) -> tuple[int, int, int, int, str]:
    """Maven-like order: numbers numerically, a qualified version before the plain one."""
    match = VERSION.match(version)
    if not match:
        return (-1, -1, -1, 0, version)
    major, minor, patch, qualifier = match.groups()
    return (int(major), int(minor), int(patch), 0 if qualifier else 1, qualifier or "")


def write_metadata(artifact_dir: Path, coordinates: Coordinates) -> None:
    """``maven-metadata.xml`` and its checksums, from the versions in ``artifact_dir`` (a publish,
    a restore); none when there is no version."""
    known = sorted(
        (d.name for d in artifact_dir.iterdir() if d.is_dir() and not d.name.startswith(".")), key=version_key
    )
    if not known:
        for stale in artifact_dir.glob("maven-metadata.xml*"):
            stale.unlink()
        return
    releases = [v for v in known if (match := VERSION.match(v)) and not match.group(4)] or known
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    listed = "\n".join(f"      <version>{escape(v)}</version>" for v in known)
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<metadata>\n'
        f"  <groupId>{escape(coordinates.group_id)}</groupId>\n"
        f"  <artifactId>{escape(coordinates.artifact_id)}</artifactId>\n"
        "  <versioning>\n"
        f"    <latest>{escape(known[-1])}</latest>\n"
        f"    <release>{escape(releases[-1])}</release>\n"
        f"    <versions>\n{listed}\n    </versions>\n"
        f"    <lastUpdated>{stamp}</lastUpdated>\n"
        "  </versioning>\n</metadata>\n"
    )
    target = artifact_dir / "maven-metadata.xml"
    temporary = artifact_dir / ".maven-metadata.xml.tmp"
    temporary.write_text(xml)
    checksum_files(temporary)
    for name in CHECKSUMS:  # checksums first, then the file: a reader never sees a stale pair
        os.replace(artifact_dir / f"{temporary.name}.{name}", artifact_dir / f"maven-metadata.xml.{name}")
    os.replace(temporary, target)


def split_path(path: str) -> list[str]:
    """A request path as safe segments; NotFound for anything that could leave the root."""
    if len(path) > MAX_PATH_LENGTH or "\x00" in path or "\\" in path:
        raise NotFound("No such file in this repository.")
    segments = [segment for segment in path.split("/") if segment]
    if not segments or any(not SEGMENT.match(segment) or segment in (".", "..") for segment in segments):
        raise NotFound("No such file in this repository.")
    return segments


def resolve(root: Path, segments: list[str]) -> Path:
    """The file at ``segments`` under ``root``; NotFound when missing or outside it."""
    root = root.resolve()
    path = root.joinpath(*segments).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound("No such file in this repository.")
    return path


def owner_of(segments: list[str]) -> tuple[str, str] | None:
    """``(groupId, artifactId)`` of a request path in Maven 2 layout, or None."""
    name = segments[-1]
    if name.startswith("maven-metadata.xml") and len(segments) >= 3:
        return ".".join(segments[:-2]), segments[-2]
    if len(segments) >= 4:
        return ".".join(segments[:-3]), segments[-3]
    return None
