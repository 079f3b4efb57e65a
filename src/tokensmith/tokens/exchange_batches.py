"""CI exchanges with the issuer's keys held, checked on the event loop and written in batches.

An exchange whose issuer's keys this process holds needs nothing of the store until its four
rows (tokens/workload_identity.py): ``ready`` reads the ID token, finds its key, verifies its
signature (``cryptography``, tens of µs: on the loop, as the token check's digest is; the keys
that cost more — RSA past 4,096 bits or with a large exponent, P-384, P-521, Ed448 — are left to
the unit in a thread, ``quick_to_verify``) and checks its
audience and times. Anything else — keys not held, a key not found, any refusal — gives None:
the caller runs ``workload_identity.exchange`` as one unit in a thread, which answers with the
same checks in the same order (a refusal costs what it did).

``ExchangeBatches`` writes what ``ready`` passed as a group commit: the exchanges that arrive
while a batch is being written wait for the next (which, under load, waits a moment for as many
as the last one had: ``_gathered``), and each batch is one unit of work in one trip to a thread —
the publishers of its issuers read once, each exchange matched as
``workload_identity.exchange`` matches it, the ``jti`` of all of them recorded by one INSERT (a
``jti`` twice in a batch, or recorded already: ``replayed``), their tokens, links and events by
one INSERT each, through token_lifecycle and the audit trail. An exchange refused in the batch
is refused alone; a batch whose transaction fails gives each of its exchanges that error (a
503 for an outage, as one unit's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy.orm import Session

from tokensmith import metrics
from tokensmith.errors import TokensmithError
from tokensmith.projects.publishers import Candidate
from tokensmith.store.server_keys import ServerKeys
from tokensmith.tokens import id_tokens, workload_identity
from tokensmith.tokens.id_tokens import PresentedIdToken, PublicKey
from tokensmith.tokens.oidc_issuers import IssuerDirectory
from tokensmith.tokens.workload_identity import Checked, Exchanged

MAX_BATCH = 64  # exchanges in one transaction
GATHER_S = 0.002  # the longest a batch waits for the exchanges of a wave
# What is verified on the loop (quick_to_verify): RSA keys up to this size, with a usual public
# exponent; elliptic curves up to P-256.
MAX_RSA_BITS_ON_LOOP = 4096
MAX_RSA_EXPONENT = 2**17
MAX_EC_BITS_ON_LOOP = 256  # P-256


@dataclass(frozen=True)
class Ready:
    """An ID token whose signature, audience and times held, waiting for its batch."""

    presented: PresentedIdToken
    expires: datetime
    project: str | None
    ip: str | None
    now: datetime


def ready(
    id_token: str, *, directory: IssuerDirectory, audience: str, project: str | None, ip: str | None, now: datetime
) -> Ready | None:
    """The ID token checked as far as the store is not needed, or None: let the unit decide."""
    try:
        presented = id_tokens.read(id_token)
        held = directory.cached(presented.issuer)
        key = held.find(presented.key_id, presented.algorithm) if held is not None else None
        if key is None or not quick_to_verify(key):
            return None
        id_tokens.verify(presented, key)
        expires = id_tokens.check(presented, audience=audience, now=now)
    except TokensmithError:
        return None
    return Ready(presented, expires, project, ip, now)


def quick_to_verify(key: PublicKey) -> bool:
    """Whether a signature by this key is verified in tens of µs, as the token check's digest is
    computed, and so on the loop: RSA up to 4,096 bits with a usual exponent (25–70 µs measured
    here), P-256 (~70 µs), Ed25519 (~100 µs). P-384 and P-521 (~300–390 µs), Ed448 and larger RSA
    keys are verified by the unit in a thread."""
    public = id_tokens.public_key_of(key)
    if isinstance(public, rsa.RSAPublicKey):
        return public.key_size <= MAX_RSA_BITS_ON_LOOP and public.public_numbers().e <= MAX_RSA_EXPONENT
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public.curve.key_size <= MAX_EC_BITS_ON_LOOP
    return isinstance(public, ed25519.Ed25519PublicKey)


def write_batch(
    session: Session, keys: ServerKeys, batch: list[Ready], *, prefix: str, minutes: int
) -> list[Exchanged | TokensmithError]:
    """One unit for ``batch``: each exchange's token, or the refusal it gets (in its order)."""
    outcomes: list[Exchanged | TokensmithError | None] = [None] * len(batch)
    read: dict[str, list[Candidate]] = {}
    passed: list[tuple[int, Checked]] = []
    seen: set[bytes] = set()
    for number, one in enumerate(batch):
        try:
            candidates = workload_identity.candidates_of(session, one.presented, one.project, read)
            checked = Checked(
                one.presented, one.expires, workload_identity.chosen(candidates, one.presented), one.ip, one.now
            )
        except TokensmithError as refusal:
            outcomes[number] = refusal
            continue
        if checked.digest in seen:  # the same ID token twice in one batch: the second is a replay
            outcomes[number] = workload_identity.replayed(one.presented)
            continue
        seen.add(checked.digest)
        passed.append((number, checked))
    recorded = workload_identity.spend(session, [checked for _, checked in passed]) if passed else set()
    fresh = []
    for number, checked in passed:
        if checked.digest in recorded:
            fresh.append((number, checked))
        else:
            outcomes[number] = workload_identity.replayed(checked.presented)
    if fresh:
        made = workload_identity.mint(session, keys, [checked for _, checked in fresh], prefix=prefix, minutes=minutes)
        for (number, _checked), exchanged in zip(fresh, made, strict=True):
            outcomes[number] = exchanged
    answered = [outcome for outcome in outcomes if outcome is not None]
    if len(answered) != len(batch):  # each exchange is refused or minted above: never dropped
        raise RuntimeError("an exchange of the batch got no answer")
    return answered


Unit = Callable[[Session], list[Exchanged | TokensmithError]]


class ExchangeBatches:
    """The group commit of exchanges (see the module's docstring). ``run_unit`` runs a function
    of a session as one unit of work in a thread (the web runtime's, admitted as any unit)."""

    def __init__(
        self,
        run_unit: Callable[[Unit], Awaitable[list[Exchanged | TokensmithError]]],
        keys: ServerKeys,
        *,
        prefix: str,
        minutes: int,
    ) -> None:
        self.run_unit = run_unit
        self.keys = keys
        self.prefix = prefix
        self.minutes = minutes
        self._waiting: list[tuple[Ready, asyncio.Future[Exchanged]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._enough: asyncio.Event | None = None  # set once as many wait as the last batch had
        self._last = 0  # exchanges in the last batch
        self.batches = 0  # for the benchmark: how many transactions, for how many exchanges
        self.written = 0

    async def exchange(self, one: Ready) -> Exchanged:
        """The token for ``one``, once its batch is committed; its refusal, or its batch's failure."""
        future: asyncio.Future[Exchanged] = asyncio.get_running_loop().create_future()
        self._waiting.append((one, future))
        if self._enough is not None and len(self._waiting) >= self._last:
            self._enough.set()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        try:
            while self._waiting:
                await self._gathered()
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                self._last = len(batch)
                await self._commit(batch)
        finally:
            self._writer = None

    async def _gathered(self) -> None:
        """Under load, exchanges come in waves: a batch's answers go out and its clients send
        their next while the other batch is written. The next batch waits for as many as the last
        one had, for at most GATHER_S (a lone exchange after a lone one does not wait), so
        that waves are written together rather than a few at a time."""
        if len(self._waiting) >= min(self._last, MAX_BATCH):
            return
        self._enough = asyncio.Event()
        try:
            await asyncio.wait_for(self._enough.wait(), GATHER_S)
        except TimeoutError:
            pass
        finally:
            self._enough = None

    async def _commit(self, batch: list[tuple[Ready, asyncio.Future[Exchanged]]]) -> None:
        items = [one for one, _future in batch]
        try:
            outcomes = await self.run_unit(
                lambda session: write_batch(session, self.keys, items, prefix=self.prefix, minutes=self.minutes)
            )
        except Exception as error:  # noqa: BLE001 - each waiting exchange answers it, as its own unit would
            for _one, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self.batches += 1
        self.written += len(batch)
        metrics.exchange_batch_written(len(batch))
        for (_one, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its request was cancelled (the client went away)
                continue
            if isinstance(outcome, Exchanged):
                future.set_result(outcome)
            else:
                future.set_exception(outcome)
