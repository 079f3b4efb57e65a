"""`make serve` installs the server alone: the test extras (keyrings.alt's plaintext "keyring"
among them) come only with `make test`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs `make serve`

ROOT = Path(__file__).parents[2]


def planned(target: str, venv: Path, *arguments: str, **environment: str) -> str:
    """What make would run for ``target`` in a fresh virtualenv (make's own plan, nothing run)."""
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target, f"VENV={venv}", *arguments],
        cwd=ROOT,
        env={**env, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_serve_installs_no_test_extras(tmp_path):
    serve = planned("serve", tmp_path / "venv")
    assert "pip install --quiet -e .\n" in serve and "[test]" not in serve
    assert serve.rstrip().endswith(f"{tmp_path / 'venv'}/bin/tokensmith serve")
    test = planned(f"{tmp_path / 'venv'}/.installed", tmp_path / "venv")
    assert "pip install --quiet -e '.[test]'" in test


def test_make_serve_takes_a_port_from_its_command_line_only(tmp_path):
    venv = tmp_path / "venv"
    assert planned("serve", venv, "PORT=8001").rstrip().endswith(f"{venv}/bin/tokensmith serve --port 8001")
    assert planned("serve", venv, PORT="3000").rstrip().endswith(f"{venv}/bin/tokensmith serve")
