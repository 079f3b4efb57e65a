"""Who is calling: credentials in, an Identity (or the reason for refusal) out.

Non-browser clients present a token (HTTP Basic ``username:token`` or Bearer). A password is
refused there unless the password policy is ``warn``. The browser's sign-in form takes a
password and refuses a token. Every outcome is counted by reason for ``/metrics``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session

from tokensmith import metrics
from tokensmith.accounts import users
from tokensmith.accounts.throttle import SignInThrottle
from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.config import PasswordPolicy, Settings
from tokensmith.errors import (
    AddressNotAllowed,
    AuthenticationFailed,
    CredentialMalformed,
    InsufficientScope,
    PasswordIncorrect,
    PasswordRefused,
    TokenNotForSignIn,
    TokenUnknown,
)
from tokensmith.identity import Account, BasicCredentials, BearerCredentials, Credentials, Identity
from tokensmith.store.database import Connectable
from tokensmith.store.models import User
from tokensmith.store.server_keys import ServerKeys
from tokensmith.tokens import check as token_check
from tokensmith.tokens import format as token_format
from tokensmith.tokens import limits as token_limits
from tokensmith.tokens.limits import Need
from tokensmith.tokens.usage import RECORD_INLINE, UsageRecorder


class Authenticator:
    """Checks credentials against the store under one deployment's settings and keys."""

    def __init__(
        self,
        settings: Settings,
        keys: ServerKeys,
        throttle: SignInThrottle | None = None,
        usage: UsageRecorder = RECORD_INLINE,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.throttle = throttle or SignInThrottle(keys)
        self.usage = usage

    def authenticate(
        self,
        store: Connectable,
        credentials: Credentials,
        *,
        ip: str | None,
        agent: str | None,
        need: Need | None = None,
    ) -> Identity:
        """Check a non-browser client's credentials on ``store``, a connection or a session."""
        return self.check(lambda: contextlib.nullcontext(store), credentials, ip=ip, agent=agent, need=need)

    def check(
        self,
        connect: Callable[[], AbstractContextManager[Connectable | token_check.Fetched]],
        credentials: Credentials,
        *,
        ip: str | None,
        agent: str | None,
        need: Need | None = None,
    ) -> Identity:
        """Check credentials on the store ``connect()`` opens, opened only once a token's shape
        and checksum hold: a mistyped or forged token is refused without the store, even while
        the store is down (the hot path: ``connect`` takes a pooled connection).

        ``need`` is what the route declared (web/auth.py): a token is held to its limits right
        after its lookup, before its use is recorded, so a refused request is no use."""
        is_token = self.is_token(credentials)
        try:
            if is_token:
                token_format.parse(credentials.secret, self.settings.token_prefix)
            with connect() as store:
                identity = self._authenticate(store, credentials, is_token, ip=ip, agent=agent, need=need)
        except AuthenticationFailed as error:
            metrics.count_authentication("token" if is_token else "password", error.reason)
            raise self._advise(error) from None
        except (InsufficientScope, AddressNotAllowed) as error:
            metrics.count_authentication("token", error.code)
            raise
        metrics.count_authentication(identity.method, "ok")
        return identity

    def token_digests(self, credentials: Credentials) -> list[bytes] | None:
        """What a check of these credentials looks up (a digest per key version), when they
        carry a token whose shape and checksum hold; None otherwise (``check`` refuses them
        before the store)."""
        if not self.is_token(credentials):
            return None
        secret = _secret_of(credentials)
        try:
            token_format.parse(secret, self.settings.token_prefix)
        except AuthenticationFailed:
            return None
        return self.keys.all_digests(token_check.PURPOSE, secret)

    def is_token(self, credentials: Credentials) -> bool:
        """Whether the credentials carry a token (as opposed to a password)."""
        return token_format.looks_like_token(_secret_of(credentials), self.settings.token_prefix)

    def _authenticate(
        self,
        store: Connectable | token_check.Fetched,
        credentials: Credentials,
        is_token: bool,
        *,
        ip: str | None,
        agent: str | None,
        need: Need | None,
    ) -> Identity:
        secret = _secret_of(credentials)
        if is_token:
            token = token_check.verify_checksummed(store, self.keys, secret)
            claimed = credentials.username if isinstance(credentials, BasicCredentials) else ""
            if claimed and claimed.lower() != token.owner.username.lower():
                # Same words as an unknown token: a stranger learns nothing about usernames.
                error = TokenUnknown("Unknown or mistyped token for this username.")
                error.reason = "wrong_user"
                raise error
            if need is not None:
                token_limits.enforce_on(token, need, ip)
            token_check.record_use(store, token, ip=ip, agent=agent, usage=self.usage)
            return Identity(user=token.owner, method="token", token=token)
        if isinstance(credentials, BearerCredentials):
            raise CredentialMalformed("A Bearer credential must be a personal access token.")
        if self.settings.password_policy is PasswordPolicy.DENY or not self.settings.local_login:
            # Refused before the password is even checked: the answer is the same for
            # every username, so it tells nothing about which accounts exist.
            raise PasswordRefused("Passwords are not accepted here.")
        if isinstance(store, Session):
            return self._authenticate_password(store, credentials, ip=ip, agent=agent)
        if isinstance(store, token_check.Fetched):
            raise TypeError("a password is checked on a connection, not on a token's lookup")
        with Session(bind=store) as session:
            identity = self._authenticate_password(session, credentials, ip=ip, agent=agent)
            session.commit()
            return identity

    def _authenticate_password(
        self, session: Session, credentials: BasicCredentials, *, ip: str | None, agent: str | None
    ) -> Identity:
        user = self._check_password(session, credentials.username, credentials.secret, ip)
        trail.record(
            session,
            AuditAction.AUTH_PASSWORD_USED,
            actor=user.username,
            user_id=user.id,
            ip=ip,
            agent=(agent or "unknown client")[:200],
        )
        return Identity(
            user=Account.of(user),
            method="password",
            warning=(
                "Password authentication is deprecated here and will be refused. Use a personal "
                f"access token as the password instead: create one at {self.settings.tokens_page_url}"
            ),
        )

    def _check_password(self, session: Session, username: str, password: str, ip: str | None) -> User:
        self.throttle.check(session, username, ip)
        try:
            user = users.check_password(session, username, password)
        except PasswordIncorrect:
            self.throttle.failed(session, username, ip)  # committed by the caller all the same
            raise
        self.throttle.succeeded(session, username, ip)
        return user

    def sign_in(self, session: Session, username: str, password: str, *, ip: str | None) -> User:
        """The browser's sign-in form: a password, never a token."""
        try:
            if not self.settings.local_login:
                raise PasswordRefused("Passwords are turned off on this server: sign in through the identity provider.")
            if token_format.looks_like_token(password, self.settings.token_prefix):
                raise TokenNotForSignIn("A personal access token cannot sign in to the web site. Use your password.")
            user = self._check_password(session, username, password, ip)
        except AuthenticationFailed as error:
            metrics.count_authentication("sign_in", error.reason)
            raise
        metrics.count_authentication("sign_in", "ok")
        return user

    def _advise(self, error: AuthenticationFailed) -> AuthenticationFailed:
        url = self.settings.tokens_page_url
        if isinstance(error, PasswordRefused):
            error.advice = f"Use a personal access token as the password: create one on the My Tokens page, {url}"
        elif error.reason in ("malformed", "unknown", "wrong_user"):
            error.advice = f"Copy the token again, or create a new one at {url}"
        elif error.reason in ("revoked", "expired"):
            error.advice = f"Create a new token at {url}"
        return error


def _secret_of(credentials: Credentials) -> str:
    return credentials.secret
