"""git's credential helper (gitcredentials(7)): ``tokensmith git-credential get|store|erase``.

git runs it on every fetch and push to the server, so the entry point calls it before any
command-line machinery is imported: the standard library and the login files, nothing else
(the keyring package too when the token is in the keyring).

``get`` answers with the login kept for the server git asks about, and nothing for any other.
``store`` and ``erase`` are ignored, as ``gh auth git-credential`` ignores them: git sends
``erase`` after any 401 (a token typed into a URL, a password another helper offered), and the
login belongs to ``tokensmith login`` and ``logout``, not to one refused request. A token the
server has revoked is reported by ``tokensmith whoami`` and ``status``.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tokensmith.client import credentials, server_url
from tokensmith.client.errors import ClientError

OPERATIONS = ("get", "store", "erase")


def read_request(stream: TextIO) -> dict[str, str]:
    """git's ``key=value`` lines, up to a blank line or the end."""
    request: dict[str, str] = {}
    for line in stream:
        line = line.rstrip("\n")
        if not line:
            break
        key, sep, value = line.partition("=")
        if sep:
            request[key] = value
    return request


def answer(request: dict[str, str]) -> str:
    """What ``get`` prints: the username and token for the server git asks about, or nothing."""
    try:
        server = server_url.parse(f"{request.get('protocol', '')}://{request.get('host', '')}")
    except ClientError:
        return ""
    credential = credentials.from_environment()
    if credential is None or credential.server != server:
        credential = credentials.stored(server)
    if credential is None:
        return ""
    if request.get("username") not in (None, "", credential.username):
        return ""  # the URL names someone else: their token is not ours to give
    return f"username={credential.username}\npassword={credential.token}\n"


def main(operation: str, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    request = read_request(stdin)
    if operation != "get":
        return 0
    try:
        stdout.write(answer(request))
    except ClientError as error:
        print(f"tokensmith: {error.message}", file=sys.stderr)
        return 1
    return 0
