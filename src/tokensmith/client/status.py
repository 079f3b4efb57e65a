"""``tokensmith status``: every server the client knows, each login checked with its server
(who, which token, its scopes and expiry, where the token is kept), and the Studio project this
folder is linked to. What ``gh auth status`` tells, for every place this client keeps a token."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tokensmith.client import credentials, output, project_link
from tokensmith.client.credentials import Credential
from tokensmith.client.errors import ClientError, NotLoggedIn, Refused, Unreachable
from tokensmith.client.server_api import ServerApi


@dataclass
class Login:
    server: str
    default: bool
    username: str = ""
    kept: str = ""  # "environment", "keyring" or "file"
    where: str = ""
    state: str = "ok"  # "ok", "refused", "unreachable" or "unreadable"
    message: str = ""
    token: dict[str, Any] | None = None


@dataclass
class Project:
    project: str
    server: str
    linked_in: str | None
    state: str = "ok"  # "ok", "refused", "unreachable", "not_found" or "not_logged_in"
    message: str = ""
    details: dict[str, Any] | None = None


@dataclass
class Status:
    logins: list[Login] = field(default_factory=list)
    project: Project | None = None

    @property
    def exit_code(self) -> int:
        states = {login.state for login in self.logins} | ({self.project.state} if self.project else set())
        if not self.logins or states & {"refused", "unreadable", "not_logged_in", "not_found"}:
            return NotLoggedIn.exit_code
        return Unreachable.exit_code if "unreachable" in states else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "servers": [asdict(login) for login in self.logins],
            "project": asdict(self.project) if self.project else None,
        }

    def text(self) -> str:
        lines = (
            []
            if self.logins
            else [
                (
                    "Not logged in to any server: run `tokensmith login --server URL` "
                    "(add --web to approve it in a browser)."
                )
            ]
        )
        for login in self.logins:
            lines += _login_lines(login)
        if self.project:
            lines += _project_lines(self.project)
        return "\n".join(lines)


def gather(project: str | None) -> Status:
    found = Status()
    default, servers = credentials.known()
    environment = credentials.from_environment()
    if environment is not None:
        found.logins.append(_checked(environment, default=True))
    for server in servers:
        if environment is not None and server == environment.server:
            continue  # the environment's token is the one every command uses there
        try:
            credential = credentials.stored(server)
        except ClientError as error:
            found.logins.append(Login(server, server == default, state="unreadable", message=error.message))
            continue
        if credential is not None:
            found.logins.append(_checked(credential, default=environment is None and server == default))
    found.project = _project(project)
    return found


def _checked(credential: Credential, *, default: bool) -> Login:
    login = Login(credential.server, default, credential.username, credential.kept, credential.where)
    try:
        with ServerApi.of(credential) as api:
            me = api.me()
    except Refused as error:
        login.state, login.message = "refused", error.message
    except Unreachable as error:
        login.state, login.message = "unreachable", error.message
    else:
        login.username, login.token = me["user"]["username"], me.get("token")
    return login


def _project(project: str | None) -> Project | None:
    link = project_link.find()
    if project is None:
        if link is None:
            return None
        project = link.project
    linked = link if link is not None and project == link.project else None
    server = linked.server if linked else credentials.default_server()
    found = Project(project, server, str(linked.path) if linked else None)
    credential = credentials.load(server)
    if credential is None:
        found.state, found.message = "not_logged_in", f"not logged in to {server}"
        return found
    try:
        with ServerApi.of(credential) as api:
            matches = [p for p in api.projects() if p["id"] == found.project]
    except (Refused, Unreachable) as error:
        found.state, found.message = ("refused" if isinstance(error, Refused) else "unreachable"), error.message
        return found
    if not matches:
        found.state, found.message = "not_found", "no such project, or you are not a member of it"
    else:
        found.details = matches[0]
    return found


def _login_lines(login: Login) -> list[str]:
    lines = [f"{login.server}{' (default)' if login.default else ''}"]
    if login.state == "ok":
        token = login.token or {}
        lines.append(
            f"  Logged in as {login.username}"
            + (f" with token “{token['name']}” ({token['hint']})" if token else " (not with a token)")
        )
        if token:
            lines.append(f"  Scopes:  {', '.join(token.get('scopes') or []) or 'none'}")
            lines.append(f"  Limits:  {output.limits(token)}")
            lines.append(
                f"  Expires: {output.moment(token.get('expires_at'))}" + (" (expired)" if token.get("expired") else "")
            )
    else:
        what = {
            "refused": "The server refused the token",
            "unreachable": "Not checked",
            "unreadable": "The token cannot be read",
        }[login.state]
        lines.append(f"  {what}: {login.message}")
        if login.state == "refused" and login.kept != "environment":
            lines.append(f"  Log in again: tokensmith login --server {login.server}")
    if login.where:
        lines.append(f"  Kept in: {login.where}")
    return lines


def _project_lines(project: Project) -> list[str]:
    where = f" (linked in {project.linked_in})" if project.linked_in else ""
    lines = ["", f"Project {project.project} on {project.server}{where}"]
    if project.details is None:
        lines.append(f"  {project.message[:1].upper()}{project.message[1:]}.")
        return lines
    details = project.details
    lines.append(f"  Access: {details['role']}")
    lines.append(f"  Git:    {details['git_url']}")
    lines.append(f"  Maven:  {details['maven_coordinates']} from {details['maven_url']}")
    return lines
