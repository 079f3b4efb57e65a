"""The client's command tree, on argparse: it costs a few milliseconds to build and parse,
where Typer 0.29 spends a tenth of a second importing pydantic to coerce each parameter (see
docs/benchmarks.md). Usage errors are one line, like every other error. Shell completion is
argcomplete's, from this same tree (``tokensmith completion bash``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn, TypeAlias

from tokensmith import __version__
from tokensmith.client import commands, git_credential, output
from tokensmith.client.errors import InvalidInput

HELP = "Tokensmith: personal access tokens for the platform (and, on the server, its administration)."
SHELLS = ("bash", "zsh", "fish")


class UsageError(InvalidInput):
    """The command line itself is wrong: an unknown option, a missing argument."""


class Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are raised as one line instead of printed with the usage.
    ``commands`` holds its subcommands, if it has any."""

    commands: Commands | None = None

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message[:1].upper()}{message[1:]}. See `{self.prog} --help`.")


# What add_subparsers returns (argparse names no public type; generic only to type checkers).
Commands: TypeAlias = "argparse._SubParsersAction[Parser]"
Handler: TypeAlias = Callable[[argparse.Namespace], int | None]  # returns the exit code, None for 0


def layout(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, max_help_position=30)


def command(group: Commands, name: str, handler: Handler | None, help: str, description: str = "") -> Parser:
    """A subcommand: ``help`` in its parent's list, ``description`` (or ``help``) on its own page."""
    parser = group.add_parser(name, help=help, description=description or help, formatter_class=layout)
    parser.set_defaults(handler=handler, parser=parser)
    return parser


def subcommands(parser: Parser) -> Commands:
    parser.commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    return parser.commands


def with_server(parser: Parser) -> Parser:
    parser.add_argument(
        "--server", metavar="URL", help="the server (default: TOKENSMITH_SERVER, else the one last logged in to)"
    )
    return parser


def with_json(parser: Parser, help: str = "print JSON") -> Parser:
    parser.add_argument("--json", action="store_true", help=help)
    return parser


def completion(args: argparse.Namespace) -> None:
    from argcomplete.shell_integration import shellcode

    output.say(shellcode(["tokensmith"], shell=args.shell))


def parser() -> Parser:
    root = Parser(prog="tokensmith", description=HELP, formatter_class=layout)
    root.set_defaults(handler=None, parser=root)
    root.add_argument("--debug", action="store_true", help="on an error, show the traceback too")
    root.add_argument("--version", action="version", version=f"tokensmith {__version__}")
    top = subcommands(root)

    login = with_server(
        command(
            top,
            "login",
            commands.login,
            "log in to a server, with a token or in a browser",
            "Log in to a server: type your username and a personal access token, or (--web) "
            "approve the login in a browser where you are signed in. The token is kept in "
            "the system keyring, or where there is none in a file only you can read.",
        )
    )
    login.add_argument("--web", action="store_true", help="approve the login in a browser (a new token is made)")
    login.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        metavar="SCOPE",
        help="with --web: a scope of the new token (repeat it; default: all of them)",
    )
    login.add_argument("--no-browser", action="store_true", help="with --web: do not open a browser")
    with_server(
        command(
            top,
            "logout",
            commands.logout,
            "forget the token kept for a server",
            "Forget the token kept for a server. It stays valid there: revoke it if it leaked.",
        )
    )
    with_json(with_server(command(top, "whoami", commands.whoami, "who your credentials are, checked with the server")))
    status = with_json(
        command(
            top,
            "status",
            commands.status,
            "every server you are logged in to, and the linked project",
            "Every server you are logged in to: who, with which token (its scopes and expiry), "
            "where the token is kept; and the Studio project this folder is linked to.",
        )
    )
    status.add_argument("--project", metavar="PROJECT", help="a project to show (default: the linked one)")

    tokens = subcommands(command(top, "tokens", None, "your personal access tokens"))
    with_json(
        with_server(
            command(
                tokens,
                "list",
                commands.tokens_list,
                "your tokens: name, hint, scopes, use, expiry",
                "Your live tokens, never their secrets: name, hint, scopes, created, last used "
                "(when, from where, by what), expiry.",
            )
        )
    )
    revoke = with_server(
        command(
            tokens,
            "revoke",
            commands.tokens_revoke,
            "revoke one of your tokens",
            "Revoke one of your tokens: every tool using it is refused from the next request.",
        )
    )
    revoke.add_argument("name_or_id", metavar="NAME_OR_ID", help="the token's name or id (see tokens list)")
    revoke.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    with_server(
        command(
            tokens,
            "rotate",
            commands.tokens_rotate,
            "replace the kept token with a new secret",
            "Replace the kept token with a new secret (same name, expiry and scopes), everywhere this "
            "client put it: the keyring or its file, and the settings.xml maven-settings wrote.",
        )
    )

    studio = subcommands(command(top, "studio", None, "Studio projects from a work folder"))
    link = with_server(
        command(
            studio,
            "link",
            commands.studio_link,
            "link this folder to a Studio project",
            "Link this folder to a Studio project: release, register and status then use it.",
        )
    )
    link.add_argument("project", metavar="PROJECT", help="the project id, like acme-contracts")
    release = with_json(
        with_server(
            command(
                top,
                "release",
                commands.release,
                "release a Studio project to Maven",
                "Release a revision of a Studio project to its Maven repository.",
            )
        ),
        help="print the server's JSON",
    )
    release.add_argument("project", nargs="?", metavar="PROJECT", help="the project id (default: the linked one)")
    release.add_argument("--revision", default="master", metavar="REV", help="branch, tag or commit (master)")
    release.add_argument(
        "--version", default="MINOR", metavar="VERSION", help="1.2.0, 1.2.0-rc1, MAJOR, MINOR or PATCH (MINOR)"
    )
    register = with_server(
        command(
            top,
            "register",
            commands.register,
            "register an instance, keep its key",
            "Register an instance of a project (as `nuxeoctl register` does) and save its "
            "instance key, the package repository's password, to a private file.",
        )
    )
    register.add_argument(
        "--project", metavar="PROJECT", help="the project this instance runs (default: the linked one)"
    )
    register.add_argument("--description", default="", metavar="TEXT", help="what this instance is, like staging")
    register.add_argument("--key-file", metavar="PATH", help="where to write the instance key")

    git = subcommands(command(top, "git", None, "git integration"))
    with_server(
        command(
            git,
            "setup",
            commands.git_setup,
            "make git use your token for this server",
            "Make git ask tokensmith for this server's credentials, and only for this server's: clone, "
            "fetch and push then need no prompt.",
        )
    )
    helper = command(top, "git-credential", commands.git_credential_command, "git's credential helper (git runs it)")
    helper.add_argument("operation", choices=git_credential.OPERATIONS, help="what git asks")
    maven = with_server(
        command(
            top,
            "maven-settings",
            commands.maven_settings_command,
            "add your token to ~/.m2/settings.xml",
            "Add (or update) the Studio repository's <server> entry in ~/.m2/settings.xml, "
            "keeping everything else in the file as it was.",
        )
    )
    maven.add_argument("--file", metavar="PATH", help="the settings file (~/.m2/settings.xml)")
    maven.add_argument("--print", action="store_true", help="show the entry instead of writing it")

    ci = subcommands(command(top, "ci", None, "CI jobs without a stored secret"))
    with_json(
        with_server(
            command(
                ci,
                "token",
                commands.ci_token,
                "print the token this CI job's ID token gets",
                "Exchange this CI job's OpenID Connect ID token (TOKENSMITH_ID_TOKEN, or GitHub Actions' own) "
                "for a short-lived token of the project whose trusted publisher it matches, and print it: for "
                "tools that take a token, like Maven's settings (${env.TOKENSMITH_CI_TOKEN}). Every other "
                "command uses it by itself.",
            )
        ),
        help="print the token, its username, project, scopes and expiry as JSON",
    )
    shell = command(
        top,
        "completion",
        completion,
        "print the shell completion script",
        'Print the completion script for your shell; for bash: eval "$(tokensmith completion bash)" in ~/.bashrc.',
    )
    shell.add_argument("shell", choices=SHELLS, help="the shell")
    return root
