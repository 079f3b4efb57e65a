"""Studio releases: a revision of a project's repository, versioned, packaged as a jar with a
pom, and published to the Studio Maven repository.

Each release is published twice in that one repository: at the project's own coordinates,
``{groupId}:{project}:{version}``, and at the reference's, ``nuxeo-studio:{project}:{version}``,
where poms and ``settings.xml`` files written for the reference look for it. Each copy has its
own pom, checksums and ``maven-metadata.xml``, naming its own groupId: Maven checks them.
"""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.clock import utcnow
from tokensmith.errors import Conflict, InvalidInput
from tokensmith.projects import catalog, git_repositories, maven_repository
from tokensmith.projects.maven_repository import VERSION, Coordinates, version_key
from tokensmith.store.models import Project, Release

log = logging.getLogger("tokensmith.releases")

# The groupId the reference publishes every Studio project's releases under.
REFERENCE_GROUP_ID = "nuxeo-studio"
# The reference's version of a project's workspace, which it names before any release.
WORKSPACE_VERSION = "0.0.0-SNAPSHOT"
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
        valid = [match for version in existing if (match := VERSION.match(version))]
        if not valid:
            return FIRST[version_name]
        *parts, qualifier = max(valid, key=lambda match: version_key(match.string)).groups()
        numbers = [int(n) for n in parts]
        position = BUMPS[version_name]
        # As npm does: the bump that a pre-release (2.0.0-rc1) was heading to finalises it.
        finalises = qualifier is not None and not any(numbers[position + 1 :])
        if not finalises:
            numbers[position] += 1
            numbers[position + 1 :] = [0] * (2 - position)
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
        [
            git_repositories.git_executable(),
            "--git-dir",
            str(repository),
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            f"{revision}^{{commit}}",
        ],
        capture_output=True,
        text=True,
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
        [
            git_repositories.git_executable(),
            "--git-dir",
            str(repository),
            "-c",
            "core.quotePath=false",
            "archive",
            "--format=zip",
            f"--add-virtual-file=META-INF/MANIFEST.MF:{manifest}",
            commit,
        ],
        capture_output=True,
    )
    if result.returncode != 0:  # git before 2.35 has no --add-virtual-file
        result = subprocess.run(
            [git_repositories.git_executable(), "--git-dir", str(repository), "archive", "--format=zip", commit],
            capture_output=True,
            check=True,
        )
    return result.stdout


def release(
    session: Session,
    data_dir: Path,
    project_id: str,
    user_id: int,
    *,
    revision: str,
    version_name: str,
    actor: str,
) -> Published:
    """Release a revision: 409 when the version exists, 422 for an unknown revision or a bad version."""
    project: Project = catalog.require_role(session, project_id, user_id, "write")
    repository = git_repositories.repository_path(data_dir, project.id)
    commit = resolve_revision(repository, revision)
    version = next_version(version_name, released_versions(session, project.id))
    try:
        with session.begin_nested():  # concurrent releases of one version: exactly one row wins
            session.add(
                Release(
                    project_id=project.id, version=version, revision=commit, created_at=utcnow(), created_by=user_id
                )
            )
    except IntegrityError:
        raise Conflict(f"{project.id} {version} is already released.") from None
    jar = build_jar(repository, commit, project.id, version)
    for coordinates in published_at(project, version):
        _publish(session, data_dir, coordinates, jar)
    trail.record(
        session,
        AuditAction.RELEASE_PUBLISHED,
        actor=actor,
        user_id=user_id,
        project=project.id,
        version=version,
        revision=commit,
    )
    return Published(version, bundle_symbolic_name(project.id), str(Coordinates(project.group_id, project.id, version)))


def published_at(project: Project, version: str) -> list[Coordinates]:
    """Where a release of ``project`` is found: its own coordinates, then the reference's."""
    own = Coordinates(project.group_id, project.id, version)
    return [own] if project.group_id == REFERENCE_GROUP_ID else [own, reference_coordinates(project.id, version)]


def reference_coordinates(project_id: str, version: str) -> Coordinates:
    return Coordinates(REFERENCE_GROUP_ID, project_id, version)


def group_ids(project: Project) -> tuple[str, ...]:
    """The groupIds the project's releases are published under."""
    return (project.group_id, REFERENCE_GROUP_ID)


def _publish(session: Session, data_dir: Path, coordinates: Coordinates, jar: bytes) -> None:
    maven_repository.publish(
        session,
        maven_repository.studio_root(data_dir),
        coordinates,
        {
            "jar": jar,
            "pom": maven_repository.pom(coordinates, name=bundle_symbolic_name(coordinates.artifact_id)),
        },
    )


def latest_release(session: Session, project_id: str) -> str | None:
    """The project's latest version, by Maven's order; None before its first release."""
    found = released_versions(session, project_id)
    return found[-1] if found else None


def publish_reference_copies(session: Session, data_dir: Path) -> int:
    """Publish at the reference's coordinates every release that is only at its project's own
    (released before both were published): ``tokensmith serve`` runs this at each start. The jar
    is the one published then. Returns how many were published."""
    root = maven_repository.studio_root(data_dir)
    published = 0
    for release_row, project in session.execute(
        select(Release, Project).join(Project, Project.id == Release.project_id)
    ):
        if project.group_id == REFERENCE_GROUP_ID:
            continue
        reference = reference_coordinates(project.id, release_row.version)
        if (root / reference.artifact_dir / reference.version).exists():
            continue
        own = Coordinates(project.group_id, project.id, release_row.version)
        jar = root / own.artifact_dir / own.version / own.file_name("jar")
        if not jar.is_file():
            log.warning("release %s has no jar at %s: not published at %s", own, jar, reference)
            continue
        try:
            _publish(session, data_dir, reference, jar.read_bytes())
        except Conflict:  # another instance starting at the same time published it
            continue
        published += 1
    return published
