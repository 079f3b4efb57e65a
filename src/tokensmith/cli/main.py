"""The ``tokensmith`` command. Errors become one line on stderr and a documented exit code.

Exit codes: 0 success; 1 unexpected error; 2 bad usage or invalid input; 3 not found;
4 conflict (already exists); 5 refused (authentication or permission); 6 the store or the
server is unreachable (or answers 503).
"""

from __future__ import annotations

import sys
import traceback

import typer

from tokensmith.errors import (
    AuthenticationFailed,
    AuthenticationRequired,
    ConfigurationError,
    Conflict,
    InvalidInput,
    NotFound,
    NotPermitted,
    ServerUnreachable,
    StoreUnavailable,
    TokensmithError,
)

app = typer.Typer(
    name="tokensmith",
    help="Tokensmith: personal access tokens for the platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
users_app = typer.Typer(help="Manage user accounts (server administration).", no_args_is_help=True)
tokens_app = typer.Typer(help="Personal access tokens.", no_args_is_help=True)
projects_app = typer.Typer(help="Studio projects and their members (server administration).", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
packages_app = typer.Typer(help="The package (hotfix) repository (server administration).", no_args_is_help=True)
studio_app = typer.Typer(help="Studio projects from a work folder.", no_args_is_help=True)
git_app = typer.Typer(help="Git integration.", no_args_is_help=True)
app.add_typer(studio_app, name="studio")
app.add_typer(git_app, name="git")
app.add_typer(projects_app, name="projects")
app.add_typer(packages_app, name="packages")

EXIT_CODES: list[tuple[type[TokensmithError], int]] = [
    (InvalidInput, 2),
    (ConfigurationError, 2),
    (NotFound, 3),
    (Conflict, 4),
    (AuthenticationFailed, 5),
    (AuthenticationRequired, 5),
    (NotPermitted, 5),
    (StoreUnavailable, 6),
    (ServerUnreachable, 6),
]


def exit_code_for(error: TokensmithError) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(error, kind)), 1)


def fail(error: TokensmithError) -> None:
    message = error.full_message if isinstance(error, AuthenticationFailed) else error.message
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    raise SystemExit(exit_code_for(error))


class Options:
    debug = False


@app.callback()
def options(
    debug: bool = typer.Option(False, "--debug", help="On an error, show the traceback too."),
) -> None:
    """Tokensmith: personal access tokens for the platform."""
    Options.debug = debug


def _register_commands() -> None:
    from tokensmith.cli import admin, client, serve  # noqa: F401  (commands register themselves)


def main() -> None:
    _register_commands()
    try:
        app()
    except TokensmithError as error:
        if Options.debug:
            traceback.print_exc()
        fail(error)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:
        if Options.debug:
            raise
        # The exception's own words could quote anything, a secret included: its kind only.
        typer.secho(f"Error: an unexpected {type(error).__name__}. Run again with --debug to see where.",
                    err=True, fg=typer.colors.RED)
        sys.exit(1)
