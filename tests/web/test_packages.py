"""Instance registration and the package (hotfix) repository: the realm a token does not open."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
from sqlalchemy import select

from tests.support.ledger import remember
from tokensmith.store.models import Instance

PASSWORD = "package person's password"
PACKAGE = "com/acme/hotfix/hotfix-12/1.0.0/hotfix-12-1.0.0.zip"


@pytest.fixture(scope="module")
def setup(server, tmp_path_factory) -> dict:
    suffix = uuid.uuid4().hex[:6]
    alice, carol = f"alice-{suffix}", f"carol-{suffix}"
    for name in (alice, carol):
        server.create_user(name, password=PASSWORD)
    project_id = f"acme-{suffix}"
    assert (
        server.cli("projects", "create", project_id, "--group-id", "com.acme.studio", "--owner", alice).returncode == 0
    )
    package = tmp_path_factory.mktemp("package") / "hotfix-12.zip"
    package.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip
    published = server.cli("packages", "publish", str(package), "--coordinates", "com.acme.hotfix:hotfix-12:1.0.0")
    assert published.returncode in (0, 4), published.stderr  # 4: already there, from an earlier module
    tokens = {name: server.create_token(name, "packages") for name in (alice, carol)}
    return {"project": project_id, "alice": alice, "carol": carol, "tokens": tokens, "package": package}


def register(server, setup, who="alice", project=None, description="staging") -> httpx.Response:
    with server.client(auth=(setup[who], setup["tokens"][setup[who]])) as client:
        return client.post(
            "/api/v1/instances", json={"project": project or setup["project"], "description": description}
        )


def hotfix(server, *auth: str) -> httpx.Response:
    return httpx.get(f"{server.base_url}/packages/hotfix/{PACKAGE}", auth=auth or None)


def test_a_registered_instance_downloads_packages_with_its_key(server, setup):
    response = register(server, setup)
    assert response.status_code == 201, response.text
    body = response.json()
    key = remember(body["instance_key"])
    assert body["project"] == setup["project"] and body["description"] == "staging"
    assert len(body["instance_id"]) == 32 and key.startswith("tkinst_")
    download = hotfix(server, body["instance_id"], key)
    assert download.status_code == 200 and download.content == setup["package"].read_bytes()
    checksum = httpx.get(f"{server.base_url}/packages/hotfix/{PACKAGE}.sha1", auth=(body["instance_id"], key))
    assert checksum.text == hashlib.sha1(download.content).hexdigest()
    with server.store() as session:
        row = session.scalars(select(Instance).where(Instance.id == body["instance_id"])).one()
        assert key.encode() not in row.key_digest and key not in row.key_hint and len(row.key_digest) == 32


def test_personal_tokens_and_passwords_are_refused_with_words(server, setup):
    token = setup["tokens"][setup["alice"]]
    for auth in ((setup["alice"], token), (setup["alice"], PASSWORD), (token, "")):
        refused = hotfix(server, *auth)
        assert refused.status_code == 401, refused.text
        assert (
            "Personal access tokens and passwords are not valid for the package repository" in refused.json()["message"]
        )
        assert refused.headers["www-authenticate"].startswith("Basic realm=")
    bearer = httpx.get(f"{server.base_url}/packages/hotfix/{PACKAGE}", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401 and "not valid for the package repository" in bearer.json()["message"]


def test_wrong_or_missing_instance_credentials_are_refused(server, setup):
    body = register(server, setup, description="prod").json()
    remember(body["instance_key"])
    assert hotfix(server).status_code == 401
    assert hotfix(server, body["instance_id"], "tkinst_" + "A" * 40).status_code == 401
    assert hotfix(server, "0" * 32, body["instance_key"]).status_code == 401
    other = register(server, setup, description="other").json()
    remember(other["instance_key"])
    assert hotfix(server, body["instance_id"], other["instance_key"]).status_code == 401  # keys are not shared


def test_an_instance_key_is_not_a_personal_token(server, setup):
    body = register(server, setup, description="qa").json()
    key = remember(body["instance_key"])
    for auth in ((setup["alice"], key), (body["instance_id"], key)):
        refused = httpx.get(f"{server.base_url}/api/v1/me", auth=auth)
        assert refused.status_code == 401


def test_only_members_register_instances(server, setup):
    hidden = register(server, setup, who="carol")
    missing = register(server, setup, project="no-such-project")
    assert hidden.status_code == missing.status_code == 404
    assert register(server, setup, description="bad\x00description").status_code == 422
    assert register(server, setup, description="x" * 201).status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "../../../etc/passwd",
        "com/acme/hotfix/%2e%2e/x",
        "com%2Facme/x.zip",
        "com/acme/hotfix/hotfix-12/9.9.9/hotfix-12-9.9.9.zip",
        "",
    ],
)
def test_paths_outside_the_repository_are_not_found(server, setup, path):
    body = register(server, setup, description=f"paths {uuid.uuid4().hex[:4]}").json()
    remember(body["instance_key"])
    response = httpx.get(f"{server.base_url}/packages/hotfix/{path}", auth=(body["instance_id"], body["instance_key"]))
    assert response.status_code == 404


def test_publishing_refuses_bad_coordinates_and_duplicates(server, setup):
    cases = [
        ("com.acme:x", 2, "GROUP:ARTIFACT:VERSION"),
        ("com..acme:x:1.0", 2, "cannot use"),
        ("com.acme:../x:1.0", 2, "cannot use"),
        ("com.acme.hotfix:hotfix-12:1.0.0", 4, "already published"),
    ]
    for coordinates, code, words in cases:
        result = server.cli("packages", "publish", str(setup["package"]), "--coordinates", coordinates)
        assert result.returncode == code and words in result.stderr, (coordinates, result.stderr)
