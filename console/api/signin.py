"""Sign-in defences: a growing lockout after failed logins, the client's address, and whether the request
came over HTTPS (for the session cookie's `Secure` flag).

Failures are counted per username and per client address on the `limits` library's storage: in memory
for one process, in Redis when `REDIS_URL` is set, so several processes share the counts. After
`threshold` failures within `WINDOW_S`, each further failure locks the name (or address) for a time that
doubles, from `BASE_LOCK_S` up to `MAX_LOCK_S`; the exponent counts the failures of the last `STREAK_S`,
so a patient guesser is slowed down as much as a fast one (OWASP ASVS 2.2.1).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from flask import current_app, request
from limits.storage import Storage, storage_from_string

WINDOW_S = 15 * 60
STREAK_S = 24 * 3600
BASE_LOCK_S = 1
MAX_LOCK_S = 3600
USERNAME_THRESHOLD = 5
ADDRESS_THRESHOLD = 20  # one address may be a whole office behind NAT
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True, frozen=True)
class Scope:
    """One thing failures are counted against: a username or an address."""

    kind: str
    name: str
    threshold: int

    @property
    def id(self) -> str:
        # hashed: counters never hold a username or an address in clear, and their keys stay short
        return (
            "rh-signin:"
            + self.kind
            + ":"
            + hashlib.sha256(self.name.encode(errors="replace")).hexdigest()[:32]
        )


class SigninGuard:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def retry_after(self, scopes: Iterable[Scope]) -> int | None:
        """Seconds until every scope may try again, or None when none is locked."""
        now = time.time()
        waits = [
            self._storage.get_expiry(scope.id + ":lock") - now
            for scope in scopes
            if self._storage.get(scope.id + ":lock") > 0
        ]
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, scopes: Iterable[Scope]) -> None:
        for scope in scopes:
            recent = self._storage.incr(scope.id + ":recent", WINDOW_S)
            streak = self._storage.incr(scope.id + ":streak", STREAK_S)
            if recent >= scope.threshold:
                lock_s = min(MAX_LOCK_S, BASE_LOCK_S * 2 ** min(max(0, streak - scope.threshold), 20))
                self._storage.clear(scope.id + ":lock")
                self._storage.incr(scope.id + ":lock", lock_s)

    def succeeded(self, scope: Scope) -> None:
        for part in (":recent", ":streak", ":lock"):
            self._storage.clear(scope.id + part)


def guard() -> SigninGuard:
    extensions = current_app.extensions
    if "relayhouse.signin" not in extensions:
        url = current_app.extensions["relayhouse"].settings.redis_url
        extensions["relayhouse.signin"] = SigninGuard(storage_from_string(url or "memory://"))
    return extensions["relayhouse.signin"]


@cache
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for entry in trusted:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            current_app.logger.warning("TRUSTED_PROXIES: %r is not an IP address or CIDR range", entry)
    return tuple(networks)


def _is_trusted(address: str | None, trusted: tuple[str, ...]) -> bool:
    if not address or not trusted:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(trusted))


def client_address(environ: dict[str, Any], trusted: tuple[str, ...]) -> str:
    """The peer's address, or, behind trusted proxies, the last address of `X-Forwarded-For` that no
    trusted proxy added (the ones to its left are whatever the client chose to send)."""
    address = environ.get("REMOTE_ADDR") or ""
    if not _is_trusted(address, trusted):
        return address
    for hop in reversed(environ.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        address = hop
        if not _is_trusted(hop, trusted):
            break
    return address


def is_https(environ: dict[str, Any], trusted: tuple[str, ...]) -> bool:
    """Over HTTPS: served so here, or a trusted proxy says `X-Forwarded-Proto: https`. Anyone else may
    send that header, so it is believed only from `TRUSTED_PROXIES`."""
    if environ.get("wsgi.url_scheme") == "https":
        return True
    proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
    return proto == "https" and _is_trusted(environ.get("REMOTE_ADDR"), trusted)


def scopes(username: str) -> tuple[Scope, Scope]:
    trusted = current_app.extensions["relayhouse"].settings.trusted_proxies
    return (
        Scope("user", username, USERNAME_THRESHOLD),
        Scope("addr", client_address(request.environ, trusted), ADDRESS_THRESHOLD),
    )
