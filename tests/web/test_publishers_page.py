"""My Applications' Trusted publishers, in Chromium as a project's write member uses them: adding
one (a recent sign-in first, as for a token), seeing the tokens its jobs got and revoking one,
removing it; the workflow the section shows, run the way GitHub runs it; the forms' refusals."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import update

from tests.support import ci_snippets
from tests.support.ci_issuer import CiIssuer
from tests.support.ledger import remember
from tests.support.pages import csrf_of, sign_in
from tokensmith.accounts import users
from tokensmith.clock import utcnow
from tokensmith.store.models import BrowserSession

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def issuer():
    with CiIssuer().running() as running:
        yield running


@pytest.fixture(scope="module")
def member(server) -> dict:
    """A person who writes to one project and reads another."""
    suffix = uuid.uuid4().hex[:6]
    name, password = f"writer-{suffix}", remember("pw-" + secrets.token_urlsafe(18))
    server.create_user(name, password=password)
    mine = server.create_project(f"pub-{suffix}", "com.acme.pub", owner=name)
    theirs = server.create_project(f"read-{suffix}", "com.acme.read", owner="admin", members={name: "read"})
    return {"name": name, "password": password, "project": mine, "read": theirs}


@pytest.fixture
def page(chromium: Browser, server) -> Iterator[Page]:
    context: BrowserContext = chromium.new_context(base_url=server.base_url)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def signed_in(page: Page, member: dict) -> Page:
    page.goto("/login")
    page.get_by_label("Username").fill(member["name"])
    page.get_by_label("Password").fill(member["password"])
    page.get_by_role("button", name="Sign in").click()
    page.goto("/applications")
    return page


def section(page: Page, project: str):
    return page.locator(f'section.project[data-project="{project}"] [data-testid="trusted-publishers"]')


def add_publisher(page: Page, project: str, issuer_url: str, claims: str, scopes: list[str], name: str) -> None:
    box = section(page, project)
    box.get_by_text("Add a trusted publisher").click()
    box.get_by_label("Issuer", exact=True).select_option("other")
    box.get_by_label("Issuer URL (another issuer)").fill(issuer_url)
    box.get_by_label("Claims").fill(claims)
    for scope in scopes:
        box.get_by_label(scope).check()
    box.get_by_label("Name (optional)").fill(name)
    box.get_by_role("button", name="Add trusted publisher").click()


def age_sessions(server, username: str) -> None:
    """As if the person had signed in 16 minutes ago: past the re-authentication window."""
    with server.store() as session:
        user = users.get_user(session, username)
        session.execute(
            update(BrowserSession)
            .where(BrowserSession.user_id == user.id)
            .values(authenticated_at=utcnow() - timedelta(minutes=16))
        )


def test_a_write_member_adds_a_publisher_sees_and_revokes_its_tokens_and_removes_it(page, server, member, issuer):
    signed_in(page, member)
    expect(section(page, member["read"])).to_have_count(0)  # read access: no section
    box = section(page, member["project"])
    expect(box.get_by_role("heading", name="Trusted publishers")).to_be_visible()
    expect(box).to_contain_text(f"ci+{member['project']}")
    age_sessions(server, member["name"])  # a session older than 15 minutes: the password again
    add_publisher(
        page, member["project"], issuer.issuer, "repository=acme/page\nref=refs/heads/main", ["git:write"], "Page"
    )
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    page.get_by_label("Password").fill(member["password"])
    page.get_by_role("button", name="Confirm and continue").click()
    box = section(page, member["project"])
    expect(box.get_by_role("status")).to_have_text(
        f"Trusted publisher “Page” added: its CI jobs now get tokens of {member['project']}."
    )
    card = box.get_by_role("article", name="Trusted publisher Page")
    expect(card).to_contain_text("ref = refs/heads/main")
    expect(card).to_contain_text("git:read, git:write, maven:read")

    answers = [
        httpx.post(
            f"{server.base_url}/api/v1/oidc/exchange",
            json={"token": issuer.sign(issuer.github_claims(server.base_url, repository="acme/page"))},
        ).json()
        for _ in range(2)
    ]
    for answer in answers:
        remember(answer["token"])
    page.goto("/applications")
    card = section(page, member["project"]).get_by_role("article", name="Trusted publisher Page")
    rows = card.get_by_role("row")
    expect(rows).to_have_count(3)  # the header and two live tokens
    doomed = answers[0]
    row = card.locator("tr", has_text=f"tks_…{doomed['token'][-4:]}")
    row.get_by_role("button", name="Revoke", exact=True).click()
    row.get_by_role("button", name="Yes, revoke").click()
    expect(section(page, member["project"]).get_by_role("status")).to_contain_text("was revoked")
    refused = httpx.get(f"{server.base_url}/api/v1/me", auth=(doomed["username"], doomed["token"]))
    assert refused.status_code == 401 and "by a member of its project" in refused.json()["message"]
    activity = section(page, member["project"]).locator("details.ci-activity")
    activity.get_by_text("Recent CI activity").click()
    expect(activity).to_contain_text("revoked by a member of its project")
    expect(activity).to_contain_text("made for project")

    card = section(page, member["project"]).get_by_role("article", name="Trusted publisher Page")
    card.get_by_role("button", name="Remove", exact=True).click()
    card.get_by_role("button", name="Yes, remove “Page”").click()
    expect(section(page, member["project"]).get_by_role("status")).to_have_text(
        "Trusted publisher “Page” removed; 1 live token(s) it had given revoked."
    )
    kept = answers[1]
    assert httpx.get(f"{server.base_url}/api/v1/me", auth=(kept["username"], kept["token"])).status_code == 401


def test_a_refused_publisher_keeps_what_was_typed_and_says_why(page, server, member, issuer):
    signed_in(page, member)
    add_publisher(page, member["project"], issuer.issuer, "ref=refs/heads/main", [], "No pin")
    box = section(page, member["project"])
    expect(box.get_by_role("alert")).to_contain_text("must pin the repository or project")
    expect(box.get_by_label("Claims")).to_have_value("ref=refs/heads/main")
    expect(box.get_by_label("Name (optional)")).to_have_value("No pin")


def test_the_workflow_the_section_shows_runs_as_github_runs_it(page, server, member, issuer, tmp_path, mvn):
    signed_in(page, member)
    add_publisher(
        page, member["project"], issuer.issuer, "repository=acme/snippet", ["git:write", "api:write"], "Snippet"
    )
    box = section(page, member["project"])
    expect(box.get_by_role("status")).to_be_visible()
    workflow = box.get_by_test_id("github-actions-snippet").text_content()
    settings = box.get_by_test_id("ci-settings-xml").text_content()
    gitlab = box.get_by_test_id("gitlab-ci-snippet").text_content()
    assert f"TOKENSMITH_SERVER: {server.base_url}" in workflow and f"/git/{member['project']}.git" in workflow
    assert f"aud: {server.base_url}" in gitlab and ci_snippets.gitlab_job(gitlab).id_tokens
    # The page's jobs are the README's, for this server and project: the README's run for real on
    # both platforms (tests/client/test_workload_identity.py), the page's GitHub one here.
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for shown, marker in ((workflow, "jobs:"), (gitlab, "id_tokens:")):
        pasted = next(block for block in ci_snippets.fenced(readme, "yaml") if marker in block)
        here = pasted.replace("https://tokens.example.com", server.base_url)
        assert shown.strip() == here.replace("acme-contracts", member["project"]).strip()
    issuer.github_claims_asked = {"repository": "acme/snippet"}
    work = ci_snippets.work_tree(tmp_path / "work", "com.acme.pub", member["project"])
    ci_snippets.maven_settings(settings, work / ".mvn" / "tokensmith-settings.xml")
    results = ci_snippets.run(
        ci_snippets.github_job(workflow), home=tmp_path / "home", work=work, ci_env=ci_snippets.github_env(issuer)
    )
    failed = [result for result in results if result.returncode != 0]
    assert not failed, f"{failed[0].stdout[-2000:]}\n{failed[0].stderr[-2000:]}"
    assert (tmp_path / "home" / ".m2" / "repository" / "com" / "acme" / "pub" / member["project"] / "0.0.1").is_dir()


def test_the_forms_need_their_csrf_token_and_a_write_role(server, member):
    with server.client() as client:
        assert sign_in(client, member["name"], member["password"]).status_code == 303
        page = client.get("/applications")
        form = {"issuer_choice": "github", "claims": "repository=a/b", "scopes": "git:read"}
        assert client.post(f"/applications/{member['project']}/publishers", data=form).status_code == 403
        denied = client.post(f"/applications/{member['read']}/publishers", data={**form, "csrf_token": csrf_of(page)})
        assert denied.status_code == 403 and "write access" in denied.text
        hidden = client.post("/applications/nobody-s/publishers", data={**form, "csrf_token": csrf_of(page)})
        assert hidden.status_code == 404
