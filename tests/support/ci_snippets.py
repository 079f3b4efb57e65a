"""A GitHub Actions workflow or a GitLab CI job, as a person pastes it (the README's, My
Applications'), run here the way its CI would run it: each command for real, in bash, with the
environment the CI gives the job.

What the CI would do and a test does instead, and only this:
- the runner's checkout (``actions/checkout``, GitLab's clone): a work tree the test made, with a
  commit and a pom.xml that depends on the project's releases;
- installing the client (``pipx install tokensmith-client``, ``pip install …``): the checkout's
  own ``tokensmith`` is on the PATH;
- GitHub gives a job with ``permissions: id-token: write`` ``ACTIONS_ID_TOKEN_REQUEST_URL`` and
  ``_TOKEN``; here they point at the tests' own issuer (tests/support/ci_issuer.py), which answers
  as GitHub does, with GitHub's claims. GitLab puts each ``id_tokens`` entry in the job's
  environment, an ID token for its ``aud``: here one the tests' issuer signed, with GitLab's claims;
- Maven reaches central through Debian's repository (RECIPES): the mirror is added to the
  settings file the snippet names; its local repository is in the job's HOME.
GitHub runs each ``run:`` in a shell of its own (``bash -eo pipefail``); GitLab runs the script's
lines one after the other in one shell, stopping at the first that fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.ci_issuer import CiIssuer
from tests.support.maven import CENTRAL_MIRROR

VENV_BIN = str(Path(sys.executable).parent)
INSTALLS_THE_CLIENT = re.compile(r"^\s*pipx? install tokensmith-client\b")


@dataclass
class Job:
    """What a snippet asks the CI to run: the job's variables and its commands, each a shell script."""

    variables: dict[str, str]
    commands: list[str]
    one_shell: bool  # GitLab: the script's lines in one shell; GitHub: a shell per step
    id_tokens: dict[str, str] = field(default_factory=dict)  # GitLab: variable -> aud


def github_job(text: str) -> Job:
    workflow = yaml.safe_load(text)
    assert workflow["permissions"]["id-token"] == "write", "the workflow must let its job ask for an ID token"
    (job,) = workflow["jobs"].values()
    variables = {**workflow.get("env", {}), **job.get("env", {})}
    commands = [step["run"] for step in job["steps"] if "run" in step]
    assert any(step.get("uses", "").startswith("actions/checkout@") for step in job["steps"])
    return Job({name: str(value) for name, value in variables.items()}, commands, one_shell=False)


def gitlab_job(text: str) -> Job:
    (job,) = (value for value in yaml.safe_load(text).values() if isinstance(value, dict) and "script" in value)
    id_tokens = {name: entry["aud"] for name, entry in job.get("id_tokens", {}).items()}
    variables = {name: str(value) for name, value in job.get("variables", {}).items()}
    return Job(variables, list(job["script"]), one_shell=True, id_tokens=id_tokens)


def work_tree(path: Path, group_id: str, project: str) -> Path:
    """What the CI's checkout leaves: a repository with a commit, and a pom that depends on the
    project's releases (so that resolving its dependencies reads Tokensmith's repository)."""
    path.mkdir(parents=True)
    (path / "pom.xml").write_text(f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>com.acme</groupId><artifactId>ci-build</artifactId><version>1.0.0</version><packaging>pom</packaging>
  <dependencies><dependency><groupId>{group_id}</groupId><artifactId>{project}</artifactId>
    <version>[0.0.1,)</version></dependency></dependencies>
</project>
""")
    (path / "README.md").write_text("# built in CI\n")
    git = ["git", "-c", "user.name=CI", "-c", "user.email=ci@example.test"]
    for command in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "from the CI's checkout"]):
        subprocess.run([*git, *command], cwd=path, check=True, capture_output=True)
    return path


def maven_settings(text: str, path: Path) -> None:
    """The snippet's settings file, with the mirror of central this machine needs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace("<settings>", f"<settings>\n  {CENTRAL_MIRROR}", 1))


def run(job: Job, *, home: Path, work: Path, ci_env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """Every command of the job in ``work``, in order, stopping at the first that fails."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "MAVEN_OPTS": f"-Duser.home={home} -Xmx256m",
        "CI": "true",
        **job.variables,
        **ci_env,
    }
    scripts = [command for command in job.commands if not INSTALLS_THE_CLIENT.match(command)]
    if job.one_shell:
        scripts = ["\n".join(scripts)]
    results = []
    for script in scripts:
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        results.append(result)
        if result.returncode != 0:
            break
    return results


def github_env(issuer: CiIssuer) -> dict[str, str]:
    """What a GitHub runner gives a job with ``permissions: id-token: write``."""
    return {
        "GITHUB_ACTIONS": "true",
        "ACTIONS_ID_TOKEN_REQUEST_URL": issuer.github_request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": issuer.request_token,
    }


def gitlab_env(job: Job, issuer: CiIssuer, **claims: Any) -> dict[str, str]:
    """What GitLab gives a job with ``id_tokens``: each variable, an ID token for its ``aud``."""
    return {
        "GITLAB_CI": "true",
        **{name: issuer.sign(issuer.gitlab_claims(audience, **claims)) for name, audience in job.id_tokens.items()},
    }


def fenced(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, re.M | re.S)
