"""Many tokens at once, for load: inserted in bulk with the digest and hint that
``personal_tokens.create_token`` gives each, so that the server checks them like any other.

Minting tens of thousands through ``create_token`` (a name check, a savepoint, an audit event
each) takes longer than the load they are for.
"""

from __future__ import annotations

from sqlalchemy import insert

from tokensmith import token_check
from tokensmith import accounts, personal_tokens, tokens
from tokensmith.clock import utcnow
from tokensmith.config import Settings
from tokensmith.db import create_store_engine, session_factory, unit_of_work
from tokensmith.models import PersonalToken
from tokensmith.server_keys import load_server_keys


def never_used_tokens(settings: Settings, username: str, count: int) -> list[str]:
    """``count`` new tokens of ``username``, named "fresh N", never used; their secrets."""
    keys = load_server_keys(settings)
    secrets_ = [tokens.generate(settings.token_prefix) for _ in range(count)]
    now = utcnow()
    engine = create_store_engine(settings)
    try:
        with unit_of_work(session_factory(engine)) as session:
            owner = accounts.get_user(session, username)
            session.execute(insert(PersonalToken), [
                {"user_id": owner.id, "name": f"fresh {number}", "digest": keys.digest(token_check.PURPOSE, secret),
                 "key_version": keys.current, "hint": tokens.hint(secret, settings.token_prefix),
                 "scopes": list(personal_tokens.DEFAULT_SCOPES), "created_at": now}
                for number, secret in enumerate(secrets_)
            ])
    finally:
        engine.dispose()
    return secrets_
