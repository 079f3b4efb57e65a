"""SCIM provisioning over real HTTP, the way Okta and Entra ID call it, against a real server."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.ledger import remember
from tests.support.scim import SCIM_JSON, provider_client, provisioning_secret, provisioning_server
from tests.support.servers import LiveServer

SECRET = provisioning_secret()
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@pytest.fixture(scope="module")
def scim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with provisioning on: TOKENSMITH_SCIM_TOKEN set."""
    with provisioning_server(tmp_path_factory.mktemp("scim") / "data", SECRET, "scim") as live:
        yield live


@pytest.fixture
def idp(scim_server: LiveServer) -> Iterator[httpx.Client]:
    """The identity provider's SCIM client."""
    with provider_client(scim_server, SECRET) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}@example.com"


def okta_user(user_name: str, **changes: object) -> dict:
    body = {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": "Ada Lovelace",
        "locale": "en-US",
        "groups": [],
        "active": True,
    }
    return body | changes


def send(client: httpx.Client, method: str, url: str, body: object) -> httpx.Response:
    """As the providers send it: application/scim+json."""
    return client.request(method, url, content=json.dumps(body), headers={"Content-Type": SCIM_JSON})


def patch_op(*operations: dict) -> dict:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def provision(idp: httpx.Client, user_name: str, **changes: object) -> dict:
    response = send(idp, "POST", "/Users", okta_user(user_name, **changes))
    assert response.status_code == 201, response.text
    return response.json()


def me(server: LiveServer, username: str, token: str) -> httpx.Response:
    with server.client() as client:
        return client.get("/api/v1/me", auth=(username, token))


def basic(username: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()}


def assert_scim_error(response: httpx.Response, status: int, scim_type: str | None, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == SCIM_JSON
    body = response.json()
    expected = {"schemas": [ERROR], "status": str(status), "detail": body.get("detail")}
    if scim_type:
        expected["scimType"] = scim_type
    assert body == expected
    for word in words:
        assert word in body["detail"], body["detail"]
    assert "Traceback" not in response.text
    return body


# --- provisioning round trips ----------------------------------------------------------------------


def test_okta_provisions_reads_updates_and_deletes_a_user(scim_server, idp):
    name = unique("ada")
    password = remember("what Okta's password sync sends")
    created = send(idp, "POST", "/Users", okta_user(name, externalId="00u1", password=password))
    assert created.status_code == 201, created.text
    assert created.headers["content-type"] == SCIM_JSON
    user = created.json()
    location = f"{scim_server.base_url}/scim/v2/Users/{user['id']}"
    assert created.headers["location"] == user["meta"]["location"] == location
    assert (user["userName"], user["externalId"], user["active"]) == (name, "00u1", True)
    assert user["emails"] == [{"value": name, "type": "work", "primary": True}]
    assert user["name"] == {"givenName": "Ada", "familyName": "Lovelace"}, "as sent"
    assert "password" not in created.text and password not in created.text

    assert idp.get(f"/Users/{user['id']}").json() == user
    listed = idp.get("/Users", params={"filter": f'userName eq "{name.upper()}"'})
    assert listed.status_code == 200 and listed.headers["content-type"] == SCIM_JSON
    assert listed.json() == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 1,
        "itemsPerPage": 1,
        "startIndex": 1,
        "Resources": [user],
    }

    renamed = unique("ada.king")
    replaced = send(
        idp,
        "PUT",
        f"/Users/{user['id']}",
        okta_user(
            renamed,
            id=user["id"],
            name={"givenName": "Augusta", "familyName": "King"},
            displayName=None,
            emails=[{"primary": True, "value": renamed, "type": "work"}],
        ),
    )
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["userName"], replaced.json()["name"]) == (
        renamed,
        {"givenName": "Augusta", "familyName": "King"},
    )
    assert "externalId" not in replaced.json() and "displayName" not in replaced.json(), "PUT clears what it leaves out"
    assert replaced.json()["meta"]["lastModified"] >= user["meta"]["lastModified"]
    stored = scim_server.user(renamed)
    assert (stored.origin, stored.password_hash, stored.email, stored.display_name) == (
        "scim",
        None,
        renamed,
        "Augusta King",
    )

    assert idp.delete(f"/Users/{user['id']}").status_code == 204
    assert_scim_error(idp.get(f"/Users/{user['id']}"), 404, None, "no user with id")
    assert_scim_error(idp.delete(f"/Users/{user['id']}"), 404, None)
    assert idp.get("/Users", params={"filter": f'userName eq "{renamed}"'}).json()["totalResults"] == 0
    stored = scim_server.user(renamed)
    assert stored.removed_at is not None and not stored.is_active


def test_okta_deactivation_revokes_the_users_tokens_at_once(scim_server, idp):
    name = unique("grace")
    user = provision(idp, name)
    token = scim_server.create_token(name, "laptop")
    assert me(scim_server, name, token).status_code == 200

    deactivated = send(idp, "PATCH", f"/Users/{user['id']}", patch_op({"op": "replace", "value": {"active": False}}))
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["active"] is False
    refused = me(scim_server, name, token)
    assert refused.status_code == 401 and refused.json()["error"] == "token_revoked"
    assert "the account was disabled" in refused.json()["message"]

    reactivated = send(idp, "PATCH", f"/Users/{user['id']}", patch_op({"op": "replace", "value": {"active": True}}))
    assert reactivated.json()["active"] is True
    assert me(scim_server, name, token).status_code == 401, "reactivation brings no token back"
    assert me(scim_server, name, scim_server.create_token(name, "new laptop")).status_code == 200


def test_a_put_with_active_false_deactivates_too(scim_server, idp):
    name = unique("ida")
    user = provision(idp, name)
    token = scim_server.create_token(name, "laptop")
    replaced = send(idp, "PUT", f"/Users/{user['id']}", okta_user(name, active=False))
    assert replaced.status_code == 200 and replaced.json()["active"] is False
    refused = me(scim_server, name, token)
    assert refused.status_code == 401 and "the account was disabled" in refused.json()["message"]
    assert send(idp, "PUT", f"/Users/{user['id']}", okta_user(name, active=True)).json()["active"] is True
    assert me(scim_server, name, token).status_code == 401, "reactivation brings no token back"


def test_entra_matches_then_deactivates_with_its_own_dialect(scim_server, idp):
    name = unique("hedy")
    probe = idp.get("/Users", params={"filter": f'userName eq "{name}"'})
    assert probe.json()["totalResults"] == 0 and probe.json()["Resources"] == []
    body = okta_user(
        name,
        schemas=[USER_SCHEMA, ENTERPRISE],
        externalId="hedy",
        title="Inventor",
        phoneNumbers=[{"type": "mobile", "value": "+1 555 0100"}],
        **{ENTERPRISE: {"department": "Research"}},
    )
    created = send(idp, "POST", "/Users", body)
    assert created.status_code == 201, created.text
    user = created.json()
    token = scim_server.create_token(name, "ci")
    updated = send(
        idp,
        "PATCH",
        f"/Users/{user['id']}",
        patch_op(
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": f"lamarr.{name}"},
            {"op": "Replace", "path": "name.familyName", "value": "Lamarr"},
            {"op": "Add", "path": f"{ENTERPRISE}:employeeNumber", "value": "1914"},
            {"op": "Replace", "path": "title", "value": "Actress"},
        ),
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["emails"][0]["value"] == f"lamarr.{name}"
    assert updated.json()["name"]["familyName"] == "Lamarr"
    assert me(scim_server, name, token).status_code == 200

    disabled = send(
        idp, "PATCH", f"/Users/{user['id']}", patch_op({"op": "Replace", "path": "active", "value": "False"})
    )
    assert disabled.status_code == 200 and disabled.json()["active"] is False
    assert me(scim_server, name, token).status_code == 401
    found = idp.get("/Users", params={"filter": 'externalId eq "hedy" and active eq false'}).json()
    assert [item["id"] for item in found["Resources"]] == [user["id"]]


def test_plain_application_json_is_accepted_and_pages_are_counted(scim_server, idp):
    names = [unique("page") for _ in range(3)]
    ids = [idp.post("/Users", json=okta_user(name)).json()["id"] for name in names]
    assert all(ids)
    everyone = idp.get("/Users", params={"count": 0}).json()
    assert everyone["Resources"] == [] and everyone["itemsPerPage"] == 0 and everyone["totalResults"] >= 3
    last_two = idp.get("/Users", params={"startIndex": everyone["totalResults"] - 1, "count": 5}).json()
    assert [item["id"] for item in last_two["Resources"]] == ids[1:]
    assert last_two["startIndex"] == everyone["totalResults"] - 1
    assert idp.get("/Users", params={"startIndex": 10**30}).json()["Resources"] == []


def test_discovery_documents(scim_server, idp):
    config = idp.get("/ServiceProviderConfig")
    assert config.status_code == 200 and config.headers["content-type"] == SCIM_JSON
    document = config.json()
    assert document["patch"] == {"supported": True}
    assert document["filter"] == {"supported": True, "maxResults": 200}
    for feature in ("bulk", "sort", "etag", "changePassword"):
        assert document[feature]["supported"] is False
    assert [scheme["type"] for scheme in document["authenticationSchemes"]] == ["oauthbearertoken"]
    types = idp.get("/ResourceTypes").json()
    assert [item["endpoint"] for item in types["Resources"]] == ["/Users"]
    assert idp.get("/ResourceTypes/User").json()["schema"] == USER_SCHEMA
    schema = idp.get(f"/Schemas/{USER_SCHEMA}").json()
    assert [attribute["name"] for attribute in schema["attributes"]] == [
        "userName",
        "name",
        "displayName",
        "emails",
        "active",
    ]
    assert idp.get("/Schemas").json()["Resources"] == [schema]


# --- refusals --------------------------------------------------------------------------------------


def test_only_the_provisioning_secret_opens_scim(scim_server):
    scim_server.create_user("scim-outsider", password=remember("outsider's own password"))
    token = scim_server.create_token("scim-outsider", "tries scim")
    attempts = [
        {},
        {"Authorization": "Bearer " + SECRET[:-1]},
        {"Authorization": "Bearer " + SECRET + "x"},
        {"Authorization": f"Bearer {token}"},
        basic("scim-outsider", token),
        basic("scim-outsider", "outsider's own password"),
        basic("scim", SECRET),
        {"Authorization": SECRET},
        {"Authorization": "Bearer " + "x" * 5000},
    ]
    with scim_server.client() as client:
        for headers in attempts:
            for method, path in (("GET", "/scim/v2/Users"), ("POST", "/scim/v2/Users"), ("GET", "/scim/v2/Groups")):
                response = client.request(method, path, headers=headers, json=okta_user(unique("intruder")))
                body = assert_scim_error(response, 401, None, "Bearer")
                assert response.headers["www-authenticate"] == 'Bearer realm="tokensmith-scim"'
                assert token not in response.text and SECRET not in response.text
                assert "Personal access tokens" in body["detail"] or not headers
    assert scim_server.user("scim-outsider").is_active


def test_scim_is_off_until_its_secret_is_set(server):
    with server.client() as client:
        for headers in ({}, {"Authorization": f"Bearer {SECRET}"}):
            response = client.get("/scim/v2/Users", headers=headers)
            assert_scim_error(response, 404, None, "SCIM provisioning is off", "TOKENSMITH_SCIM_TOKEN")


@pytest.mark.parametrize(
    "method, path, content, content_type, status, scim_type, words",
    [
        ("POST", "/Users", b'{"schemas": [', SCIM_JSON, 400, "invalidSyntax", ["not valid JSON"]),
        ("POST", "/Users", b"", SCIM_JSON, 400, "invalidSyntax", ["not valid JSON"]),
        ("POST", "/Users", b"[]", SCIM_JSON, 400, "invalidSyntax", ["JSON object"]),
        ("POST", "/Users", b'{"userName": "no-schemas"}', SCIM_JSON, 400, "invalidSyntax", ['"schemas"']),
        (
            "POST",
            "/Users",
            json.dumps(okta_user("x@example.com", shoeSize=44)).encode(),
            SCIM_JSON,
            400,
            "invalidSyntax",
            ["Unknown attribute 'shoeSize'"],
        ),
        (
            "POST",
            "/Users",
            json.dumps(okta_user("x@example.com", **{ENTERPRISE: {}})).encode(),
            SCIM_JSON,
            400,
            "invalidSyntax",
            ["Unknown attribute"],
        ),
        (
            "POST",
            "/Users",
            json.dumps(okta_user("no spaces allowed")).encode(),
            SCIM_JSON,
            400,
            "invalidValue",
            ["A username is 1 to 64"],
        ),
        (
            "POST",
            "/Users",
            json.dumps(okta_user("nomail", emails=[])).encode(),
            SCIM_JSON,
            400,
            "invalidValue",
            ["needs an email address"],
        ),
        (
            "POST",
            "/Users",
            json.dumps(okta_user("x@example.com")).encode(),
            "text/plain",
            415,
            None,
            ["application/scim+json"],
        ),
        ("POST", "/Users", b"{" + b" " * 70_000 + b"}", SCIM_JSON, 413, None, ["larger than"]),
        ("GET", "/Users?filter=userName%20co%20%22ada%22", b"", None, 400, "invalidFilter", ['"eq" on userName']),
        ("GET", "/Users?filter=title%20eq%20%22x%22", b"", None, 400, "invalidFilter", ["'title' is not one of them"]),
        ("GET", "/Users?count=many", b"", None, 400, "invalidValue", ["count must be a whole number"]),
        ("GET", "/Users/123456789", b"", None, 404, None, ["no user with id '123456789'"]),
        ("GET", "/Users/not-a-number", b"", None, 404, None, ["no user with id"]),
        ("PUT", "/Users/123456789", json.dumps(okta_user("x@example.com")).encode(), SCIM_JSON, 404, None, []),
        ("GET", "/Groups", b"", None, 404, None, ["no /scim/v2/Groups"]),
        ("DELETE", "/Users", b"", None, 405, None, ["DELETE is not supported"]),
        ("GET", "/Schemas/urn:example:Group", b"", None, 404, None, ["no schema"]),
    ],
)
def test_malformed_requests_get_scim_errors(idp, method, path, content, content_type, status, scim_type, words):
    headers = {"Content-Type": content_type} if content_type else {}
    assert_scim_error(idp.request(method, path, content=content, headers=headers), status, scim_type, *words)


@pytest.mark.parametrize(
    "operations, status, scim_type, words",
    [
        (
            [{"op": "replace", "path": "favouriteColour", "value": "teal"}],
            400,
            "invalidPath",
            ["Unknown path 'favouriteColour'"],
        ),
        ([{"op": "remove"}], 400, "noTarget", ['needs a "path"']),
        ([{"op": "replace", "path": "meta", "value": {}}], 400, "mutability", ["read-only"]),
        ([{"op": "Move", "path": "active"}], 400, "invalidSyntax", ['"add", "replace" or "remove"']),
        ([{"op": "replace", "path": "active", "value": "maybe"}], 400, "invalidValue", ["true or false"]),
        (
            [{"op": "replace", "path": 'emails[type eq "work"].value', "value": "not-an-address"}],
            400,
            "invalidValue",
            ["is not an email address"],
        ),
    ],
)
def test_bad_patches_get_scim_errors_and_change_nothing(idp, operations, status, scim_type, words):
    user = provision(idp, unique("patched"))
    first = {"op": "replace", "path": "active", "value": False}
    response = send(idp, "PATCH", f"/Users/{user['id']}", patch_op(first, *operations))
    assert_scim_error(response, status, scim_type, *words)
    assert idp.get(f"/Users/{user['id']}").json() == user


def test_a_user_name_is_unique_whatever_the_case_local_accounts_included(scim_server, idp):
    name = unique("twin")
    first = provision(idp, name)
    again = send(idp, "POST", "/Users", okta_user(name.upper()))
    assert_scim_error(again, 409, "uniqueness", "already exists", f"(id {first['id']})")
    other = provision(idp, unique("other"))
    renamed = send(idp, "PUT", f"/Users/{other['id']}", okta_user(name))
    assert_scim_error(renamed, 409, "uniqueness", "already exists")

    scim_server.create_user("scim-local-operator")
    local = send(idp, "POST", "/Users", okta_user("SCIM-local-operator", emails=[{"value": "op@example.com"}]))
    assert_scim_error(local, 409, "uniqueness", "local account", "tokensmith users link scim-local-operator")
    assert idp.get("/Users", params={"filter": 'userName eq "scim-local-operator"'}).json()["totalResults"] == 0
    assert scim_server.user("scim-local-operator").origin == "local"


def test_a_deleted_user_can_be_provisioned_again_as_a_new_account(scim_server, idp):
    name = unique("returning")
    old = provision(idp, name)
    token = scim_server.create_token(name, "old laptop")
    assert idp.delete(f"/Users/{old['id']}").status_code == 204
    new = provision(idp, name)
    assert new["id"] != old["id"] and new["active"] is True
    assert me(scim_server, name, token).status_code == 401, "the old account's tokens open nothing"


# --- attributes, excludedAttributes and .search --------------------------------------------------


def test_attributes_and_excluded_attributes_shape_every_answer_with_a_resource(scim_server, idp):
    name = unique("shaped")
    created = idp.post("/Users", params={"excludedAttributes": "emails,meta"}, json=okta_user(name))
    assert created.status_code == 201 and "emails" not in created.json() and "meta" not in created.json()
    user_id = created.json()["id"]
    assert created.headers["location"] == f"{scim_server.base_url}/scim/v2/Users/{user_id}"
    one = idp.get(f"/Users/{user_id}", params={"attributes": f"userName,name.givenName,{USER_SCHEMA}:active"})
    assert one.json() == {
        "schemas": [USER_SCHEMA],
        "id": user_id,
        "userName": name,
        "name": {"givenName": "Ada"},
        "active": True,
    }
    listed = idp.get("/Users", params={"filter": f'userName eq "{name}"', "excludedAttributes": "id,name,emails.type"})
    assert listed.json()["Resources"][0]["id"] == user_id, "id is always returned"
    assert "name" not in listed.json()["Resources"][0]
    assert listed.json()["Resources"][0]["emails"] == [{"value": name, "primary": True}]
    replaced = send(idp, "PUT", f"/Users/{user_id}?attributes=displayName", okta_user(name, displayName="Ada L."))
    assert replaced.json() == {"schemas": [USER_SCHEMA], "id": user_id, "displayName": "Ada L."}
    patched = send(
        idp,
        "PATCH",
        f"/Users/{user_id}?attributes=emails.value,title",
        patch_op({"op": "add", "path": 'emails[type eq "home"].value', "value": f"home.{name}"}),
    )
    assert patched.json()["emails"] == [{"value": name}, {"value": f"home.{name}"}]
    assert_scim_error(
        idp.get(f"/Users/{user_id}", params={"attributes": "userName", "excludedAttributes": "name"}),
        400,
        "invalidValue",
        "not both",
    )
    assert_scim_error(
        idp.get("/Users", params={"attributes": 'emails[type eq "work"]'}), 400, "invalidValue", "names attributes"
    )


def test_post_search_at_users_and_at_the_root(idp):
    name = unique("searched")
    user = provision(idp, name, externalId="searched-1")
    request = {
        "schemas": [SEARCH],
        "filter": f'userName eq "{name}" and externalId eq "searched-1"',
        "attributes": ["userName", "externalId"],
        "startIndex": 1,
        "count": 10,
        "sortBy": "userName",
    }
    for path in ("/Users/.search", "/.search"):
        found = send(idp, "POST", path, request)
        assert found.status_code == 200 and found.headers["content-type"] == SCIM_JSON, found.text
        assert found.json() == {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": 1,
            "itemsPerPage": 1,
            "startIndex": 1,
            "Resources": [{"schemas": [USER_SCHEMA], "id": user["id"], "userName": name, "externalId": "searched-1"}],
        }
    counted = send(idp, "POST", "/.search", {"schemas": [SEARCH], "count": 0}).json()
    assert counted["totalResults"] >= 1 and counted["Resources"] == []


@pytest.mark.parametrize(
    "body, scim_type, words",
    [
        ({"filter": 'userName eq "x"'}, "invalidSyntax", ['"schemas"']),
        ({"schemas": [USER_SCHEMA]}, "invalidSyntax", [SEARCH]),
        ({"schemas": [SEARCH], "count": "ten"}, "invalidValue", ["count must be a whole number"]),
        ({"schemas": [SEARCH], "startIndex": True}, "invalidValue", ["startIndex must be a whole number"]),
        ({"schemas": [SEARCH], "filter": 'userName co "x"'}, "invalidFilter", ['"eq" on userName']),
        ({"schemas": [SEARCH], "filter": ["userName"]}, "invalidValue", ["filter must be a string"]),
        ({"schemas": [SEARCH], "attributes": "userName", "excludedAttributes": ["name"]}, "invalidValue", ["not both"]),
        ({"schemas": [SEARCH], "attributes": [7]}, "invalidValue", ["list of attribute names"]),
        ({"schemas": [SEARCH], "cursor": ""}, "invalidSyntax", ["Unknown SearchRequest attribute 'cursor'"]),
    ],
)
def test_malformed_search_requests_get_scim_errors(idp, body, scim_type, words):
    for path in ("/Users/.search", "/.search"):
        assert_scim_error(send(idp, "POST", path, body), 400, scim_type, *words)
