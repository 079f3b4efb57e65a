"""SCIM provisioning in the domain: resources <-> accounts, PATCH, filters; on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC

import pytest
from sqlalchemy import select

from tests.support.ledger import remember
from tokensmith.accounts import sessions, users
from tokensmith.clock import utcnow
from tokensmith.scim import provisioning
from tokensmith.scim.provisioning import ScimError
from tokensmith.store.models import AuditEvent, PersonalToken, User
from tokensmith.tokens import listing as token_listing

BASE = "https://tokens.example.com"
PATCH = provisioning.PATCH_OP_SCHEMA


def okta_user(user_name: str = "ada@example.com", **changes: object) -> dict:
    """What Okta's SCIM connector sends on "Push new users"."""
    body = {
        "schemas": [provisioning.USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [
            {"primary": True, "value": user_name if "@" in user_name else f"{user_name}@example.com", "type": "work"}
        ],
        "displayName": "Ada Lovelace",
        "locale": "en-US",
        "externalId": "00u1abcd",
        "groups": [],
        "active": True,
    }
    return body | changes


def patch(*operations: dict) -> dict:
    return {"schemas": [PATCH], "Operations": list(operations)}


@contextmanager
def refused(status: int, scim_type: str | None, *words: str) -> Iterator[None]:
    """The block raises this ScimError, whose detail says these words."""
    with pytest.raises(ScimError) as raised:
        yield
    error = raised.value
    assert (error.status, error.scim_type) == (status, scim_type), error.detail
    for word in words:
        assert word in error.detail, error.detail


def events(db, user: User) -> list[AuditEvent]:
    return list(db.scalars(select(AuditEvent).where(AuditEvent.user_id == user.id).order_by(AuditEvent.id)))


# --- creating and reading --------------------------------------------------------------------------


def test_okta_push_creates_a_provisioned_account_without_password(db):
    password = remember("the password Okta syncs along")
    user = provisioning.create_user(db, okta_user(password=password))
    stored = db.get(User, user.id)
    assert (stored.username, stored.email, stored.origin) == ("ada@example.com", "ada@example.com", "scim")
    assert stored.password_hash is None and stored.is_active
    assert (stored.display_name, stored.external_id) == ("Ada Lovelace", "00u1abcd")
    created = events(db, user)[0]
    assert (created.action, created.actor, created.details["origin"]) == ("user.created", "scim", "scim")
    assert password not in repr([event.details for event in events(db, user)])


def test_the_resource_of_an_account(db):
    user = provisioning.create_user(db, okta_user())
    document = provisioning.resource(user, BASE + "/")
    created = user.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # ISO 8601, UTC, to the second
    assert document == {
        "schemas": [provisioning.USER_SCHEMA],
        "id": str(user.id),
        "userName": "ada@example.com",
        "externalId": "00u1abcd",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "displayName": "Ada Lovelace",
        "emails": [{"value": "ada@example.com", "type": "work", "primary": True}],
        "active": True,
        "meta": {
            "resourceType": "User",
            "created": created,
            "lastModified": created,
            "location": f"{BASE}/scim/v2/Users/{user.id}",
        },
    }


def test_the_account_name_is_display_name_else_formatted_else_given_and_family(db):
    user = provisioning.create_user(
        db, okta_user(displayName=None, name={"givenName": "Grace", "familyName": "Brewster Hopper"})
    )
    assert user.display_name == "Grace Brewster Hopper"
    document = provisioning.resource(user, BASE)
    assert "displayName" not in document, "what was not sent is not made up"
    assert document["name"] == {"givenName": "Grace", "familyName": "Brewster Hopper"}
    formatted = provisioning.create_user(
        db, okta_user("f", displayName=None, name={"formatted": "Dr. G. Hopper", "givenName": "G"})
    )
    assert formatted.display_name == "Dr. G. Hopper"
    both = provisioning.create_user(db, okta_user("b", displayName="Amazing Grace", name={"formatted": "Grace Hopper"}))
    assert both.display_name == "Amazing Grace"
    bare = provisioning.resource(
        provisioning.create_user(
            db, okta_user("nameless", displayName=None, name=None, emails=[{"value": "n@example.com"}])
        ),
        BASE,
    )
    assert "name" not in bare and "displayName" not in bare
    assert bare["emails"] == [{"value": "n@example.com"}]


def test_the_account_email_is_the_primary_else_the_first_work_one_else_the_first(db):
    emails = [
        {"value": "home@example.com", "type": "home"},
        {"value": "work@example.com", "type": "Work"},
        {"value": "chosen@example.com", "primary": "True"},
    ]
    assert provisioning.create_user(db, okta_user("one", emails=emails)).email == "chosen@example.com"
    assert provisioning.create_user(db, okta_user("two", emails=emails[:2])).email == "work@example.com"
    assert provisioning.create_user(db, okta_user("three", emails=emails[:1])).email == "home@example.com"


def test_names_and_emails_read_back_exactly_as_sent(db):
    name = {"formatted": "Ms. Ada King, Countess", "givenName": "Ada", "familyName": "King"}
    emails = [
        {"value": "ada@home.example", "type": "home", "primary": False},
        {"value": "ada@example.com", "type": "Engines", "primary": True},
        {"value": "ada@old.example"},
    ]
    user = provisioning.create_user(db, okta_user(name=name, emails=emails, displayName=None))
    document = provisioning.resource(user, BASE)
    assert (document["name"], document["emails"]) == (name, emails)
    assert (user.email, user.display_name) == ("ada@example.com", "Ms. Ada King, Countess")
    assert provisioning.get_user(db, str(user.id)).scim_profile == {"displayName": None, "name": name, "emails": emails}
    provisioning.replace_user(db, str(user.id), okta_user(name=name, emails=emails[::-1], displayName="Ada"))
    document = provisioning.resource(user, BASE)
    assert (document["emails"], document["displayName"], user.display_name) == (emails[::-1], "Ada", "Ada")


def test_the_account_wins_when_its_name_or_email_changed_elsewhere(db):
    """A sign-in at the provider updates the account's name and email: SCIM then reads those."""
    user = provisioning.create_user(db, okta_user(emails=[{"value": "ada@example.com", "type": "home"}]))
    user.display_name, user.email = "Ada B. Lovelace", "ada.b@example.com"
    db.flush()
    document = provisioning.resource(user, BASE)
    assert document["displayName"] == "Ada B. Lovelace"
    assert document["name"] == {"formatted": "Ada B. Lovelace", "givenName": "Ada", "familyName": "B. Lovelace"}
    assert document["emails"] == [{"value": "ada.b@example.com", "type": "work", "primary": True}]


def test_at_most_one_email_is_primary(db):
    emails = [{"value": "a@example.com", "primary": True}, {"value": "b@example.com", "primary": True}]
    with refused(400, "invalidValue", "At most one email is primary"):
        provisioning.create_user(db, okta_user(emails=emails))


def test_created_inactive_is_disabled(db):
    user = provisioning.create_user(db, okta_user(active=False))
    assert not user.is_active and user.disabled_at is not None


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"userName": None}, ["userName is required"]),
        ({"userName": "a b"}, ["A username is 1 to 64"]),
        ({"userName": "x" * 65}, ["A username is 1 to 64"]),
        ({"userName": 42}, ["userName must be a string"]),
        ({"emails": []}, ["needs an email address"]),
        ({"emails": [{"value": "not-an-address"}]}, ["is not an email address"]),
        ({"emails": ["ada@example.com"]}, ["Each emails entry must be an object"]),
        ({"active": "yes"}, ["active is true or false"]),
        ({"externalId": "x" * 256}, ["at most 255"]),
        ({"displayName": "bell\x07"}, ["display name"]),
        ({"name": {"givenName": "x" * 201}}, ["name.givenName is at most 200 characters"]),
        ({"name": {"givenName": "x" * 150, "familyName": "y" * 100}, "displayName": None}, ["display name"]),
        ({"name": "Ada"}, ["name must be an object"]),
        ({"emails": [{"value": "a@example.com", "type": 7}]}, ["An email's type must be a string"]),
        ({"emails": [{"value": "a@example.com", "primary": "yes"}]}, ["An email's primary is true or false"]),
        ({"emails": [{"value": f"{index}@example.com"} for index in range(21)]}, ["at most 20 email addresses"]),
    ],
)
def test_invalid_values_are_refused_with_the_reason(db, changes, words):
    body = okta_user(**changes)
    if changes.get("userName", "") is None:
        del body["userName"]
    with refused(400, "invalidValue", *words):
        provisioning.create_user(db, body)


@pytest.mark.parametrize(
    "body, words",
    [
        ([okta_user()], ["must be a JSON object"]),
        ({key: value for key, value in okta_user().items() if key != "schemas"}, ['needs "schemas"']),
        (okta_user(schemas=[provisioning.PATCH_OP_SCHEMA]), ['must list "urn:ietf:params:scim:schemas:core:2.0:User"']),
        (okta_user(schemas=[provisioning.USER_SCHEMA, 7]), ['needs "schemas"']),
        (okta_user(schemas=[provisioning.USER_SCHEMA, "urn:example:group"]), ["not a User schema extension"]),
        (okta_user(favouriteColour="teal"), ["Unknown attribute 'favouriteColour'"]),
        (
            okta_user(**{provisioning.ENTERPRISE_USER_SCHEMA: {"department": "R&D"}}),
            ["Unknown attribute", "enterprise"],
        ),
    ],
)
def test_malformed_resources_are_invalid_syntax(db, body, words):
    with refused(400, "invalidSyntax", *words):
        provisioning.create_user(db, body)


def test_unstored_core_attributes_and_listed_extensions_are_ignored(db):
    body = okta_user(
        schemas=[provisioning.USER_SCHEMA, provisioning.ENTERPRISE_USER_SCHEMA],
        title="Analyst",
        phoneNumbers=[{"value": "+44 20 7946 0000", "type": "work"}],
        nickName="Ada",
        preferredLanguage="en",
        addresses=[{"locality": "London"}],
        userType="Employee",
        **{provisioning.ENTERPRISE_USER_SCHEMA: {"department": "Engines", "employeeNumber": "1815"}},
    )
    body["USERNAME"] = body.pop("userName")  # attribute names are case-insensitive
    user = provisioning.create_user(db, body)
    assert user.username == "ada@example.com"


def test_a_user_name_is_unique_whatever_the_case(db):
    first = provisioning.create_user(db, okta_user("Ada@Example.com"))
    with refused(409, "uniqueness", "already exists", f"(id {first.id})"):
        provisioning.create_user(db, okta_user("ada@example.COM"))


def test_local_accounts_are_out_of_provisioning_sight(db, make_user):
    local = make_user("operator")
    with refused(409, "uniqueness", "local account named 'operator'", "tokensmith users link operator"):
        provisioning.create_user(db, okta_user("OPERATOR"))
    with refused(404, None, "no user with id"):
        provisioning.get_user(db, str(local.id))
    assert local.id not in [user.id for user in provisioning.list_users(db, count=provisioning.MAX_RESULTS).users]
    assert provisioning.list_users(db, 'userName eq "operator"').total == 0


def test_a_local_account_linked_to_the_provider_is_provisioned(db, make_user):
    local = make_user("linked")
    local.oidc_issuer, local.oidc_subject = "https://idp.example.com", "00u-linked"
    db.flush()
    assert provisioning.get_user(db, str(local.id)) is local
    provisioning.patch_user(db, str(local.id), patch({"op": "replace", "value": {"active": False}}))
    assert not local.is_active


@pytest.mark.parametrize("user_id", ["999999", "abc", "", "1.0", "-1", "99999999999", "٣"])
def test_unknown_ids_are_404(db, user_id):
    with refused(404, None, "no user with id"):
        provisioning.get_user(db, user_id)


# --- PUT -------------------------------------------------------------------------------------------


def test_put_replaces_the_profile_and_clears_what_it_leaves_out(db):
    user = provisioning.create_user(db, okta_user())
    body = okta_user(
        "ada.king@example.com",
        name={"givenName": "Ada", "familyName": "King"},
        displayName=None,
        emails=[{"value": "ada.king@example.com", "primary": True}],
        id="ignored",
        meta={"x": 1},
    )
    del body["externalId"], body["active"]
    provisioning.replace_user(db, str(user.id), body)
    assert (user.username, user.email, user.display_name, user.external_id) == (
        "ada.king@example.com",
        "ada.king@example.com",
        "Ada King",
        None,
    )
    assert user.is_active, "an omitted active leaves the account as it is"
    assert user.updated_at is not None
    updated = [event for event in events(db, user) if event.action == "user.updated"]
    assert updated[-1].details["attributes"] == ["userName", "emails", "name", "displayName", "externalId"]
    assert updated[-1].actor == "scim"


def test_an_unchanged_put_changes_nothing(db):
    user = provisioning.create_user(db, okta_user())
    provisioning.replace_user(db, str(user.id), okta_user())
    assert user.updated_at is None
    assert [event.action for event in events(db, user)] == ["user.created"]


def test_renaming_onto_another_user_is_refused(db):
    provisioning.create_user(db, okta_user("taken"))
    user = provisioning.create_user(db, okta_user("mine"))
    with refused(409, "uniqueness", "'taken' already exists"):
        provisioning.replace_user(db, str(user.id), okta_user("TAKEN"))
    provisioning.replace_user(db, str(user.id), okta_user("Mine"))  # a change of case is one's own name
    assert user.username == "Mine"


# --- PATCH -----------------------------------------------------------------------------------------


def test_okta_deactivation_revokes_every_token_and_ends_sessions(db, keys, make_token):
    user = provisioning.create_user(db, okta_user())
    make_token(user, "laptop")
    make_token(user, "ci")
    cookie, _row = sessions.start_session(db, keys, user, days=7, ip=None, user_agent=None)
    provisioning.patch_user(db, str(user.id), patch({"op": "replace", "value": {"active": False}}))
    assert not user.is_active and user.updated_at is not None
    assert token_listing.list_tokens(db, user.id) == []
    reasons = db.scalars(select(PersonalToken.revoked_reason).where(PersonalToken.user_id == user.id)).all()
    assert reasons == ["account_disabled", "account_disabled"]
    assert sessions.find_session(db, keys, cookie) is None
    provisioning.patch_user(db, str(user.id), patch({"op": "replace", "value": {"active": True}}))
    assert user.is_active
    assert token_listing.list_tokens(db, user.id) == [], "reactivation brings no token back"
    actions = [(event.action, event.actor) for event in events(db, user)]
    assert ("user.disabled", "scim") in actions and ("user.enabled", "scim") in actions


@pytest.mark.parametrize("value, active", [("False", False), ("false", False), (False, False), ("True", True)])
def test_entra_sends_active_as_a_string_and_op_names_capitalised(db, value, active):
    user = provisioning.create_user(db, okta_user(active=not active))
    provisioning.patch_user(db, str(user.id), patch({"op": "Replace", "path": "active", "value": value}))
    assert user.is_active is active


def test_entra_attribute_updates(db):
    user = provisioning.create_user(db, okta_user())
    provisioning.patch_user(
        db,
        str(user.id),
        patch(
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "ada.l@example.com"},
            {"op": "Replace", "path": "name.givenName", "value": "Augusta"},
            {"op": "Replace", "path": "name.familyName", "value": "King"},
            {"op": "Add", "path": "externalId", "value": "ada"},
            {"op": "Replace", "path": "title", "value": "Countess"},
            {"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+44 7700 900000"},
            {"op": "Replace", "path": f"{provisioning.ENTERPRISE_USER_SCHEMA}:department", "value": "Engines"},
            {"op": "Replace", "path": f"{provisioning.USER_SCHEMA}:userName", "value": "ada.l@example.com"},
        ),
    )
    assert (user.email, user.display_name, user.external_id, user.username) == (
        "ada.l@example.com",
        "Ada Lovelace",
        "ada",
        "ada.l@example.com",
    )
    document = provisioning.resource(user, BASE)
    assert document["name"] == {"givenName": "Augusta", "familyName": "King"}
    assert document["emails"] == [{"value": "ada.l@example.com", "type": "work", "primary": True}]


def test_patch_without_path_takes_attributes_and_sub_attribute_paths(db):
    user = provisioning.create_user(db, okta_user())
    provisioning.patch_user(
        db,
        str(user.id),
        patch(
            {
                "op": "replace",
                "value": {
                    "displayName": "Countess of Lovelace",
                    "emails": [{"value": "countess@example.com", "primary": True}],
                    "password": remember("not kept anywhere"),
                    provisioning.ENTERPRISE_USER_SCHEMA: {"manager": {"value": "babbage"}},
                },
            }
        ),
    )
    assert (user.display_name, user.email, user.password_hash) == ("Countess of Lovelace", "countess@example.com", None)
    provisioning.patch_user(
        db, str(user.id), patch({"op": "add", "value": {"name.givenName": "Augusta", "active": "False"}})
    )
    assert (user.display_name, user.is_active) == ("Countess of Lovelace", False)
    assert provisioning.resource(user, BASE)["name"] == {"givenName": "Augusta", "familyName": "Lovelace"}
    assert provisioning.resource(user, BASE)["emails"] == [{"value": "countess@example.com", "primary": True}]


def test_remove_clears_what_may_be_empty(db):
    user = provisioning.create_user(db, okta_user())
    provisioning.patch_user(db, str(user.id), patch({"op": "remove", "path": "displayName"}))
    assert user.display_name == "Ada Lovelace", "given and family name make it now"
    provisioning.patch_user(
        db, str(user.id), patch({"op": "remove", "path": "name.familyName"}, {"op": "remove", "path": "externalId"})
    )
    assert (user.display_name, user.external_id) == ("Ada", None)
    provisioning.patch_user(
        db,
        str(user.id),
        patch(
            {"op": "replace", "path": "name", "value": {"formatted": "Lady Byron"}},
            {"op": "add", "path": "name.familyName", "value": "Byron"},
        ),
    )
    assert user.display_name == "Lady Byron"
    assert provisioning.resource(user, BASE)["name"] == {
        "givenName": "Ada",
        "formatted": "Lady Byron",
        "familyName": "Byron",
    }
    provisioning.patch_user(db, str(user.id), patch({"op": "remove", "path": "name"}))
    assert user.display_name is None and "name" not in provisioning.resource(user, BASE)


def test_patch_paths_set_exactly_what_they_name(db):
    user = provisioning.create_user(db, okta_user(name={"formatted": "Ada Lovelace"}))
    provisioning.patch_user(
        db,
        str(user.id),
        patch(
            {"op": "replace", "path": "name.givenName", "value": "Augusta"},
            {"op": "add", "path": "name.middleName", "value": "Ada"},  # not kept: ignored
            {"op": "replace", "path": 'emails[type eq "work"].type', "value": "office"},
            {"op": "add", "path": 'emails[type eq "home"].value', "value": "ada@home.example"},
            {"op": "replace", "path": 'emails[type eq "home"].primary', "value": True},
        ),
    )
    document = provisioning.resource(user, BASE)
    assert document["name"] == {"formatted": "Ada Lovelace", "givenName": "Augusta"}
    assert document["emails"] == [
        {"value": "ada@example.com", "type": "office", "primary": False},
        {"value": "ada@home.example", "type": "home", "primary": True},
    ]
    assert user.email == "ada@home.example", "the primary address is the account's"
    provisioning.patch_user(db, str(user.id), patch({"op": "remove", "path": 'emails[type eq "home"]'}))
    assert user.email == "ada@example.com"
    provisioning.patch_user(
        db,
        str(user.id),
        patch(
            {
                "op": "add",
                "path": "emails",
                "value": [
                    {"value": "ada@new.example", "type": "work", "primary": True},
                    {"value": "ada@example.com", "type": "office", "primary": False},
                ],
            }
        ),
    )
    assert [email.get("primary") for email in provisioning.resource(user, BASE)["emails"]] == [False, True]
    assert user.email == "ada@new.example"
    provisioning.patch_user(db, str(user.id), patch({"op": "remove", "path": "emails[primary eq true].primary"}))
    assert provisioning.resource(user, BASE)["emails"][1] == {"value": "ada@new.example", "type": "work"}
    assert user.email == "ada@new.example", "no primary: the first of type work"


@pytest.mark.parametrize(
    "operation, scim_type, words",
    [
        ({"op": "replace", "path": 'name[givenName eq "x"]', "value": "x"}, "invalidPath", ["sub-attributes"]),
        (
            {"op": "replace", "path": "favouriteColour", "value": "teal"},
            "invalidPath",
            ["Unknown path 'favouriteColour'"],
        ),
        ({"op": "replace", "path": "name.nickname", "value": "x"}, "invalidPath", ["sub-attributes"]),
        ({"op": "replace", "path": "userName.value", "value": "x"}, "invalidPath", ["no sub-attributes"]),
        ({"op": "replace", "path": 'emails[value co "x"].value', "value": "x"}, "invalidPath", ["not understood"]),
        (
            {"op": "replace", "path": 'emails[value eq "x"].value', "value": "x"},
            "invalidPath",
            ["Filter emails by type"],
        ),
        ({"op": "replace", "path": "emails[type eq work].value", "value": "x"}, "invalidPath", ["not understood"]),
        ({"op": "replace", "path": "urn:example:other:department", "value": "x"}, "invalidPath", []),
        ({"op": "remove"}, "noTarget", ['needs a "path"']),
        ({"op": "replace", "path": "id", "value": "7"}, "mutability", ["read-only"]),
        ({"op": "move", "path": "active", "value": False}, "invalidSyntax", ['"add", "replace" or "remove"']),
        ({"path": "active", "value": False}, "invalidSyntax", []),
        ({"op": "replace", "path": 5, "value": False}, "invalidPath", []),
        ({"op": "replace", "value": "not an object"}, "invalidValue", ["must be an object"]),
        ({"op": "remove", "path": "userName"}, "invalidValue", ["cannot be removed"]),
        ({"op": "remove", "path": "active"}, "invalidValue", ["cannot be removed"]),
        ({"op": "remove", "path": "emails"}, "invalidValue", ["needs one"]),
        ({"op": "replace", "path": 'emails[type eq "work"].value', "value": None}, "invalidValue", ["needs one"]),
        ({"op": "replace", "path": "active", "value": 0}, "invalidValue", ["true or false"]),
    ],
)
def test_bad_operations_are_refused_and_nothing_changes(db, operation, scim_type, words):
    user = provisioning.create_user(db, okta_user())
    first = {"op": "replace", "path": "displayName", "value": "Changed first"}
    with refused(400, scim_type, *words):
        provisioning.patch_user(db, str(user.id), patch(first, operation))
    assert user.display_name == "Ada Lovelace" and user.updated_at is None


@pytest.mark.parametrize(
    "body",
    [
        {"Operations": [{"op": "replace", "path": "active", "value": False}]},
        {"schemas": [PATCH]},
        {"schemas": [PATCH], "Operations": []},
        {"schemas": [PATCH], "Operations": ["replace"]},
        "replace",
    ],
)
def test_malformed_patch_requests_are_invalid_syntax(db, body):
    user = provisioning.create_user(db, okta_user())
    with refused(400, "invalidSyntax"):
        provisioning.patch_user(db, str(user.id), body)


def test_other_kinds_of_email_are_kept_and_the_account_keeps_the_primary_one(db):
    user = provisioning.create_user(db, okta_user())
    provisioning.patch_user(
        db,
        str(user.id),
        patch(
            {"op": "add", "path": 'emails[type eq "home"].value', "value": "ada@home.example"},
            {"op": "replace", "path": 'emails[type eq "work"].primary', "value": True},
        ),
    )
    assert user.email == "ada@example.com"
    assert provisioning.resource(user, BASE)["emails"][1] == {"value": "ada@home.example", "type": "home"}
    provisioning.patch_user(
        db,
        str(user.id),
        patch({"op": "replace", "path": "emails[primary eq true]", "value": {"value": "ada@work.example"}}),
    )
    assert user.email == "ada@work.example"
    assert provisioning.resource(user, BASE)["emails"][0] == {"value": "ada@work.example"}, (
        "a selected entry is replaced"
    )
    with refused(400, "noTarget", "No email matches primary eq True"):
        provisioning.patch_user(
            db,
            str(user.id),
            patch({"op": "replace", "path": "emails[primary eq true].value", "value": "x@example.com"}),
        )


def test_an_address_sent_without_primary_is_not_the_primary_one_and_one_at_most_is(db):
    emails = [{"value": "ada@example.com", "type": "work", "primary": True}, {"value": "ada@home.example"}]
    user = provisioning.create_user(db, okta_user(emails=emails))
    provisioning.patch_user(
        db, str(user.id), patch({"op": "replace", "path": "emails[primary eq false].type", "value": "home"})
    )
    assert provisioning.resource(user, BASE)["emails"][1] == {"value": "ada@home.example", "type": "home"}
    for operation in (
        {"op": "replace", "path": "emails.primary", "value": True},
        {"op": "replace", "path": "emails", "value": [{"value": "a@example.com", "primary": True}] * 2},
        {"op": "replace", "value": {"emails.primary": "True"}},
    ):
        with refused(400, "invalidValue", "At most one email is primary"):
            provisioning.patch_user(db, str(user.id), patch(operation))
    assert [email.get("primary") for email in provisioning.resource(user, BASE)["emails"]] == [True, None]


# --- DELETE ----------------------------------------------------------------------------------------


def test_delete_disables_hides_and_keeps_the_row(db, make_token):
    user = provisioning.create_user(db, okta_user())
    make_token(user)
    provisioning.remove_user(db, str(user.id))
    assert not user.is_active and user.removed_at is not None
    assert token_listing.list_tokens(db, user.id) == []
    for call in (provisioning.get_user, provisioning.remove_user):
        with refused(404, None):
            call(db, str(user.id))
    assert provisioning.list_users(db, 'userName eq "ada@example.com"').total == 0
    assert db.get(User, user.id) is not None
    assert [event.action for event in events(db, user)][-1] == "user.removed"


def test_a_deleted_users_name_can_be_provisioned_again_as_a_new_account(db):
    old = provisioning.create_user(db, okta_user())
    provisioning.remove_user(db, str(old.id))
    new = provisioning.create_user(db, okta_user())
    assert new.id != old.id and new.username == "ada@example.com" and new.is_active
    assert old.username == f"ada@example.com~removed-{old.id}" and not old.is_active
    renamed = events(db, old)[-1]
    assert (renamed.action, renamed.details["previous"]) == ("user.renamed", "ada@example.com")
    assert users.find_user(db, "ada@example.com") is new


# --- filters and pages -----------------------------------------------------------------------------


def test_filters(db):
    ada = provisioning.create_user(db, okta_user())
    grace = provisioning.create_user(db, okta_user("grace@example.com", externalId="00u2", active=False))

    def found(text: str) -> list[int]:
        return [user.id for user in provisioning.list_users(db, text).users]

    assert found('userName eq "ADA@example.com"') == [ada.id]
    assert found('externalId eq "00u2"') == [grace.id]
    assert found('externalId eq "00U2"') == [], "externalId is case-exact"
    assert found(f'id eq "{ada.id}"') == [ada.id]
    assert found('id eq "nope"') == [] and found('id eq "99999999999"') == []
    assert found('emails.value eq "Grace@Example.com"') == [grace.id]
    assert found('emails eq "grace@example.com"') == [grace.id]
    assert found("active eq false") == [grace.id]
    assert found("active eq TRUE") == [ada.id]
    assert found('userName eq "grace@example.com" and active eq false') == [grace.id]
    assert found('userName eq "grace@example.com" AND active eq true') == []
    assert found(f'{provisioning.USER_SCHEMA}:userName eq "ada@example.com"') == [ada.id]
    assert found('userName eq "with \\"quotes\\" and and"') == []
    assert found('(userName eq "ada@example.com")') == [ada.id], "parentheses that change nothing"
    assert found(f"id eq {grace.id}") == [grace.id]
    assert found("")[-2:] == [ada.id, grace.id]


@pytest.mark.parametrize(
    "text",
    [
        'userName co "ada"',
        'userName sw "a"',
        "userName pr",
        'title eq "x"',
        'userName eq "a" or userName eq "b"',
        'not (userName eq "a")',
        'userName eq "a" and (active eq true or active eq false)',
        "id eq 1" + "0" * 5000,
        'urn:example:other:userName eq "a"',
        'userName eq "unterminated',
        'emails[type eq "work"]',
        "userName eq ada",
        'userName eq "a" and',
        'userName eq "a" and and',
        'active eq "maybe"',
        "userName eq true",
        'userName eq "\\x"',
        "x" * 1001,
        "emails.value eq null",
        'userName "a" eq',
    ],
)
def test_other_filters_are_refused(db, text):
    with refused(400, "invalidFilter"):
        provisioning.list_users(db, text)


def test_pages(db):
    before = provisioning.list_users(db, count=0).total  # what other tests on this store left, if anything
    users = [provisioning.create_user(db, okta_user(f"page{index}")) for index in range(5)]
    page = provisioning.list_users(db, start_index=before + 2, count=2)
    assert (page.total, [user.id for user in page.users]) == (before + 5, [user.id for user in users[1:3]])
    assert provisioning.list_users(db, count=0).users == [] and provisioning.list_users(db, count=0).total == before + 5
    assert provisioning.list_users(db, start_index=0, count=-3).start_index == 1
    assert len(provisioning.list_users(db, start_index=before + 5, count=10).users) == 1
    assert provisioning.list_users(db, start_index=before + 6).users == []
    assert provisioning.list_users(db, start_index=10**30).users == []
    document = provisioning.list_response(page, BASE)
    assert document["schemas"] == [provisioning.LIST_RESPONSE_SCHEMA]
    assert (document["totalResults"], document["itemsPerPage"], document["startIndex"]) == (before + 5, 2, before + 2)
    assert [item["userName"] for item in document["Resources"]] == ["page1", "page2"]


def test_at_most_max_results_a_page(db):
    before = provisioning.list_users(db, count=0).total
    for index in range(provisioning.MAX_RESULTS + 1):
        db.add(User(username=f"bulk{index}", email=f"bulk{index}@example.com", origin="scim", created_at=utcnow()))
    db.flush()
    page = provisioning.list_users(db, count=1000)
    assert page.total == before + provisioning.MAX_RESULTS + 1 and len(page.users) == provisioning.MAX_RESULTS


def test_errors_are_rfc_7644_documents():
    assert ScimError(409, "uniqueness", "taken").document() == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": "409",
        "scimType": "uniqueness",
        "detail": "taken",
    }
    assert "scimType" not in ScimError(404, None, "gone").document()


# --- attributes and excludedAttributes -------------------------------------------------------------


def test_projections_keep_what_is_asked_and_always_id_and_schemas(db):
    user = provisioning.create_user(db, okta_user())
    document = provisioning.resource(user, BASE)

    def shaped(attributes: list[str] | None = None, excluded: list[str] | None = None) -> dict:
        return provisioning.resource(user, BASE, provisioning.shown(attributes, excluded))

    assert shaped() == document
    assert shaped(["USERNAME", "emails.Type", "meta.location"]) == {
        "schemas": [provisioning.USER_SCHEMA],
        "id": document["id"],
        "userName": "ada@example.com",
        "emails": [{"type": "work"}],
        "meta": {"location": document["meta"]["location"]},
    }
    assert shaped(["name", "name.givenName"])["name"] == document["name"], "the whole attribute wins"
    assert set(shaped(["nickName", f"{provisioning.ENTERPRISE_USER_SCHEMA}:department"])) == {"schemas", "id"}
    assert set(shaped([f"{provisioning.ENTERPRISE_USER_SCHEMA}:department"])) == {"schemas", "id"}, "not everything"
    assert set(shaped(["userName.x", "name.nickname"])) == {"schemas", "id"}, "no such sub-attributes"
    assert set(shaped(excluded=["id", "schemas", "name", "emails", "meta.created", "userName.x"])) == {
        "schemas",
        "id",
        "userName",
        "externalId",
        "displayName",
        "active",
        "meta",
    }
    assert "created" not in shaped(excluded=["meta.created"])["meta"]
    assert "name" not in shaped(excluded=["name.givenName", "name.familyName"]), "nothing left of it"


def test_a_search_request_is_read_like_the_query_parameters():
    query = provisioning.search_request(
        {
            "schemas": [provisioning.SEARCH_REQUEST_SCHEMA],
            "FILTER": 'userName eq "a"',
            "startIndex": 3,
            "count": 10**4000,
            "excludedAttributes": "name, emails",
        }
    )
    assert (query.filter, query.start_index, query.count) == ('userName eq "a"', 3, 10**4000)
    assert [str(name) for name in query.shown.excluded_attributes or []] == ["name", "emails"]
    assert provisioning.search_request({"schemas": [provisioning.SEARCH_REQUEST_SCHEMA]}) == provisioning.Query()
