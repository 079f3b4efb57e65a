"""Trusted publishers as a project's write members and administrators make them: what an issuer,
a claim and a name may be, the project's CI account, who may manage them, how ID tokens match."""

from __future__ import annotations

import pytest

from tokensmith.errors import Conflict, InvalidInput, NotFound, NotPermitted, ProjectNotFound
from tokensmith.projects import catalog
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.store.models import AuditEvent, ProjectMember, User

GITHUB = trusted_publishers.GITHUB_ACTIONS


@pytest.fixture
def project(db, make_user, tmp_path):
    owner = make_user()
    made = catalog.create_project(db, tmp_path, f"acme-{owner.id}", "com.acme", owner.id, actor="tests")
    return made.id, owner


def add(db, project_id: str, **given):
    fields = {"issuer": GITHUB, "claims": {"repository": "acme/app"}, "actor": "tests", **given}
    return trusted_publishers.add_publisher(db, project_id, **fields)


def test_a_publisher_pins_a_repository_gets_default_scopes_and_the_projects_ci_account(db, project):
    project_id, _owner = project
    publisher = add(db, project_id, claims={"repository": "acme/app", "ref": "refs/heads/main"})
    assert publisher.name == "GitHub Actions: acme/app" and publisher.scopes == ["git:read", "maven:read"]
    assert publisher.claims == {"ref": "refs/heads/main", "repository": "acme/app"}
    account = db.get(User, publisher.account_id)
    assert account.username == f"ci+{project_id}" and account.origin == "ci" and account.email == ""
    assert account.password_hash is None and account.display_name == f"CI of {project_id}"
    assert db.get(ProjectMember, (project_id, account.id)).role == "write"
    assert catalog.project_ids_of(db, account.id) == {project_id}
    # A second publisher shares the account; its default name is numbered when taken.
    second = add(db, project_id, claims={"repository": "acme/app", "environment": "prod"}, scopes=["git:write"])
    assert second.account_id == publisher.account_id and second.name == "GitHub Actions: acme/app (2)"
    assert second.scopes == ["git:read", "git:write"]
    event = db.query(AuditEvent).filter_by(action="publisher.added", user_id=account.id).order_by(AuditEvent.id).first()
    assert event.details["claims"] == {"ref": "refs/heads/main", "repository": "acme/app"}


def test_the_ci_account_name_fits_a_username_for_the_longest_project_id():
    assert trusted_publishers.ci_username("acme") == "ci+acme"
    longest = "a" * 64
    name = trusted_publishers.ci_username(longest)
    assert (
        len(name) == 64 and name.startswith("ci+" + "a" * 52 + "-") and name != trusted_publishers.ci_username("a" * 63)
    )


@pytest.mark.parametrize(
    "issuer",
    [
        "http://token.actions.githubusercontent.com",  # plain http off loopback
        "ftp://gitlab.com",
        "https://",
        "https://gitlab.com?x=1",
        "https://gitlab.com#frag",
        "https://user@gitlab.com",
        "https://gitlab.com/" + "x" * 300,
        "https://git lab.com",
        "gitlab.com",
    ],
)
def test_an_issuer_is_an_https_url_or_loopback_http(db, project, issuer):
    with pytest.raises(InvalidInput, match="https:// URL"):
        add(db, project[0], issuer=issuer)


def test_loopback_http_and_self_managed_gitlab_issuers_are_fine(db, project):
    assert add(db, project[0], issuer="http://127.0.0.1:9000").issuer == "http://127.0.0.1:9000"
    assert add(db, project[0], issuer=" https://gitlab.acme.example/ ", claims={"project_path": "g/p"}).issuer == (
        "https://gitlab.acme.example/"
    )


@pytest.mark.parametrize(
    "claims, words",
    [
        ({}, "Name the claims"),
        ({"ref": "refs/heads/main"}, "must pin the repository or project"),
        ({"environment": "prod", "repository_owner": "acme"}, "must pin the repository or project"),
        ({"repository": ""}, "needs a value"),
        ({"repository": "x" * 256}, "needs a value"),
        ({"repository": "acme/app\n"}, "needs a value"),
        ({"repository": "acme/app", "aud": "x"}, "checked on every ID token"),
        ({"repository": "acme/app", "jti": "x"}, "checked on every ID token"),
        ({"repository": "acme/app", "bad name!": "x"}, "is not a claim's name"),
        ({f"c{n}": "x" for n in range(21)}, "at most 20 claims"),
    ],
)
def test_claims_are_checked_in_words(db, project, claims, words):
    with pytest.raises(InvalidInput, match=words.replace("(", r"\(")):
        add(db, project[0], claims=claims)


def test_scopes_names_and_duplicates_are_checked(db, project):
    project_id = project[0]
    with pytest.raises(InvalidInput, match="Unknown scope 'root'"):
        add(db, project_id, scopes=["root"])
    with pytest.raises(InvalidInput, match="printable"):
        add(db, project_id, name="line\nbreak")
    add(db, project_id, name="Release")
    with pytest.raises(Conflict, match="matches these very ID tokens"):
        add(db, project_id, claims={"repository": "acme/app"})
    with pytest.raises(Conflict, match="named “Release”"):
        add(db, project_id, name="Release", claims={"repository": "acme/other"})
    with pytest.raises(ProjectNotFound):
        add(db, "no-such-project")


def test_claims_typed_as_name_equals_value(db):
    assert trusted_publishers.parse_claims(["repository=acme/app", "", " ref = refs/heads/main "]) == {
        "repository": "acme/app",
        "ref": "refs/heads/main",
    }
    assert trusted_publishers.parse_claim("sub=repo:acme/app:ref:refs/heads/main") == (
        "sub",
        "repo:acme/app:ref:refs/heads/main",
    )
    with pytest.raises(InvalidInput, match="NAME=VALUE"):
        trusted_publishers.parse_claims(["repository acme/app"])
    with pytest.raises(InvalidInput, match="named twice"):
        trusted_publishers.parse_claims(["repository=a/b", "repository=c/d"])


def test_only_write_members_who_are_people_manage_publishers(db, project, make_user):
    project_id, owner = project
    reader, stranger = make_user(), make_user()
    catalog.add_member(db, project_id, reader.id, "read", actor="tests")
    trusted_publishers.require_manager(db, project_id, owner.id)
    with pytest.raises(NotPermitted, match="write access"):
        trusted_publishers.require_manager(db, project_id, reader.id)
    with pytest.raises(NotFound):
        trusted_publishers.require_manager(db, project_id, stranger.id)
    account_id = add(db, project_id).account_id
    with pytest.raises(NotPermitted, match="A CI token cannot change"):
        trusted_publishers.require_manager(db, project_id, account_id)


def test_an_id_tokens_claims_match_exactly_and_the_most_specific_publisher_comes_first(db, project):
    project_id = project[0]
    broad = add(db, project_id, claims={"repository": "acme/app"})
    narrow = add(db, project_id, claims={"repository": "acme/app", "ref": "refs/heads/main"})
    typed = add(db, project_id, claims={"project_id": "22", "ref_protected": "true"})
    claims = {"repository": "acme/app", "ref": "refs/heads/main"}
    assert trusted_publishers.matching([broad, narrow, typed], claims) == [narrow, broad]
    assert trusted_publishers.matching([broad], {"repository": "Acme/App"}) == []  # exact: case counts
    assert trusted_publishers.matching([broad], {"repository": ["acme/app"]}) == []  # a list is never a value
    assert trusted_publishers.matching([broad], {"repository": {"name": "acme/app"}}) == []
    assert trusted_publishers.matching([typed], {"project_id": 22, "ref_protected": True}) == [typed]
    assert trusted_publishers.matching([typed], {"project_id": "22", "ref_protected": "false"}) == []
