"""What a running deployment tells the commands of its shell through the store.

`tokensmith serve` records its public URL there when it starts: TOKENSMITH_PUBLIC_URL, or the
address it serves (`http://127.0.0.1:8000` from `make serve`). An administration command run
later from a shell whose environment lacks that variable (`tokensmith tokens create`, whose
token is mailed to its owner) then links to the running server's pages, not to a default.
The shell's own TOKENSMITH_PUBLIC_URL, when set, still wins.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session

from tokensmith.clock import utcnow
from tokensmith.config import Settings
from tokensmith.store.models import RecordedSetting

PUBLIC_URL = "public_url"


def record_public_url(session: Session, url: str) -> None:
    """Called by `tokensmith serve` at each start, once the store is migrated."""
    row = session.get(RecordedSetting, PUBLIC_URL)
    if row is None:
        session.add(RecordedSetting(name=PUBLIC_URL, value=url, recorded_at=utcnow()))
    elif row.value != url:
        row.value, row.recorded_at = url, utcnow()
    session.flush()


def for_the_shell(session: Session, settings: Settings) -> Settings:
    """``settings`` with the public URL the last started server recorded, unless the shell's
    environment names one itself."""
    if settings.public_url_configured:
        return settings
    row = session.get(RecordedSetting, PUBLIC_URL)
    return replace(settings, public_url=row.value) if row is not None else settings
