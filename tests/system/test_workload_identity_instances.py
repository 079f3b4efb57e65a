"""An ID token is exchanged once across every instance: two real servers on one PostgreSQL (and
one data dir), the tests' own CI issuer on loopback. Presented to the second after the first,
or to both at the same moment, it gets exactly one token."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import new_postgres_database
from tests.support.ci_issuer import CiIssuer
from tests.support.ledger import remember
from tests.support.servers import LiveServer
from tokensmith.projects import publishers as trusted_publishers

pytestmark = pytest.mark.postgres
AUDIENCE = "https://tokens.example.test"  # one audience for both instances, as behind one proxy


@pytest.fixture(scope="module")
def issuer():
    with CiIssuer().running() as running:
        yield running


@pytest.fixture(scope="module")
def instances(postgres, tmp_path_factory, issuer):
    base = tmp_path_factory.mktemp("instances")
    env = {"TOKENSMITH_DATABASE_URL": new_postgres_database(postgres), "TOKENSMITH_OIDC_AUDIENCE": AUDIENCE}
    pair = [LiveServer(base / "shared-data", env=env, name=f"instance{number}") for number in (1, 2)]
    try:
        pair[0].start(timeout=60)  # the first start makes the store; the second finds it made
        pair[1].start(timeout=60)
        pair[0].create_project("acme", "com.acme", owner="admin")
        with pair[0].store() as session:
            trusted_publishers.add_publisher(
                session, "acme", issuer=issuer.issuer, claims={"repository": "acme/app"}, actor="tests"
            )
        yield pair
    finally:
        for instance in pair:
            instance.stop()


def exchange(instance: LiveServer, id_token: str) -> httpx.Response:
    answer = httpx.post(f"{instance.base_url}/api/v1/oidc/exchange", json={"token": id_token}, timeout=60)
    if answer.status_code == 201:
        remember(answer.json()["token"])
    return answer


def test_an_id_token_spent_on_one_instance_is_replayed_on_the_other(instances, issuer):
    first, second = instances
    id_token = issuer.sign(issuer.github_claims(AUDIENCE))
    assert exchange(first, id_token).status_code == 201
    again = exchange(second, id_token)
    assert again.status_code == 401 and again.json()["error"] == "replayed"
    fresh = exchange(second, issuer.sign(issuer.github_claims(AUDIENCE)))
    assert fresh.status_code == 201
    # Its token works on the other instance too: one store.
    body = fresh.json()
    assert httpx.get(f"{first.base_url}/api/v1/me", auth=(body["username"], body["token"])).status_code == 200


def test_one_id_token_at_both_instances_at_once_gets_one_token(instances, issuer):
    for _ in range(5):
        id_token = issuer.sign(issuer.github_claims(AUDIENCE))
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(exchange, instances * 2, [id_token] * 4))
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [201, 401, 401, 401], [answer.text for answer in answers]
        assert {answer.json()["error"] for answer in answers if answer.status_code == 401} == {"replayed"}
