"""Starting git's backends for a request, and streaming to and from them, on the event loop.

``asyncio.create_subprocess_exec`` under uvloop starts a process with libuv's ``fork()``,
which copies the page tables of the whole server (about 100 MB): measured here, 22 ms per
start against 2 ms on the standard loop, and every authenticated git request waited that long
before its first byte, the event loop with it. The standard library's ``subprocess.Popen``
starts it with ``vfork()`` (``posix_spawn``'s way: no copy), in a thread so that not even that
holds up the loop. docs/benchmarks.md has the figures.

Its pipes are then read and written here, each watched with ``add_reader``/``add_writer``
only while a read or write waits, and closed once, by their one owner, the ``Popen``. They
are not handed to the loop as transports (``connect_read_pipe``): uvloop's pipe transport
takes the descriptor over without duplicating it (libuv closes it) while the file object
still holds the same number and closes it again (uvloop issue #763). Between the two closes
another thread can be given that number: a rolling restart under load lost a clone to it,
the next backend's pipe closed under it as it started (``EBADF`` in ``Popen``, a 500).

Its exit is awaited on a pidfd (Linux), or in a thread elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from tokensmith.errors import GitUnavailable

log = logging.getLogger("tokensmith.git")

KEPT_ERRORS = 4096  # of what a backend writes to stderr, what is kept for the log


class _Pipe:
    """One end of a backend's pipe, non-blocking, waited on through the loop only while a
    read or a write waits. Closing it wakes a waiter first, then closes the descriptor."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._fd = file.fileno()
        os.set_blocking(self._fd, False)
        self._waiting: tuple[asyncio.Future[None], Callable[[int], object]] | None = None

    @property
    def closed(self) -> bool:
        return self._file.closed

    async def _wait(self, watch: Callable[..., object], unwatch: Callable[[int], object]) -> None:
        waiter = asyncio.get_running_loop().create_future()
        watch(self._fd, _wake, waiter)
        self._waiting = (waiter, unwatch)
        try:
            await waiter
        finally:
            self._stop_waiting()

    def _stop_waiting(self) -> None:
        if self._waiting is not None:
            waiter, unwatch = self._waiting
            self._waiting = None
            unwatch(self._fd)  # before the number is closed and perhaps given to someone else
            _wake(waiter)

    def close(self) -> None:
        self._stop_waiting()
        self._file.close()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class PipeReader(_Pipe):
    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, once there are any; ``b""`` at the end (or once closed)."""
        loop = asyncio.get_running_loop()
        while not self.closed:
            try:
                return os.read(self._fd, size)
            except BlockingIOError:
                await self._wait(loop.add_reader, loop.remove_reader)
        return b""


class PipeWriter(_Pipe):
    async def write(self, data: bytes) -> None:
        """All of ``data``, waiting while the pipe is full; BrokenPipeError once the reader has
        gone (or the pipe is closed)."""
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            if self.closed:
                raise BrokenPipeError("the backend's input is closed")
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await self._wait(loop.add_writer, loop.remove_writer)


class BackendProcess:
    """A started backend: ``stdin`` (a ``PipeWriter``, or None), ``stdout`` (a ``PipeReader``),
    what it said on stderr (``errors()``), ``wait()``, ``returncode``, ``close()``."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        assert popen.stdout is not None and popen.stderr is not None  # always pipes (start)
        self.stdin = PipeWriter(popen.stdin) if popen.stdin is not None else None
        self.stdout = PipeReader(popen.stdout)
        self._stderr = PipeReader(popen.stderr)
        # Read all along, so that a backend with much to say on stderr never waits for it.
        self._errors = asyncio.get_running_loop().create_task(self._collect_errors())

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def _collect_errors(self) -> bytes:
        kept = b""
        while chunk := await self._stderr.read(65536):
            kept = (kept + chunk)[:KEPT_ERRORS]
        return kept

    async def errors(self) -> str:
        """What it wrote on stderr (the first ``KEPT_ERRORS`` bytes), once it has closed it."""
        return (await self._errors).decode(errors="replace").strip()

    async def wait(self) -> int:
        """Its exit status, once it has exited (reaped: no zombie is left behind)."""
        if self._popen.poll() is not None:
            return self._popen.returncode
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self._popen.pid)
        except (AttributeError, OSError):  # no pidfd here (not Linux, or an old kernel)
            return await loop.run_in_executor(None, self._popen.wait)
        exited = loop.create_future()
        loop.add_reader(pidfd, _wake, exited)
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return self._popen.wait()

    def close(self) -> None:
        """Stop it if it still runs (a client that left mid-transfer), reap it once it is gone,
        and close its pipes."""
        for pipe in (self.stdin, self.stdout, self._stderr):
            if pipe is not None:
                pipe.close()
        self._errors.cancel()
        if self._popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._popen.kill()
        try:
            task = asyncio.get_running_loop().create_task(self.wait())
        except RuntimeError:  # no loop (shutting down): the next Popen reaps it (subprocess._cleanup)
            return
        _REAPING.add(task)
        task.add_done_callback(_REAPING.discard)


_REAPING: set[asyncio.Task[int]] = set()  # reaps of killed backends, kept until done


async def start(argv: Sequence[str], env: Mapping[str, str], *, with_input: bool) -> BackendProcess:
    """Start ``argv`` with pipes to its stdout and stderr, and to its stdin ``with_input``."""

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.PIPE if with_input else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    try:
        started = await asyncio.get_running_loop().run_in_executor(None, popen)
    except OSError as error:  # out of processes or descriptors, or git gone from the host
        log.warning("could not start %s: %s", argv[0], error)
        raise GitUnavailable() from None
    return BackendProcess(started)
