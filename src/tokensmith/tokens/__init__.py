"""Personal access tokens: their format, the check every request makes (the hot path), their
lifecycle (create, rotate, revoke, report), listing, limits, last use, push protection, and the
application tokens derived from them."""
