"""Projects (Studio projects), their members and roles.

A project is visible only to its members; to anybody else it does not exist, and every
answer says so in the same words whether it exists or not.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.clock import utcnow
from tokensmith.errors import Conflict, InvalidInput, NotPermitted, ProjectNotFound
from tokensmith.projects import git_repositories
from tokensmith.store.models import Project, ProjectMember

ROLES = ("read", "write")
PROJECT_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
GROUP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")


def validate_project_id(project_id: str) -> str:
    if not PROJECT_ID.match(project_id):
        raise InvalidInput(
            "A project id is 1 to 64 lowercase letters, digits and '-', starting and ending "
            "with a letter or digit (like 'acme-contracts')."
        )
    return project_id


def validate_group_id(group_id: str) -> str:
    if len(group_id) > 200 or not GROUP_ID.match(group_id):
        raise InvalidInput(f"{group_id!r} is not a Maven groupId (like 'com.acme.studio').")
    return group_id


def create_project(
    session: Session, data_dir: Path, project_id: str, group_id: str, owner_id: int, *, actor: str
) -> Project:
    """A new project with its bare repository; the owner gets write access."""
    project = Project(id=validate_project_id(project_id), group_id=validate_group_id(group_id), created_at=utcnow())
    try:
        with session.begin_nested():
            session.add(project)
            session.flush()
    except IntegrityError:
        raise Conflict(f"A project {project_id!r} already exists.") from None
    session.add(ProjectMember(project_id=project.id, user_id=owner_id, role="write"))
    git_repositories.create_bare_repository(git_repositories.repository_path(data_dir, project.id))
    trail.record(session, AuditAction.PROJECT_CREATED, actor=actor, user_id=owner_id, project=project.id)
    return project


def get_project(session: Session, project_id: str) -> Project:
    project = session.get(Project, project_id) if PROJECT_ID.match(project_id) else None
    if project is None:
        raise ProjectNotFound(project_id)
    return project


def add_member(session: Session, project_id: str, user_id: int, role: str, *, actor: str) -> ProjectMember:
    """Give a user a role on a project, or change the role they have."""
    if role not in ROLES:
        raise InvalidInput(f"A role is 'read' or 'write', not {role!r}.")
    get_project(session, project_id)
    member = session.get(ProjectMember, (project_id, user_id))
    if member is None:
        member = ProjectMember(project_id=project_id, user_id=user_id, role=role)
        session.add(member)
    member.role = role
    session.flush()
    trail.record(session, AuditAction.PROJECT_MEMBER_ADDED, actor=actor, user_id=user_id, project=project_id, role=role)
    return member


def role_of(session: Session, project_id: str, user_id: int) -> str | None:
    return session.scalars(
        select(ProjectMember.role).where(ProjectMember.project_id == project_id, ProjectMember.user_id == user_id)
    ).first()


def require_role(session: Session, project_id: str, user_id: int, needed: str) -> Project:
    """The project, if the user may act on it with ``needed`` ("read" or "write").

    Not a member, or no such project: the same NotFound. A reader who needs to write: NotPermitted.
    """
    if not PROJECT_ID.match(project_id):
        raise ProjectNotFound(project_id)
    role = role_of(session, project_id, user_id)
    if role is None:
        raise ProjectNotFound(project_id)
    if needed == "write" and role != "write":
        raise NotPermitted(
            f"You have read access to {project_id}; this needs write access. Ask a project "
            "owner to give you the write role."
        )
    return get_project(session, project_id)


def projects_of(session: Session, user_id: int) -> list[tuple[Project, str]]:
    rows = session.execute(
        select(Project, ProjectMember.role)
        .join(ProjectMember, ProjectMember.project_id == Project.id)
        .where(ProjectMember.user_id == user_id)
        .order_by(Project.id)
    ).all()
    return [(project, role) for project, role in rows]


def project_ids_of(session: Session, user_id: int) -> set[str]:
    """The ids of the projects ``user_id`` is a member of (what a token of theirs may name)."""
    return set(session.scalars(select(ProjectMember.project_id).where(ProjectMember.user_id == user_id)))


def all_projects(session: Session) -> list[tuple[Project, int]]:
    """Every project with its number of members, by id (for administrators)."""
    rows = session.execute(
        select(Project, func.count(ProjectMember.user_id))
        .outerjoin(ProjectMember, ProjectMember.project_id == Project.id)
        .group_by(Project.id)
        .order_by(Project.id)
    ).all()
    return [(project, members) for project, members in rows]
