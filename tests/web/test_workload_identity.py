"""Workload identity over real HTTP: a real server, the tests' own CI issuer on loopback signing
real JWTs, real git and Maven with the token an ID token gets; every refusal with its code and
words; the issuer rotating its keys, going down, and answering what no issuer should; a project's
trusted publishers through the API."""

from __future__ import annotations

import hashlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import func, select, update

from tests.support.ci_issuer import CiIssuer
from tests.support.git import GitUser
from tests.support.ledger import remember
from tests.support.maven import dependency_get, write_settings
from tokensmith.clock import utcnow
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.store.models import IdTokenUse, PersonalToken, User


@pytest.fixture(scope="module")
def issuer():
    with CiIssuer().running() as running:
        yield running


@pytest.fixture(scope="module")
def acme(server, issuer, tmp_path_factory) -> dict:
    """A project with a commit on master: alice writes (and trusts acme/app on GitHub with
    git:write, maven:read, api:write), rob reads, sam is no member."""
    suffix = uuid.uuid4().hex[:6]
    names = {role: f"{role}-{suffix}" for role in ("alice", "rob", "sam")}
    for name in names.values():
        server.create_user(name)
    project = server.create_project(
        f"acme-{suffix}", "com.acme.ci", owner=names["alice"], members={names["rob"]: "read"}
    )
    tokens = {role: server.create_token(name, "workload") for role, name in names.items()}
    alice = GitUser(tmp_path_factory.mktemp("alice"), names["alice"], tokens["alice"])
    alice.remember_credentials(server.base_url)
    work = alice.home / "work"
    alice.git("clone", f"{server.base_url}/git/{project}.git", str(work))
    alice.publish(work, {"README.md": "# ACME\n"}, "first")
    added = trust(server, project, issuer, {"repository": "acme/app"}, ["git:write", "maven:read", "api:write"])
    return {"id": project, "names": names, "tokens": tokens, "publisher": added["id"]}


def trust(server, project: str, issuer: CiIssuer, claims: dict[str, str], scopes: list[str]) -> dict:
    """A trusted publisher, added on the server's store as its shell does (tests/cli has the command)."""
    with server.store() as session:
        publisher = trusted_publishers.add_publisher(
            session, project, issuer=issuer.issuer, claims=claims, scopes=scopes, actor="tests"
        )
        return {"id": publisher.id}


def post_exchange(server, id_token: str, **body) -> httpx.Response:
    return httpx.post(f"{server.base_url}/api/v1/oidc/exchange", json={"token": id_token, **body}, timeout=60)


def exchanged(server, id_token: str, **body) -> dict:
    answer = post_exchange(server, id_token, **body)
    assert answer.status_code == 201, answer.text
    remember(answer.json()["token"])
    return answer.json()


def refused(server, id_token: str, status: int = 401, **body) -> dict:
    answer = post_exchange(server, id_token, **body)
    assert answer.status_code == status, answer.text
    return answer.json()


def github(issuer: CiIssuer, server, **claims) -> str:
    return issuer.sign(issuer.github_claims(server.base_url, **claims))


def spent(server, id_token: str) -> bool:
    """Whether the ledger holds this ID token's jti."""
    import base64
    import json

    claims = json.loads(base64.urlsafe_b64decode(id_token.split(".")[1] + "=="))
    digest = hashlib.sha256(f"{claims['iss']}\n{claims['jti']}".encode()).digest()
    with server.store() as session:
        return session.get(IdTokenUse, digest) is not None


def ci_tokens_of(server, project: str) -> int:
    with server.store() as session:
        account = session.scalars(select(User).where(User.username == f"ci+{project}")).one_or_none()
        if account is None:
            return 0
        return session.scalar(
            select(func.count()).select_from(PersonalToken).where(PersonalToken.user_id == account.id)
        )


# --- the exchange -------------------------------------------------------------------------------------


def test_the_audience_is_the_public_url(server):
    answer = httpx.get(f"{server.base_url}/api/v1/oidc/audience")
    assert answer.status_code == 200 and answer.json() == {"audience": server.base_url}


def test_an_id_token_gets_a_15_minute_token_that_opens_its_project_alone(server, issuer, acme):
    for key in (issuer.rsa, issuer.ec):
        answer = post_exchange(server, issuer.sign(issuer.github_claims(server.base_url), key=key))
        assert answer.status_code == 201 and answer.headers["cache-control"] == "no-store"
        body = answer.json()
        remember(body["token"])
        assert body["username"] == f"ci+{acme['id']}" and body["project"] == acme["id"]
        assert body["scopes"] == ["api:write", "git:read", "git:write", "maven:read"]
        with httpx.Client(base_url=server.base_url, auth=(body["username"], body["token"])) as client:
            me = client.get("/api/v1/me").json()
            assert me["token"]["projects"] == [acme["id"]] and me["token"]["expires_at"] == body["expires_at"]
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {body['token']}"}) as bearer:
            assert bearer.get("/api/v1/me").status_code == 200
    created = utcnow()
    with server.store() as session:
        row = session.scalars(select(PersonalToken).order_by(PersonalToken.id.desc())).first()
        assert timedelta(minutes=14) < row.expires_at - created <= timedelta(minutes=15)


def test_git_clone_and_push_and_maven_with_the_token(server, issuer, acme, tmp_path, mvn):
    body = exchanged(server, github(issuer, server))
    ci = GitUser(tmp_path / "ci", body["username"], body["token"])
    ci.remember_credentials(server.base_url)
    work = tmp_path / "ci" / "work"
    ci.git("clone", f"{server.base_url}/git/{acme['id']}.git", str(work))
    ci.publish(work, {"built.txt": "from CI\n"}, "from a CI job")
    log = ci.git("log", "--format=%s", "origin/master", cwd=work).stdout
    assert "from a CI job" in log
    release = httpx.post(
        f"{server.base_url}/studio/v2/project/{acme['id']}/releases",
        json={"revision": "master", "versionName": "MINOR"},
        auth=(body["username"], body["token"]),
        timeout=120,
    )
    assert release.status_code == 201, release.text
    version = release.json()["version"]
    settings = write_settings(tmp_path / "settings.xml", server.base_url, body["username"], body["token"])
    result = dependency_get(mvn, settings, tmp_path / "m2", f"com.acme.ci:{acme['id']}:{version}")
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "m2" / "com" / "acme" / "ci" / acme["id"] / version / f"{acme['id']}-{version}.jar").exists()


def test_the_token_is_refused_on_another_project(server, issuer, acme, tmp_path):
    other = server.create_project(f"other-{uuid.uuid4().hex[:6]}", "com.other", owner=acme["names"]["alice"])
    body = exchanged(server, github(issuer, server))
    with httpx.Client(base_url=server.base_url, auth=(body["username"], body["token"])) as client:
        hidden = client.post(
            f"/studio/v2/project/{other}/releases", json={"revision": "master", "versionName": "MINOR"}
        )
        assert hidden.status_code == 404 and "no project" in hidden.json()["message"]
    ci = GitUser(tmp_path / "ci", body["username"], body["token"])
    ci.remember_credentials(server.base_url)
    clone = ci.git("clone", f"{server.base_url}/git/{other}.git", str(tmp_path / "x"), check=False)
    assert clone.returncode != 0 and "no project" in clone.stderr


def test_the_token_expires_with_its_minutes(server, issuer, acme, tmp_path):
    """Past its 15 minutes, without waiting them: its expiry moved to a moment ago in the store,
    as the store would hold it then."""
    body = exchanged(server, github(issuer, server))
    with server.store() as session:
        session.execute(
            update(PersonalToken)
            .where(PersonalToken.hint == f"tks_…{body['token'][-4:]}", PersonalToken.expires_at.is_not(None))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    ci = GitUser(tmp_path / "ci", body["username"], body["token"])
    ci.remember_credentials(server.base_url)
    clone = ci.git("clone", f"{server.base_url}/git/{acme['id']}.git", str(tmp_path / "x"), check=False)
    assert clone.returncode != 0 and "This token expired on" in clone.stderr


@pytest.mark.parametrize(
    "make, code, words",
    [
        (
            lambda i, s: github(i, s, repository="acme/elsewhere"),
            "no_matching_publisher",
            "repository = acme/elsewhere",
        ),
        (
            lambda i, s: i.sign(i.github_claims("https://tokens.elsewhere.example")),
            "wrong_audience",
            "GET /api/v1/oidc/audience",
        ),
        (lambda i, s: i.sign(i.github_claims(s.base_url, lifetime=-300)), "expired", "expired at"),
        (
            lambda i, s: i.sign(
                i.github_claims(s.base_url), key=RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
            ),
            "invalid_signature",
            "does not match the issuer's published keys",
        ),
        (lambda i, s: i.unsigned(i.github_claims(s.base_url)), "invalid_signature", "'none'"),
        (lambda i, s: i.hmac_with_public_key(i.github_claims(s.base_url)), "invalid_signature", "shared-secret"),
        (lambda i, s: "not.a.jwt", "malformed", "not base64url-encoded JSON"),
        (lambda i, s: i.sign({**i.github_claims(s.base_url), "jti": None}), "malformed", "no jti"),
    ],
)
def test_every_refusal_is_a_401_with_its_code_and_words_and_nothing_is_made(server, issuer, acme, make, code, words):
    id_token = make(issuer, server)
    before = ci_tokens_of(server, acme["id"])
    answer = post_exchange(server, id_token)
    assert answer.status_code == 401 and answer.json()["error"] == code and words in answer.json()["message"], (
        answer.text
    )
    assert ci_tokens_of(server, acme["id"]) == before


def test_an_id_token_is_exchanged_once(server, issuer, acme):
    id_token = github(issuer, server)
    exchanged(server, id_token)
    again = refused(server, id_token)
    assert again["error"] == "replayed" and "exchanged once" in again["message"] and spent(server, id_token)


def test_hostile_bodies_are_clear_4xx(server, issuer, acme):
    before = ci_tokens_of(server, acme["id"])
    started = time.monotonic()
    huge = issuer.sign({**issuer.github_claims(server.base_url), "padding": "x" * 1_000_000})
    wide = issuer.sign({**issuer.github_claims(server.base_url), **{f"c{n}": n for n in range(10_000)}})
    for hostile in (huge, wide):  # a 1 MB JWT, one of 10,000 claims (about 160 kB): past the body's 64 KiB
        answer = post_exchange(server, hostile)
        assert answer.status_code == 413 and answer.json()["error"] == "body_too_large", answer.text
        assert not spent(server, hostile)
    # Nested JSON in a claim the publisher matches: signed, valid, and no repository: no match.
    nested: dict = {"a": "b"}
    for _ in range(300):
        nested = {"a": nested}
    deep = issuer.sign({**issuer.github_claims(server.base_url), "repository": nested})
    assert refused(server, deep)["error"] == "no_matching_publisher"
    for body in (
        b"not json",
        b'{"token": 42}',
        b"{}",
        b'{"token": "x", "project": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    ):
        answer = httpx.post(
            f"{server.base_url}/api/v1/oidc/exchange", content=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 422 and answer.json()["error"] == "invalid_input", answer.text
    assert ci_tokens_of(server, acme["id"]) == before and not spent(server, deep)  # nothing minted, nothing stored
    assert time.monotonic() - started < 30  # each refused at once, not after a struggle


# --- the issuer's keys: rotation, outages, hostile answers ----------------------------------------------


def test_the_issuer_rotating_its_keys_and_a_flood_of_forged_kids(server, acme):
    with CiIssuer().running() as rotating:
        trust(server, acme["id"], rotating, {"repository": "acme/rotating"}, ["git:read"])
        exchanged(server, github(rotating, server, repository="acme/rotating"))
        assert rotating.jwks_fetches == 1
        new_key = rotating.rotate()
        exchanged(
            server, rotating.sign(rotating.github_claims(server.base_url, repository="acme/rotating"), key=new_key)
        )
        assert rotating.jwks_fetches == 2  # the new key, fetched once
        for number in range(5):
            forged = RSAKey.generate_key(2048, parameters={"kid": f"forged-{number}", "alg": "RS256"})
            answer = refused(
                server, rotating.sign(rotating.github_claims(server.base_url, repository="acme/rotating"), key=forged)
            )
            assert answer["error"] == "invalid_signature" and "does not publish" in answer["message"]
        assert rotating.jwks_fetches == 2  # within the minute: no fetch for forged kids


def test_an_issuer_that_goes_down_is_a_503_not_a_401_and_its_known_keys_still_serve(server, acme):
    cold, warm = CiIssuer().start(), CiIssuer().start()
    try:
        trust(server, acme["id"], cold, {"repository": "acme/cold"}, ["git:read"])
        trust(server, acme["id"], warm, {"repository": "acme/warm"}, ["git:read"])
        exchanged(server, github(warm, server, repository="acme/warm"))
        for issuer in (cold, warm):
            issuer.stop()
        id_token = github(cold, server, repository="acme/cold")
        answer = post_exchange(server, id_token)
        assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
        assert answer.json()["error"] == "issuer_unavailable" and "cannot be reached" in answer.json()["message"]
        assert not spent(server, id_token)
        exchanged(server, github(warm, server, repository="acme/warm"))  # its keys are held: no need to ask
        cold.restart()
        exchanged(server, id_token)  # back up: the same ID token, never spent, goes through
    finally:
        cold.stop()
        warm.stop()


@pytest.mark.parametrize(
    "mode, words",
    [
        ("huge_jwks", "lists 10,000 keys"),
        ("jwks_elsewhere", "elsewhere than the issuer's own scheme, host and port"),
        ("endless_jwks", "is 5,368,709,120 bytes"),
        ("chunked_jwks", "longer than the 524,288 bytes"),
        ("silent", "did not come within 5 seconds"),
    ],
)
def test_a_hostile_issuer_is_a_503_within_seconds_and_nothing_is_made(server, acme, mode, words):
    with CiIssuer().running() as hostile:
        repository = f"acme/{mode}"
        trust(server, acme["id"], hostile, {"repository": repository}, ["git:read"])
        hostile.mode = mode
        id_token = github(hostile, server, repository=repository)
        before = ci_tokens_of(server, acme["id"])
        started = time.monotonic()
        answer = post_exchange(server, id_token)
        assert answer.status_code == 503 and words in answer.json()["message"], answer.text
        assert time.monotonic() - started < 30  # cut short by the limits, not hung
        assert ci_tokens_of(server, acme["id"]) == before and not spent(server, id_token)


def test_an_exchange_waiting_for_its_issuer_holds_no_other_request_up(server, acme):
    """Verifying never blocks the event loop: while an exchange waits on an issuer that does not
    answer (up to its 5 seconds), this one-worker server goes on checking tokens (served on the
    event loop itself) and answering the audience."""
    alice = (acme["names"]["alice"], acme["tokens"]["alice"])
    with CiIssuer().running() as slow, ThreadPoolExecutor(max_workers=1) as pool:
        trust(server, acme["id"], slow, {"repository": "acme/slow"}, ["git:read"])
        slow.mode = "silent"
        pending = pool.submit(post_exchange, server, github(slow, server, repository="acme/slow"))
        assert slow.held.wait(30)  # the exchange is at the issuer now, waiting for keys
        for _ in range(10):
            assert httpx.get(f"{server.base_url}/api/v1/me", auth=alice).status_code == 200
        assert httpx.get(f"{server.base_url}/api/v1/oidc/audience").status_code == 200
        assert not pending.done()  # all of it answered while the exchange still waited
        assert pending.result().status_code == 503


# --- the token among the others: push protection, leak reports --------------------------------------------


def test_a_ci_token_pushed_or_reported_is_revoked(server, issuer, acme, tmp_path):
    pushed = exchanged(server, github(issuer, server))
    alice = GitUser(tmp_path / "alice", acme["names"]["alice"], acme["tokens"]["alice"])
    alice.remember_credentials(server.base_url)
    work = tmp_path / "alice" / "work"
    alice.git("clone", f"{server.base_url}/git/{acme['id']}.git", str(work))
    (work / "ci.env").write_text(f"TOKEN={pushed['token']}\n")
    alice.git("add", "ci.env", cwd=work)
    alice.git("commit", "-m", "oops", cwd=work)
    push = alice.git("push", "origin", "HEAD:master", cwd=work, check=False)
    assert push.returncode != 0 and "live Tokensmith personal access token" in push.stderr
    use = httpx.get(f"{server.base_url}/api/v1/me", auth=(pushed["username"], pushed["token"]))
    assert use.status_code == 401 and "found in a git push" in use.json()["message"]
    reported = exchanged(server, github(issuer, server))
    httpx.post(f"{server.base_url}/api/v1/tokens/revoke", json={"tokens": [reported["token"]]})
    use = httpx.get(f"{server.base_url}/api/v1/me", auth=(reported["username"], reported["token"]))
    assert use.status_code == 401 and "reported leaked" in use.json()["message"]


# --- a project's trusted publishers through the API ---------------------------------------------------------


def api(server, acme, who: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, auth=(acme["names"][who], acme["tokens"][who]), timeout=30)


def test_write_members_add_list_and_remove_publishers_and_revoke_their_tokens(server, issuer, acme):
    path = f"/api/v1/projects/{acme['id']}/publishers"
    with api(server, acme, "alice") as alice:
        added = alice.post(
            path,
            json={
                "issuer": issuer.issuer,
                "claims": {"repository": "acme/api", "ref": "refs/heads/main"},
                "scopes": ["git:read"],
            },
        )
        assert added.status_code == 201, added.text
        publisher = added.json()
        assert publisher["username"] == f"ci+{acme['id']}" and publisher["scopes"] == ["git:read"]
        assert publisher["created_by"] == acme["names"]["alice"] and publisher["tokens"] == []
        body = exchanged(server, github(issuer, server, repository="acme/api"))
        doomed = exchanged(server, github(issuer, server, repository="acme/api"))
        listed = {p["id"]: p for p in alice.get(path).json()}
        assert {t["hint"] for t in listed[publisher["id"]]["tokens"]} == {
            f"tks_…{body['token'][-4:]}",
            f"tks_…{doomed['token'][-4:]}",
        }
        token_id = next(t["id"] for t in listed[publisher["id"]]["tokens"] if t["hint"].endswith(doomed["token"][-4:]))
        assert alice.delete(f"{path}/{acme['publisher']}/tokens/{token_id}").status_code == 404  # not that one's
        assert alice.delete(f"{path}/{publisher['id']}/tokens/{token_id}").status_code == 204
        gone = httpx.get(f"{server.base_url}/api/v1/me", auth=(doomed["username"], doomed["token"]))
        assert gone.status_code == 401 and "by a member of its project" in gone.json()["message"]
        assert alice.delete(f"{path}/{publisher['id']}").status_code == 204
        gone = httpx.get(f"{server.base_url}/api/v1/me", auth=(body["username"], body["token"]))
        assert gone.status_code == 401 and "trusted publisher it was made for was removed" in gone.json()["message"]
        assert publisher["id"] not in {p["id"] for p in alice.get(path).json()}
        assert refused(server, github(issuer, server, repository="acme/api"))["error"] == "no_matching_publisher"
        bad = alice.post(path, json={"issuer": issuer.issuer, "claims": {"ref": "refs/heads/main"}})
        assert bad.status_code == 422 and "must pin the repository or project" in bad.json()["message"]


def test_readers_strangers_narrow_tokens_and_ci_tokens_do_not_manage_publishers(server, issuer, acme):
    path = f"/api/v1/projects/{acme['id']}/publishers"
    with api(server, acme, "rob") as rob:
        assert rob.get(path).status_code == 403
    with api(server, acme, "sam") as sam:
        answer = sam.get(path)
        assert (
            answer.status_code == 404
            and answer.json()["message"] == f"There is no project '{acme['id']}', or you are not a member of it."
        )
    reader = server.create_token(acme["names"]["alice"], f"read {uuid.uuid4().hex[:4]}", scopes=["api:read"])
    with httpx.Client(base_url=server.base_url, auth=(acme["names"]["alice"], reader)) as narrow:
        assert narrow.get(path).status_code == 200
        assert narrow.post(path, json={"issuer": issuer.issuer, "claims": {"repository": "x/y"}}).status_code == 403
    other = server.create_project(f"else-{uuid.uuid4().hex[:6]}", "com.else", owner=acme["names"]["alice"])
    elsewhere = server.create_token(acme["names"]["alice"], f"else {uuid.uuid4().hex[:4]}", projects=[other])
    with httpx.Client(base_url=server.base_url, auth=(acme["names"]["alice"], elsewhere)) as limited:
        assert limited.get(path).status_code == 404  # outside its list, the project reads as missing
    body = exchanged(server, github(issuer, server))  # api:write, on this project
    with httpx.Client(base_url=server.base_url, auth=(body["username"], body["token"])) as ci:
        sneaky = ci.post(path, json={"issuer": "https://ci.evil.example", "claims": {"repository": "evil/repo"}})
        assert sneaky.status_code == 403 and "A CI token cannot change" in sneaky.json()["message"]
        assert ci.delete(f"{path}/{acme['publisher']}").status_code == 403
        assert ci.get(f"/api/v1/projects/{acme['id']}/publishers").status_code == 403


def test_exchanges_sent_at_once_each_get_a_token_and_one_id_token_is_still_exchanged_once(server, issuer, acme):
    """Exchanges arriving together are checked on the event loop and written in batches
    (tokens/exchange_batches.py): each its own token, and an ID token sent four times at once is
    exchanged once, whether its copies share a batch (the batch refuses the second) or not (the
    ledger does)."""
    before = ci_tokens_of(server, acme["id"])
    distinct = [github(issuer, server) for _ in range(12)]
    copied = github(issuer, server)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda id_token: post_exchange(server, id_token), [*distinct, *[copied] * 4]))
    for answer in answers:
        if answer.status_code == 201:
            remember(answer.json()["token"])
    assert [answer.status_code for answer in answers[:12]] == [201] * 12, [answer.text for answer in answers]
    assert len({answer.json()["token"] for answer in answers[:12]}) == 12
    copies = answers[12:]
    assert sorted(answer.status_code for answer in copies) == [201, 401, 401, 401]
    assert all(answer.json()["error"] == "replayed" for answer in copies if answer.status_code == 401)
    assert all(spent(server, id_token) for id_token in [*distinct, copied])
    assert ci_tokens_of(server, acme["id"]) == before + 13
