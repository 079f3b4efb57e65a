"""Git smart HTTP: ``/git/{project}.git``, or ``/git/{project}`` as GitHub and GitLab take it,
served by git's own ``upload-pack`` and ``receive-pack`` in their stateless-RPC mode, streamed.

Clone and fetch need the ``read`` role, push needs ``write``. Credentials are a username and a
token (git asks for them after the 401 challenge, or a credential helper supplies them). The
request body goes to the backend as it arrives and its answer comes back as it is produced,
so a large push or clone never sits in memory.

The protocol's HTTP framing is the little that ``git http-backend`` adds; doing it here saves
starting that CGI program (and its child) on each of the three requests of a clone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from tokensmith.errors import BodyTooLarge, InvalidInput, NotFound, ProjectNotFound
from tokensmith.identity import Identity
from tokensmith.projects import catalog, git_repositories
from tokensmith.tokens import push_protection
from tokensmith.web.auth import ProjectIn, Requires
from tokensmith.web.bodies import declared_length
from tokensmith.web.git import processes as git_processes
from tokensmith.web.git.processes import BackendProcess, PipeWriter
from tokensmith.web.git.push_guard import PushGuard
from tokensmith.web.runtime import Runtime, get_runtime, has_encoded_separators

log = logging.getLogger("tokensmith.git")

SERVICES = {"git-upload-pack": "read", "git-receive-pack": "write"}
CHUNK = 64 * 1024
# What a push may carry (its pack), as GitHub's limit; and a fetch's request (its wants and
# haves, which grow with each round of negotiation), once inflated.
MAX_PUSH = 2 * 1024**3
MAX_NEGOTIATION = 32 * 1024**2
router = APIRouter(tags=["git"], include_in_schema=False)


def needed_role(method: str, path: str, service: str | None) -> str:
    """The role a smart-HTTP request needs; NotFound for anything else (no dumb HTTP)."""
    if method == "GET" and path == "info/refs" and service in SERVICES:
        return SERVICES[service]
    if method == "POST" and path in SERVICES:
        return SERVICES[path]
    raise NotFound("Only Git's smart HTTP protocol is served here: use git clone, fetch or push.")


def needed_scope(request: Request) -> str:
    """A push needs git:write; a clone or fetch, and anything else under /git/, git:read."""
    path = request.path_params.get("path", "")
    service = request.query_params.get("service") if path == "info/refs" else path
    return "git:write" if service == "git-receive-pack" else "git:read"


GIT = Requires(
    None,
    project=ProjectIn.path("project_id"),
    choose=needed_scope,
    variants=(("clone, fetch (git-upload-pack)", "git:read"), ("push (git-receive-pack)", "git:write")),
)


def _authorize(session: Session, runtime: Runtime, project_id: str, identity: Identity, role: str) -> Path:
    project = catalog.require_role(session, project_id, identity.user.id, role)
    return git_repositories.repository_path(runtime.settings.data_dir, project.id)


def backend_environment(request: Request, identity: Identity) -> dict[str, str]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # Who pushed, for the repository's reflog (what http-backend derives from REMOTE_USER).
        "GIT_COMMITTER_NAME": identity.username,
        "GIT_COMMITTER_EMAIL": f"{identity.username}@tokensmith",
    }
    if "git-protocol" in request.headers:
        environment["GIT_PROTOCOL"] = request.headers["git-protocol"]
    return environment


def _pkt_line(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


NO_CACHE = {
    "Cache-Control": "no-cache, max-age=0, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
}


async def request_body(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as the backend reads it: inflated when git compressed it, and never
    more than ``limit`` bytes of it (a gzip bomb stops at the limit, not at the disk)."""
    gzipped = request.headers.get("content-encoding", "").lower() in ("gzip", "x-gzip")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    total = 0
    async for chunk in request.stream():
        while chunk:
            if inflate is None:
                piece, chunk = chunk, b""
            else:
                try:  # at most what is left of the limit, plus one byte to notice passing it
                    piece = inflate.decompress(chunk, limit - total + 1)
                except zlib.error:
                    raise InvalidInput("The request body is not valid gzip.") from None
                chunk = inflate.unconsumed_tail
            total += len(piece)
            if total > limit:
                raise BodyTooLarge(
                    f"A git request may carry at most {limit // 2**20:,} MiB"
                    + (" once inflated." if inflate is not None else ".")
                )
            if piece:
                yield piece
    if inflate is not None and not inflate.eof:
        raise InvalidInput("The request body is not valid gzip: it ends before its compressed stream does.")


async def _read_whole(request: Request, limit: int) -> bytes:
    return b"".join([piece async for piece in request_body(request, limit)])


async def _feed(request: Request, stdin: PipeWriter, body: bytes | None) -> None:
    """Give the backend its input: ``body`` when it was read already, else the request as it
    arrives (a push, streamed)."""
    try:
        if body is not None:
            await stdin.write(body)
        else:
            async for piece in request_body(request, MAX_PUSH):
                await stdin.write(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the backend stopped reading; its answer says why
    except (BodyTooLarge, InvalidInput, StarletteHTTPException) as error:
        # The answer has begun: the backend reads end-of-file where the pack should go on,
        # refuses it, and no ref moves.
        log.info("a git request body was cut off: %s", getattr(error, "message", error))
    except ClientDisconnect:
        # A push cut off midway: the backend reads end-of-file where the pack should go on,
        # refuses it, removes what it had received, and leaves every ref where it was.
        log.info("client left in the middle of a request body")
    finally:
        stdin.close()  # the backend reads end-of-file


# Without .git too, as GitHub takes it. (The lower decorator registers first: /git/P.git/... is
# matched by its own route before the other could read "P.git" as a project id.)
@router.api_route("/git/{project_id}/{path:path}", methods=["GET", "POST"])
@router.api_route("/git/{project_id}.git/{path:path}", methods=["GET", "POST"])
async def smart_http(
    project_id: str, path: str, request: Request, identity: Annotated[Identity, Depends(GIT)]
) -> Response:
    runtime = get_runtime(request)
    if has_encoded_separators(request):
        raise ProjectNotFound(project_id)
    service = request.query_params.get("service", "") if path == "info/refs" else path
    role = needed_role(request.method, path, service)
    repository = await runtime.run_unit(lambda session: _authorize(session, runtime, project_id, identity, role))
    advertising = request.method == "GET"
    body = None
    if not advertising:
        if request.headers.get("content-type") != f"application/x-{service}-request":
            raise InvalidInput(f"A {service} request must have the type application/x-{service}-request.")
        limit = MAX_PUSH if service == "git-receive-pack" else MAX_NEGOTIATION
        declared = declared_length(request.headers)
        if declared is not None and declared > limit:
            raise BodyTooLarge(f"A git request may carry at most {limit // 2**20:,} MiB.")
        if service == "git-upload-pack":  # wants and haves: small, read whole before git starts
            body = await _read_whole(request, limit)
    environment = backend_environment(request, identity)
    guard = None
    if service == "git-receive-pack" and not advertising and runtime.settings.push_protection:
        guard = await PushGuard(
            lambda updates, quarantine: check_push(runtime, identity, project_id, repository, updates, quarantine)
        ).open()
        environment.update(guard.environment())
    try:
        process = await git_processes.start(
            [
                git_repositories.git_executable(),
                service.removeprefix("git-"),
                "--stateless-rpc",
                *(["--advertise-refs"] if advertising else []),
                str(repository),
            ],
            environment,
            with_input=not advertising,
        )
    except BaseException:
        if guard is not None:
            guard.close()
        raise
    # A backend has an input unless it is advertising refs (git_processes.start's with_input).
    feeding = None if process.stdin is None else asyncio.create_task(_feed(request, process.stdin, body))
    preamble = b""
    if advertising and not (service == "git-upload-pack" and "version=2" in request.headers.get("git-protocol", "")):
        preamble = _pkt_line(f"# service={service}\n") + b"0000"  # protocol v0/v1 only
    kind = "advertisement" if advertising else "result"
    return BackendResponse(
        _stream(process, feeding, preamble, project_id, identity.username, guard),
        status_code=200,
        headers={**NO_CACHE, "Content-Type": f"application/x-{service}-{kind}"},
    )


class BackendResponse(Response):
    """The backend's answer, streamed as it comes, and begun only once the backend has something
    to say: for a push, once the whole pack has been read.

    A proxy that streams request bodies stops sending the rest of one as soon as the answer's
    headers reach the client (nginx with ``proxy_request_buffering off`` does): headers sent
    before the pack was in left the push hanging halfway, the backend waiting for the rest.
    Not Starlette's StreamingResponse either: that one reads ``receive()`` to watch for the
    client leaving, and would swallow the parts of a push still on their way to the backend.
    """

    def __init__(self, body: AsyncIterator[bytes], *, status_code: int, headers: dict[str, str]) -> None:
        super().__init__(status_code=status_code, headers=headers)
        # Its length is unknown until the backend is done: chunked, not "Content-Length: 0".
        self.raw_headers = [(name, value) for name, value in self.raw_headers if name != b"content-length"]
        self.body_iterator = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        started = False
        async for chunk in self.body_iterator:
            if not started:
                await send(start)
                started = True
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not started:
            await send(start)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _stream(
    process: BackendProcess,
    feeding: asyncio.Task[None] | None,
    preamble: bytes,
    project_id: str,
    username: str,
    guard: PushGuard | None = None,
) -> AsyncIterator[bytes]:
    try:
        if preamble:
            yield preamble
        while chunk := await process.stdout.read(CHUNK):
            yield chunk
        if feeding is not None:
            await feeding
        errors = await process.errors()
        if await process.wait() != 0 or errors:
            log.warning("git backend for %s (%s) exited %s: %s", project_id, username, process.returncode, errors[:500])
    finally:
        # The client went away mid-transfer: stop the backend. An interrupted push leaves the
        # repository as it was, since refs move only once the whole pack is in.
        if feeding is not None:
            feeding.cancel()
        process.close()
        if guard is not None:
            guard.close()


async def check_push(
    runtime: Runtime, identity: Identity, project_id: str, repository: Path, updates: str, quarantine: dict[str, str]
) -> tuple[bool, str]:
    """The pre-receive hook's question: may this push go in? (push_protection.py)"""
    git = git_repositories.git_executable()
    try:
        findings = await push_protection.scan_push(git, repository, updates, quarantine, runtime.settings.token_prefix)
    except push_protection.TooManyFindings:
        return False, push_protection.too_many_findings()
    if not findings:
        return True, ""
    commits = await push_protection.introducing_commits(git, repository, quarantine, updates, findings)
    blocked = await runtime.run_unit(
        lambda session: push_protection.block_live_tokens(
            session,
            runtime.keys,
            findings,
            commits,
            pusher_id=identity.user.id,
            pusher=identity.username,
            repository=project_id,
        )
    )
    if not blocked:
        return True, ""
    log.info("push to %s by %s refused: %d live token(s) in it", project_id, identity.username, len(blocked))
    return False, push_protection.refusal(blocked, runtime.settings.tokens_page_url)
