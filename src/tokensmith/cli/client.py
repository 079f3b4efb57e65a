"""The client a person runs on a laptop or in CI: login, whoami, tokens, git's credential helper.

It asks for ``Username:`` and ``Token:`` (hidden) only on a terminal; elsewhere it says what is
missing. The token never appears in its output, its arguments or its errors.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from tokensmith.cli import credentials
from tokensmith.cli.credentials import Credential
from tokensmith.cli.main import app, tokens_app
from tokensmith.cli.server_api import ServerApi
from tokensmith.errors import AuthenticationFailed, AuthenticationRequired

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
