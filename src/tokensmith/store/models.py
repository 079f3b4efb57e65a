"""SQLAlchemy tables. Schema changes go through an Alembic migration in ``migrations/``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored in UTC and always come back timezone-aware, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    # Every model here maps one declared table (SQLAlchemy's types allow any FROM clause), which
    # the hot paths and bulk writes use in Core statements (check.py, usage.py, mail.py...).
    __table__: ClassVar[Table]


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Where the account came from: "local" (shell, first start), "oidc" (first sign-in at the
    # identity provider) or "scim" (provisioned by the identity provider).
    origin: Mapped[str] = mapped_column(String(10), default="local")
    display_name: Mapped[str | None] = mapped_column(String(200), default=None)
    # The identity provider's name for the person: issuer + subject, never the email alone.
    oidc_issuer: Mapped[str | None] = mapped_column(String(255), default=None)
    oidc_subject: Mapped[str | None] = mapped_column(String(255), default=None)
    # SCIM: the provisioning client's own id for the user, and the deletion (the row stays for
    # the audit trail, disabled and out of SCIM's sight).
    external_id: Mapped[str | None] = mapped_column(String(255), default=None)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # SCIM: displayName, name and emails exactly as the provider last sent them, so that they
    # read back as sent; display_name and email above are derived from them (scim_resources.py).
    scim_profile: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    __table_args__ = (
        Index("uq_users_username_lower", func.lower(username), unique=True),
        Index("uq_users_oidc_identity", "oidc_issuer", "oidc_subject", unique=True),
    )


# The columns of the SQLite index the token check reads alone (see PersonalToken's indexes and
# migration 0013): the digest first, then every column token_check._LOOKUP reads.
CHECK_COLUMNS = (
    "digest",
    "user_id",
    "name",
    "hint",
    "scopes",
    "projects",
    "allowed_ips",
    "created_at",
    "expires_at",
    "last_used_at",
    "last_used_ip",
    "last_used_agent",
    "revoked_at",
    "revoked_reason",
    "parent_id",
)


def compared_on(dialect: str) -> Any:
    """Alembic's ``include_object`` for a store of ``dialect``: an index built only on another
    store's dialect (``Index.ddl_if``) is not one this store lacks."""

    def include(obj: Any, _name: str | None, type_: str, reflected: bool, _compare_to: Any) -> bool:
        condition = getattr(obj, "_ddl_if", None)
        return not (
            type_ == "index" and not reflected and condition is not None and condition.dialect not in (None, dialect)
        )

    return include


class PersonalToken(Base):
    __tablename__ = "personal_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    key_version: Mapped[int] = mapped_column(Integer)
    hint: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # The token's other limits (token_limits.py); NULL: every project the owner can reach, now
    # and later, and from anywhere.
    projects: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), default=None)
    allowed_ips: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Indexed for the expiry reminders (notices.py), which look for tokens about to expire.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_used_ip: Mapped[str | None] = mapped_column(String(45), default=None)
    last_used_agent: Mapped[str | None] = mapped_column(String(200), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_reason: Mapped[str | None] = mapped_column(String(40), default=None)
    # The token a rotation put in this one's place: presenting this one afterwards revokes that
    # one too (personal_tokens.revoke_successors).
    replaced_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("personal_tokens.id", ondelete="SET NULL"), default=None
    )
    # An application token's parent: the personal token it was derived from, never wider than it
    # and revoked with it (personal_tokens.derive_token, the reference's /authentication/token).
    # Indexed for that revocation, which looks for a token's live children.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("personal_tokens.id", ondelete="CASCADE"), default=None, index=True
    )

    owner: Mapped[User] = relationship(lazy="joined", innerjoin=True)
    # Read where an application token is shown (its parent's name), never on the check's path.
    parent: Mapped[PersonalToken | None] = relationship(remote_side=[id], foreign_keys=[parent_id], lazy="select")

    __table_args__ = (
        # A name is how a person finds a token to revoke: unique among the live ones.
        Index(
            "uq_personal_tokens_live_name",
            "user_id",
            "name",
            unique=True,
            sqlite_where=revoked_at.is_(None),
            postgresql_where=revoked_at.is_(None),
        ),
        # The token check's one B-tree on SQLite: the digest followed by every column the check
        # reads (token_check._LOOKUP; the id is the rowid, in every index already), so the
        # lookup never reaches the table. Among a million tokens a check touches about half the
        # pages it did through the digest's unique index and the table, and each commit elsewhere
        # (the last-used times) makes SQLite drop the check connection's page cache, so every
        # page a check touches is one it reads again (bench/check_scale.py, docs/benchmarks.md).
        # SQLite only: PostgreSQL refuses an index entry over 2.7 kB, which a token's project
        # list can exceed; its check reads through the unique index, from a shared cache.
        Index(
            "ix_personal_tokens_check",
            *CHECK_COLUMNS,
        ).ddl_if(dialect="sqlite"),
    )


class TokenAddress(Base):
    """An address a token was used from, with when it was first and last seen there and the
    client (User-Agent) last seen: each token's last five distinct ones, written behind the
    requests with its *last used* (usage.py)."""

    __tablename__ = "token_addresses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("personal_tokens.id", ondelete="CASCADE"))
    ip: Mapped[str] = mapped_column(String(45))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    agent: Mapped[str | None] = mapped_column(String(200), default=None)

    # One row per token and address: the writer's upsert (INSERT … ON CONFLICT) names it.
    __table_args__ = (Index("uq_token_addresses_token_id_ip", "token_id", "ip", unique=True),)


class BrowserSession(Base):
    __tablename__ = "browser_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    key_version: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the person last proved who they are (a password, the identity provider's auth_time):
    # creating or changing a token needs it recent (sessions.recently_authenticated).
    authenticated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(45), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(200), default=None)

    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_audit_events_user_at", "user_id", "at"),)


class Project(Base):
    """A Studio project: a bare Git repository and its released artifacts."""

    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProjectMember(Base):
    __tablename__ = "project_members"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(10))  # "read" or "write"


class Release(Base):
    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(100))
    revision: Mapped[str] = mapped_column(String(64))  # the commit released
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    __table_args__ = (Index("uq_releases_project_version", "project_id", "version", unique=True),)


class Instance(Base):
    """A registered instance of a project: the credential of the package (hotfix) repository."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    description: Mapped[str] = mapped_column(String(200))
    key_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    key_version: Mapped[int] = mapped_column(Integer)
    key_hint: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class DeviceAuthorization(Base):
    """A device's login (the command-line client's) waiting for its person's approval: the
    OAuth 2.0 device authorization grant, RFC 8628. Its two codes are kept as digests only."""

    __tablename__ = "device_authorizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_code_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_code_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    key_version: Mapped[int] = mapped_column(Integer)
    client_id: Mapped[str] = mapped_column(String(64))
    device_name: Mapped[str | None] = mapped_column(String(64), default=None)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    requested_ip: Mapped[str | None] = mapped_column(String(45), default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    interval: Mapped[int] = mapped_column(Integer)  # seconds between polls; grows on each slow_down
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    status: Mapped[str] = mapped_column(String(10))  # pending, approved, denied or issued
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class SignInFailure(Base):
    """Failed sign-ins of one throttle key (a keyed digest of an account and address, or of an
    address) in one minute: the sign-in throttle's counts, shared by every instance."""

    __tablename__ = "sign_in_failures"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, index=True)
    failures: Mapped[int] = mapped_column(Integer)


class MailOutbox(Base):
    """Mail to send: queued in the transaction of what it tells, sent after it commits (mail.py).

    ``due_at`` is set while the mail waits (for its first try or a retry) and cleared once it is
    sent or given up; a sender holds a row while ``claimed_until`` is in the future. Never a
    secret in here: notices.py writes what each mail says."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))  # what it tells: token.created, token.expiring, ...
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(100))  # kept for a resend: receivers see one message
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(80), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)


class TokenReminder(Base):
    """A notice about a token that was dealt with (queued, or not needed), so that each is sent once."""

    __tablename__ = "token_reminders"

    token_id: Mapped[int] = mapped_column(ForeignKey("personal_tokens.id", ondelete="CASCADE"), primary_key=True)
    # "expiring30", "expiring" (7 days), "expiring1", "expired"; "unused": warned that the token
    # will be revoked unused (``at`` tells for which spell of disuse: tokens/sweep.py).
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class RecordedSetting(Base):
    """What a starting server records for the commands of its shell, which may run with another
    environment (deployment.py): its public URL, that a mail a command queues links to."""

    __tablename__ = "recorded_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(2000))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TrustedPublisher(Base):
    """A CI whose OpenID Connect ID tokens a project trusts (workload identity): those of
    ``issuer`` that carry every one of ``claims`` are exchanged for a short-lived token of the
    project with ``scopes``, owned by the project's CI account (projects/publishers.py)."""

    __tablename__ = "trusted_publishers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    # The project's CI account, which the tokens are minted for: one per project, never signs in.
    account_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # Exactly as the ID tokens' "iss" says it; indexed for the exchange, which starts from it.
    issuer: Mapped[str] = mapped_column(String(255), index=True)
    claims: Mapped[dict[str, str]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(80))  # who added it: a username, or the shell

    __table_args__ = (Index("uq_trusted_publishers_project_name", "project_id", "name", unique=True),)


class PublisherToken(Base):
    """Which trusted publisher a CI token was made for: its removal revokes them."""

    __tablename__ = "publisher_tokens"

    token_id: Mapped[int] = mapped_column(ForeignKey("personal_tokens.id", ondelete="CASCADE"), primary_key=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("trusted_publishers.id", ondelete="CASCADE"), index=True)


class IdTokenUse(Base):
    """An ID token exchanged once (its issuer and ``jti``, digested): refused ever after, by every
    instance, and kept until it has expired (then pruned: it is refused as expired anyway)."""

    __tablename__ = "id_token_uses"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# --- a second factor for local accounts (accounts/second_factors.py) ------------------------------


class AuthenticatorApp(Base):
    """A person's authenticator app (TOTP, RFC 6238): its secret encrypted under a key of its own
    purpose (accounts/totp.py), never plain. ``confirmed_at`` is None while the enrolment waits
    for its first code; ``last_step`` is the time step of the last code accepted, so that each
    code works once, whichever instance it reaches."""

    __tablename__ = "authenticator_apps"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary(128))
    key_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Passkey(Base):
    """A WebAuthn credential (accounts/passkeys.py): its public key, never anything secret."""

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(2048))
    sign_count: Mapped[int] = mapped_column(BigInteger)
    # The WebAuthn user handle it was made for: random, the same for all of a person's passkeys.
    user_handle: Mapped[bytes] = mapped_column(LargeBinary(64))
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class RecoveryCode(Base):
    """One of a person's single-use recovery codes, as a keyed digest (accounts/recovery_codes.py)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    key_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class PendingSignIn(Base):
    """A sign-in half done, or a passkey sign-in begun: short-lived, opening nothing by itself.

    Found by the digest of a cookie's secret; ``user_id`` is the person whose password was right
    (None for a passkey sign-in, which learns who from the passkey); ``challenge`` is the
    WebAuthn challenge last given for it, used once."""

    __tablename__ = "pending_sign_ins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), default=None)
    next_path: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    challenge: Mapped[bytes | None] = mapped_column(LargeBinary(64), default=None)


class PasskeyChallenge(Base):
    """A WebAuthn challenge given to a signed-in browser session (adding a passkey, or confirming
    it is them with one), used once."""

    __tablename__ = "passkey_challenges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("browser_sessions.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(10))  # "register" or "confirm"
    challenge: Mapped[bytes] = mapped_column(LargeBinary(64))
    # Adding a passkey: the user handle the options carried (a first passkey's is new).
    user_handle: Mapped[bytes | None] = mapped_column(LargeBinary(64), default=None)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
