"""The exchange of a CI job's ID token, in process on each store, with ID tokens the tests' own
issuer signs and the keys fetched from it over HTTP: what is minted and recorded, each refusal,
the ledger of ID tokens exchanged, time by a clock the test sets, and what a CI account may not do."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import func, select

from tests.support.ci_issuer import CiIssuer
from tests.support.ledger import remember
from tokensmith.accounts import provider_accounts, users
from tokensmith.errors import IdTokenRejected, InvalidInput, NotFound, NotPermitted, TokenExpired
from tokensmith.projects import catalog
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.store.models import AuditEvent, IdTokenUse, PersonalToken, PublisherToken, User
from tokensmith.tokens import application_tokens, ci_tokens, workload_identity
from tokensmith.tokens import check as token_check
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens.oidc_issuers import IssuerDirectory
from tokensmith.tokens.workload_identity import KeysNeeded

AUDIENCE = "https://tokens.example.test"


@pytest.fixture(scope="module")
def issuer():
    with CiIssuer().running() as running:
        yield running


@pytest.fixture(scope="module")
def directory() -> IssuerDirectory:
    return IssuerDirectory()


@pytest.fixture
def project(db, make_user, tmp_path):
    owner = make_user()
    return catalog.create_project(db, tmp_path, f"acme-{owner.id}", "com.acme", owner.id, actor="tests").id


def trust(db, project_id: str, issuer: CiIssuer, claims: dict[str, str] | None = None, **given):
    return trusted_publishers.add_publisher(
        db, project_id, issuer=issuer.issuer, claims=claims or {"repository": "acme/app"}, actor="tests", **given
    )


def exchange(db, keys, directory, token: str, **given):
    """As the route does: fetch the keys when they are needed, outside, and once more."""
    arguments = {"directory": directory, "audience": AUDIENCE, "prefix": "tks_", **given}
    try:
        done = workload_identity.exchange(db, keys, token, **arguments)
    except KeysNeeded as needed:
        directory.refresh(needed.issuer, needed.key_id)
        done = workload_identity.exchange(db, keys, token, fetched=True, **arguments)
    remember(done.secret)
    return done


def refusal(db, keys, directory, token: str, **given) -> IdTokenRejected:
    with pytest.raises(IdTokenRejected) as refused:
        exchange(db, keys, directory, token, **given)
    return refused.value


def count(db, table) -> int:
    return db.scalar(select(func.count()).select_from(table))


def test_a_matching_id_token_gets_a_token_of_that_project_alone_for_its_ci_account(
    db, keys, issuer, directory, project
):
    publisher = trust(db, project, issuer, scopes=["git:write", "maven:read"])
    id_token = issuer.sign(issuer.github_claims(AUDIENCE), key=issuer.ec)
    now = datetime.now(UTC)
    done = exchange(db, keys, directory, id_token, ip="203.0.113.9", now=now)
    assert done.username == f"ci+{project}" and done.project == project and done.publisher == publisher.name
    assert done.scopes == ("git:read", "git:write", "maven:read") and done.expires_at == now + timedelta(minutes=15)
    token = token_check.verify_token(db.connection(), keys, done.secret, prefix="tks_", now=now)
    assert token.owner.username == done.username and token.projects == [project] and token.allowed_ips is None
    assert re.fullmatch(r"acme/app run 4242 \([0-9a-f]{12}\)", token.name)
    assert db.get(PublisherToken, token.id).publisher_id == publisher.id
    event = db.scalars(select(AuditEvent).where(AuditEvent.action == "token.exchanged")).one()
    assert event.user_id == publisher.account_id and event.ip == "203.0.113.9"
    assert event.actor == "CI repo:acme/app:ref:refs/heads/main"
    details = event.details
    assert details["issuer"] == issuer.issuer and details["subject"] == "repo:acme/app:ref:refs/heads/main"
    assert details["jti"] and details["matched"] == {"repository": "acme/app"} and details["project"] == project
    assert details["claims"]["run_id"] == "4242" and details["scopes"] == ["git:read", "git:write", "maven:read"]
    stored = json.dumps([row.details for row in db.scalars(select(AuditEvent))])
    assert id_token not in stored and id_token.split(".")[2] not in stored and done.secret not in stored


def test_an_id_token_is_exchanged_once(db, keys, issuer, directory, project):
    trust(db, project, issuer)
    claims = issuer.gitlab_claims(AUDIENCE, project_path="acme/app", repository="acme/app")
    id_token = issuer.sign(claims)
    exchange(db, keys, directory, id_token)
    before = count(db, PersonalToken)
    refused = refusal(db, keys, directory, id_token)
    assert refused.code == "replayed" and claims["jti"] in refused.message and "exchanged once" in refused.message
    assert count(db, PersonalToken) == before
    spent = db.scalars(select(IdTokenUse)).all()
    assert len(spent) == 1 and spent[0].expires_at == datetime.fromtimestamp(claims["exp"] + 60, UTC)
    # Forgotten once expired (then refused as expired anyway).
    assert workload_identity.prune_spent(db, now=spent[0].expires_at - timedelta(seconds=1)) == 0
    assert workload_identity.prune_spent(db, now=spent[0].expires_at + timedelta(seconds=1)) == 1


def test_the_token_expires_after_its_minutes_by_the_clock_given(db, keys, issuer, directory, project):
    trust(db, project, issuer)
    start = datetime.now(UTC)
    done = exchange(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE)), now=start)
    connection = db.connection()
    token_check.verify_token(
        connection, keys, done.secret, prefix="tks_", now=start + timedelta(minutes=14, seconds=59)
    )
    with pytest.raises(TokenExpired):
        token_check.verify_token(connection, keys, done.secret, prefix="tks_", now=start + timedelta(minutes=15))
    longest = exchange(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE)), now=start, minutes=90)
    assert longest.expires_at == start + timedelta(minutes=60)  # never past an hour


def test_an_issuer_nobody_trusts_is_refused_without_asking_it(db, keys, issuer, directory, project):
    fetches = issuer.jwks_fetches
    stranger = {**issuer.github_claims(AUDIENCE), "iss": "https://ci.evil.example"}
    refused = refusal(db, keys, IssuerDirectory(), issuer.sign(stranger))
    assert refused.code == "no_matching_publisher" and "https://ci.evil.example" in refused.message
    assert issuer.jwks_fetches == fetches


@pytest.mark.parametrize(
    "sign, code, words",
    [
        (
            lambda i: i.sign(i.github_claims(AUDIENCE, repository="acme/other")),
            "no_matching_publisher",
            "repository = acme/other",
        ),
        (lambda i: i.sign(i.github_claims("https://elsewhere.example")), "wrong_audience", "https://elsewhere.example"),
        (lambda i: i.sign(i.github_claims(AUDIENCE, lifetime=-120)), "expired", "expired at"),
        (lambda i: i.sign(i.github_claims(AUDIENCE, lifetime=8 * 86400)), "malformed", "more than 7 days"),
        (
            lambda i: i.sign(i.github_claims(AUDIENCE), key=RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})),
            "invalid_signature",
            "does not match",
        ),
        (lambda i: i.unsigned(i.github_claims(AUDIENCE)), "invalid_signature", "'none'"),
        (lambda i: i.hmac_with_public_key(i.github_claims(AUDIENCE)), "invalid_signature", "HS256"),
        (lambda i: i.sign({**i.github_claims(AUDIENCE), "jti": None}), "malformed", "no jti"),
    ],
)
def test_each_refusal_has_its_code_and_words_and_makes_nothing(db, keys, issuer, directory, project, sign, code, words):
    trust(db, project, issuer)
    before = (count(db, PersonalToken), count(db, IdTokenUse), count(db, AuditEvent))
    refused = refusal(db, keys, directory, sign(issuer))
    assert refused.code == code and words in refused.message, refused.message
    assert (count(db, PersonalToken), count(db, IdTokenUse), count(db, AuditEvent)) == before


def test_a_key_the_issuer_does_not_publish_is_an_invalid_signature(db, keys, issuer, directory, project):
    trust(db, project, issuer)
    forged = RSAKey.generate_key(2048, parameters={"kid": "never-published", "alg": "RS256"})
    refused = refusal(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE), key=forged))
    assert (
        refused.code == "invalid_signature"
        and "'never-published', which its issuer does not publish" in refused.message
    )


def test_several_projects_trusting_one_repository_are_told_apart_by_the_project_asked(
    db, keys, issuer, directory, project, make_user, tmp_path
):
    owner = make_user()
    other = catalog.create_project(db, tmp_path, f"beta-{owner.id}", "com.beta", owner.id, actor="tests").id
    trust(db, project, issuer)
    trust(db, other, issuer, scopes=["maven:read"])
    with pytest.raises(InvalidInput, match="several projects"):
        exchange(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE)))
    done = exchange(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE)), project=other)
    assert done.project == other and done.scopes == ("maven:read",)
    refused = refusal(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE)), project="gamma")
    assert refused.code == "no_matching_publisher" and "'gamma'" in refused.message


def test_the_most_specific_publisher_of_the_project_gives_the_token(db, keys, issuer, directory, project):
    trust(db, project, issuer, scopes=["git:read"])
    main = trust(db, project, issuer, {"repository": "acme/app", "ref": "refs/heads/main"}, scopes=["git:write"])
    done = exchange(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE)))
    assert done.publisher == main.name and done.scopes == ("git:read", "git:write")
    branch = exchange(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE, ref="refs/heads/dev")))
    assert branch.scopes == ("git:read",)


def test_a_disabled_ci_account_gets_nothing(db, keys, issuer, directory, project):
    publisher = trust(db, project, issuer)
    users.disable_user(db, db.get(User, publisher.account_id), actor="tests")
    with pytest.raises(NotPermitted, match=r"CI account of project .* is disabled"):
        exchange(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE)))


def test_write_members_revoke_its_tokens_and_a_publisher_removed_takes_its_tokens_along(
    db, keys, issuer, directory, project
):
    first = trust(db, project, issuer)
    second = trust(db, project, issuer, {"repository": "acme/app", "ref": "refs/heads/main"})
    one = exchange(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE, ref="refs/heads/dev")))
    two = exchange(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE, ref="refs/heads/dev")))
    main = exchange(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE)))
    live = ci_tokens.live_tokens(db, project)
    assert [row.id for row in live[first.id]] == [two.token_id, one.token_id]
    assert [row.id for row in live[second.id]] == [main.token_id]
    with pytest.raises(NotFound):  # the token is the other publisher's
        ci_tokens.revoke_ci_token(db, project, second.id, one.token_id, actor="owner")
    revoked = ci_tokens.revoke_ci_token(db, project, first.id, one.token_id, actor="owner")
    assert revoked.revoked_reason == "project_member"
    removed, count_revoked = ci_tokens.remove_publisher(db, first.id, project_id=project, actor="owner")
    assert removed.id == first.id and count_revoked == 1
    assert db.get(PersonalToken, two.token_id).revoked_reason == "publisher_removed"
    assert db.get(PersonalToken, main.token_id).revoked_at is None
    assert [p.id for p in trusted_publishers.publishers_of(db, project)] == [second.id]
    with pytest.raises(NotFound):
        ci_tokens.remove_publisher(db, first.id, project_id=project, actor="owner")
    overview = ci_tokens.overview(db, project)
    assert overview.username == f"ci+{project}" and [p.id for p in overview.publishers] == [second.id]
    assert {event.action for event in overview.events} >= {"publisher.removed", "token.exchanged", "token.revoked"}


def test_a_ci_account_is_no_persons_account(db, keys, issuer, directory, project):
    publisher = trust(db, project, issuer)
    done = exchange(db, keys, directory, issuer.sign(issuer.github_claims(AUDIENCE)))
    account = db.get(User, publisher.account_id)
    with pytest.raises(NotPermitted, match="rotating a token"):
        token_lifecycle.rotate_token(
            db, keys, done.token_id, account.id, prefix="tks_", actor="ci", presented_token_id=done.token_id
        )
    with pytest.raises(NotPermitted, match="an application token"):
        application_tokens.derive_token(
            db,
            keys,
            done.token_id,
            account.id,
            application_tokens.Application("nuxeo-cli", "1"),
            prefix="tks_",
            actor="ci",
            ip=None,
        )
    with pytest.raises(NotPermitted, match="a token made by hand"):
        token_lifecycle.create_token(db, keys, account.id, "by hand", prefix="tks_", actor="admin")
    with pytest.raises(NotPermitted, match="a password"):
        users.set_password(db, account, "a long enough password", token_prefix="tks_", actor="admin")
    with pytest.raises(NotPermitted, match="identity provider"):
        provider_accounts.link(db, account, issuer="https://idp.example", subject="s", actor="admin")
