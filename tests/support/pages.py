"""Filling the site's forms over plain HTTP, as a browser without JavaScript does."""

from __future__ import annotations

import re

import httpx


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client: httpx.Client, username: str, password: str) -> httpx.Response:
    form = client.get("/login")
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": csrf_of(form), "next": "/tokens"}
    )
