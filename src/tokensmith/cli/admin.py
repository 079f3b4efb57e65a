"""Administration from the server's shell: users and tokens, straight on the store."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from tokensmith.accounts import passwords, provider_accounts, second_factors, users
from tokensmith.audit import notices, trail
from tokensmith.audit.trail import RevokeReason
from tokensmith.backups import restore, snapshot
from tokensmith.backups import revocation_journal as journal
from tokensmith.cli import progress
from tokensmith.cli.server_commands import (
    audit_app,
    backup_app,
    packages_app,
    projects_app,
    publishers_app,
    tokens_app,
    users_app,
)
from tokensmith.client.output import columns
from tokensmith.clock import display
from tokensmith.config import Settings, load_settings
from tokensmith.errors import ConfigurationError, InvalidInput, StoreUnavailable
from tokensmith.projects import catalog, maven_repository
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.projects.maven_repository import Coordinates
from tokensmith.scopes import ALL_SCOPES
from tokensmith.scopes import describe as describe_limits
from tokensmith.store import deployment
from tokensmith.store.database import (
    create_store_engine,
    migrate,
    require_existing_store,
    session_factory,
    unit_of_work,
)
from tokensmith.store.server_keys import ServerKeys, load_server_keys
from tokensmith.tokens import ci_tokens
from tokensmith.tokens import lifecycle as token_lifecycle

ACTOR = "admin (shell)"


@dataclass
class AdminContext:
    session: Session
    settings: Settings
    keys: ServerKeys


@contextlib.contextmanager
def admin_store() -> Iterator[AdminContext]:
    """The store, migrated, in one transaction committed when the command succeeds; the
    settings with the public URL the running server recorded (deployment.py)."""
    settings = load_settings()
    require_existing_store(settings)
    passwords.use(settings.password_hashing)  # users create, users set-password
    engine = create_store_engine(settings)
    try:
        try:
            require_existing_store(settings, engine)
            migrate(engine)
        except ConfigurationError:
            raise
        except Exception as error:
            raise StoreUnavailable(f"Cannot open the store: {type(error).__name__}.") from error
        with unit_of_work(session_factory(engine)) as session:
            settings = deployment.for_the_shell(session, settings)
            notices.listen(settings)  # what a command does is mailed as when done on the web site
            journal.listen(settings)  # and its revocations journaled (backups/revocation_journal.py)
            yield AdminContext(session, settings, load_server_keys(settings))
    finally:
        engine.dispose()


def note(message: str) -> None:
    """Information for the person at the terminal, kept off stdout (which carries results)."""
    typer.echo(message, err=True)


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="Login name, unique (case-insensitive).")],
    email: Annotated[str, typer.Option("--email", help="The user's email address.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
) -> None:
    """Create a user. Without --password-stdin the user has no password (token-only, or IdP)."""
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidInput("--password-stdin was given but stdin held no password.")
    with admin_store() as ctx:
        user = users.create_user(
            ctx.session,
            username,
            email,
            password=password,
            is_admin=admin,
            token_prefix=ctx.settings.token_prefix,
            actor=ACTOR,
        )
        name = user.username
    note(f"Created user {name}{' (administrator)' if admin else ''}.")
    if password is None:
        note(without_password(name, ctx.settings))


def without_password(name: str, settings: Settings) -> str:
    """What a user made without a password can do, on this server's configuration."""
    tokens = f"tools take tokens you mint for them (`tokensmith tokens create --user {name} --name …`)"
    provider = settings.identity_provider
    if provider is not None:
        return (
            f"They have no password: they sign in with {provider.name} once this account is linked to them "
            f"there (`tokensmith users link {name} --subject …`; their first sign-in shows the command), and "
            f"{tokens}."
        )
    return (
        "They have no password, and no identity provider is configured: they cannot sign in to the web site "
        f"until you set one (`tokensmith users set-password {name}`); meanwhile {tokens}."
    )


@users_app.command("list")
def users_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every account: username, email, administrator, active, where it came from."""
    with admin_store() as ctx:
        accounts = users.list_users(ctx.session)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "username": u.username,
                        "email": u.email,
                        "admin": u.is_admin,
                        "active": u.is_active,
                        "origin": u.origin,
                        "created_at": u.created_at.isoformat(),
                    }
                    for u in accounts
                ],
                indent=2,
            )
        )
        return
    typer.echo(
        columns(
            ["USERNAME", "EMAIL", "ADMIN", "ACTIVE", "ORIGIN", "CREATED"],
            [
                [
                    u.username,
                    u.email,
                    "yes" if u.is_admin else "",
                    "yes" if u.is_active else "disabled",
                    u.origin,
                    display(u.created_at),
                ]
                for u in accounts
            ],
        )
    )


@users_app.command("set-password")
def users_set_password(
    username: Annotated[str, typer.Argument(help="Whose password to set (a lost one, say).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
) -> None:
    """Set a user's password: their browser sessions end, their tokens keep working."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    else:
        raise InvalidInput("No terminal to ask for the password: give it on stdin with --password-stdin.")
    if not password:
        raise InvalidInput("No password given.")
    with admin_store() as ctx:
        user = users.get_user(ctx.session, username)
        users.set_password(ctx.session, user, password, token_prefix=ctx.settings.token_prefix, actor=ACTOR)
        name = user.username
    note(f"Set the password of {name}; their browser sessions ended. Their tokens are unchanged.")


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument(help="The user to disable.")]) -> None:
    """Disable a user: their sessions end and every token stops working at once."""
    with admin_store() as ctx:
        user = users.get_user(ctx.session, username)
        revoked = users.disable_user(ctx.session, user, actor=ACTOR)
        name = user.username
    note(f"Disabled {name}: signed out everywhere, {revoked} token(s) revoked.")


@users_app.command("enable")
def users_enable(username: Annotated[str, typer.Argument(help="The user to enable.")]) -> None:
    """Let a disabled user sign in again. Their revoked tokens stay revoked."""
    with admin_store() as ctx:
        user = users.get_user(ctx.session, username)
        users.enable_user(ctx.session, user, actor=ACTOR)
        name = user.username
    note(f"Enabled {name}. Tokens revoked while disabled stay revoked: they create new ones.")


@users_app.command("reset-2fa")
def users_reset_second_factors(
    username: Annotated[str, typer.Argument(help="Whose second factors to remove (a lost phone and lost codes).")],
) -> None:
    """Remove a user's authenticator app, passkeys and recovery codes: they sign in with their
    password alone until they add a factor again. Sessions and tokens are untouched."""
    with admin_store() as ctx:
        user = users.get_user(ctx.session, username)
        removed = second_factors.reset(ctx.session, user, actor=ACTOR)
        name = user.username
    note(
        f"Removed every second factor of {name} ({removed} authenticator app(s) and passkey(s), and their recovery "
        "codes): they sign in with their password alone until they add one on their Security page"
        + (" (which this server requires at their next sign-in)." if ctx.settings.require_second_factor else ".")
    )


@users_app.command("link")
def users_link(
    username: Annotated[str, typer.Argument(help="The existing Tokensmith account.")],
    subject: Annotated[str, typer.Option("--subject", help="The person's 'sub' at the identity provider.")],
    issuer: Annotated[
        str | None, typer.Option("--issuer", help="The provider's issuer (default: TOKENSMITH_OIDC_ISSUER).")
    ] = None,
) -> None:
    """Link an existing account to a person at the identity provider (signing in there opens it).

    The sign-in page shows the exact command when a first sign-in meets an existing account.
    """
    with admin_store() as ctx:
        provider = ctx.settings.identity_provider
        issuer = issuer or (provider.issuer if provider else None)
        if not issuer:
            raise InvalidInput("No identity provider is configured: give --issuer, or set TOKENSMITH_OIDC_ISSUER.")
        if not subject.strip() or len(subject) > 255:
            raise InvalidInput("--subject is the provider's 'sub' claim: 1 to 255 characters.")
        user = users.get_user(ctx.session, username)
        provider_accounts.link(ctx.session, user, issuer=issuer, subject=subject.strip(), actor=ACTOR)
        name = user.username
    note(f"Linked {name} to subject {subject.strip()} at {issuer}: signing in there now opens this account.")


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Option("--user", help="Whose token it is.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")],
    expires_in: Annotated[
        int | None, typer.Option("--expires-in", help="Days until it expires (default: never).", min=1)
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="api:read, api:write, git:read, git:write or maven:read; repeat for more (default: all five).",
        ),
    ] = None,
    project: Annotated[
        list[str] | None,
        typer.Option(
            "--project", help="A project it opens; repeat for more (default: every project of the user, now and later)."
        ),
    ] = None,
    allow_ip: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-ip", help="A CIDR block it may be used from, IPv4 or IPv6; repeat for more (default: anywhere)."
        ),
    ] = None,
) -> None:
    """Mint a token for a user (service accounts, provisioning). Printed once, on stdout."""
    with admin_store() as ctx:
        owner = users.get_user(ctx.session, user)
        expires_at = token_lifecycle.expiry_in_days(expires_in) if expires_in else None
        secret, row = token_lifecycle.create_token(
            ctx.session,
            ctx.keys,
            owner.id,
            name,
            prefix=ctx.settings.token_prefix,
            actor=ACTOR,
            expires_at=expires_at,
            scopes=scope or ALL_SCOPES,
            projects=project or None,
            allowed_ips=allow_ip or None,
            max_lifetime_days=ctx.settings.max_token_lifetime_days,
        )
        summary = (
            f"Created token “{row.name}” ({row.hint}) for {owner.username}, expires: {display(row.expires_at)}; "
            f"{describe_limits(row.scopes, row.projects, row.allowed_ips)}."
        )
    typer.echo(secret)
    note(summary + " It will not be shown again.")


@tokens_app.command("revoke-all")
def tokens_revoke_all(user: Annotated[str, typer.Option("--user", help="Whose tokens to revoke.")]) -> None:
    """Revoke every live token of a user (a lost laptop, a departure). Their password stays."""
    with admin_store() as ctx:
        owner = users.get_user(ctx.session, user)
        count = token_lifecycle.revoke_all_tokens(ctx.session, owner.id, actor=ACTOR, reason=RevokeReason.ADMIN)
        name = owner.username
    note(f"Revoked {count} token(s) of {name}.")


@projects_app.command("create")
def projects_create(
    project_id: Annotated[str, typer.Argument(help="The project id, like acme-contracts.")],
    group_id: Annotated[str, typer.Option("--group-id", help="Maven groupId of its releases.")],
    owner: Annotated[str, typer.Option("--owner", help="User who gets write access.")],
) -> None:
    """Create a project: a bare Git repository, and a Maven coordinate for its releases."""
    with admin_store() as ctx:
        user = users.get_user(ctx.session, owner)
        project = catalog.create_project(ctx.session, ctx.settings.data_dir, project_id, group_id, user.id, actor=ACTOR)
        summary = f"Created project {project.id} ({project.group_id}), owned by {user.username}."
    note(summary)
    note(f"Git: {ctx.settings.public_url}/git/{project_id}.git")


@projects_app.command("list")
def projects_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every project: id, Maven groupId, members, created."""
    with admin_store() as ctx:
        found = catalog.all_projects(ctx.session)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {"id": p.id, "group_id": p.group_id, "members": members, "created_at": p.created_at.isoformat()}
                    for p, members in found
                ],
                indent=2,
            )
        )
        return
    typer.echo(
        columns(
            ["PROJECT", "GROUP ID", "MEMBERS", "CREATED"],
            [[p.id, p.group_id, str(members), display(p.created_at)] for p, members in found],
        )
    )


@projects_app.command("add-member")
def projects_add_member(
    project_id: Annotated[str, typer.Argument(help="The project id.")],
    username: Annotated[str, typer.Argument(help="The user to add.")],
    role: Annotated[str, typer.Option("--role", help="read (clone, download) or write (push, release).")] = "read",
) -> None:
    """Give a user a role on a project (or change it)."""
    with admin_store() as ctx:
        user = users.get_user(ctx.session, username)
        catalog.add_member(ctx.session, project_id, user.id, role, actor=ACTOR)
        name = user.username
    note(f"{name} now has {role} access to {project_id}.")


@packages_app.command("publish")
def packages_publish(
    file: Annotated[Path, typer.Argument(help="The package file (.jar, .zip).", exists=True, dir_okay=False)],
    coordinates: Annotated[str, typer.Option("--coordinates", help="GROUP:ARTIFACT:VERSION")],
) -> None:
    """Publish a package to the hotfix repository, for registered instances to download."""
    target = Coordinates.parse(coordinates)
    extension = file.suffix.lstrip(".").lower()
    if not extension.isalnum():
        raise InvalidInput(f"{file.name} has no file extension Maven can use (like .jar or .zip).")
    with admin_store() as ctx:  # publishers take turns on a lock in the store
        settings = ctx.settings
        maven_repository.publish(
            ctx.session,
            maven_repository.hotfix_root(settings.data_dir),
            target,
            {
                extension: file.read_bytes(),
                "pom": maven_repository.pom(target, packaging=extension),
            },
        )
    note(f"Published {target} to {settings.public_url}/packages/hotfix/.")


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


EXPORT_COLUMNS = ("id", "at", "user", "actor", "action", "description", "ip", "token_id", "details")


def parse_since(text: str) -> datetime:
    """A date (2026-12-01: from its start, UTC) or a moment (2026-12-01T09:30:00Z; without an
    offset, UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"--since takes a date like 2026-12-01 or a moment like 2026-12-01T09:30:00Z; {text[:40]!r} is neither."
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@audit_app.command("export")
def audit_export(
    since: Annotated[
        str | None, typer.Option("--since", help="Only events from this date (2026-12-01) or moment on.")
    ] = None,
    output_format: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl (one JSON object a line) or csv.")
    ] = ExportFormat.jsonl,
) -> None:
    """Every event of the audit trail, oldest first, on stdout: for a SIEM, an investigation.
    Each carries its action code and its description in words; never a secret."""
    start = parse_since(since) if since is not None else None
    count = 0
    with admin_store() as ctx:
        writer = csv.DictWriter(sys.stdout, EXPORT_COLUMNS) if output_format is ExportFormat.csv else None
        if writer is not None:
            writer.writeheader()
        for event, username in trail.all_events(ctx.session, start):
            record = {**trail.public_fields(event, for_admin=True), "user": username}
            if writer is not None:
                writer.writerow({**record, "details": json.dumps(record["details"], ensure_ascii=False)})
            else:
                sys.stdout.write(json.dumps({key: record[key] for key in EXPORT_COLUMNS}, ensure_ascii=False) + "\n")
            count += 1
    note(f"Exported {count} event(s){f' since {start.isoformat()}' if start else ''}.")


@publishers_app.command("add")
def publishers_add(
    project_id: Annotated[str, typer.Argument(help="The project whose tokens its CI jobs get.")],
    issuer: Annotated[
        str,
        typer.Option(
            "--issuer", help=f"The CI's issuer, as its ID tokens' iss says it ({trusted_publishers.GITHUB_ACTIONS})."
        ),
    ],
    claim: Annotated[
        list[str],
        typer.Option(
            "--claim", help="NAME=VALUE an ID token must carry, exactly; repeat for more (one pins the repository)."
        ),
    ],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="A scope of its tokens; repeat for more (default: git:read and maven:read)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="What people call it (default: the issuer and repository).")
    ] = None,
) -> None:
    """Trust a CI's ID tokens that carry these claims: they get a short-lived token of the project."""
    with admin_store() as ctx:
        publisher = trusted_publishers.add_publisher(
            ctx.session,
            project_id,
            issuer=issuer,
            claims=trusted_publishers.parse_claims(claim),
            scopes=scope or trusted_publishers.DEFAULT_SCOPES,
            name=name,
            actor=ACTOR,
        )
        summary = (
            f"Added trusted publisher {publisher.id} “{publisher.name}” to {publisher.project_id}: ID tokens of "
            f"{publisher.issuer} with {', '.join(f'{k}={v}' for k, v in publisher.claims.items())} get "
            f"{', '.join(publisher.scopes)} for {ctx.settings.oidc_token_minutes} minutes, as "
            f"{trusted_publishers.ci_username(publisher.project_id)}."
        )
        minted = publisher.id
    typer.echo(minted)
    note(summary)


@publishers_app.command("list")
def publishers_list(
    project_id: Annotated[str | None, typer.Argument(help="Only this project's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every trusted publisher (of one project): its issuer, claims, scopes and live tokens."""
    with admin_store() as ctx:
        if project_id is not None:
            catalog.get_project(ctx.session, project_id)
        found = trusted_publishers.all_publishers(ctx.session, project_id)
        live = {project: ci_tokens.live_tokens(ctx.session, project) for project in {p.project_id for p in found}}
        rows = [
            {
                "id": p.id,
                "project": p.project_id,
                "name": p.name,
                "issuer": p.issuer,
                "claims": dict(p.claims),
                "scopes": list(p.scopes),
                "username": trusted_publishers.ci_username(p.project_id),
                "live_tokens": len(live[p.project_id].get(p.id, [])),
                "created_at": p.created_at.isoformat(),
                "created_by": p.created_by,
            }
            for p in found
        ]
        table = [
            [
                str(p.id),
                p.project_id,
                p.name,
                p.issuer,
                " ".join(f"{k}={v}" for k, v in p.claims.items()),
                " ".join(p.scopes),
                str(len(live[p.project_id].get(p.id, []))),
            ]
            for p in found
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(
        columns(
            ["ID", "PROJECT", "NAME", "ISSUER", "CLAIMS", "SCOPES", "LIVE TOKENS"],
            table,
        )
    )


@publishers_app.command("remove")
def publishers_remove(
    publisher_id: Annotated[int, typer.Argument(help="The publisher's id (publishers list).")],
) -> None:
    """Remove a trusted publisher: every live token it gave is revoked with it."""
    with admin_store() as ctx:
        removed, revoked = ci_tokens.remove_publisher(ctx.session, publisher_id, actor=ACTOR)
        summary = (
            f"Removed trusted publisher {publisher_id} “{removed.name}” of {removed.project_id}; "
            f"revoked {revoked} live token(s)."
        )
    note(summary)


PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="The passphrase of an encrypted backup, on the first line of this file (never an argument).",
        dir_okay=False,
    ),
]
PassphraseStdin = Annotated[
    bool, typer.Option("--passphrase-stdin", help="The passphrase of an encrypted backup, on the first line of stdin.")
]
BackupPath = Annotated[Path, typer.Argument(help="The backup file.", dir_okay=False)]


def read_passphrase(file: Path | None, stdin: bool) -> str | None:
    """The passphrase from a file or stdin (a command line is readable by every user of the host)."""
    if file is not None and stdin:
        raise InvalidInput("Give the passphrase one way: --passphrase-file FILE or --passphrase-stdin.")
    if file is None and not stdin:
        return None
    try:
        text = file.read_text() if file is not None else sys.stdin.readline()
    except OSError as error:
        raise InvalidInput(f"Cannot read the passphrase file {file}: {error.strerror}.") from None
    passphrase = text.splitlines()[0] if text.strip() else ""
    if not passphrase:
        raise InvalidInput(f"{'The passphrase file ' + str(file) if file else 'stdin'} holds no passphrase.")
    return passphrase


@backup_app.command("create")
def backup_create(
    path: Annotated[Path, typer.Argument(help="The file to write (a new one), outside the data dir.", dir_okay=False)],
    passphrase_file: PassphraseFile = None,
    passphrase_stdin: PassphraseStdin = False,
) -> None:
    """Back up the deployment while it runs: the store, the secret keys, the Git repositories, the
    Maven and package repositories, as of one moment, in one file (mode 0600)."""
    passphrase = read_passphrase(passphrase_file, passphrase_stdin)
    with progress.shown() as watch:
        summary = snapshot.create_backup(load_settings(), path, passphrase=passphrase, progress=watch)
    typer.echo(summary.line())


@backup_app.command("verify")
def backup_verify(
    path: BackupPath, passphrase_file: PassphraseFile = None, passphrase_stdin: PassphraseStdin = False
) -> None:
    """Check a backup file from end to end (every checksum, its manifest) without restoring it."""
    passphrase = read_passphrase(passphrase_file, passphrase_stdin)
    with progress.shown() as watch:
        manifest = restore.verify_backup(path, passphrase, watch)
    typer.echo(restore.describe(manifest, path))


@backup_app.command("restore")
def backup_restore(
    path: BackupPath,
    passphrase_file: PassphraseFile = None,
    passphrase_stdin: PassphraseStdin = False,
    revocations: Annotated[
        Path | None,
        typer.Option(
            "--revocations",
            help="The old deployment's revocation journal (its folder, or one .jsonl file), replayed after the "
            "restore (default: TOKENSMITH_REVOCATION_JOURNAL, when it lies outside the data dir).",
        ),
    ] = None,
) -> None:
    """Restore a backup into an empty data dir (and an empty database), with the server stopped."""
    passphrase = read_passphrase(passphrase_file, passphrase_stdin)
    with progress.shown() as watch:
        restored = restore.restore_backup(
            load_settings(), path, passphrase=passphrase, journal=revocations, progress=watch
        )
    typer.echo(restored.report())


@backup_app.command("replay-revocations")
def backup_replay_revocations(
    journal_path: Annotated[
        Path, typer.Argument(metavar="JOURNAL", help="A revocation journal: its folder, or one .jsonl file.")
    ],
) -> None:
    """Revoke again every token (and disable again every account) that a revocation journal says
    was ended, where the store has it live: what a restore from an older backup brought back."""
    read = journal.read(journal_path)
    with admin_store() as ctx:
        replayed = journal.replay(ctx.session, read)
    typer.echo("\n".join([f"Replayed {journal_path} ({journal.age_note(read)}):", *restore.replay_lines(replayed)]))
