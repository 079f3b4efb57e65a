"""The README's rules for secret scanners (*Tokens found elsewhere*, "Your own scanners"), run for
real: the detect-secrets plugin it gives, as written, with the real `detect-secrets` (the test
extras pin it) on files holding a live token of the shared server, in a scan and as the
pre-commit hook; and the gitleaks rule, whose TOML is read as gitleaks reads it and whose
expression is held to the plugin's (gitleaks itself is in neither Debian's archive nor PyPI here).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tests.support.ledger import SECRETS
from tokensmith.tokens import format as token_format

README = Path(__file__).parents[2] / "README.md"
BIN = Path(sys.executable).parent


def readme_block(language: str, containing: str) -> str:
    blocks = [
        match.group(1)
        for match in re.finditer(rf"^```{language}\n(.*?)^```", README.read_text(), re.M | re.S)
        if containing in match.group(1)
    ]
    assert len(blocks) == 1, f"expected one ```{language} block with {containing!r}, found {len(blocks)}"
    return blocks[0]


@pytest.fixture(scope="module")
def detect_secrets() -> Path:
    found = BIN / "detect-secrets"
    if not found.exists():
        unavailable("detect-secrets is not installed (the test extras: make test)")
    return found


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=120)


def project(tmp_path: Path, token: str) -> Path:
    """A project holding the README's plugin, a file with a live token and files with look-alikes."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "tokensmith_tokens.py").write_text(readme_block("python", "RegexBasedDetector"))
    (folder / "deploy.env").write_text(f"# the CI's settings\nAPI_URL=https://tokens.example.test\nAPI_TOKEN={token}\n")
    lookalikes = [
        token[:-1],  # one short
        token + "x",  # one long: no word boundary
        "tkx_" + token[4:],  # another prefix
        "tks_" + "[0-9A-Za-z]{38}",
    ]
    (folder / "notes.md").write_text("\n".join(f"not one: {value}" for value in lookalikes) + "\n")
    return folder


TYPE = "Tokensmith personal access token"
ONLY_OURS = ["--disable-plugin", "KeywordDetector", "--disable-plugin", "Base64HighEntropyString"]


def test_the_detect_secrets_plugin_finds_a_live_token_and_no_lookalike(server, detect_secrets, tmp_path):
    token = server.create_token("admin", "in a committed file")
    folder = project(tmp_path, token)
    scanned = run(
        detect_secrets, "scan", "--plugin", "tokensmith_tokens.py", *ONLY_OURS, "deploy.env", "notes.md", cwd=folder
    )
    assert scanned.returncode == 0, scanned.stderr
    results = json.loads(scanned.stdout)["results"]
    ours = [found for found_in in results.values() for found in found_in if found["type"] == TYPE]
    assert [(found["filename"], found["line_number"]) for found in ours] == [("deploy.env", 3)], results
    [found] = ours
    assert found["hashed_secret"] == hashlib.sha1(token.encode()).hexdigest()  # this very token
    for secret in (token, *SECRETS):
        assert secret not in scanned.stdout + scanned.stderr


def test_the_pre_commit_hook_refuses_a_commit_holding_a_token_and_never_prints_it(server, detect_secrets, tmp_path):
    if shutil.which("git") is None:
        unavailable("git is not installed")
    token = server.create_token("admin", "about to be committed")
    folder = project(tmp_path, token)
    (folder / "deploy.env").rename(tmp_path / "deploy.env")  # not there when the baseline is made
    assert run("git", "init", "-q", cwd=folder).returncode == 0
    baseline = run(detect_secrets, "scan", "--plugin", "tokensmith_tokens.py", *ONLY_OURS, cwd=folder)
    assert baseline.returncode == 0, baseline.stderr
    (folder / ".secrets.baseline").write_text(baseline.stdout)
    hook = [
        BIN / "detect-secrets-hook",
        "--plugin",
        "tokensmith_tokens.py",
        *ONLY_OURS,
        "--baseline",
        ".secrets.baseline",
    ]
    clean = run(*hook, "notes.md", cwd=folder)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (tmp_path / "deploy.env").rename(folder / "deploy.env")
    refused = run(*hook, "deploy.env", "notes.md", cwd=folder)
    assert refused.returncode == 1
    assert f"Secret Type: {TYPE}\nLocation:    deploy.env:3" in refused.stdout, refused.stdout
    assert token not in refused.stdout + refused.stderr


def test_the_gitleaks_rule_is_the_same_rule(server):
    config = tomllib.loads(readme_block("toml", "[[rules]]"))
    [rule] = config["rules"]
    assert rule["id"] == "tokensmith-personal-access-token" and rule["keywords"] == ["tks_"]
    plugin = readme_block("python", "RegexBasedDetector")
    assert re.search(r"re\.compile\(r\"(.*)\"\)", plugin).group(1) == rule["regex"]
    expression = re.compile(rule["regex"])  # what it uses (\b, classes, a count) reads alike in Go's RE2
    token = server.create_token("admin", "for gitleaks")
    assert expression.findall(f"API_TOKEN={token}\n") == [token]
    assert expression.findall(f"{token}x {token[:-1]} ghp_{token[4:]}") == []
    assert all(expression.fullmatch(token_format.generate("tks_")) for _ in range(100))
