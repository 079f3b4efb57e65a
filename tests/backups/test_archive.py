"""The backup file: what it holds comes back byte for byte, and any file that is not whole, not
as written, not ours or not openable with the passphrase given is refused in words, before
anything would be restored from it."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import pytest

from tests.support.ledger import remember
from tokensmith.backups import archive, restore, sealing
from tokensmith.backups.archive import BackupWriter, Kind
from tokensmith.errors import BackupUnusable, InvalidInput

PASSPHRASE = remember("a passphrase of the archive tests")
CONTENT = {
    "store/tokensmith.db": b"SQLite format 3\x00" + b"rows " * 300_000,  # compressible, past a chunk
    "keys/secret-keys": b"1:" + b"k" * 64 + b"\n",
    "git/acme.git": os.urandom(2 * archive.CHUNK + 123),  # incompressible, three chunks
    "maven/studio/com/acme/acme/1.0.0/acme-1.0.0.jar": b"",
}


def written(passphrase: str | None, members: dict[str, bytes] = CONTENT, **manifest: object) -> bytes:
    buffer = io.BytesIO()
    writer = BackupWriter(buffer, sealing.seal_for_writing(passphrase))
    for name, content in members.items():
        writer.add(name, [content[i : i + 300_000] for i in range(0, len(content), 300_000)], compress="store" in name)
    writer.finish({"created_at": "2026-12-01T03:00:00+00:00", **manifest})
    return buffer.getvalue()


def read_back(data: bytes, passphrase: str | None) -> tuple[dict[str, bytes], dict[str, object]]:
    reader = archive.BackupReader(io.BytesIO(data), passphrase)
    members = {member.name: b"".join(member.chunks()) for member in reader.members()}
    assert reader.manifest is not None
    return members, reader.manifest


def refusal(data: bytes, passphrase: str | None) -> str:
    with pytest.raises(BackupUnusable) as refused:
        archive.verify(io.BytesIO(data), passphrase)
    return refused.value.message


@pytest.fixture(scope="module", params=[None, PASSPHRASE], ids=["plain", "encrypted"])
def passphrase(request: pytest.FixtureRequest) -> str | None:
    return request.param


@pytest.fixture(scope="module")
def backup(passphrase: str | None) -> bytes:
    return written(passphrase)


def test_what_goes_in_comes_back_byte_for_byte_with_its_manifest(backup, passphrase):
    members, manifest = read_back(backup, passphrase)
    assert members == CONTENT
    assert manifest["created_at"] == "2026-12-01T03:00:00+00:00" and manifest["members"] == len(CONTENT)


def test_the_store_is_compressed_and_an_encrypted_file_shows_none_of_its_content(backup, passphrase):
    assert len(backup) < len(CONTENT["git/acme.git"]) + 200_000  # 1.5 MB of rows in far less
    needle = b"rows rows rows"
    if passphrase is None:
        assert b"git/acme.git" in backup and b'"sealing": "none"' in backup
    else:
        assert b"git/acme.git" not in backup and needle not in backup and b"1:kkkk" not in backup


def test_a_file_cut_short_anywhere_is_refused_as_incomplete(backup, passphrase):
    """Anywhere: in the header, inside a frame, and right after a whole frame, where every
    frame read so far checks and only the missing manifest gives it away."""
    boundaries = {end for _start, end in split_frames(backup)[:-1]}
    for cut in sorted({0, 5, len(archive.MAGIC) + 2, len(backup) // 2, len(backup) - 1} | boundaries):
        said = refusal(backup[:cut], passphrase)
        assert "incomplete" in said and "Nothing was restored" in said, (cut, said)


def test_one_changed_byte_anywhere_is_refused_as_damaged(backup, passphrase):
    for position in (len(backup) // 7, len(backup) // 2, len(backup) - 40):
        altered = bytearray(backup)
        altered[position] ^= 0x01
        said = refusal(bytes(altered), passphrase)
        assert "damaged" in said or "not one Tokensmith writes" in said, said
        assert "Nothing was restored" in said or "not a Tokensmith" in said or "does not" in said


def test_frames_cannot_be_dropped_or_swapped(passphrase):
    data = written(passphrase, {"a": b"first" * 10, "b": b"second" * 10})
    frames = split_frames(data)
    header = data[: frames[0][0]]
    body = [data[start:end] for start, end in frames]
    swapped = header + b"".join([body[3], body[4], body[5], body[0], body[1], body[2], *body[6:]])
    assert "damaged" in refusal(swapped, passphrase)
    dropped = header + b"".join(body[3:])
    assert "damaged" in refusal(dropped, passphrase)


def split_frames(data: bytes) -> list[tuple[int, int]]:
    (length,) = struct.unpack(">I", data[len(archive.MAGIC) : len(archive.MAGIC) + 4])
    position, frames = len(archive.MAGIC) + 4 + length, []
    while position < len(data):
        size, _kind = struct.unpack(">IB", data[position : position + 5])
        frames.append((position, position + 5 + size))
        position += 5 + size
    return frames


def test_data_after_the_manifest_is_refused(backup, passphrase):
    assert "data after its end" in refusal(backup + b"\n", passphrase)


@pytest.fixture(scope="module")
def encrypted() -> bytes:
    return written(PASSPHRASE)


def test_an_encrypted_file_needs_its_own_passphrase(encrypted):
    data = encrypted
    assert "encrypted: give its passphrase" in refusal(data, None)
    assert "passphrase does not open this backup" in refusal(data, "another passphrase of twelve")


def test_a_short_passphrase_is_refused_before_anything_is_written():
    with pytest.raises(InvalidInput, match="at least 12 characters"):
        sealing.seal_for_writing("short")


def test_a_file_of_a_newer_format_says_which_version_to_use():
    data = written(None)
    (length,) = struct.unpack(">I", data[len(archive.MAGIC) : len(archive.MAGIC) + 4])
    header = json.loads(data[len(archive.MAGIC) + 4 : len(archive.MAGIC) + 4 + length])
    newer = json.dumps({**header, "format": archive.FORMAT + 1}).encode()
    forged = archive.MAGIC + struct.pack(">I", len(newer)) + newer + data[len(archive.MAGIC) + 4 + length :]
    assert "written by a newer Tokensmith" in refusal(forged, None)


@pytest.mark.parametrize(
    "kdf",
    [
        {"memory_cost": 64 * 1024 * 1024},  # 64 GiB asked of the reader
        {"time_cost": 10_000},
        {"parallelism": 0},
        {"name": "pbkdf2"},
        {"salt": "not base64!"},
    ],
)
def test_a_hostile_header_costs_the_reader_nothing(encrypted, kdf):
    data = encrypted
    (length,) = struct.unpack(">I", data[len(archive.MAGIC) : len(archive.MAGIC) + 4])
    header = json.loads(data[len(archive.MAGIC) + 4 : len(archive.MAGIC) + 4 + length])
    header["kdf"] = {**header["kdf"], **kdf}
    raw = json.dumps(header).encode()
    forged = archive.MAGIC + struct.pack(">I", len(raw)) + raw + data[len(archive.MAGIC) + 4 + length :]
    said = refusal(forged, PASSPHRASE)
    assert "not a Tokensmith backup" in said or "does not know" in said, said


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"PK\x03\x04 a zip file",
        archive.MAGIC + struct.pack(">I", 10**9),
        archive.MAGIC + struct.pack(">I", 2) + b"[]",
        archive.MAGIC + struct.pack(">I", 15) + b'{"format": "1"}',
    ],
    ids=["empty", "zip", "huge header", "not an object", "format as text"],
)
def test_what_is_not_a_backup_is_called_so(data):
    assert refusal(data, None)


def test_a_frame_that_claims_gigabytes_is_refused_without_reading_them():
    data = written(None)
    first = split_frames(data)[0][0]
    forged = data[:first] + struct.pack(">IB", 2**31, Kind.START) + data[first + 5 :]
    assert "not one Tokensmith writes" in refusal(forged, None)


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "git/../../x.git",
        "maven/studio/../../../x",
        "git/acme.git/hooks/pre-receive",
        "maven/studio/com/.hidden/x",
        "store/other.db",
        "var/tokensmith.db",
    ],
)
def test_a_member_no_backup_holds_is_refused_by_verify(tmp_path: Path, name: str):
    path = tmp_path / "hostile.tsbackup"
    path.write_bytes(written(None, {name: b"#!/bin/sh\necho owned\n"}, store={"kind": "sqlite"}))
    with pytest.raises(BackupUnusable, match="no Tokensmith backup holds"):
        restore.verify_backup(path, None)
