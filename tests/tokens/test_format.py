"""The token format: pure functions, no store."""

from __future__ import annotations

import zlib

import pytest

from tokensmith.errors import CredentialMalformed
from tokensmith.tokens import format as token_format

PREFIX = "tks_"


def test_a_token_is_prefix_32_random_and_6_checksum_characters() -> None:
    token = token_format.generate(PREFIX)
    assert len(token) == 42
    assert token.startswith(PREFIX)
    body = token[len(PREFIX) :]
    assert set(body) <= set(token_format.ALPHABET)
    assert body[32:] == token_format.checksum(body[:32])


def test_the_checksum_is_the_crc32_of_the_random_part_in_base62() -> None:
    random_part = "A" * 32
    value = 0
    for char in token_format.checksum(random_part):
        value = value * 62 + token_format.ALPHABET.index(char)
    assert value == zlib.crc32(random_part.encode())


def test_tokens_do_not_repeat_and_use_the_whole_alphabet() -> None:
    many = [token_format.generate(PREFIX) for _ in range(2000)]
    assert len(set(many)) == len(many)
    seen = set("".join(token[4:36] for token in many))
    assert seen == set(token_format.ALPHABET)


def test_parse_accepts_a_generated_token_and_gives_its_hint() -> None:
    token = token_format.generate(PREFIX)
    parsed = token_format.parse(token, PREFIX)
    assert parsed.value == token
    assert parsed.hint == f"tks_…{token[-4:]}"


@pytest.mark.parametrize(
    "mangle, words",
    [
        (lambda t: t[:-1], "truncated"),
        (lambda t: t + "x", "truncated"),
        (lambda t: t[:10] + ("a" if t[10] != "a" else "b") + t[11:], "checksum"),
        (lambda t: t[:-1] + ("a" if t[-1] != "a" else "b"), "checksum"),
        (lambda t: t[:20] + "-" + t[21:], "truncated"),
        (lambda t: "ghp_" + t[4:], "start with"),
        (lambda t: t[:20] + "é" + t[21:], "truncated"),
    ],
)
def test_parse_refuses_mistyped_tokens_with_a_reason(mangle, words: str) -> None:
    with pytest.raises(CredentialMalformed) as refused:
        token_format.parse(mangle(token_format.generate(PREFIX)), PREFIX)
    assert words in refused.value.message


def test_a_swapped_pair_of_characters_fails_the_checksum() -> None:
    token = token_format.generate(PREFIX)
    i = next(i for i in range(4, 35) if token[i] != token[i + 1])
    swapped = token[:i] + token[i + 1] + token[i] + token[i + 2 :]
    with pytest.raises(CredentialMalformed, match="checksum"):
        token_format.parse(swapped, PREFIX)


def test_the_prefix_is_configurable() -> None:
    token = token_format.generate("acme_")
    assert token.startswith("acme_") and len(token) == 43
    assert token_format.parse(token, "acme_").value == token
    with pytest.raises(CredentialMalformed):
        token_format.parse(token, PREFIX)


def test_only_prefixed_secrets_look_like_tokens() -> None:
    assert token_format.looks_like_token("tks_whatever", PREFIX)
    assert not token_format.looks_like_token("correct horse battery staple", PREFIX)
