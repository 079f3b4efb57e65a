"""The answers the API writes by hand are exactly what their pydantic models would write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tokensmith.identity import Account, Identity, VerifiedToken
from tokensmith.web.schemas import Me, TokenPublic, UserPublic

OWNER = Account(id=7, username="zoë@example.test", email="zoë@example.test", is_admin=True)


def verified(**changes: object) -> VerifiedToken:
    fields = {
        "id": 42,
        "name": "CI “Chain” <b>",
        "hint": "tks_…Ab3d",
        "scopes": ["api:read", "api:write", "git:read", "git:write", "maven:read"],
        "projects": None,
        "allowed_ips": None,
        "created_at": datetime(2026, 11, 28, 2, 21, 9, 538206, tzinfo=UTC),
        "expires_at": None,
        "last_used_at": None,
        "last_used_ip": None,
        "last_used_agent": None,
        "revoked_at": None,
        "revoked_reason": None,
        "parent_id": None,
        "owner": OWNER,
        "owner_active": True,
    }
    fields.update(changes)
    return VerifiedToken(**fields)


@pytest.mark.parametrize(
    "token",
    [
        verified(),
        verified(
            expires_at=datetime(2030, 1, 1, tzinfo=UTC),  # no microseconds
            last_used_at=datetime(2026, 11, 28, 3, 0, 0, 1, tzinfo=UTC),
            last_used_ip="2001:db8::1",
            last_used_agent="git/2.47.0 (ünïcode)",
        ),
        verified(expires_at=datetime.now(UTC) - timedelta(days=1)),  # expired
        verified(
            scopes=["git:read"], projects=["acme-contracts", "ünï"], allowed_ips=["203.0.113.0/24", "2001:db8::/32"]
        ),
        verified(parent_id=41, name="nuxeo-cli on device 1"),  # an application token
        None,  # a password under the warn policy
    ],
    ids=["fresh", "used", "expired", "limited", "application", "password"],
)
def test_me_written_by_hand_is_the_models_json_byte_for_byte(token):
    identity = Identity(user=OWNER, method="token" if token else "password", token=token)
    expected = (
        Me(
            user=UserPublic(username=OWNER.username, email=OWNER.email, is_admin=OWNER.is_admin),
            authenticated_with=identity.method,
            token=TokenPublic.of(token) if token else None,
        )
        .model_dump_json()
        .encode()
    )
    assert Me.json_of(identity) == expected
