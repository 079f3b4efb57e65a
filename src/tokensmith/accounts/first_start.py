"""First start: an empty store gets an ``admin`` user with a generated password, and a
sample project ``demo`` owned by it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tokensmith.accounts import users
from tokensmith.config import Settings
from tokensmith.projects import catalog
from tokensmith.store.models import User

ADMIN_USERNAME = "admin"
DEMO_PROJECT = "demo"
DEMO_GROUP_ID = "com.example.studio"


@dataclass(frozen=True)
class FirstStart:
    """What the very first start made: ``admin``'s password, shown once on the console, or None
    when passwords are off (TOKENSMITH_LOCAL_LOGIN=false)."""

    password: str | None


def first_start(session: Session, settings: Settings) -> FirstStart | None:
    """Create ``admin`` and ``demo`` when there are no users at all; None on every later start.

    The password is returned once for the console and never stored in plain. With local
    sign-in turned off, ``admin`` gets no password (nobody could use it): the console says how to
    link it to a person at the identity provider, and the administrator mints tokens from the
    shell.
    """
    if session.scalars(select(User.id).limit(1)).first() is not None:
        return None
    password = _generate_password(settings.token_prefix) if settings.local_login else None
    admin = users.create_user(
        session,
        ADMIN_USERNAME,
        "admin@localhost.localdomain",
        password=password,
        is_admin=True,
        token_prefix=settings.token_prefix,
        actor="first start",
    )
    catalog.create_project(session, settings.data_dir, DEMO_PROJECT, DEMO_GROUP_ID, admin.id, actor="first start")
    return FirstStart(password)


def _generate_password(token_prefix: str) -> str:
    while True:
        password = secrets.token_urlsafe(18)
        if not password.startswith(token_prefix) and not password.startswith("-"):
            return password
