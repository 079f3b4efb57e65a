"""The client in a CI job with no secret: GitHub Actions' way and GitLab's (an ID token in
TOKENSMITH_ID_TOKEN), against a real server and the tests' own CI issuer; and the README's
workflows run for real, the way their CI runs them (tests/support/ci_snippets.py)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support import ci_snippets
from tests.support.ci_issuer import CiIssuer
from tests.support.client import client_env, tokensmith
from tests.support.ledger import remember
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.store.models import PersonalToken, User

README = Path(__file__).parents[2] / "README.md"
SCOPES = ["git:write", "api:write", "maven:read"]


@pytest.fixture(scope="module")
def issuer():
    with CiIssuer().running() as running:
        yield running


def trusted_project(server, issuer: CiIssuer, claims: dict[str, str], group_id: str = "com.acme.ci") -> str:
    project = server.create_project(f"ci-{uuid.uuid4().hex[:8]}", group_id, owner="admin")
    with server.store() as session:
        trusted_publishers.add_publisher(
            session, project, issuer=issuer.issuer, claims=claims, scopes=SCOPES, actor="tests"
        )
    return project


def tokens_of_ci(server, project: str) -> int:
    with server.store() as session:
        account = session.scalars(select(User).where(User.username == f"ci+{project}")).one()
        return session.scalar(
            select(func.count()).select_from(PersonalToken).where(PersonalToken.user_id == account.id)
        )


def github_job_env(server, issuer: CiIssuer, home: Path) -> dict[str, str]:
    return client_env(home, TOKENSMITH_SERVER=server.base_url, **ci_snippets.github_env(issuer))


def test_a_github_job_logs_in_by_itself_once_and_pushes_and_releases(server, issuer, tmp_path):
    issuer.github_claims_asked = {"repository": "acme/gh-client"}
    project = trusted_project(server, issuer, {"repository": "acme/gh-client"})
    env = github_job_env(server, issuer, tmp_path / "job")
    whoami = tokensmith("whoami", env=env)
    assert whoami.returncode == 0, whoami.stderr
    assert whoami.stdout.startswith(f"ci+{project} with token “acme/gh-client run 4242 (")
    assert "this CI job's OpenID Connect ID token (GitHub Actions), exchanged for a token of" in whoami.stdout
    printed = tokensmith("ci", "token", env=env)
    token = remember(printed.stdout.strip())
    assert re.fullmatch(r"tks_[0-9A-Za-z]{38}", token)
    details = json.loads(tokensmith("ci", "token", "--json", env=env).stdout)
    assert details["token"] == token and details["username"] == f"ci+{project}" and details["project"] == project
    assert details["scopes"] == ["api:write", "git:read", "git:write", "maven:read"]
    kept = tmp_path / "job" / "config" / "tokensmith" / "ci-token.json"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert tokensmith("git", "setup", env=env).returncode == 0
    work = ci_snippets.work_tree(tmp_path / "work", "com.acme.ci", project)
    push = subprocess.run(
        ["git", "push", f"{server.base_url}/git/{project}.git", "HEAD:refs/heads/master"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert push.returncode == 0, push.stderr
    released = tokensmith("release", project, "--version", "PATCH", env=env)
    assert released.returncode == 0 and f"Released {project} 0.0.1" in released.stdout, released.stderr
    assert tokens_of_ci(server, project) == 1  # one exchange for all of it: the kept token served
    rotate = tokensmith("tokens", "rotate", env=env)
    assert rotate.returncode == 2 and "Nothing to rotate" in rotate.stderr


def test_a_gitlab_job_exchanges_its_one_id_token_once(server, issuer, tmp_path):
    project = trusted_project(server, issuer, {"project_path": "acme/gl-client"})
    id_token = issuer.sign(issuer.gitlab_claims(server.base_url, project_path="acme/gl-client"))
    env = client_env(tmp_path / "job", TOKENSMITH_SERVER=server.base_url, TOKENSMITH_ID_TOKEN=id_token)
    for _ in range(3):
        assert tokensmith("whoami", env=env).returncode == 0
    assert tokens_of_ci(server, project) == 1
    # Another machine (no kept token) with the same ID token: it was exchanged already.
    elsewhere = client_env(tmp_path / "other", TOKENSMITH_SERVER=server.base_url, TOKENSMITH_ID_TOKEN=id_token)
    again = tokensmith("ci", "token", env=elsewhere)
    assert again.returncode == 5 and "(replayed)" in again.stderr and again.stdout == ""


def test_outside_ci_or_without_a_server_the_client_says_what_to_set(server, issuer, tmp_path):
    plain = tokensmith("ci", "token", env=client_env(tmp_path / "laptop"))
    assert plain.returncode == 5 and "No CI identity here: set TOKENSMITH_ID_TOKEN" in plain.stderr
    no_server = client_env(tmp_path / "job", TOKENSMITH_ID_TOKEN=issuer.sign(issuer.gitlab_claims(server.base_url)))
    answer = tokensmith("whoami", env=no_server)
    assert answer.returncode == 5 and "set TOKENSMITH_SERVER to the server's URL" in answer.stderr
    refused = tokensmith(
        "whoami",
        env=client_env(
            tmp_path / "job2",
            TOKENSMITH_SERVER=server.base_url,
            TOKENSMITH_ID_TOKEN=issuer.sign(issuer.gitlab_claims(server.base_url, project_path="nobody/trusts-me")),
        ),
    )
    assert (
        refused.returncode == 5
        and "no_matching_publisher" in refused.stderr
        and "project_path = nobody/trusts-me" in refused.stderr
    )


def readme_snippet(marker: str) -> str:
    return next(block for block in ci_snippets.fenced(README.read_text(), "yaml") if marker in block)


def readme_job_text(text: str, server, project: str) -> str:
    """The README's workflow, for this server and project (the README's are tokens.example.com and
    acme-contracts, which the shared test server has no use for)."""
    return text.replace("https://tokens.example.com", server.base_url).replace("acme-contracts", project)


@pytest.mark.parametrize("platform", ["github", "gitlab"])
def test_the_readmes_workflows_run_as_their_ci_runs_them(server, issuer, tmp_path, mvn, platform):
    group_id = "com.acme.studio"
    if platform == "github":
        issuer.github_claims_asked = {"repository": "acme/contracts"}
        project = trusted_project(server, issuer, {"repository": "acme/contracts", "ref": "refs/heads/main"}, group_id)
        job = ci_snippets.github_job(readme_job_text(readme_snippet("jobs:"), server, project))
        ci_env = ci_snippets.github_env(issuer)
    else:
        project = trusted_project(server, issuer, {"project_path": "acme/contracts", "ref_protected": "true"}, group_id)
        job = ci_snippets.gitlab_job(readme_job_text(readme_snippet("id_tokens:"), server, project))
        assert job.id_tokens == {"TOKENSMITH_ID_TOKEN": server.base_url}
        ci_env = ci_snippets.gitlab_env(job, issuer, project_path="acme/contracts")
    work = ci_snippets.work_tree(tmp_path / "work", group_id, project)
    settings = next(block for block in ci_snippets.fenced(README.read_text(), "xml") if "TOKENSMITH_CI_TOKEN" in block)
    ci_snippets.maven_settings(readme_job_text(settings, server, project), work / ".mvn" / "tokensmith-settings.xml")
    results = ci_snippets.run(job, home=tmp_path / "home", work=work, ci_env=ci_env)
    failed = [result for result in results if result.returncode != 0]
    assert not failed, f"{failed[0].args[-1]}\n{failed[0].stdout[-2000:]}\n{failed[0].stderr[-2000:]}"
    assert any(f"Released {project} 0.0.1" in result.stdout for result in results)
    jar = tmp_path / "home" / ".m2" / "repository" / "com" / "acme" / "studio" / project / "0.0.1"
    assert (jar / f"{project}-0.0.1.jar").exists()  # Maven read it with the job's token
    assert tokens_of_ci(server, project) == 1
