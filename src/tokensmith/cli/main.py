"""The ``tokensmith`` command: one tree for the client's commands and the server's
administration. ``tokensmith --help`` and shell completion list both; the administration
commands (and the server they import) load only when one of them runs. In the client's own
distribution (tokensmith-client, built by distributions/client/) they are not there at all, and
asking for one says what to install instead.

Errors become one line on stderr and an exit code: 0 success; 1 unexpected error; 2 bad
usage or invalid input; 3 not found; 4 conflict (already exists); 5 refused (authentication
or permission, or not logged in); 6 the store or the server is unreachable (or answers 503).
"""

from __future__ import annotations

import os
import sys
import traceback

from tokensmith.client import command_line
from tokensmith.client.errors import ClientError, InvalidInput

ADMIN = "tokensmith.cli.admin"
ADMIN_TOKENS = "tokensmith.cli.admin_tokens"
# The server's commands: name, module, help. `tokens create`, `revoke-all`, `lookup` and `sweep` too.
SERVER_COMMANDS = {
    "serve": ("tokensmith.cli.serve", "run the server: web site, REST API, git and Maven (server administration)"),
    "users": (ADMIN, "user accounts (server administration)"),
    "projects": (ADMIN, "Studio projects and their members (server administration)"),
    "packages": (ADMIN, "the package (hotfix) repository (server administration)"),
    "audit": (ADMIN, "the audit trail: export every event (server administration)"),
    "publishers": (ADMIN, "trusted publishers: CI jobs that get tokens without a secret (server administration)"),
    "backup": (ADMIN, "back up or restore the whole deployment (server administration)"),
}
SERVER_TOKEN_COMMANDS = {
    "create": (ADMIN, "mint a token for a user, printed once (server administration)"),
    "revoke-all": (ADMIN, "revoke every live token of a user (server administration)"),
    "lookup": (ADMIN_TOKENS, "whose are these tokens (read on stdin)? --revoke (server administration)"),
    "sweep": (ADMIN_TOKENS, "revoke unused tokens and queue the notices due, now (server administration)"),
}


def server_command(words: list[str]) -> tuple[str, str, str, list[str]] | None:
    """(module, name, prog, its arguments) when the words ask for one of the server's commands."""
    if words and words[0] in SERVER_COMMANDS:
        return SERVER_COMMANDS[words[0]][0], words[0], f"tokensmith {words[0]}", words[1:]
    if len(words) > 1 and words[0] == "tokens" and words[1] in SERVER_TOKEN_COMMANDS:
        return SERVER_TOKEN_COMMANDS[words[1]][0], words[1], f"tokensmith tokens {words[1]}", words[2:]
    return None


def tree() -> command_line.Parser:
    """The client's tree, with the server's commands listed (and completed) but not loaded."""
    root = command_line.parser()
    top = root.commands
    assert top is not None  # the root has its commands (command_line.parser)
    tokens_top = top.choices["tokens"].commands
    assert tokens_top is not None
    for group, table in ((top, SERVER_COMMANDS), (tokens_top, SERVER_TOKEN_COMMANDS)):
        for name, (module, help) in table.items():
            placeholder = command_line.command(group, name, None, help)
            if group is top and name != "serve":
                subcommand = placeholder.add_argument("subcommand", nargs="?", metavar="COMMAND")
                subcommand.completer = (  # type: ignore[attr-defined]  # argcomplete's documented hook on an Action
                    lambda module=module, name=name, **_: _server_subcommands(module, name)
                )
    return root


def _server_subcommands(module: str, name: str) -> list[str]:
    if not server_installed():
        return []
    from tokensmith.cli import server_commands

    return server_commands.names(module, name)


def server_installed() -> bool:
    """Whether this installation holds the server (the ``tokensmith`` distribution, or a
    checkout), or only the client (``tokensmith-client``)."""
    import importlib.util

    return importlib.util.find_spec("tokensmith.cli.server_commands") is not None


def not_installed(prog: str) -> InvalidInput:
    return InvalidInput(
        f"`{prog}` is a server command, not in tokensmith-client (the client alone): where the server "
        "runs, install the `tokensmith` distribution instead (`pip install .` in a Tokensmith checkout)."
    )


def fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    red = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    print(f"\033[31mError: {message}\033[0m" if red else f"Error: {message}", file=sys.stderr)
    return code


def server_failure(error: Exception) -> tuple[str, int] | None:
    """An administration command's domain error, as a message and an exit code. Looked up
    only once one was raised: the client never imports the server's errors."""
    errors = sys.modules.get("tokensmith.errors")
    if errors is None or not isinstance(error, errors.TokensmithError):
        return None
    codes = [
        (errors.InvalidInput, 2),
        (errors.ConfigurationError, 2),
        (errors.NotFound, 3),
        (errors.Conflict, 4),
        (errors.AuthenticationFailed, 5),
        (errors.AuthenticationRequired, 5),
        (errors.NotPermitted, 5),
        (errors.StoreUnavailable, 6),
        (errors.ServerUnreachable, 6),
    ]
    message = error.full_message if isinstance(error, errors.AuthenticationFailed) else error.message
    return message, next((code for kind, code in codes if isinstance(error, kind)), 1)


def run(arguments: list[str]) -> int:
    leading = 0
    while leading < len(arguments) and arguments[leading] == "--debug":
        leading += 1
    debug = leading > 0
    try:
        found = server_command(arguments[leading:])
        if found is not None and "_ARGCOMPLETE" not in os.environ:
            if not server_installed():
                raise not_installed(found[2])
            from tokensmith.cli import server_commands

            return server_commands.run(*found)
        root = tree()
        if "_ARGCOMPLETE" in os.environ:
            import argcomplete

            argcomplete.autocomplete(root)
        args, extra = root.parse_known_args(arguments)
        if extra:
            args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.handler is None:
            args.parser.print_help()
            return 0
        return args.handler(args) or 0
    except ClientError as error:
        return fail(error.message, error.exit_code, debug)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        known = server_failure(error)
        if known is not None:
            return fail(*known, debug)
        if debug:
            raise
        # The exception's own words could quote anything, a secret included: its kind only.
        return fail(f"an unexpected {type(error).__name__}. Run again with --debug to see where.", 1, debug)
