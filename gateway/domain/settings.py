"""Runtime settings an admin changes from the console or `PATCH /api/settings`: their rules, in one place.

Values live in the `settings` table; the catalog snapshot carries them to the relay, which reads
`retry_attempts` and `allow_free_models` there, and `accounts.create_user` reads `default_group`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from gateway.domain import bounds
from gateway.domain.models import Group
from gateway.neutral import bad_request

URL_MAX = 512  # as long as a channel's base URL may be
GROUP_MAX = bounds.column_length(Group.name)
RETRIES_MAX = 10
DEFAULTS: dict[str, Any] = {
    "allow_free_models": False,  # serve models that have no price, at no charge
    "public_url": "",  # the base URL the console shows (without /v1); empty: the request's host
    "registration": False,  # anyone may create an account from the console
    "default_group": "",  # the group of new accounts; empty: "default"
    "retry_attempts": None,  # channels tried per request; None: RETRY_ATTEMPTS
}


def public_url(value: Any) -> str:
    if value in (None, ""):
        return ""
    url = bounds.text(value, "public_url", URL_MAX).rstrip("/")
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:
        valid = False
    if not valid or not url.isprintable() or parts.query or parts.fragment:
        raise bad_request("public_url must be an http(s) URL such as https://llm.example.com", "public_url")
    return url.removesuffix("/v1")  # the home page adds /v1 itself


def _boolean(name: str) -> Any:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise bad_request(f"{name} must be true or false", name)
        return value

    return check


def _group(value: Any) -> str:
    return "" if value in (None, "") else bounds.text(value, "default_group", GROUP_MAX, 1)


def _retries(value: Any) -> int | None:
    return None if value is None else bounds.integer(value, "retry_attempts", 1, RETRIES_MAX)


CHECKS = {
    "allow_free_models": _boolean("allow_free_models"),
    "public_url": public_url,
    "registration": _boolean("registration"),
    "default_group": _group,
    "retry_attempts": _retries,
}


def checked(changes: dict[str, Any]) -> dict[str, Any]:
    """The changes with each value checked (a 400 names the field), unknown names refused."""
    bounds.only(changes, CHECKS, "setting")
    return {name: CHECKS[name](value) for name, value in changes.items()}
