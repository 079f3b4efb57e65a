"""``tokensmith serve``: migrate the store, create the first admin if needed, serve HTTP."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any

import typer
import uvicorn
from sqlalchemy.orm import sessionmaker
from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from tokensmith import metrics
from tokensmith.accounts import passwords
from tokensmith.accounts.first_start import ADMIN_USERNAME, FirstStart, first_start
from tokensmith.cli.server_commands import app
from tokensmith.config import Settings, load_settings
from tokensmith.projects import releases
from tokensmith.store import data_dir, deployment
from tokensmith.store.database import check_replication, create_store_engine, migrated, unit_of_work
from tokensmith.store.server_keys import load_server_keys
from tokensmith.web.draining import DrainingProtocol


def prepare_store(settings: Settings) -> FirstStart | None:
    """Apply migrations and bootstrap; what the very first start made (admin's password), else None."""
    data_dir.ensure(settings.data_dir)
    passwords.use(settings.password_hashing)  # the first start's admin password
    load_server_keys(settings)  # generated now, on first start, rather than mid-request
    engine = create_store_engine(settings)
    try:
        # Under the migration lock: of instances started together on an empty store, exactly
        # one creates admin and demo, and the others find them.
        check_replication(engine, settings)
        with migrated(engine) as connection, unit_of_work(sessionmaker(bind=connection)) as session:
            deployment.record_public_url(session, settings.public_url)  # for the shell's commands
            started = first_start(session, settings)
            releases.publish_reference_copies(session, settings.data_dir)
            return started
    finally:
        engine.dispose()


def print_first_start_banner(started: FirstStart, settings: Settings) -> None:
    rule = "=" * 72
    if started.password is not None:
        typer.echo(
            f"\n{rule}\n"
            f" First start: created user '{ADMIN_USERNAME}' with this password:\n\n"
            f"     {started.password}\n\n"
            f" It is shown only this once. Sign in at {settings.public_url}/login\n"
            f"{rule}\n"
        )
        return
    provider = settings.identity_provider.name if settings.identity_provider else "your identity provider"
    typer.echo(
        f"\n{rule}\n"
        f" First start: created user '{ADMIN_USERNAME}', an administrator without a password: passwords\n"
        f" are off here (TOKENSMITH_LOCAL_LOGIN=false). To sign in as {ADMIN_USERNAME}, link it to\n"
        f" your own account at {provider}, from this machine's shell:\n\n"
        f"     tokensmith users link {ADMIN_USERNAME} --subject YOUR-SUBJECT\n\n"
        f" (your 'sub' there: at Okta, your user id, like 00u1a2b3c4d5e6f7g8h9), then\n"
        f' "Sign in with {provider}" at {settings.public_url}/login opens {ADMIN_USERNAME}.\n'
        f"{rule}\n"
    )


def logging_config() -> dict[str, Any]:
    """uvicorn's, and ours for ``tokensmith``. The access log is written by web/access_log.py
    (the protocol, web/draining.py, replaces uvicorn's access logger when it is on)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["tokensmith"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def uvicorn_options(host: str, port: int, *, access_log: bool) -> dict[str, Any]:
    """How uvicorn serves Tokensmith (and, in ``make bench``, the bare FastAPI route it is
    measured against, so that both run alike)."""
    return {
        "host": host,
        "port": port,
        "access_log": access_log,
        "log_config": logging_config(),
        "proxy_headers": False,  # X-Forwarded-For only from TOKENSMITH_TRUSTED_PROXIES (web/app.py)
        "server_header": False,
        "http": DrainingProtocol,  # a request a proxy sent as we stop is served, not lost
    }


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    access_log: Annotated[bool, typer.Option(help="Log each request (method, path, status).")] = True,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes sharing the port (one core each, at most).")
    ] = 1,
) -> None:
    """Run the server (web pages, REST API) on the configured store.

    SIGTERM (or Ctrl-C) stops it gracefully: it stops accepting, finishes the requests in
    flight (a clone included), writes the last uses noted, and exits."""
    from tokensmith.web.app import create_app

    settings = load_settings()
    if not settings.public_url_configured:
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        settings = replace(settings, public_url=f"http://{shown_host}:{port}")
    started = prepare_store(settings)
    if started is not None:
        print_first_start_banner(started, settings)
    options = uvicorn_options(host, port, access_log=access_log)
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
    else:
        serve_workers(settings, workers, options)


def serve_workers(settings: Settings, workers: int, options: dict[str, Any]) -> None:
    """``workers`` processes on one listening socket, supervised by this one (see ``Workers``).

    The store was migrated and bootstrapped before, once. Each worker builds its own application
    from the environment (``create_app``), so what ``serve`` decided is put there first: the
    public URL, and prometheus-client's directory (metrics.py).
    """
    if settings.sqlite_path is not None:
        typer.echo(
            "Note: on SQLite the workers' writes wait for each other through SQLite's own lock, "
            "not in turn as one process's do: for several workers, use PostgreSQL "
            "(docs/deployment.md).",
            err=True,
        )
    os.environ["TOKENSMITH_PUBLIC_URL"] = settings.public_url
    with metrics.multiprocess_directory():
        config = uvicorn.Config(APP_FACTORY, factory=True, workers=workers, **options)
        listening = config.bind_socket()
        try:
            supervisor = Workers(config, sockets=[listening])
            supervisor.run()
        finally:
            listening.close()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)


APP_FACTORY = "tokensmith.web.app:create_app"


class Workers(Multiprocess):
    """uvicorn's supervisor of worker processes: it replaces a worker that dies, passes SIGTERM
    and SIGINT on to every worker and waits for each to finish what it is serving, and on SIGHUP
    replaces them one at a time. Here it also stops listening as soon as it is told to stop,
    and tells prometheus-client of each worker gone."""

    def keep_subprocess_alive(self) -> None:
        self._noting_departures(super().keep_subprocess_alive)

    def restart_all(self) -> None:
        self._noting_departures(super().restart_all)

    def handle_ttou(self) -> None:
        self._noting_departures(super().handle_ttou)

    def terminate_all(self) -> None:
        # Stop listening first: connections queued on a socket nobody accepts from any more
        # would wait there, and be reset when it is closed at the end, their requests lost.
        for listening in self.sockets:
            listening.close()
        super().terminate_all()

    def join_all(self) -> None:
        super().join_all()
        for pid in self._pids():
            metrics.worker_gone(pid)

    def _noting_departures(self, step: Callable[[], None]) -> None:
        before = self._pids()
        step()
        for pid in before - self._pids():
            metrics.worker_gone(pid)

    def _pids(self) -> set[int]:
        """The workers' process ids (a worker not started yet has none, and nothing to count)."""
        return {process.pid for process in self.processes if process.pid is not None}
