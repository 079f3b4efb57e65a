"""The client's failures: each one line a person can act on, and an exit code.

Exit codes: 0 success; 1 unexpected error; 2 bad usage or invalid input; 3 not found;
4 conflict (already exists); 5 refused (authentication or permission, or not logged in);
6 the server is unreachable (or answers 503).
"""

from __future__ import annotations


class ClientError(Exception):
    """Base class. ``code`` is the server's machine-readable name for a refusal, when it gave one."""

    exit_code = 1

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidInput(ClientError):
    exit_code = 2


class NotFound(ClientError):
    exit_code = 3


class Conflict(ClientError):
    exit_code = 4


class Refused(ClientError):
    """The server refused the credential (401) or the act (403)."""

    exit_code = 5


class NotLoggedIn(ClientError):
    exit_code = 5


class Unreachable(ClientError):
    """The server cannot be reached, does not answer in time, or answers 503."""

    exit_code = 6
