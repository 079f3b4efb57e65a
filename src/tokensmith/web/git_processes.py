"""Starting git's backends for a request, and streaming to and from them, on the event loop.

``asyncio.create_subprocess_exec`` under uvloop starts a process with libuv's ``fork()``,
which copies the page tables of the whole server (about 100 MB): measured here, 22 ms per
start against 2 ms on the standard loop, and every authenticated git request waited that long
before its first byte, the event loop with it. The standard library's ``subprocess.Popen``
starts it with ``vfork()`` (``posix_spawn``'s way: no copy), in a thread so that not even that
holds up the loop; its pipes are then handed to the loop as streams, and its exit is awaited
on a pidfd (Linux), or in a thread elsewhere. docs/benchmarks.md has the figures.

``BackendProcess`` answers what git.py uses of asyncio's ``Process``: ``stdin`` (a
``StreamWriter``, or None), ``stdout`` and ``stderr`` (``StreamReader``), ``wait()``,
``returncode``, ``kill()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
from collections.abc import Mapping, Sequence


class BackendProcess:
    def __init__(self, popen: subprocess.Popen[bytes], stdin: asyncio.StreamWriter | None,
                 stdout: asyncio.StreamReader, stderr: asyncio.StreamReader) -> None:
        self._popen = popen
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

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
        loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return self._popen.wait()

    def kill(self) -> None:
        """Stop it now (a client that left mid-transfer), and reap it once it is gone."""
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


_REAPING: set[asyncio.Task] = set()  # reaps of killed backends, kept until done


async def start(argv: Sequence[str], env: Mapping[str, str], *, with_input: bool, limit: int) -> BackendProcess:
    """Start ``argv`` with pipes to its stdout and stderr (``limit`` bytes buffered on each
    before the backend is made to wait), and to its stdin ``with_input``."""
    loop = asyncio.get_running_loop()
    popen = await loop.run_in_executor(None, functools.partial(
        subprocess.Popen, list(argv), env=dict(env), stdin=subprocess.PIPE if with_input else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        stdout = await _reader(loop, popen.stdout, limit)
        stderr = await _reader(loop, popen.stderr, limit)
        stdin = await _writer(loop, popen.stdin) if with_input else None
    except BaseException:
        popen.kill()
        await loop.run_in_executor(None, popen.wait)
        raise
    return BackendProcess(popen, stdin, stdout, stderr)


async def _reader(loop: asyncio.AbstractEventLoop, pipe: object, limit: int) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    return reader


async def _writer(loop: asyncio.AbstractEventLoop, pipe: object) -> asyncio.StreamWriter:
    # A StreamReaderProtocol is what gives a StreamWriter its flow control (drain()).
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop), loop=loop), pipe)
    return asyncio.StreamWriter(transport, protocol, None, loop)
