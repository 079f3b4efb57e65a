"""The server's administration commands (``admin.py``, ``serve.py``) register on these Typer
groups, and run through ``run``: the command line hands them their arguments only once it knows
one of them was asked for, since loading them loads the server (SQLAlchemy and the models; for
``serve``, FastAPI and uvicorn too).
"""

from __future__ import annotations

import gc
import importlib
from typing import Any

import typer

# Typer carries its own copy of Click since 0.28 (pyproject.toml asks for 0.29 on); its usage
# errors are not re-exported at the top.
from typer._click import exceptions as click_exceptions
from typer.core import TyperGroup

from tokensmith.client.errors import InvalidInput

app = typer.Typer(rich_markup_mode=None, add_completion=False)  # serve
users_app = typer.Typer(help="User accounts.", no_args_is_help=True, rich_markup_mode=None, add_completion=False)
projects_app = typer.Typer(
    help="Studio projects and their members.", no_args_is_help=True, rich_markup_mode=None, add_completion=False
)
packages_app = typer.Typer(
    help="The package (hotfix) repository.", no_args_is_help=True, rich_markup_mode=None, add_completion=False
)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True, rich_markup_mode=None, add_completion=False)
backup_app = typer.Typer(
    help="Backups of the whole deployment: create, verify, restore.",
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
)
tokens_app = typer.Typer(rich_markup_mode=None, add_completion=False)  # tokens create, tokens revoke-all
publishers_app = typer.Typer(
    help="Trusted publishers: the CI jobs whose OpenID Connect ID token gets a project's token.",
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
)


def group(module: str, name: str) -> Any:
    """The command or group ``name`` (tokens' ``create`` and ``revoke-all`` by theirs), once
    ``module`` registered it."""
    load(module)
    if name == "serve":
        return typer.main.get_command(app)
    groups = {
        "users": users_app,
        "projects": projects_app,
        "packages": packages_app,
        "audit": audit_app,
        "publishers": publishers_app,
        "backup": backup_app,
    }
    if name in groups:
        return typer.main.get_group(groups[name])  # a group even while it holds one command
    return typer.main.get_group(tokens_app).commands[name]


def load(module: str) -> None:
    """Import a server command's module, and with it the server: SQLAlchemy, the models, the
    domain. Python's cycle collector would walk the growing heap again and again while those
    imports build it, and all of it once more as the process exits, yet none of it is garbage:
    modules, classes and tables live as long as the process. So the collector waits until the
    imports are done and then leaves what they made alone (``gc.freeze``), and collects only
    what the command itself makes. It was a third of an administration command's time
    (docs/benchmarks.md)."""
    gc.disable()
    try:
        importlib.import_module(module)
    finally:
        gc.freeze()
        gc.enable()


def run(module: str, name: str, prog: str, arguments: list[str]) -> int:
    """Run a server command with its arguments; its usage errors in one line, as the client's."""
    command = group(module, name)
    try:
        result = command.main(args=arguments, prog_name=prog, standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as usage:
        print(usage.format_message())
        return 0
    except click_exceptions.UsageError as usage:
        where = usage.ctx.command_path if usage.ctx is not None else prog
        raise InvalidInput(f"{usage.format_message().rstrip('.')}. See `{where} --help`.") from None
    except typer.Abort:
        raise InvalidInput("Aborted.") from None
    return result if isinstance(result, int) else 0


def names(module: str, name: str) -> list[str]:
    """The subcommands of a group, for shell completion (it loads the server: only on a Tab)."""
    command = group(module, name)
    return sorted(command.commands) if isinstance(command, TyperGroup) else []
