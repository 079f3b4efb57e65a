"""The client's commands, as a person runs them on a laptop or in CI.

Only ``login`` asks for a username and token, and only on a terminal; ``register``,
``release`` and ``studio link`` ask too when nobody is logged in, as the reference's tools do.
Everything else says who is not logged in where, and how to be. A token never appears in the
output, the arguments or an error.

Each command is a function of the parsed arguments; ``command_line.py`` builds the tree.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokensmith.client import credentials, git_credential, maven_settings, output, project_link, server_url
from tokensmith.client.credentials import Credential
from tokensmith.client.errors import ClientError, InvalidInput, NotFound, NotLoggedIn, Refused

if TYPE_CHECKING:
    from tokensmith.client.server_api import ServerApi

# Tokens the server knows are dead: whoever holds one logs in again.
DEAD_TOKEN_CODES = ("token_revoked", "token_expired", "token_unknown", "credential_malformed", "account_disabled")


# --- who is asking, and where ---------------------------------------------------------------------


def interactive() -> bool:
    return sys.stdin.isatty()


def ask(label: str, *, secret: bool = False) -> str:
    if not interactive():
        raise NotLoggedIn(
            f"No terminal to ask for the {label.lower()}: set {credentials.ENV_SERVER}, {credentials.ENV_USERNAME} "
            f"and {credentials.ENV_TOKEN} (CI), or run `tokensmith login` on a terminal."
        )
    try:
        answer = getpass.getpass(f"{label}: ") if secret else input(f"{label}: ")
    except EOFError:
        raise InvalidInput(f"No {label.lower()} given.") from None
    if not answer.strip():
        raise InvalidInput(f"No {label.lower()} given.")
    return answer.strip()


def confirm(question: str) -> bool:
    try:
        return input(f"{question} [y/N]: ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def target(server: str | None) -> str:
    return server_url.parse(server) if server else credentials.default_server()


def not_logged_in(server: str) -> NotLoggedIn:
    return NotLoggedIn(
        f"Not logged in to {server}: run `tokensmith login --server {server}` (add --web to approve it in a "
        f"browser), or set {credentials.ENV_SERVER}, {credentials.ENV_USERNAME} and {credentials.ENV_TOKEN}."
    )


def logged_in(server: str | None) -> Credential:
    """The credential for ``server``; never a prompt."""
    credential = credentials.load(server)
    if credential is None:
        raise not_logged_in(target(server))
    return credential


def logged_in_or_asked(server: str | None) -> Credential:
    """The credential for ``server``, or on a terminal a username and token asked for this once."""
    credential = credentials.load(server)
    if credential is not None:
        return credential
    if not interactive():
        raise not_logged_in(target(server))
    return Credential(target(server), ask("Username"), ask("Token", secret=True), "prompt", "the prompt")


def connect(credential: Credential) -> ServerApi:
    from tokensmith.client.server_api import ServerApi  # httpx: only for commands that talk to a server

    return ServerApi.of(credential)


def connect_without_credential(server: str) -> ServerApi:
    """For the device grant's two calls, made before there is a credential."""
    from tokensmith.client.server_api import ServerApi

    return ServerApi(server)


def checked_me(api: ServerApi, credential: Credential) -> dict[str, Any]:
    """``GET /api/v1/me``; a dead kept token's refusal says to log in again."""
    try:
        return api.me()
    except Refused as error:
        if error.code in DEAD_TOKEN_CODES and credential.kept in ("keyring", "file"):
            error.message = f"{error.message.rstrip('.')}. Log in again: tokensmith login --server {credential.server}"
        raise


def describe(me: dict[str, Any]) -> str:
    token = me.get("token") or {}
    using = f" with token “{token['name']}” ({token['hint']})" if token else ""
    return f"{me['user']['username']}{using}"


def linked(project: str | None, server: str | None) -> tuple[str, str | None]:
    """The project given, else the one this folder is linked to (and its server)."""
    if project:
        return project, server
    link = project_link.find()
    if link is None:
        raise InvalidInput(
            "No project given, and this folder is not linked to one: name the project, or run "
            "`tokensmith studio link PROJECT` here first."
        )
    return link.project, server or link.server


# --- logging in and out -----------------------------------------------------------------------------


def login(args: Namespace) -> None:
    address = target(args.server)
    if args.web:
        candidate = Credential(address, "", web_login(address, args.scopes or [], open_browser=not args.no_browser))
    else:
        username = os.environ.get(credentials.ENV_USERNAME) or ask("Username")
        candidate = Credential(address, username, os.environ.get(credentials.ENV_TOKEN) or ask("Token", secret=True))
    with connect(candidate) as api:
        try:
            me = api.me()
        except Refused as error:
            if error.code == "password_not_accepted":
                error.message = (
                    f"That looks like a password: {address} takes a personal access token here. "
                    f"Create one on the My Tokens page, {address}/tokens, and log in with it."
                )
            else:
                error.message = f"{error.message} Nothing was stored."
            raise
    kept = credentials.save(address, me["user"]["username"], candidate.token)
    output.say(f"Logged in to {address} as {describe(me)}.")
    output.say(f"Credentials stored in {kept.where}.")


def web_login(server: str, scopes: list[str], *, open_browser: bool) -> str:
    from tokensmith.client import device_login

    with connect_without_credential(server) as api:
        code = device_login.request_code(api, scopes)
        output.note(f"First copy your one-time code: {code.user_code}")
        if open_browser and device_login.open_browser(code.verification_uri):
            output.note(f"Then enter it in the browser that opened at {code.verification_uri}.")
        else:
            output.note(
                f"Then open {code.verification_uri} in a browser where you are signed in, and enter it "
                f"(it expires in {code.expires_in // 60} minutes)."
            )
        output.note("Waiting for your approval… (Ctrl-C to give up)")
        return device_login.wait_for_token(api, code)


def logout(args: Namespace) -> None:
    address = target(args.server)
    copies = credentials.maven_settings_files(address)
    if not credentials.forget(address):
        output.say(f"Not logged in to {address}: nothing to forget.")
        return
    output.say(
        f"Logged out of {address}: its token is forgotten on this machine. It stays valid: if it "
        "leaked, revoke it on the My Tokens page."
    )
    for path in copies:
        if path.exists():
            output.say(f"{path} still holds it (`tokensmith maven-settings` put it there).")


def whoami(args: Namespace) -> None:
    credential = logged_in(args.server)
    with connect(credential) as api:
        me = checked_me(api, credential)
    if args.json:
        output.as_json(me)
        return
    output.say(f"{describe(me)} on {credential.server}; credentials from {credential.where}.")


def status(args: Namespace) -> int:
    from tokensmith.client import status as report

    found = report.gather(args.project)
    if args.json:
        output.as_json(found.as_dict())
    else:
        output.say(found.text())
    return found.exit_code


# --- tokens -------------------------------------------------------------------------------------------


def tokens_list(args: Namespace) -> None:
    credential = logged_in(args.server)
    with connect(credential) as api:
        listed = api.tokens()
    if args.json:
        output.as_json(listed)
        return
    width = output.terminal_width()
    if width is None:  # a pipe or a file: every column, whole
        output.say(
            output.columns(
                ["ID", "NAME", "TOKEN", "SCOPES", "LIMITS", "CREATED", "LAST USED", "EXPIRES"],
                [_full_row(token) for token in listed],
            )
        )
        return
    # A terminal: one line per token within its width (a Maven user agent alone is 60 characters):
    # when it was last used, not from where or by what, and the day it expires.
    output.say(
        output.columns(
            ["ID", "NAME", "TOKEN", "ACCESS", "LAST USED (UTC)", "EXPIRES"],
            [_short_row(token) for token in listed],
            width=width,
            narrowing={1: 10, 3: 12},
        )
    )
    output.note("Where and by what each was last used, every limit: tokens list --json")


def _full_row(token: dict[str, Any]) -> list[str]:
    used = output.moment(token["last_used_at"])
    if token["last_used_at"]:
        used += f" from {token['last_used_ip']} ({token['last_used_agent'] or '?'})"
    expires = output.moment(token["expires_at"]) + (" (expired)" if token["expired"] else "")
    return [
        str(token["id"]),
        token["name"],
        token["hint"],
        " ".join(token["scopes"]),
        output.limits(token),
        output.moment(token["created_at"]),
        used,
        expires,
    ]


def _short_row(token: dict[str, Any]) -> list[str]:
    expires = "expired" if token["expired"] else (token["expires_at"] or "never")[:10]
    return [
        str(token["id"]),
        token["name"],
        token["hint"],
        output.access(token),
        output.moment(token["last_used_at"], zone=False),
        expires,
    ]


def find_token(listed: list[dict[str, Any]], name_or_id: str) -> dict[str, Any]:
    by_id = [t for t in listed if name_or_id.isdigit() and t["id"] == int(name_or_id)]
    found = by_id or [t for t in listed if t["name"] == name_or_id]
    if not found:
        raise NotFound(f"You have no live token named or numbered {name_or_id!r}: see `tokensmith tokens list`.")
    return found[0]


def tokens_revoke(args: Namespace) -> int:
    credential = logged_in(args.server)
    with connect(credential) as api:
        token = find_token(api.tokens(), args.name_or_id)
        if not args.yes:
            if not interactive():
                raise InvalidInput("Revoking asks for confirmation: add --yes to revoke without a terminal.")
            if not confirm(f"Revoke token “{token['name']}” ({token['hint']})?"):
                output.say("Nothing revoked.")
                return 1
        api.revoke(token["id"])
    output.say(f"Revoked token “{token['name']}” ({token['hint']}).")
    return 0


def tokens_rotate(args: Namespace) -> None:
    credential = logged_in(args.server)
    if credential.kept == "environment":
        raise InvalidInput(
            "The token comes from TOKENSMITH_TOKEN: rotate it where that variable is set "
            "(the My Tokens page, or `tokensmith tokens rotate` where it is kept)."
        )
    if credential.kept == "ci":
        raise InvalidInput(
            "The token is this CI job's, got for its OpenID Connect ID token: it expires within minutes, "
            "and the next job gets a new one. Nothing to rotate."
        )
    with connect(credential) as api:
        me = checked_me(api, credential)
        rotated = api.rotate(me["token"]["id"])
    kept = credentials.replace_token(credential, rotated["token"])
    output.say(
        f"Rotated token “{rotated['name']}”: the old secret no longer works; the new one "
        f"({rotated['hint']}) is kept in {kept.where}."
    )
    for path in credentials.maven_settings_files(credential.server):
        if maven_settings.rotate(path, credential.username, credential.token, rotated["token"]):
            output.say(f"Updated {path}: its <server> {maven_settings.SERVER_ID} has the new token.")
        elif path.exists():
            output.say(f"Left {path} as it is: its <server> {maven_settings.SERVER_ID} no longer held the old token.")
    tell_git(credential, rotated["token"])


def tell_git(credential: Credential, new_token: str) -> None:
    """The old secret out of git's credential store (git_store.py), and a word about the helpers
    the client cannot read."""
    from tokensmith.client import git_store

    for path in git_store.replace_secret(credential.token, new_token):
        output.say(f"Updated {path}: git's saved credential for {credential.server} has the new token.")
    for helper in git_store.other_helpers(credential.server):
        output.say(
            f"git's credential helper “{helper}” may still hold the old secret for {credential.server}: "
            "it no longer works, and presented again it revokes the new one too. Clear it there, or run "
            "`tokensmith git setup` to have git ask tokensmith."
        )


# --- git and Maven -----------------------------------------------------------------------------------


def git_credential_command(args: Namespace) -> int:
    return git_credential.main(args.operation)


def own_command() -> str:
    """This client as git's shell can run it from anywhere: by its absolute path (a virtualenv's
    bin/ is seldom on the PATH git sees)."""
    script = Path(sys.argv[0])
    if script.name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m tokensmith"
    return shlex.quote(str(script.absolute()))


def git_setup(args: Namespace) -> None:
    credential = logged_in(args.server)
    key = f"credential.{credential.server}.helper"
    # An empty helper first resets the list for this server (as `gh auth setup-git` does): another
    # helper configured globally, like `store`, then never answers for it with an old token.
    for arguments in (["--replace-all", key, ""], ["--add", key, f"!{own_command()} git-credential"]):
        result = subprocess.run(["git", "config", "--global", *arguments], capture_output=True, text=True)
        if result.returncode != 0:
            raise ClientError(f"git config failed: {result.stderr.strip()}")
    output.say(f"git now asks tokensmith for {credential.server}: clone, fetch and push there without a prompt.")


def maven_settings_command(args: Namespace) -> None:
    credential = logged_in(args.server)
    if args.print:
        output.say(maven_settings.server_entry(credential.username, "PASTE-A-PERSONAL-ACCESS-TOKEN-HERE", ""))
        return
    path = Path(args.file).expanduser() if args.file else Path.home() / ".m2" / "settings.xml"
    created = maven_settings.write(path, credential.username, credential.token)
    if credential.kept in ("keyring", "file"):
        credentials.remember_maven_settings(credential.server, path.absolute())
    output.say(
        f"{'Created' if created else 'Updated'} {path}: <server> {maven_settings.SERVER_ID} "
        f"for {credential.username}, everything else kept as it was."
    )


# --- Studio projects --------------------------------------------------------------------------------


def studio_link(args: Namespace) -> None:
    credential = logged_in_or_asked(args.server)
    with connect(credential) as api:
        found = [p for p in api.projects() if p["id"] == args.project]
    if not found:
        raise NotFound(f"There is no project {args.project!r}, or you are not a member of it.")
    details = found[0]
    path = project_link.write(Path.cwd(), credential.server, args.project)
    output.say(f"Linked {Path.cwd()} to {args.project} ({details['role']} access), in {path.name}.")
    output.say(f"Git:   {details['git_url']}")
    output.say(f"Maven: {details['maven_coordinates']} from {details['maven_url']}")


def release(args: Namespace) -> None:
    project, server = linked(args.project, args.server)
    with connect(logged_in_or_asked(server)) as api:
        if sys.stdout.isatty() and not args.json:
            output.note(f"Releasing {project} {args.version} from {args.revision}…")
        published = api.release(project, args.revision, args.version)
    if args.json:
        output.say(json.dumps(published))
        return
    output.say(f"Released {project} {published['version']}: {published['mavenCoordinates']}")


def register(args: Namespace) -> None:
    project, server = linked(args.project, args.server)
    with connect(logged_in_or_asked(server)) as api:
        registered = api.register(project, args.description)
    path = (
        Path(args.key_file)
        if args.key_file
        else (credentials.config_dir() / "instances" / f"{registered['instance_id']}.key")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{registered['instance_id']}:{registered['instance_key']}\n")
    output.say(f"Registered instance {registered['instance_id']} of {registered['project']}.")
    output.say(
        f"Its instance key is in {path} (mode 0600): the package repository's username is the "
        "instance id, its password the instance key."
    )


# --- CI without a stored secret ---------------------------------------------------------------------


def ci_token(args: Namespace) -> None:
    """The token this CI job's ID token is exchanged for, on stdout, for tools that want one."""
    from tokensmith.client import workload_identity

    if workload_identity.source() is None:
        raise workload_identity.not_in_ci()
    found = workload_identity.token_for(target(args.server))
    if args.json:
        output.as_json(found.as_dict())
        return
    output.say(found.token)
