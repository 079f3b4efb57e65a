"""Registered instances (what `nuxeoctl register` makes in the reference) and their keys.

An instance key is the credential of the package repository, and only of it: stored as a
keyed digest like a token, shown once, never accepted where a personal token is expected
(nor a personal token where an instance key is).
"""

from __future__ import annotations

import hmac
import secrets
import string
import unicodedata

from sqlalchemy.orm import Session

from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.clock import utcnow
from tokensmith.errors import AuthenticationFailed, InvalidInput
from tokensmith.projects import catalog
from tokensmith.store.models import Instance
from tokensmith.store.server_keys import ServerKeys

PURPOSE = "instance"
KEY_PREFIX = "tkinst_"
KEY_RANDOM_LENGTH = 40
KEY_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # base62, as tokens


class InstanceRefused(AuthenticationFailed):
    code = "instance_refused"
    reason = "instance_refused"


def _new_key() -> str:
    return KEY_PREFIX + "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_RANDOM_LENGTH))


def register_instance(
    session: Session, keys: ServerKeys, project_id: str, user_id: int, description: str, *, actor: str
) -> tuple[Instance, str]:
    """Register an instance of a project the user can write to: ``(row, key)``; show the key once.

    Write, not read: the key opens the hotfix repository, which a project's readers (people
    who clone and download its releases) are not given."""
    description = description.strip()
    if len(description) > 200 or any(unicodedata.category(c) in ("Cc", "Cf") for c in description):
        raise InvalidInput("An instance description has at most 200 characters and no control characters.")
    project = catalog.require_role(session, project_id, user_id, "write")
    key = _new_key()
    instance = Instance(
        id=secrets.token_hex(16),
        project_id=project.id,
        description=description,
        key_digest=keys.digest(PURPOSE, key),
        key_version=keys.current,
        key_hint=f"{KEY_PREFIX}…{key[-4:]}",
        created_at=utcnow(),
        created_by=user_id,
    )
    session.add(instance)
    session.flush()
    trail.record(
        session,
        AuditAction.INSTANCE_REGISTERED,
        actor=actor,
        user_id=user_id,
        project=project.id,
        instance_id=instance.id,
        hint=instance.key_hint,
    )
    return instance, key


def authenticate_instance(session: Session, keys: ServerKeys, instance_id: str, key: str) -> Instance:
    refusal = InstanceRefused("Unknown instance id or instance key.")
    instance = session.get(Instance, instance_id) if len(instance_id) == 32 else None
    if instance is None or instance.revoked_at is not None or not key.startswith(KEY_PREFIX):
        raise refusal
    candidates = keys.all_digests(PURPOSE, key)
    if not any(hmac.compare_digest(instance.key_digest, digest) for digest in candidates):
        raise refusal
    return instance
