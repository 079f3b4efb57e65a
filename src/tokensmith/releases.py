"""Studio releases: a revision of a project's repository, versioned, packaged as a jar with a
pom, and published to the Studio Maven repository.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tokensmith import audit, maven_repository, projects, repositories
from tokensmith.clock import utcnow
from tokensmith.errors import Conflict, InvalidInput
from tokensmith.maven_repository import VERSION, Coordinates, version_key
from tokensmith.models import Project, Release

BUMPS = {"MAJOR": 0, "MINOR": 1, "PATCH": 2}
FIRST = {"MAJOR": "1.0.0", "MINOR": "0.1.0", "PATCH": "0.0.1"}
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/\-]{0,199}$")


@dataclass(frozen=True)
class Published:
    version: str
    bundle_symbolic_name: str
    maven_coordinates: str


def bundle_symbolic_name(project_id: str) -> str:
    return f"studio.extensions.{project_id}"


def released_versions(session: Session, project_id: str) -> list[str]:
    found = session.scalars(select(Release.version).where(Release.project_id == project_id)).all()
    return sorted(found, key=version_key)


def next_version(version_name: str, existing: list[str]) -> str:
    """``versionName`` as asked: an explicit ``M.m.p[-q]``, or MAJOR/MINOR/PATCH of the latest."""
    if version_name in BUMPS:
        valid = [v for v in existing if VERSION.match(v)]
        if not valid:
            return FIRST[version_name]
        *parts, qualifier = VERSION.match(max(valid, key=version_key)).groups()
        numbers = [int(n) for n in parts]
        position = BUMPS[version_name]
        # As npm does: the bump that a pre-release (2.0.0-rc1) was heading to finalises it.
        finalises = qualifier is not None and not any(numbers[position + 1:])
        if not finalises:
            numbers[position] += 1
            numbers[position + 1:] = [0] * (2 - position)
        return ".".join(map(str, numbers))
    if len(version_name) > 100 or not VERSION.match(version_name):
        raise InvalidInput(
            f"{version_name!r} is not a version: use M.m.p or M.m.p-qualifier (like 1.2.0 or "
            "1.2.0-rc1), or MAJOR, MINOR or PATCH."
        )
    return version_name


def resolve_revision(repository: Path, revision: str) -> str:
    if not REVISION.match(revision) or ".." in revision:
        raise InvalidInput(f"{revision[:100]!r} is not a branch, tag or commit of this project.")
    result = subprocess.run(
        [repositories.git_executable(), "--git-dir", str(repository), "rev-parse", "--verify", "--quiet",
         "--end-of-options", f"{revision}^{{commit}}"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise InvalidInput(f"{revision!r} is not a branch, tag or commit of this project.")
    return result.stdout.strip()


def build_jar(repository: Path, commit: str, project_id: str, version: str) -> bytes:
    """The project tree at ``commit`` as a zip (git archive), with an OSGi manifest."""
    manifest = (
        "Manifest-Version: 1.0\n"
        f"Bundle-SymbolicName: {bundle_symbolic_name(project_id)}\n"
        f"Bundle-Version: {version.replace('-', '.', 1)}\n"
        f"Implementation-Version: {version}\n\n"
    )
    result = subprocess.run(
        [repositories.git_executable(), "--git-dir", str(repository), "-c", "core.quotePath=false", "archive",
         "--format=zip", f"--add-virtual-file=META-INF/MANIFEST.MF:{manifest}", commit],
        capture_output=True,
    )
    if result.returncode != 0:  # git before 2.35 has no --add-virtual-file
        result = subprocess.run(
            [repositories.git_executable(), "--git-dir", str(repository), "archive", "--format=zip", commit],
            capture_output=True, check=True,
        )
    return result.stdout


def release(
    session: Session, data_dir: Path, project_id: str, user_id: int, *, revision: str, version_name: str,
    actor: str,
) -> Published:
    """Release a revision: 409 when the version exists, 422 for an unknown revision or a bad version."""
    project: Project = projects.require_role(session, project_id, user_id, "write")
    repository = repositories.repository_path(data_dir, project.id)
    commit = resolve_revision(repository, revision)
    version = next_version(version_name, released_versions(session, project.id))
    try:
        with session.begin_nested():  # concurrent releases of one version: exactly one row wins
            session.add(Release(project_id=project.id, version=version, revision=commit,
                                created_at=utcnow(), created_by=user_id))
    except IntegrityError:
        raise Conflict(f"{project.id} {version} is already released.") from None
    coordinates = Coordinates(project.group_id, project.id, version)
    maven_repository.publish(session, maven_repository.studio_root(data_dir), coordinates, {
        "jar": build_jar(repository, commit, project.id, version),
        "pom": maven_repository.pom(coordinates, name=bundle_symbolic_name(project.id)),
    })
    audit.record(session, "release.published", actor=actor, user_id=user_id, project=project.id,
                 version=version, revision=commit)
    return Published(version, bundle_symbolic_name(project.id), str(coordinates))
