"""Whose account a person signing in at the identity provider gets.

A person is known by the provider's issuer and subject (``sub``), never by an email address
alone: emails get reassigned. The first sign-in creates the account from the claims
(``preferred_username``, ``email``, ``name``), or takes over the account the same provider
provisioned over SCIM for that username. An existing account made any other way is never
merged silently: whoever controls a name at the provider would get that account's tokens.
The person is told how an administrator links the two instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from tokensmith.accounts import users
from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.clock import utcnow
from tokensmith.errors import InvalidInput, SignInRejected
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.store.models import User

if TYPE_CHECKING:  # the provider's client (Authlib, httpx) is the web sign-in's, not `users link`'s
    from tokensmith.accounts.identity_provider import VerifiedIdentity

ACTOR = "identity provider"


def find_linked_user(session: Session, issuer: str, subject: str) -> User | None:
    query = select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject)
    return session.scalars(query).one_or_none()


def account_for(session: Session, identity: VerifiedIdentity, *, provider_name: str) -> User:
    """The account of the person the provider vouched for, created on their first sign-in."""
    user = find_linked_user(session, identity.issuer, identity.subject)
    if user is None:
        user = _first_sign_in(session, identity, provider_name)
    else:
        _refresh_profile(session, user, identity)
    if not user.is_active or user.removed_at is not None:
        raise SignInRejected(
            f"Your Tokensmith account {user.username!r} is disabled. Ask an administrator to "
            "enable it (at the identity provider when it provisions accounts)."
        )
    return user


def link(session: Session, user: User, *, issuer: str, subject: str, actor: str) -> None:
    """Tie an existing account to a provider identity (an administrator's decision)."""
    trusted_publishers.not_for_ci(user, "signing in through an identity provider")
    holder = find_linked_user(session, issuer, subject)
    if holder is not None and holder.id != user.id:
        raise InvalidInput(f"That identity is already linked to the account {holder.username!r}.")
    user.oidc_issuer, user.oidc_subject = issuer, subject
    user.updated_at = utcnow()
    trail.record(session, AuditAction.USER_LINKED, actor=actor, user_id=user.id, issuer=issuer, subject=subject)


def _first_sign_in(session: Session, identity: VerifiedIdentity, provider_name: str) -> User:
    username = _username_for(identity, provider_name)
    email = _email_for(identity, provider_name)
    existing = users.find_user(session, username)
    if existing is not None:
        if existing.origin == "scim" and existing.oidc_subject is None and existing.removed_at is None:
            # Provisioned over SCIM by this same provider, waiting for its first sign-in.
            link(session, existing, issuer=identity.issuer, subject=identity.subject, actor=ACTOR)
            _refresh_profile(session, existing, identity)
            return existing
        raise SignInRejected(
            _collision(
                f"An account named {existing.username!r} already exists in Tokensmith",
                provider_name,
                identity,
                username=existing.username,
            )
        )
    if users.find_user_by_email(session, email) is not None:
        raise SignInRejected(
            _collision(
                f"An account with the email address {email} already exists in Tokensmith",
                provider_name,
                identity,
                username=None,
            )
        )
    user = users.create_user(
        session,
        username,
        email,
        display_name=_display_name(identity),
        origin="oidc",
        actor=ACTOR,
    )
    link(session, user, issuer=identity.issuer, subject=identity.subject, actor=ACTOR)
    return user


def _collision(what: str, provider_name: str, identity: VerifiedIdentity, *, username: str | None) -> str:
    return (
        f"{what}, and it is not linked to your {provider_name} identity. It was not merged "
        "automatically, because that would hand the existing account and its tokens to whoever "
        f"signs in at {provider_name} with that name. If the account is yours, ask an "
        "administrator to link it by running on the server: "
        f"tokensmith users link {username or 'USERNAME'} --subject {identity.subject}. "
        "Then sign in again."
    )


def _username_for(identity: VerifiedIdentity, provider_name: str) -> str:
    for candidate in (identity.preferred_username, identity.email):
        if candidate:
            try:
                return users.validate_username(candidate)
            except InvalidInput:
                continue
    raise SignInRejected(
        f"{provider_name} did not send a login name Tokensmith can use as a username "
        "(preferred_username or email: up to 64 letters, digits, '.', '_', '@' or '-'). "
        "Ask an administrator to create your account and link it with "
        f"tokensmith users link USERNAME --subject {identity.subject}."
    )


def _email_for(identity: VerifiedIdentity, provider_name: str) -> str:
    try:
        return users.validate_email(identity.email or "")
    except InvalidInput:
        raise SignInRejected(
            f"{provider_name} did not share a valid email address. The administrator of "
            f"{provider_name} must allow the 'email' scope for Tokensmith."
        ) from None


def _display_name(identity: VerifiedIdentity) -> str | None:
    try:
        return users.validate_display_name(identity.name)
    except InvalidInput:
        return None


def _refresh_profile(session: Session, user: User, identity: VerifiedIdentity) -> None:
    """The provider owns the person's email and name: take changes over at each sign-in."""
    changed = False
    display_name = _display_name(identity)
    if display_name and display_name != user.display_name:
        user.display_name, changed = display_name, True
    try:
        email = users.validate_email(identity.email or "")
    except InvalidInput:
        email = None
    if email and email != user.email:
        user.email, changed = email, True
    if changed:
        user.updated_at = utcnow()
