"""Who is calling the relay: the API key from `Authorization: Bearer sk-...`, a bare `Authorization: sk-...`,
`x-api-key` (Anthropic's SDK), `x-goog-api-key` or a `key=` query parameter (Google's), checked against the
cached key snapshot (status, expiry, user status, allowed IPs)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from urllib.parse import parse_qs

from gateway.catalog import Catalog
from gateway.domain.keys import KeyInfo
from gateway.neutral import GatewayError


def api_key_from(headers: Mapping[str, str], query: str = "") -> str:
    value = headers.get("Authorization", "").strip()
    if value[:7].lower() == "bearer ":
        return value[7:].strip()
    if value:
        return value
    value = (headers.get("x-api-key") or headers.get("x-goog-api-key") or "").strip()
    if value or "key=" not in query:
        return value
    return (parse_qs(query).get("key") or [""])[0].strip()


def unauthorized(message: str, code: str | None = "invalid_api_key") -> GatewayError:
    return GatewayError(401, message, "invalid_request_error", code)


def authenticate(
    catalog: Catalog, headers: Mapping[str, str], remote_addr: str | None, query: str = ""
) -> KeyInfo:
    raw = api_key_from(headers, query)
    if not raw:
        raise unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer sk-...`.", code=None
        )
    key = catalog.key(raw)
    if key is None:
        raise unauthorized("Incorrect API key provided.")
    if key.status != "active":
        raise unauthorized("This API key is disabled.", "key_disabled")
    if key.expires_at is not None and key.expires_at <= time.time():
        raise unauthorized("This API key has expired.", "key_expired")
    if key.user_status != "active":
        raise GatewayError(
            403, "The account that owns this API key is disabled.", "permission_denied", "user_disabled"
        )
    if key.networks is not None:
        try:
            address = ipaddress.ip_address(remote_addr or "")
        except ValueError:
            address = None
        if address is None or not any(address in network for network in key.networks):
            raise GatewayError(
                403,
                "This API key may not be used from your IP address.",
                "permission_denied",
                "ip_not_allowed",
            )
    return key
