"""Sign-in as an attacker tries it: cross-site logins, password guessing, probing for usernames, stolen
access tokens, and session cookies sent in clear.

Lockouts count per client address too, so tests that fail logins on purpose connect from an address of
their own in 127.0.0.0/8 and never lock out the other tests, which connect from 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import secrets
import statistics
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from tests.conftest import Gateway, Reply, http, start_gateway, stop_gateway

PASSWORD = "correct-horse-battery"
REDIS_URL = "redis://127.0.0.1:6379/12"
_addresses = itertools.count(2)


def own_address() -> str:
    """A loopback address no other test connects from."""
    n = next(_addresses) + secrets.randbelow(200) * 256
    return f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255 or 1}"


def post(
    gateway: Gateway,
    path: str,
    body: Any,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Reply:
    """A request from `source`, with no credentials but those given."""
    host, port = gateway.url.removeprefix("http://").split(":")
    conn = HTTPConnection(host, int(port), timeout=30, source_address=(source, 0))
    try:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", "/api" + path, raw, {"Content-Type": content_type, **(headers or {})})
        response = conn.getresponse()
        payload = response.read()
        got = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    return Reply(response.status, got, json.loads(payload) if payload else None, payload)


def new_user(gateway: Gateway) -> dict:
    username = "s-" + secrets.token_hex(4)
    user = gateway.ok("POST", "/users", {"username": username, "password": PASSWORD})
    return user


def login(gateway: Gateway, username: str, password: str = PASSWORD, source: str = "127.0.0.1") -> Reply:
    return post(gateway, "/auth/login", {"username": username, "password": password}, source)


def test_login_and_logout_take_json_only(gateway: Gateway) -> None:
    """A cross-site form can post text/plain: it must not sign a victim into the attacker's account."""
    user = new_user(gateway)
    credentials = json.dumps({"username": user["username"], "password": PASSWORD}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        reply = post(gateway, "/auth/login", credentials, content_type=content_type)
        assert reply.status == 415 and reply.body["error"]["code"] == "json_required", content_type
        assert "session=" not in reply.headers.get("set-cookie", "")
    signed_in = login(gateway, user["username"])
    assert signed_in.status == 200
    session = {"Cookie": signed_in.headers["set-cookie"].split(";")[0]}
    out = post(gateway, "/auth/logout", b"{}", headers=session, content_type="text/plain")
    assert out.status == 415
    assert http("GET", gateway.url + "/api/auth/me", headers=session).status == 200  # still signed in
    assert post(gateway, "/auth/logout", {}, headers=session).body == {"ok": True}
    assert http("GET", gateway.url + "/api/auth/me", headers=session).status == 401


def test_failed_logins_lock_the_username_for_a_doubling_time(gateway: Gateway) -> None:
    user = new_user(gateway)
    source = own_address()
    for _ in range(5):
        assert login(gateway, user["username"], "wrong-password", source).status == 401
    locked = login(gateway, user["username"], PASSWORD, own_address())  # the right password, elsewhere
    assert locked.status == 429 and locked.body["error"]["code"] == "too_many_attempts"
    assert int(locked.headers["retry-after"]) == 1
    assert "session=" not in locked.headers.get("set-cookie", "")
    time.sleep(1.1)
    assert login(gateway, user["username"], "wrong-again", source).status == 401
    again = login(gateway, user["username"], PASSWORD, source)
    assert again.status == 429 and int(again.headers["retry-after"]) == 2  # doubled
    time.sleep(2.1)
    assert login(gateway, user["username"], PASSWORD, source).status == 200
    # a success clears the username's count: one more mistake does not lock it
    assert login(gateway, user["username"], "wrong-password", source).status == 401
    assert login(gateway, user["username"], PASSWORD, source).status == 200


def test_failed_logins_lock_the_address(gateway: Gateway) -> None:
    """Guessing across many usernames from one address is slowed down too."""
    source = own_address()
    for n in range(20):
        assert login(gateway, f"nobody-{n}-" + secrets.token_hex(3), "guess", source).status == 401
    user = new_user(gateway)
    refused = login(gateway, user["username"], PASSWORD, source)
    assert refused.status == 429 and int(refused.headers["retry-after"]) >= 1
    assert login(gateway, user["username"], PASSWORD, own_address()).status == 200  # others may log in


def test_an_unknown_username_takes_as_long_as_a_wrong_password(gateway: Gateway) -> None:
    user = new_user(gateway)
    source = own_address()

    def timed(username: str) -> float:
        started = time.perf_counter()
        assert login(gateway, username, "wrong-password", source).status == 401
        return time.perf_counter() - started

    unknown = [timed("nobody-" + secrets.token_hex(4)) for _ in range(4)]
    known = [timed(user["username"]) for _ in range(4)]
    assert statistics.median(unknown) > 0.5 * statistics.median(known), (unknown, known)


def test_access_tokens_expire_and_are_revoked(gateway: Gateway) -> None:
    user = new_user(gateway)

    def token() -> str:
        session = {"Cookie": login(gateway, user["username"]).headers["set-cookie"].split(";")[0]}
        reply = post(gateway, "/auth/token", {}, headers=session)
        assert reply.status == 200, reply.body
        return reply.body["token"]

    def works(secret: str) -> bool:
        return gateway.api("GET", "/auth/me", token=secret).status == 200

    first = token()
    assert works(first)
    [(expires,)] = gateway.query("SELECT access_token_expires_at FROM users WHERE id = :id", id=user["id"])
    expires = dt.datetime.fromisoformat(expires) if isinstance(expires, str) else expires  # SQLite: text
    days = (expires - dt.datetime.now(dt.UTC).replace(tzinfo=None)).total_seconds() / 86400
    assert 29.9 < days <= 30  # TOKEN_TTL_DAYS defaults to 30
    engine = gateway.db()
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE users SET access_token_expires_at = :at WHERE id = :id"),
                {"at": dt.datetime(2001, 1, 1), "id": user["id"]},
            )
    finally:
        engine.dispose()
    assert not works(first), "an expired access token still works"

    second = token()
    assert works(second)
    assert post(gateway, "/auth/logout", {}, headers={"Authorization": f"Bearer {second}"}).status == 200
    assert not works(second), "logout did not revoke the access token"

    third = token()
    gateway.ok("PATCH", f"/users/{user['id']}", {"password": "a-brand-new-password"})
    assert not works(third), "a new password did not revoke the access token"


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway that trusts 127.0.0.2 as its TLS-terminating proxy."""
    tmp = tmp_path_factory.mktemp("proxy")
    gw = start_gateway(tmp, f"sqlite:///{tmp / 'relayhouse.db'}", TRUSTED_PROXIES="127.0.0.2/32,10.0.0.0/8")
    yield gw
    stop_gateway(gw)


def test_session_cookie_is_secure_over_https_only(behind_proxy: Gateway, gateway: Gateway) -> None:
    user = new_user(behind_proxy)
    https = {"X-Forwarded-Proto": "https"}

    def cookie(gw: Gateway, source: str, headers: dict[str, str]) -> str:
        reply = post(gw, "/auth/login", {"username": user["username"], "password": PASSWORD}, source, headers)
        assert reply.status == 200, reply.body
        return reply.headers["set-cookie"]

    assert "; Secure" in cookie(behind_proxy, "127.0.0.2", https)
    assert "; Secure" not in cookie(behind_proxy, "127.0.0.2", {})
    # the header from anyone but the proxy is not believed
    assert "; Secure" not in cookie(behind_proxy, "127.0.0.1", https)
    other = new_user(gateway)
    plain = post(gateway, "/auth/login", {"username": other["username"], "password": PASSWORD}, headers=https)
    assert plain.status == 200 and "; Secure" not in plain.headers["set-cookie"]


def test_lockouts_are_shared_through_redis(tmp_path: Path) -> None:
    """Two processes on one REDIS_URL share their counts: a guesser cannot spread guesses across them."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not reachable at " + REDIS_URL)
    client.flushdb()
    gateways = [
        start_gateway(tmp_path / name, f"sqlite:///{tmp_path / name}.db", REDIS_URL=REDIS_URL)
        for name in ("a", "b")
    ]
    try:
        first, second = gateways
        source = own_address()
        for _ in range(5):
            assert login(first, "victim", "guess", source).status == 401
        refused = login(second, "victim", "guess", own_address())
        assert refused.status == 429 and int(refused.headers["retry-after"]) >= 1
    finally:
        for gw in gateways:
            stop_gateway(gw)
        client.flushdb()
