"""Many tokens at once, for load: inserted in bulk with the digest and hint that
``token_lifecycle.create_token`` gives each, so that the server checks them like any other.

Minting tens of thousands through ``create_token`` (a name check, a savepoint, an audit event
each) takes longer than the load they are for.
"""

from __future__ import annotations

from sqlalchemy import insert

from tokensmith.accounts import users
from tokensmith.clock import utcnow
from tokensmith.config import Settings
from tokensmith.store.database import create_store_engine, session_factory, unit_of_work
from tokensmith.store.models import PersonalToken
from tokensmith.store.server_keys import load_server_keys
from tokensmith.tokens import check as token_check
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle


def never_used_tokens(settings: Settings, username: str, count: int) -> list[str]:
    """``count`` new tokens of ``username``, named "fresh N", never used; their secrets."""
    keys = load_server_keys(settings)
    secrets_ = [token_format.generate(settings.token_prefix) for _ in range(count)]
    now = utcnow()
    engine = create_store_engine(settings)
    try:
        with unit_of_work(session_factory(engine)) as session:
            owner = users.get_user(session, username)
            session.execute(
                insert(PersonalToken),
                [
                    {
                        "user_id": owner.id,
                        "name": f"fresh {number}",
                        "digest": keys.digest(token_check.PURPOSE, secret),
                        "key_version": keys.current,
                        "hint": token_format.hint(secret, settings.token_prefix),
                        "scopes": list(token_lifecycle.DEFAULT_SCOPES),
                        "created_at": now,
                    }
                    for number, secret in enumerate(secrets_)
                ],
            )
    finally:
        engine.dispose()
    return secrets_
