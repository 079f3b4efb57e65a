"""The backup file: a header, then frames, the last of which is the manifest.

    TOKENSMITH-BACKUP\\n   u32 length   header (JSON: format, sealing, the KDF's parameters)
    frame*: u32 length   u8 kind   body (a payload, sealed or checksummed: sealing.py)

A file holds members, each a run of frames: ``START`` (JSON: its name and what it is), ``DATA``
(up to 1 MiB of its content, zlib-compressed where the member says so), ``END`` (JSON: its size
and SHA-256). The last frame is the ``MANIFEST`` (JSON: when the store was taken, its schema
revision, what the file holds, how many members and a digest of their names and checksums), and
nothing may follow it. So a reader knows the file is whole only once it has read the manifest:
a file cut short (a copy interrupted, a disk that filled up) has none, and is refused. Each
frame is bound to the header and to its place in the file (sealing.py), so frames cannot be
altered, dropped or reordered either.

Nothing here knows what a member means: snapshot.py writes them, restore.py reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, BinaryIO

from tokensmith.backups.sealing import Seal, seal_for_reading
from tokensmith.errors import BackupUnusable

MAGIC = b"TOKENSMITH-BACKUP\n"
FORMAT = 1  # what this Tokensmith writes, and the newest it reads
CHUNK = 1024 * 1024
_FRAME_HEAD = struct.Struct(">IB")
_MAX_HEADER = 64 * 1024
_MAX_BODY = CHUNK + 64 * 1024  # a frame's payload is at most a chunk; compression never grows it by this much

Progress = Callable[[int], None]


class Kind(IntEnum):
    START = 1
    DATA = 2
    END = 3
    MANIFEST = 4


@dataclass(frozen=True)
class Written:
    """A member as written: its name, size and SHA-256."""

    name: str
    size: int
    sha256: str


class _MemberList:
    """The members' names and checksums, in order, as one digest the manifest carries."""

    def __init__(self) -> None:
        self.count = 0
        self._digest = hashlib.sha256()

    def add(self, name: str, sha256: str) -> None:
        self.count += 1
        self._digest.update(f"{name}\0{sha256}\n".encode())

    @property
    def digest(self) -> str:
        return self._digest.hexdigest()


def _binding(header_digest: bytes, kind: Kind) -> bytes:
    return header_digest + bytes([kind])


class BackupWriter:
    """Writes one backup file to ``handle`` through ``seal``. ``progress`` is told how many bytes
    of members' content went in, as they go."""

    def __init__(self, handle: BinaryIO, seal: Seal, progress: Progress | None = None) -> None:
        self._handle, self._seal, self._progress = handle, seal, progress
        header = json.dumps({"format": FORMAT, **seal.header_fields}, sort_keys=True).encode()
        raw = MAGIC + struct.pack(">I", len(header)) + header
        handle.write(raw)
        self._header_digest = hashlib.sha256(raw).digest()
        self._index = 0
        self._members = _MemberList()
        self.size = len(raw)

    def _frame(self, kind: Kind, payload: bytes) -> None:
        body = self._seal.close(_binding(self._header_digest, kind), self._index, payload)
        self._handle.write(_FRAME_HEAD.pack(len(body), kind) + body)
        self._index += 1
        self.size += _FRAME_HEAD.size + len(body)

    def _json(self, kind: Kind, value: dict[str, Any]) -> None:
        self._frame(kind, json.dumps(value, sort_keys=True).encode())

    def add(self, name: str, chunks: Iterable[bytes], *, compress: bool = False, **meta: Any) -> Written:
        """A member named ``name`` with the content ``chunks`` give, and ``meta`` in its START."""
        self._json(Kind.START, {"name": name, "compression": "zlib" if compress else None, **meta})
        checksum, size = hashlib.sha256(), 0
        # Level 1: a store of random digests packs no smaller at 6, in twice the time (bench/backup.py).
        packer = zlib.compressobj(1) if compress else None
        pending = b""
        for chunk in chunks:
            checksum.update(chunk)
            size += len(chunk)
            pending += packer.compress(chunk) if packer else chunk
            while len(pending) >= CHUNK:
                self._frame(Kind.DATA, pending[:CHUNK])
                pending = pending[CHUNK:]
            if self._progress is not None:
                self._progress(len(chunk))
        if packer is not None:
            pending += packer.flush()
        for start in range(0, len(pending), CHUNK):
            self._frame(Kind.DATA, pending[start : start + CHUNK])
        written = Written(name, size, checksum.hexdigest())
        self._json(Kind.END, {"size": size, "sha256": written.sha256})
        self._members.add(name, written.sha256)
        return written

    def finish(self, manifest: dict[str, Any]) -> None:
        """The manifest, last: what makes the file whole."""
        self._json(Kind.MANIFEST, {**manifest, "members": self._members.count, "members_digest": self._members.digest})


def read_file_chunks(path: os.PathLike[str] | str) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


@dataclass
class Member:
    """One member being read: ``chunks()`` gives its content, checked against its END."""

    name: str
    meta: dict[str, Any]
    _reader: BackupReader = field(repr=False)
    _done: bool = False

    def chunks(self) -> Iterator[bytes]:
        if self._done:
            return
        self._done = True
        yield from self._reader._member_content(self)


class BackupReader:
    """Reads a backup file, checking every frame as it goes (see the module's doc): ``members()``,
    then ``manifest``, which is set only once the whole file has been read and found whole."""

    def __init__(self, handle: BinaryIO, passphrase: str | None, progress: Progress | None = None) -> None:
        self._handle, self._progress = handle, progress
        self.position = 0
        magic = self._read(len(MAGIC), "its start")
        if magic != MAGIC:
            raise BackupUnusable("This is not a Tokensmith backup file (it does not start like one).")
        (length,) = struct.unpack(">I", self._read(4, "its header"))
        if length > _MAX_HEADER:
            raise BackupUnusable("This is not a Tokensmith backup file (its header is implausibly long).")
        header_bytes = self._read(length, "its header")
        self._header_digest = hashlib.sha256(magic + struct.pack(">I", length) + header_bytes).digest()
        try:
            header = json.loads(header_bytes)
        except ValueError:
            header = None
        if not isinstance(header, dict) or type(header.get("format")) is not int:
            raise BackupUnusable("This is not a Tokensmith backup file (its header is not one).")
        if header["format"] > FORMAT:
            raise BackupUnusable(
                f"This backup was written by a newer Tokensmith (backup format {header['format']}; this one reads "
                f"format {FORMAT} and older): verify and restore it with that version or a newer one."
            )
        self._seal = seal_for_reading(header, passphrase)
        self._index = 0
        self._members = _MemberList()
        self.manifest: dict[str, Any] | None = None

    def _read(self, count: int, what: str) -> bytes:
        data = self._handle.read(count)
        self.position += len(data)
        if len(data) < count:
            raise BackupUnusable(
                f"The backup is incomplete: it ends after {self.position:,} bytes, in {what} (a copy cut short, or "
                "a disk that filled up while it was written). Nothing was restored; use another copy."
            )
        return data

    def _next_frame(self) -> tuple[Kind, bytes]:
        length, kind = _FRAME_HEAD.unpack(self._read(_FRAME_HEAD.size, "the middle of its content"))
        if length > _MAX_BODY or kind not in Kind._value2member_map_:
            raise BackupUnusable(
                f"The backup is damaged at byte {self.position:,}: part {self._index + 1} is not one Tokensmith "
                "writes. Nothing was restored; use another copy."
            )
        body = self._read(length, "the middle of its content")
        payload = self._seal.open(_binding(self._header_digest, Kind(kind)), self._index, body)
        self._index += 1
        if self._progress is not None:
            self._progress(_FRAME_HEAD.size + length)
        return Kind(kind), payload

    def _json(self, payload: bytes) -> dict[str, Any]:
        try:
            value = json.loads(payload)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise BackupUnusable(f"The backup is damaged: part {self._index} is not what it should be.")
        return value

    def _unexpected(self, kind: Kind) -> BackupUnusable:
        return BackupUnusable(
            f"The backup is damaged: part {self._index} ({kind.name.lower()}) is out of place. Nothing was restored; "
            "use another copy."
        )

    def members(self) -> Iterator[Member]:
        """Every member, in order; once they are done, ``manifest`` is set (or the file refused)."""
        while True:
            kind, payload = self._next_frame()
            if kind is Kind.MANIFEST:
                self._finish(self._json(payload))
                return
            if kind is not Kind.START:
                raise self._unexpected(kind)
            start = self._json(payload)
            name = start.get("name")
            if not isinstance(name, str) or not name or start.get("compression") not in (None, "zlib"):
                raise BackupUnusable(f"The backup is damaged: part {self._index} names no member.")
            member = Member(name, start, self)
            yield member
            for _ in member.chunks():  # what the caller did not read is still checked
                pass

    def _member_content(self, member: Member) -> Iterator[bytes]:
        unpacker = zlib.decompressobj() if member.meta.get("compression") == "zlib" else None
        checksum, size = hashlib.sha256(), 0
        while True:
            kind, payload = self._next_frame()
            if kind is Kind.END:
                break
            if kind is not Kind.DATA:
                raise self._unexpected(kind)
            for piece in _inflated(unpacker, payload):
                checksum.update(piece)
                size += len(piece)
                yield piece
        end = self._json(payload)
        if unpacker is not None and (not unpacker.eof or unpacker.unused_data):
            raise BackupUnusable(f"The backup is damaged: the content of {member.name} is not whole.")
        if end.get("size") != size or end.get("sha256") != checksum.hexdigest():
            raise BackupUnusable(
                f"The backup is damaged: {member.name} does not match its checksum. Nothing was restored; use "
                "another copy."
            )
        self._members.add(member.name, checksum.hexdigest())

    def _finish(self, manifest: dict[str, Any]) -> None:
        if manifest.get("members") != self._members.count or manifest.get("members_digest") != self._members.digest:
            raise BackupUnusable("The backup is damaged: its manifest does not list what it holds.")
        if self._handle.read(1):
            raise BackupUnusable(
                "The backup has data after its end: it was altered, or two files were joined. Use another copy."
            )
        self.manifest = manifest


def _inflated(unpacker: Any, payload: bytes) -> Iterator[bytes]:
    """A compressed frame's content a chunk at a time: a small frame that inflates to gigabytes
    (a hostile file) never sits in memory whole."""
    if unpacker is None:
        yield payload
        return
    data = payload
    try:
        while True:
            piece = unpacker.decompress(data, CHUNK)
            if piece:
                yield piece
            data = unpacker.unconsumed_tail
            if not data and len(piece) < CHUNK:
                return
    except zlib.error:
        raise BackupUnusable("The backup is damaged: compressed content does not inflate.") from None


def verify(handle: BinaryIO, passphrase: str | None, progress: Progress | None = None) -> dict[str, Any]:
    """Read the whole file, checking everything; its manifest, or BackupUnusable saying what is wrong."""
    reader = BackupReader(handle, passphrase, progress)
    for _member in reader.members():
        pass
    assert reader.manifest is not None
    return reader.manifest
