"""The README's examples really run: its shell blocks, against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.ledger import remember

README = Path(__file__).parents[1] / "README.md"
PLACEHOLDER = "TOKEN=tks_...paste-yours-here..."


def shell_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```sh\n(.*?)```", text[start:end if end > 0 else None], re.S)


def run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, cwd=README.parent)


def test_the_curl_examples_run_as_written(server):
    server.create_user("readme-reader", password="readme reader password")
    token = server.create_token("readme-reader", "README")
    blocks = shell_blocks("Using a token")
    assert len(blocks) == 4 and PLACEHOLDER in blocks[0]
    script = "\n".join(blocks).replace(PLACEHOLDER, f"TOKEN={token}").replace(
        "TOKENSMITH_USER=admin", "TOKENSMITH_USER=readme-reader")
    result = run(script, {**server.env, "TOKENSMITH_URL": server.base_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"username":"readme-reader"') == 3
    assert result.stdout.count('"authenticated_with":"token"') == 3
    assert '"name":"README"' in result.stdout and "}204\n" in result.stdout  # the DELETE's status, after the JSON above
    assert "is now revoked, and its owner told" in result.stdout
    for new_token in re.findall(r"tks_[0-9A-Za-z]{38}", result.stdout):
        remember(new_token)


def test_the_administration_examples_run_as_written(server):
    script = "\n".join(shell_blocks("Administration (from the server's shell)"))
    script = script.replace(".venv/bin/tokensmith", f"{Path(sys.executable).parent}/tokensmith")
    remember("a long password")
    result = run(script, server.env)
    assert result.returncode == 0, result.stderr
    minted = remember(result.stdout.strip())
    assert re.fullmatch(r"tks_[0-9A-Za-z]{38}", minted)
    assert "Disabled alice" in result.stderr
