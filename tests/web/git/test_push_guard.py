"""The pre-receive hook's relay, run as git runs it: it asks the request, and fails closed."""

from __future__ import annotations

import asyncio
import os

import pytest

from tokensmith.web.git.push_guard import PushGuard

pytestmark = pytest.mark.slow  # runs the hook as git runs it, against a server of its own

UPDATE = f"{'0' * 40} {'a' * 40} refs/heads/master\n"


async def run_hook(guard: PushGuard) -> tuple[int, str]:
    hook = await asyncio.create_subprocess_exec(
        str(guard.directory / "pre-receive"),
        env={"PATH": os.environ["PATH"], **guard.environment(), "GIT_QUARANTINE_PATH": "/q"},
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await hook.communicate(UPDATE.encode())
    return hook.returncode, err.decode()


def test_the_hook_passes_its_input_on_and_says_what_it_is_told():
    asked = []

    async def check(updates, quarantine):
        asked.append((updates, quarantine))
        return False, "Push refused: for a reason.\n"

    async def scenario():
        guard = await PushGuard(check).open()
        try:
            return await run_hook(guard)
        finally:
            guard.close()

    assert asyncio.run(scenario()) == (1, "Push refused: for a reason.\n")
    assert asked == [(UPDATE, {"GIT_QUARANTINE_PATH": "/q"})]


def test_a_check_that_fails_or_a_server_that_is_gone_refuses_the_push():
    async def broken(updates, quarantine):
        raise RuntimeError("the store is down")

    async def accept(updates, quarantine):
        return True, ""

    async def scenario():
        failing = await PushGuard(broken).open()
        try:
            refused = await run_hook(failing)
        finally:
            failing.close()
        accepting = await PushGuard(accept).open()
        try:
            accepted = await run_hook(accepting)
            accepting.server.close()
            await accepting.server.wait_closed()
            gone = await run_hook(accepting)
        finally:
            accepting.close()
        return refused, accepted, gone, failing.directory.exists()

    refused, accepted, gone, left_behind = asyncio.run(scenario())
    words = "Tokensmith could not check this push for tokens. Nothing was changed: push again.\n"
    assert refused == (1, words) and gone == (1, words)
    assert accepted == (0, "")
    assert not left_behind
