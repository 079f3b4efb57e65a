"""The pre-receive hook of one push, relayed to the server that serves it.

``git receive-pack`` runs a pre-receive hook once the pack is in its quarantine and before any
ref moves; a hook that exits non-zero refuses the push, git drops the quarantined objects, and
what the hook wrote to stderr reaches the pusher as ``remote:`` lines. The hook here is a few
lines of Python with no imports of Tokensmith: it sends its input (the ref updates) and where
the quarantine is over a Unix socket to the request that started receive-pack, which scans the
new objects and looks the tokens up in the store (push_protection.py), and prints the answer.

Each push gets a private directory (0700) with the hook and the socket, made before receive-pack
starts (``core.hooksPath`` points at it, through git's environment) and removed after it ends.
A hook that cannot reach the server refuses the push: it fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("tokensmith.git")

MAX_REQUEST = 1024 * 1024  # the hook's input: one line per ref pushed
QUARANTINE = ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH")

_RELAY = rf"""import json, os, socket, sys
try:
    with socket.socket(socket.AF_UNIX) as server:
        server.connect(os.environ["TOKENSMITH_PUSH_SOCKET"])
        server.sendall(json.dumps({{"updates": sys.stdin.read(), "quarantine": {{
            name: os.environ[name] for name in {QUARANTINE!r} if name in os.environ}}}}).encode())
        server.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: server.recv(65536), b""))
except OSError:
    answer = b""
verdict, _, text = answer.partition(b"\n")
if verdict != b"accept" and not text.strip():
    text = b"Tokensmith could not check this push for tokens. Nothing was changed: push again.\n"
sys.stderr.buffer.write(text)
sys.stderr.flush()
sys.exit(0 if verdict == b"accept" else 1)
"""

# (updates, quarantine) -> (accepted, what the pusher reads)
Check = Callable[[str, dict[str, str]], Awaitable[tuple[bool, str]]]


class PushGuard:
    """The hook and its socket for one push: ``environment()`` goes to receive-pack."""

    def __init__(self, check: Check) -> None:
        self.check = check
        self.directory = Path(tempfile.mkdtemp(prefix="tokensmith-push-"))
        self.socket_path = self.directory / "hook.sock"
        self.server: asyncio.AbstractServer | None = None

    async def open(self) -> PushGuard:
        try:
            relay = self.directory / "relay.py"
            relay.write_text(_RELAY)
            hook = self.directory / "pre-receive"
            hook.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -I -S {shlex.quote(str(relay))}\n")
            hook.chmod(0o700)
            self.server = await asyncio.start_unix_server(self._answer, path=str(self.socket_path))
        except BaseException:
            self.close()
            raise
        return self

    def environment(self) -> dict[str, str]:
        return {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "core.hooksPath",
            "GIT_CONFIG_VALUE_0": str(self.directory),
            "TOKENSMITH_PUSH_SOCKET": str(self.socket_path),
        }

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await _read_all(reader, MAX_REQUEST))
            updates, quarantine = str(request["updates"]), request["quarantine"]
            quarantine = {name: str(quarantine[name]) for name in QUARANTINE if name in quarantine}
            accepted, text = await self.check(updates, quarantine)
        except Exception:
            log.exception("the push could not be checked for tokens")
            accepted, text = False, ""  # the hook says it could not be checked, and refuses
        verdict = b"accept" if accepted else b"refuse"
        with contextlib.suppress(ConnectionError):
            writer.write(verdict + b"\n" + text.encode())
            await writer.drain()
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        shutil.rmtree(self.directory, ignore_errors=True)


async def _read_all(reader: asyncio.StreamReader, limit: int) -> bytes:
    """What the hook sent, up to its end (it shuts its side down), and at most ``limit`` bytes."""
    data = b""
    while piece := await reader.read(limit + 1 - len(data)):
        data += piece
        if len(data) > limit:
            raise ValueError(f"the hook sent more than {limit} bytes")
    return data
