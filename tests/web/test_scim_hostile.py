"""Hostile bodies on every SCIM route that reads one, over real HTTP: a refusal, never a 5xx,
never a traceback in the server's log.

JSON nested thousands of levels deep and integers of thousands of digits, as the whole body
and in place of every value of a body Okta or Entra ID would send; bodies over the limit; and
the methods a path does not take.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.scim import SCIM_JSON, provider_client, provisioning_secret, provisioning_server
from tests.support.servers import LiveServer

SECRET = provisioning_secret()
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
HOLE = "\x00hostile\x00"  # where a template's value is replaced by a hostile fragment
# Past Python's parser (deeper than its recursion limit, longer than its 4300 digits), and
# within it (parsed, then met by Tokensmith's own code).
FRAGMENTS = {
    "deep arrays": "[" * 5000 + "]" * 5000,
    "deep objects": '{"a":' * 5000 + "1" + "}" * 5000,
    "arrays 900 deep": "[" * 900 + "]" * 900,
    "objects 900 deep": '{"a":' * 900 + "1" + "}" * 900,
    "5000 digits": "9" * 5000,
    "4000 digits": "9" * 4000,
    "negative 4000 digits": "-" + "9" * 4000,
    "float past double": "1e999999",
}
USER = {
    "schemas": [USER_SCHEMA],
    "userName": "hostile@example.com",
    "externalId": "00u-hostile",
    "name": {"formatted": "Ha Stile", "givenName": "Ha", "familyName": "Stile"},
    "displayName": "Ha Stile",
    "emails": [{"value": "hostile@example.com", "type": "work", "primary": True}],
    "active": True,
}
PATCH = {
    "schemas": [PATCH_OP],
    "Operations": [
        {"op": "replace", "path": "name.givenName", "value": "Ha"},
        {"op": "add", "path": 'emails[type eq "work"].value', "value": "hostile@example.com"},
        {
            "op": "replace",
            "value": {
                "active": True,
                "name": {"familyName": "Stile"},
                "emails": [{"value": "hostile@example.com", "type": "work"}],
            },
        },
    ],
}
SEARCH_REQUEST = {
    "schemas": [SEARCH],
    "filter": 'userName eq "hostile@example.com"',
    "attributes": ["userName"],
    "startIndex": 1,
    "count": 10,
}
# Integers Tokensmith reads as numbers, where a very large one is a valid request (RFC 7644
# §3.4.2.4: a count past the maximum gets the maximum; a startIndex past the end, no users).
NUMBERS = {("startIndex",), ("count",)}


def holes(document: object, path: tuple = ()) -> Iterator[tuple]:
    """The path of every value in ``document``, containers included."""
    yield path
    if isinstance(document, dict):
        for key, value in document.items():
            yield from holes(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from holes(value, (*path, index))


def with_hole(document: object, path: tuple) -> object:
    if not path:
        return HOLE
    copy = json.loads(json.dumps(document))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = HOLE
    return copy


def hostile_bodies(template: object) -> Iterator[tuple[str, tuple, bytes]]:
    for path in holes(template):
        text = json.dumps(with_hole(template, path))
        for name, fragment in FRAGMENTS.items():
            yield name, path, text.replace(json.dumps(HOLE), fragment).encode()


@pytest.fixture(scope="module")
def scim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with provisioning_server(tmp_path_factory.mktemp("scim-hostile") / "data", SECRET, "scim-hostile") as live:
        yield live


@pytest.fixture(scope="module")
def idp(scim_server: LiveServer) -> Iterator[httpx.Client]:
    with provider_client(scim_server, SECRET) as client:
        yield client


@pytest.fixture(scope="module")
def user_id(idp: httpx.Client) -> str:
    created = idp.post(
        "/Users", json=USER | {"userName": "target@example.com", "emails": [{"value": "target@example.com"}]}
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


def assert_refused_in_scim_words(response: httpx.Response, what: str) -> None:
    assert 400 <= response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    assert response.headers["content-type"] == SCIM_JSON, what
    body = response.json()
    assert body["status"] == str(response.status_code) and body["detail"], what
    assert "Traceback" not in response.text


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "method, path, template",
    [
        ("POST", "/Users", USER),
        ("PUT", "/Users/{id}", USER),
        ("PATCH", "/Users/{id}", PATCH),
        ("POST", "/Users/.search", SEARCH_REQUEST),
        ("POST", "/.search", SEARCH_REQUEST),
    ],
    ids=["create", "replace", "patch", "users-search", "root-search"],
)
def test_deep_nesting_and_huge_numbers_anywhere_are_refused(scim_server, idp, user_id, method, path, template):
    offset = len(scim_server.console())
    url = path.format(id=user_id)
    for name, hole, body in hostile_bodies(template):
        response = idp.request(method, url, content=body, headers={"Content-Type": SCIM_JSON})
        what = f"{method} {url} with {name} at {'/'.join(map(str, hole)) or 'the top'}"
        if hole in NUMBERS and "digits" in name and response.status_code == 200:
            continue  # parsed as a number, and a large one is a valid request
        assert_refused_in_scim_words(response, what)
    assert idp.get(f"/Users/{user_id}").json()["userName"] == "target@example.com", "nothing was changed"
    console = scim_server.console()[offset:]
    assert "Traceback" not in console and "unexpected" not in console


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/Users"),
        ("PUT", "/Users/{id}"),
        ("PATCH", "/Users/{id}"),
        ("POST", "/Users/.search"),
        ("POST", "/.search"),
    ],
)
def test_a_body_over_the_limit_is_413_even_when_streamed(idp, user_id, method, path):
    url = path.format(id=user_id)
    whole = b'{"schemas": [' + b" " * 70_000 + b"]}"
    for content in (whole, iter([whole[:30_000], whole[30_000:]])):  # with a length, then chunked
        response = idp.request(method, url, content=content, headers={"Content-Type": SCIM_JSON})
        assert_refused_in_scim_words(response, f"{method} {url}")
        assert response.status_code == 413 and "larger than 64 KiB" in response.json()["detail"]


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("DELETE", "/Users", "GET, HEAD, POST"),
        ("PUT", "/Users", "GET, HEAD, POST"),
        ("POST", "/Users/{id}", "GET, HEAD, PUT, PATCH, DELETE"),
        ("GET", "/Users/.search", "POST"),
        ("DELETE", "/Users/.search", "POST"),
        ("GET", "/.search", "POST"),
        ("POST", "/ServiceProviderConfig", "GET, HEAD"),
        ("PATCH", "/ResourceTypes", "GET, HEAD"),
        ("DELETE", "/ResourceTypes/User", "GET, HEAD"),
        ("PUT", f"/Schemas/{USER_SCHEMA}", "GET, HEAD"),
        ("OPTIONS", "/Users", "GET, HEAD, POST"),
    ],
)
def test_a_method_a_path_does_not_take_is_405_with_allow(idp, user_id, method, path, allowed):
    response = idp.request(method, path.format(id=user_id))
    assert_refused_in_scim_words(response, f"{method} {path}")
    assert response.status_code == 405 and response.headers["allow"] == allowed
    assert f"it takes {allowed}" in response.json()["detail"]


def test_head_answers_like_get_without_a_body(idp):
    for path in ("/Users", "/ServiceProviderConfig", f"/Schemas/{USER_SCHEMA}"):
        head, get = idp.head(path), idp.get(path)
        assert (head.status_code, head.content) == (200, b"") and get.status_code == 200
        assert head.headers["content-type"] == SCIM_JSON
