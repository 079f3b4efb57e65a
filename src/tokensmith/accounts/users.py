"""Users and their passwords.

A password only ever signs in to the web site (and, under the ``warn`` policy, still opens
the API for a while). Passwords are hashed with argon2id (passwords.py); a user may have none at all.
"""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tokensmith.accounts import passwords
from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction, RevokeReason
from tokensmith.clock import utcnow
from tokensmith.errors import (
    AccountDisabled,
    Conflict,
    InvalidInput,
    NotFound,
    PasswordIncorrect,
)
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.store.models import BrowserSession, User
from tokensmith.tokens.lifecycle import revoke_all_tokens

# '@' because identity providers' logins are often email addresses (Okta's are); never ':'
# (it ends a Basic username) nor '/' (git and Maven URLs).
USERNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._@-]{0,62}[A-Za-z0-9])?$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


def validate_username(username: str) -> str:
    username = username.strip()
    if not USERNAME.match(username):
        raise InvalidInput(
            "A username is 1 to 64 letters, digits, '.', '_', '@' or '-', starting and ending with a letter or digit."
        )
    return username


def validate_email(email: str) -> str:
    email = email.strip()
    if len(email) > 254 or not EMAIL.match(email):
        raise InvalidInput(f"{email!r} is not an email address.")
    return email


def validate_password(password: str, token_prefix: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"A password has at most {MAX_PASSWORD_LENGTH} characters.")
    if any(unicodedata.category(char) == "Cc" for char in password):
        raise InvalidInput("A password cannot contain control characters.")
    if password.startswith(token_prefix):
        # Such a password would be read as a mistyped token by every client.
        raise InvalidInput(f"A password cannot start with '{token_prefix}', the token prefix.")
    return password


def validate_display_name(name: str | None) -> str | None:
    if name is None or not name.strip():
        return None
    name = name.strip()
    if len(name) > 200 or any(unicodedata.category(char) == "Cc" for char in name):
        raise InvalidInput("A display name is at most 200 characters, without control characters.")
    return name


def find_user(session: Session, username: str) -> User | None:
    query = select(User).where(func.lower(User.username) == username.strip().lower())
    return session.scalars(query).one_or_none()


def find_user_by_email(session: Session, email: str) -> User | None:
    query = select(User).where(func.lower(User.email) == email.strip().lower()).limit(1)
    return session.scalars(query).first()


def get_user(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"There is no user named {username!r}.")
    return user


def create_user(
    session: Session,
    username: str,
    email: str,
    *,
    password: str | None = None,
    is_admin: bool = False,
    token_prefix: str = "tks_",
    display_name: str | None = None,
    origin: str = "local",
    actor: str,
) -> User:
    username = validate_username(username)
    email = validate_email(email)
    display_name = validate_display_name(display_name)
    if find_user(session, username) is not None:
        raise Conflict(f"A user named {username!r} already exists.")
    password_hash = None
    if password is not None:
        password_hash = passwords.hashed(validate_password(password, token_prefix))
    user = User(
        username=username,
        email=email,
        password_hash=password_hash,
        is_admin=is_admin,
        is_active=True,
        created_at=utcnow(),
        origin=origin,
        display_name=display_name,
    )
    session.add(user)
    session.flush()
    trail.record(session, AuditAction.USER_CREATED, actor=actor, user_id=user.id, admin=is_admin, origin=origin)
    return user


def list_users(session: Session) -> list[User]:
    """Every account, removed ones (kept for the audit trail) included, by username."""
    return list(session.scalars(select(User).order_by(func.lower(User.username))))


def set_password(session: Session, user: User, password: str, *, token_prefix: str, actor: str) -> None:
    """Give an account a new password (an administrator resetting a lost one). Every browser
    session of the account ends: whoever held one signs in again, with the new password."""
    trusted_publishers.not_for_ci(user, "a password")
    user.password_hash = passwords.hashed(validate_password(password, token_prefix))
    session.execute(delete(BrowserSession).where(BrowserSession.user_id == user.id))
    trail.record(session, AuditAction.USER_PASSWORD_SET, actor=actor, user_id=user.id)


def check_password(session: Session, username: str, password: str) -> User:
    """The user whose password this is; PasswordIncorrect otherwise, in the same time."""
    user = find_user(session, username)
    stored = user.password_hash if user is not None and user.password_hash else passwords.unknown_account_hash()
    if not passwords.matches(stored, password):
        raise PasswordIncorrect("Incorrect username or password.")
    if user is None or not user.password_hash:
        raise PasswordIncorrect("Incorrect username or password.")
    if not user.is_active:
        raise AccountDisabled("This account is disabled. Ask an administrator to enable it.")
    if passwords.outdated(stored):
        user.password_hash = passwords.hashed(password)
    return user


def disable_user(session: Session, user: User, *, actor: str) -> int:
    """Disable the account: its sessions end and its tokens are revoked, at once.

    Returns how many live tokens were revoked. Re-enabling an account (when that exists)
    does not bring them back.
    """
    if user.is_active:
        user.is_active = False
        user.disabled_at = utcnow()
        trail.record(session, AuditAction.USER_DISABLED, actor=actor, user_id=user.id)
    session.execute(delete(BrowserSession).where(BrowserSession.user_id == user.id))
    return revoke_all_tokens(session, user.id, actor=actor, reason=RevokeReason.ACCOUNT_DISABLED)


def enable_user(session: Session, user: User, *, actor: str) -> None:
    """Let a disabled account sign in again. Its revoked tokens stay revoked: the person
    creates new ones."""
    if not user.is_active:
        user.is_active = True
        user.disabled_at = None
        trail.record(session, AuditAction.USER_ENABLED, actor=actor, user_id=user.id)
