"""``tokensmith serve``: migrate the store, create the first admin if needed, serve HTTP."""

from __future__ import annotations

import copy
import logging
from typing import Annotated

import typer
import uvicorn
from sqlalchemy.orm import sessionmaker
from uvicorn.config import LOGGING_CONFIG

from tokensmith import data_dir
from tokensmith.bootstrap import ADMIN_USERNAME, first_start
from tokensmith.cli.main import app
from tokensmith.config import Settings, load_settings
from tokensmith.db import create_store_engine, migrated, unit_of_work
from tokensmith.server_keys import load_server_keys


def prepare_store(settings: Settings) -> str | None:
    """Apply migrations and bootstrap; returns the new admin password on the very first start."""
    data_dir.ensure(settings.data_dir)
    load_server_keys(settings)  # generated now, on first start, rather than mid-request
    engine = create_store_engine(settings)
    try:
        # Under the migration lock: of instances started together on an empty store, exactly
        # one creates admin and demo, and the others find them.
        with migrated(engine) as connection, unit_of_work(sessionmaker(bind=connection)) as session:
            return first_start(session, settings)
    finally:
        engine.dispose()


def print_first_start_banner(password: str, settings: Settings) -> None:
    rule = "=" * 72
    typer.echo(
        f"\n{rule}\n"
        f" First start: created user '{ADMIN_USERNAME}' with this password:\n\n"
        f"     {password}\n\n"
        f" It is shown only this once. Sign in at {settings.public_url}/login\n"
        f"{rule}\n"
    )


class HideQueryStrings(logging.Filter):
    """Access log lines show the path without its query: the identity provider sends the
    authorization code to the callback in the query string, and it must not reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].split("?", 1)[0] + "?…", *args[3:])
        return True


def logging_config() -> dict:
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["tokensmith"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config.setdefault("filters", {})["hide_query_strings"] = {"()": HideQueryStrings}
    config["handlers"]["access"]["filters"] = ["hide_query_strings"]
    return config


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    access_log: Annotated[bool, typer.Option(help="Log each request (method, path, status).")] = True,
) -> None:
    """Run the server (web pages, REST API) on the configured store."""
    from tokensmith.web.app import create_app

    settings = load_settings()
    if not settings.public_url_configured:
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        settings = settings.with_overrides(public_url=f"http://{shown_host}:{port}")
    password = prepare_store(settings)
    if password is not None:
        print_first_start_banner(password, settings)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        access_log=access_log,
        log_config=logging_config(),
        proxy_headers=False,  # X-Forwarded-For only from TOKENSMITH_TRUSTED_PROXIES (web/app.py)
        server_header=False,
    )
