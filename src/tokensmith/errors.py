"""The domain's exceptions.

Each carries a message a person can act on. The web layer maps them to HTTP answers in one
place (``web/errors.py``); the CLI maps them to messages and exit codes. None of them ever
carries a secret.
"""

from __future__ import annotations


class TokensmithError(Exception):
    """Base class. ``code`` is a stable machine-readable name for the failure."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(TokensmithError):
    code = "configuration_error"


class StoreUnavailable(TokensmithError):
    """The database cannot be reached. Never an authentication failure."""

    code = "store_unavailable"

    def __init__(self, message: str = "The token store is unreachable; try again in a moment.") -> None:
        super().__init__(message)


class GitUnavailable(TokensmithError):
    """A git backend could not be started (the host is out of processes or descriptors)."""

    code = "git_unavailable"

    def __init__(
        self, message: str = "Git could not be started on the server just now; try again in a moment."
    ) -> None:
        super().__init__(message)


class ServerUnreachable(TokensmithError):
    """The client cannot reach the server (down, wrong URL, TLS trouble)."""

    code = "server_unreachable"


class ScanningKeysUnavailable(TokensmithError):
    """The secret-scanning signing keys cannot be had (their server is down or answers
    nonsense): a report cannot be checked, so nothing is revoked; never a 401 (503)."""

    code = "signing_keys_unavailable"


class IdentityProviderUnavailable(TokensmithError):
    """The identity provider is down, or answers something we cannot use."""

    code = "identity_provider_unavailable"


class IssuerUnavailable(TokensmithError):
    """A CI platform's OpenID Connect issuer cannot be reached, or answers what cannot be used
    (workload identity): 503, the exchange may work in a moment; never a refusal of the job."""

    code = "issuer_unavailable"


class SignInRejected(TokensmithError):
    """A sign-in through the identity provider that must not go through (bad state, replayed
    code, an ID token that fails its checks, an account that cannot be matched)."""

    code = "sign_in_rejected"


# --- authentication -----------------------------------------------------------------------


class AuthenticationFailed(TokensmithError):
    """A credential was presented and refused. ``reason`` labels the metrics counter."""

    code = "authentication_failed"
    reason = "unknown"
    advice: str | None = None  # what to do next, filled in by whoever knows the URLs

    @property
    def full_message(self) -> str:
        return f"{self.message} {self.advice}." if self.advice else self.message


class CredentialMalformed(AuthenticationFailed):
    code = "credential_malformed"
    reason = "malformed"


class TokenUnknown(AuthenticationFailed):
    code = "token_unknown"
    reason = "unknown"


class TokenRevoked(AuthenticationFailed):
    code = "token_revoked"
    reason = "revoked"


class TokenReplaced(TokenRevoked):
    """A token that a rotation replaced was presented: ``token_id`` is the replaced one, whose
    successors must be revoked too (personal_tokens.revoke_successors)."""

    def __init__(self, message: str, token_id: int) -> None:
        super().__init__(message)
        self.token_id = token_id


class TokenExpired(AuthenticationFailed):
    code = "token_expired"
    reason = "expired"


class AccountDisabled(AuthenticationFailed):
    code = "account_disabled"
    reason = "disabled"


class PasswordRefused(AuthenticationFailed):
    """A password was offered where the policy demands a token."""

    code = "password_not_accepted"
    reason = "password_refused"


class PasswordIncorrect(AuthenticationFailed):
    code = "bad_credentials"
    reason = "bad_password"


class TokenNotForSignIn(AuthenticationFailed):
    """A personal access token was typed into the browser's password field."""

    code = "token_not_for_sign_in"
    reason = "token_in_browser"


class TooManyAttempts(AuthenticationFailed):
    """Too many wrong passwords lately: refused before the password is even checked."""

    code = "too_many_attempts"
    reason = "throttled"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IdTokenRejected(AuthenticationFailed):
    """A CI job's OpenID Connect ID token that is not exchanged for a token (workload identity):
    ``code`` says which check it failed (invalid_signature, wrong_audience, expired, replayed,
    no_matching_publisher, malformed), the message says it in words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = code


class SignatureRefused(AuthenticationFailed):
    """A secret-scanning report that is unsigned, or not signed by a published key over its
    body (secret_scanning.py): nothing it names is revoked."""

    code = "invalid_signature"
    reason = "bad_signature"


class SecondStepIncorrect(AuthenticationFailed):
    """A wrong, used or expired code at the second step of a sign-in (or when confirming it is
    them): an authenticator app's code or a recovery code."""

    code = "second_step_incorrect"
    reason = "bad_second_factor"


class PasskeyRefused(AuthenticationFailed):
    """A WebAuthn answer that does not hold: forged, replayed, for another site, a counter gone
    backwards, too large. Its message says which."""

    code = "passkey_refused"
    reason = "passkey_refused"


class SignInExpired(AuthenticationFailed):
    """The half-done sign-in (password right, second step not done) ended or never began."""

    code = "sign_in_expired"
    reason = "sign_in_expired"


class AuthenticationRequired(TokensmithError):
    code = "authentication_required"


# --- authorisation and input ----------------------------------------------------------------


class NotPermitted(TokensmithError):
    code = "forbidden"


class InsufficientScope(NotPermitted):
    """A token without the scope a route needs (403, with the scopes needed and held)."""

    code = "insufficient_scope"

    def __init__(self, needed: str, held: tuple[str, ...]) -> None:
        super().__init__(
            f"This token does not have the {needed} scope this needs; it has "
            f"{', '.join(held) or 'none'}. Create a token with {needed} on the My Tokens page."
        )
        self.needed = needed
        self.held = held


class AddressNotAllowed(NotPermitted):
    """A token used from an address outside its allowed blocks (403, naming the address seen)."""

    code = "ip_not_allowed"

    def __init__(self, address: str | None) -> None:
        seen = address or "an unknown address"
        super().__init__(
            f"This token may not be used from {seen}: it is limited to other addresses. Use it from "
            "an allowed address, or create a token that allows this one."
        )
        self.address = address


class NotFound(TokensmithError):
    code = "not_found"


class ProjectNotFound(NotFound):
    """A project that does not exist, or one the caller may not see (not a member, or outside
    the token's list): the same words for both, so that nothing tells them apart."""

    def __init__(self, project_id: str) -> None:
        super().__init__(f"There is no project {project_id[:64]!r}, or you are not a member of it.")


class InvalidInput(TokensmithError):
    code = "invalid_input"


class BackupUnusable(InvalidInput):
    """A backup file that cannot be restored: damaged, cut short, sealed with another passphrase,
    or made by a newer Tokensmith. Said before anything is touched."""

    code = "backup_unusable"


class BackupFailed(TokensmithError):
    """A backup could not be written (its disk filled up, a tool failed): nothing was left behind."""

    code = "backup_failed"


class Conflict(TokensmithError):
    code = "conflict"


class HeaderTooLarge(TokensmithError):
    """A request header past what is accepted (431): refused before anything else is read."""

    code = "header_too_large"


class BodyTooLarge(TokensmithError):
    """A request body past what its route accepts (413)."""

    code = "body_too_large"


class CsrfFailed(TokensmithError):
    code = "csrf_failed"

    def __init__(self) -> None:
        super().__init__("This form has expired or did not come from this site. Reload the page and try again.")
