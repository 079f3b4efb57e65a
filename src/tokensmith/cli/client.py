"""The client a person runs on a laptop or in CI: login, whoami, tokens, git's credential helper.

It asks for ``Username:`` and ``Token:`` (hidden) only on a terminal; elsewhere it says what is
missing. The token never appears in its output, its arguments or its errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from tokensmith.cli import credentials, maven_settings
from tokensmith.cli.credentials import Credential, config_dir
from tokensmith.cli.main import app, git_app, studio_app, tokens_app
from tokensmith.cli.server_api import ServerApi
from tokensmith.errors import AuthenticationFailed, AuthenticationRequired, InvalidInput, NotFound

Server = Annotated[str | None, typer.Option("--server", help="The server's URL (default: the one you logged in to).")]


def interactive() -> bool:
    return sys.stdin.isatty()


def ask(label: str, *, secret: bool = False) -> str:
    if not interactive():
        raise AuthenticationRequired(
            f"No terminal to ask for the {label.lower()}: set {credentials.ENV_SERVER}, "
            f"{credentials.ENV_USERNAME} and {credentials.ENV_TOKEN} (CI), or run `tokensmith login` on a terminal."
        )
    return typer.prompt(label, hide_input=secret).strip()


def current(server: str | None = None) -> Credential:
    """The credential to use, asking for one on a terminal when none is stored."""
    found = credentials.load(server)
    if found is not None:
        return found
    if not interactive():
        raise AuthenticationRequired(
            "Not logged in: run `tokensmith login`, or set TOKENSMITH_SERVER, TOKENSMITH_USERNAME and "
            "TOKENSMITH_TOKEN."
        )
    return Credential(credentials.normalise_server(server or credentials.DEFAULT_SERVER),
                      ask("Username"), ask("Token", secret=True), "prompt")


def describe(me: dict) -> str:
    token = me.get("token") or {}
    using = f" with token “{token['name']}” ({token['hint']})" if token else ""
    return f"{me['user']['username']}{using}"


@app.command()
def login(server: Server = None) -> None:
    """Check a username and token against the server and keep them for the next commands."""
    server = credentials.normalise_server(server or os.environ.get(credentials.ENV_SERVER) or credentials.DEFAULT_SERVER)
    username = os.environ.get(credentials.ENV_USERNAME) or ask("Username")
    token = os.environ.get(credentials.ENV_TOKEN) or ask("Token", secret=True)
    candidate = Credential(server, username, token)
    with ServerApi(candidate) as api:
        try:
            me = api.me()
        except AuthenticationFailed as error:
            if error.code == "password_not_accepted":
                error.message = (f"That looks like a password: {server} takes a personal access token here. "
                                 f"Create one on the My Tokens page, {server}/tokens, and log in with it.")
            else:
                error.message = f"{error.message} Nothing was stored."
            raise
    where = credentials.save(server, me["user"]["username"], token)
    typer.echo(f"Logged in to {server} as {describe(me)}.")
    typer.echo(f"Credentials stored in {where}.")


@app.command()
def logout(server: Server = None) -> None:
    """Forget the stored token (it stays valid on the server: revoke it there if it leaked)."""
    if credentials.forget(server):
        typer.echo("Logged out: the stored token is forgotten on this machine.")
    else:
        typer.echo("Nothing to forget: not logged in.")


@app.command()
def whoami(server: Server = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Who the stored (or environment's) credentials are, checked with the server."""
    credential = current(server)
    with ServerApi(credential) as api:
        me = api.me()
    if as_json:
        typer.echo(json.dumps(me, indent=2))
        return
    typer.echo(f"{describe(me)} on {credential.server} (credentials from {credential.source}).")


@tokens_app.command("list")
def tokens_list(server: Server = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Your tokens (never their secrets): name, hint, created, last used, expiry."""
    with ServerApi(current(server)) as api:
        listed = api.tokens()
    if as_json:
        typer.echo(json.dumps(listed, indent=2))
        return
    table = Table("id", "name", "token", "created", "last used", "expires")
    for token in listed:
        used = token["last_used_at"] or "never"
        if token["last_used_at"]:
            used = f"{used[:16].replace('T', ' ')} from {token['last_used_ip']} ({token['last_used_agent'] or '?'})"
        expires = (token["expires_at"] or "never")[:16].replace("T", " ") + (" (expired)" if token["expired"] else "")
        table.add_row(str(token["id"]), token["name"], token["hint"], token["created_at"][:16].replace("T", " "),
                      used, expires)
    Console().print(table)


def serves(server: str, request: dict[str, str]) -> bool:
    """Whether git is asking about the server these credentials are for."""
    address = urlsplit(server)
    return address.scheme == request.get("protocol") and address.netloc == request.get("host")


@app.command("git-credential")
def git_credential(operation: Annotated[str, typer.Argument(help="get, store or erase (git calls it)")]) -> None:
    """A git credential helper: `git config --global credential.helper "tokensmith git-credential"`."""
    request = dict(line.split("=", 1) for line in sys.stdin.read().splitlines() if "=" in line)
    stored = credentials.load()
    if stored is None or not serves(stored.server, request):
        return  # not ours: git asks the next helper, or the person
    if operation == "get":
        sys.stdout.write(f"username={stored.username}\npassword={stored.token}\n")
    elif operation == "erase" and request.get("password") in (None, stored.token) and stored.source != "environment":
        credentials.forget(stored.server)  # git says the token was refused: a revoked one is no use


def _find_token(listed: list[dict], name_or_id: str) -> dict:
    by_id = [t for t in listed if name_or_id.isdigit() and t["id"] == int(name_or_id)]
    by_name = [t for t in listed if t["name"] == name_or_id]
    found = by_id or by_name
    if not found:
        raise NotFound(f"You have no live token named or numbered {name_or_id!r}: see `tokensmith tokens list`.")
    return found[0]


@tokens_app.command("revoke")
def tokens_revoke(
    name_or_id: Annotated[str, typer.Argument(help="The token's name or id (tokensmith tokens list).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    server: Server = None,
) -> None:
    """Revoke one of your tokens: every tool using it is refused from the next request."""
    with ServerApi(current(server)) as api:
        token = _find_token(api.tokens(), name_or_id)
        if not yes:
            if not interactive():
                raise InvalidInput("Revoking asks for confirmation: add --yes to revoke without a terminal.")
            if not typer.confirm(f"Revoke token “{token['name']}” ({token['hint']})?", default=False):
                raise typer.Exit(1)
        api.revoke(token["id"])
    typer.echo(f"Revoked token “{token['name']}” ({token['hint']}).")


@tokens_app.command("rotate")
def tokens_rotate(server: Server = None) -> None:
    """Replace the stored token with a new secret (same name, expiry, scopes) and store it."""
    credential = current(server)
    if credential.source == "environment":
        raise InvalidInput("The token comes from TOKENSMITH_TOKEN: rotate it where that variable is set "
                           "(the My Tokens page, or `tokensmith tokens rotate` where it is stored).")
    with ServerApi(credential) as api:
        me = api.me()
        rotated = api.rotate(me["token"]["id"])
    where = credentials.save(credential.server, credential.username, rotated["token"])
    typer.echo(f"Rotated token “{rotated['name']}”: the old secret no longer works; the new one "
               f"({rotated['hint']}) is stored in {where}.")


@app.command()
def release(
    project: Annotated[str, typer.Argument(help="The project id, like acme-contracts.")],
    revision: Annotated[str, typer.Option("--revision", help="Branch, tag or commit.")] = "master",
    version: Annotated[str, typer.Option("--version", help="1.2.0, 1.2.0-rc1, MAJOR, MINOR or PATCH.")] = "MINOR",
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
    server: Server = None,
) -> None:
    """Release a revision of a Studio project to its Maven repository."""
    with ServerApi(current(server)) as api:
        if sys.stdout.isatty() and not as_json:
            with Console().status(f"Releasing {project} {version} from {revision}…"):
                published = api.release(project, revision, version)
        else:
            published = api.release(project, revision, version)
    if as_json:
        typer.echo(json.dumps(published))
        return
    typer.echo(f"Released {project} {published['version']}: {published['mavenCoordinates']}")


@app.command()
def register(
    project: Annotated[str, typer.Option("--project", help="The project this instance runs.")],
    description: Annotated[str, typer.Option("--description", help="What this instance is, like staging.")] = "",
    key_file: Annotated[Path | None, typer.Option("--key-file", help="Where to write the instance key.")] = None,
    server: Server = None,
) -> None:
    """Register an instance (as `nuxeoctl register` does) and save its key to a private file."""
    with ServerApi(current(server)) as api:
        registered = api.register(project, description)
    path = key_file or (config_dir() / "instances" / f"{registered['instance_id']}.key")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{registered['instance_id']}:{registered['instance_key']}\n")
    typer.echo(f"Registered instance {registered['instance_id']} of {registered['project']}.")
    typer.echo(f"Its instance key is in {path} (mode 0600): the package repository's username is the "
               "instance id, its password the instance key.")


LINK_FILE = ".tokensmith.json"


@studio_app.command("link")
def studio_link(
    project: Annotated[str, typer.Argument(help="The project id, like acme-contracts.")],
    server: Server = None,
) -> None:
    """Link the current folder to a Studio project, and show how to reach it."""
    credential = current(server)
    with ServerApi(credential) as api:
        found = [p for p in api.projects() if p["id"] == project]
    if not found:
        raise NotFound(f"There is no project {project!r}, or you are not a member of it.")
    details = found[0]
    Path(LINK_FILE).write_text(json.dumps({"server": credential.server, "project": project}, indent=2) + "\n")
    typer.echo(f"Linked {Path.cwd()} to {project} ({details['role']} access), in {LINK_FILE}.")
    typer.echo(f"Git:   {details['git_url']}")
    typer.echo(f"Maven: {details['maven_coordinates']} from {details['maven_url']}")


@git_app.command("setup")
def git_setup(server: Server = None) -> None:
    """Make git use the stored token for this server (and only for it)."""
    credential = current(server)
    command = ["git", "config", "--global", f"credential.{credential.server}.helper", "tokensmith git-credential"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise InvalidInput(f"git config failed: {result.stderr.strip()}")
    typer.echo(f"git now asks tokensmith for {credential.server}: clone and push there without a prompt.")


@app.command("maven-settings")
def maven_settings_command(
    settings_file: Annotated[Path, typer.Option("--file", help="The settings file.")] = Path.home() / ".m2" / "settings.xml",
    print_only: Annotated[bool, typer.Option("--print", help="Show the entry instead of writing it.")] = False,
    server: Server = None,
) -> None:
    """Add (or update) the Studio repository's <server> entry in ~/.m2/settings.xml."""
    credential = current(server)
    if print_only:
        typer.echo(maven_settings.server_entry(credential.username, "PASTE-A-PERSONAL-ACCESS-TOKEN-HERE", ""))
        return
    created = maven_settings.write(settings_file, credential.username, credential.token)
    typer.echo(f"{'Created' if created else 'Updated'} {settings_file}: <server> {maven_settings.SERVER_ID} "
               f"for {credential.username}, everything else kept as it was.")
