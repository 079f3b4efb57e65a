"""A server's address as a person types it, checked and written one way, so that the login
kept for it, git's requests and the linked folders all name it alike."""

from __future__ import annotations

from urllib.parse import urlsplit

from tokensmith.client.errors import InvalidInput

DEFAULT = "http://127.0.0.1:8000"
DEFAULT_PORTS = {"http": 80, "https": 443}


def parse(text: str) -> str:
    """``scheme://host[:port]``, lowercase, without a default port or a trailing slash; a
    one-line InvalidInput saying what to type for anything else."""
    text = text.strip()
    if "://" not in text:
        host = text.split("/", 1)[0] or "tokens.example.com"
        scheme = "http" if host.split(":", 1)[0].lower() in ("127.0.0.1", "localhost", "::1", "[::1]") else "https"
        raise InvalidInput(f"“{text}” is not a URL: give the scheme too, like {scheme}://{host}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"“{text}” is not a server URL: it should look like https://tokens.example.com") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidInput(f"“{text}” is not an http:// or https:// URL.")
    if not parts.hostname:
        raise InvalidInput(f"“{text}” names no host: it should look like {scheme}://tokens.example.com")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("Give the server's URL without a username or token in it: `tokensmith login` asks for them.")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    address = f"{scheme}://{host}" + (f":{port}" if port not in (None, DEFAULT_PORTS[scheme]) else "")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise InvalidInput(f"Give the server's address without a path: {address}")
    return address
