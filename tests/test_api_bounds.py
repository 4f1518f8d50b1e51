"""The management API answers 400 naming the field, never 500, for values its columns cannot hold: strings
past their column's length, integers past their SQL type, dates past the calendar, decimals past a sane
range, deeply nested JSON and unknown fields. Also: root stays root, and upstream keys stay with their host.
"""

from __future__ import annotations

import secrets
import time
import urllib.parse
from typing import Any

import pytest

from tests.conftest import Gateway, http
from tests.fake_upstream import FakeUpstream

BIG = 2**64  # past BIGINT
INT = 2**31  # past INTEGER


def bad(gateway: Gateway, method: str, path: str, body: Any, param: str) -> None:
    reply = gateway.api(method, path, body)
    assert reply.status == 400, (method, path, param, reply.status, reply.body)
    assert reply.body["error"]["param"] == param, (method, path, reply.body)
    assert reply.body["error"]["type"] == "invalid_request_error"


def long(n: int) -> str:
    return "x" * n


@pytest.fixture
def objects(gateway: Gateway, upstream: FakeUpstream) -> dict[str, Any]:
    model = "m-" + secrets.token_hex(4)
    channel = gateway.channel(upstream, [model])
    user = gateway.user(balance_usd=0)
    return {"channel": channel, "user": user, "key": gateway.key(user), "model": model}


def test_every_string_field_one_past_its_column_is_a_400(gateway: Gateway, objects: dict) -> None:
    """On PostgreSQL each of these was a 500 (value too long for type character varying)."""
    user, key, channel = objects["user"], objects["key"], objects["channel"]
    new_user = {"username": "b-" + secrets.token_hex(4), "password": "a-long-password"}
    cases = [
        ("POST", "/users", {**new_user, "username": long(65)}, "username"),
        ("POST", "/users", {**new_user, "group": long(65)}, "group"),
        ("POST", "/users", {**new_user, "password": long(1025)}, "password"),
        ("PATCH", f"/users/{user['id']}", {"group": long(65)}, "group"),
        ("POST", "/keys", {"name": long(129)}, "name"),
        ("PATCH", f"/keys/{key['id']}", {"name": long(129)}, "name"),
        ("PATCH", f"/keys/{key['id']}", {"models": [long(129)]}, "models"),
        ("PATCH", f"/keys/{key['id']}", {"allowed_ips": [long(65)]}, "allowed_ips"),
        ("PATCH", f"/channels/{channel['id']}", {"name": long(129)}, "name"),
        ("PATCH", f"/channels/{channel['id']}", {"base_url": "http://h/" + long(504)}, "base_url"),
        ("PATCH", f"/channels/{channel['id']}", {"models": [long(129)]}, "models"),
        ("PATCH", f"/channels/{channel['id']}", {"model_mapping": {long(129): "a"}}, "model_mapping"),
        ("PATCH", f"/channels/{channel['id']}", {"model_mapping": {"a": long(129)}}, "model_mapping"),
        ("PATCH", f"/channels/{channel['id']}", {"groups": [long(65)]}, "groups"),
        ("PATCH", f"/channels/{channel['id']}", {"test_model": long(129)}, "test_model"),
        ("PATCH", f"/channels/{channel['id']}", {"keys": [long(4097)]}, "keys"),
        ("POST", f"/channels/{channel['id']}/test", {"model": long(129)}, "model"),
        ("PUT", "/prices/" + long(129), {"input_per_mtok_usd": 1}, "model"),
        ("DELETE", "/prices/" + long(129), None, "model"),
        ("PUT", "/groups/" + long(65), {"multiplier": "1"}, "name"),
        ("POST", f"/users/{user['id']}/wallet", {"amount_usd": 1, "reason": long(1001)}, "reason"),
        ("POST", "/wallet/redeem", {"code": long(129)}, "code"),
        ("GET", "/logs?model=" + long(129), None, "model"),
        # NUL cannot be stored in a PostgreSQL text value at all
        ("PATCH", f"/channels/{channel['id']}", {"name": "a\x00b"}, "name"),
        ("GET", "/logs?model=a%00b", None, "model"),
    ]
    for method, path, body, param in cases:
        bad(gateway, method, path, body, param)
    assert gateway.api("GET", f"/channels/{channel['id']}").body == channel  # nothing half-applied

    # exactly the column's length is fine
    assert gateway.api("PATCH", f"/channels/{channel['id']}", {"name": long(128)}).status == 200
    assert gateway.api("PUT", "/groups/" + long(64), {"multiplier": "1"}).status == 200
    assert gateway.api("PUT", "/prices/" + long(128), {"input_per_mtok_usd": 1}).status == 200
    assert gateway.api("POST", "/users", {**new_user, "username": "c" * 64}).status == 201


def test_integers_past_their_sql_type_are_a_400(gateway: Gateway, objects: dict) -> None:
    user, key, channel = objects["user"], objects["key"], objects["channel"]
    for path, param in (
        (f"/users/{BIG}", "user_id"),
        (f"/users/{INT}/wallet", "user_id"),
        (f"/keys/{BIG}", "key_id"),
        (f"/channels/{INT}", "channel_id"),
        (f"/logs?user_id={BIG}", "user_id"),
        (f"/logs?status={INT}", "status"),
        (f"/logs?page={BIG}", "page"),
        (f"/wallet?per_page={BIG}", "per_page"),
        ("/logs?per_page=0", "per_page"),
        (f"/keys?user_id={BIG}", "user_id"),
    ):
        bad(gateway, "GET", path, None, param)
    bad(gateway, "DELETE", f"/keys/{BIG}", None, "key_id")
    bad(gateway, "PATCH", f"/channels/{channel['id']}", {"priority": INT}, "priority")
    bad(gateway, "PATCH", f"/channels/{channel['id']}", {"priority": -INT - 1}, "priority")
    bad(gateway, "PATCH", f"/channels/{channel['id']}", {"weight": INT}, "weight")
    bad(gateway, "PATCH", f"/channels/{channel['id']}", {"timeout_s": 1e300}, "timeout_s")
    bad(gateway, "PATCH", f"/keys/{key['id']}", {"requests_per_minute": INT}, "requests_per_minute")
    bad(gateway, "PATCH", f"/keys/{key['id']}", {"tokens_per_month": 2**63}, "tokens_per_month")
    bad(gateway, "POST", "/keys", {"user_id": BIG}, "user_id")
    bad(gateway, "POST", "/redemptions", {"amount_usd": 1, "count": BIG}, "count")
    bad(gateway, "POST", "/redemptions", {"amount_usd": BIG}, "amount_usd")
    bad(gateway, "POST", f"/users/{user['id']}/wallet", {"amount_usd": 1e20}, "amount_usd")
    bad(gateway, "PATCH", f"/keys/{key['id']}", {"spend_limit_usd": 1e20}, "spend_limit_usd")
    bad(gateway, "PUT", "/prices/" + objects["model"], {"input_per_mtok_usd": 1e12}, "input_per_mtok_usd")
    # the largest values their columns hold are fine
    limits = {"requests_per_minute": INT - 1, "tokens_per_month": 2**63 - 1}
    assert gateway.api("PATCH", f"/keys/{key['id']}", limits).body["tokens_per_month"] == 2**63 - 1
    assert gateway.api("PATCH", f"/channels/{channel['id']}", {"priority": -INT}).status == 200


def test_dates_past_the_calendar_are_a_400(gateway: Gateway, objects: dict) -> None:
    key = objects["key"]
    for value in (1e20, -1e20, "9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"):
        bad(gateway, "PATCH", f"/keys/{key['id']}", {"expires_at": value}, "expires_at")
    for name in ("since", "until"):
        for value in ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"):
            bad(gateway, "GET", "/logs?" + urllib.parse.urlencode({name: value}), None, name)
    assert gateway.api("GET", "/logs?since=9999-12-31T00:00:00Z").body["data"] == []


def test_deeply_nested_json_is_a_400_without_signing_in(gateway: Gateway) -> None:
    """A RecursionError in the JSON parser was a 500, on a route anyone may call."""
    deep = b"[" * 200_000 + b"]" * 200_000
    json_type = {"Content-Type": "application/json"}
    admin = {**json_type, "Authorization": f"Bearer {gateway.admin_token}"}
    for path, headers in (("/auth/login", json_type), ("/users", admin)):
        reply = http("POST", gateway.url + "/api" + path, raw=deep, headers=headers)
        assert reply.status == 400, (path, reply.status, reply.body)
        assert "nested" in reply.body["error"]["message"]


def test_unknown_fields_are_named_not_dropped(gateway: Gateway, objects: dict) -> None:
    user, key, channel = objects["user"], objects["key"], objects["channel"]
    bad(gateway, "PATCH", f"/keys/{key['id']}", {"requests_per_min": 5}, "requests_per_min")
    bad(gateway, "POST", "/keys", {"name": "k", "rpm": 5}, "rpm")
    bad(gateway, "PATCH", f"/channels/{channel['id']}", {"timeout": 5}, "timeout")
    bad(gateway, "PATCH", f"/users/{user['id']}", {"groups": "vip"}, "groups")
    bad(
        gateway, "POST", "/users", {"username": "x-" + secrets.token_hex(3), "password": "p" * 9, "x": 1}, "x"
    )
    bad(gateway, "PUT", "/groups/default", {"multiplier": "1", "factor": 2}, "factor")
    assert gateway.api("GET", f"/keys/{key['id']}").body["requests_per_minute"] is None
    assert gateway.api("GET", f"/channels/{channel['id']}").body["timeout_s"] is None


def test_decimals_are_bounded_so_a_multiplier_cannot_stall_the_catalog(gateway: Gateway) -> None:
    name = "g-" + secrets.token_hex(4)
    for value in ("1e999999999", "1001", -1, "NaN", "Infinity", "1.0000001", 1e308, True):
        bad(gateway, "PUT", f"/groups/{name}", {"multiplier": value}, "multiplier")
    started = time.monotonic()
    assert gateway.api("GET", "/status").status == 200 and time.monotonic() - started < 2
    assert gateway.api("PUT", f"/groups/{name}", {"multiplier": "1000"}).body["multiplier"] == "1000"
    assert gateway.api("PUT", f"/groups/{name}", {"multiplier": "2.500000"}).body["multiplier"] == "2.5"
    assert gateway.api("PUT", f"/groups/{name}", {"multiplier": 0.000001}).body["multiplier"] == "0.000001"
    user = gateway.user(balance_usd=0)
    bad(gateway, "POST", f"/users/{user['id']}/wallet", {"amount_usd": "0.0000001"}, "amount_usd")
    bad(gateway, "POST", f"/users/{user['id']}/wallet", {"amount_usd": "1e999999999"}, "amount_usd")
    bad(
        gateway,
        "PUT",
        "/prices/m-" + secrets.token_hex(3),
        {"per_request_usd": "0.0000005"},
        "per_request_usd",
    )
    assert gateway.balance(user) == 0


def test_root_cannot_demote_or_disable_itself_nor_the_last_root(gateway: Gateway) -> None:
    root = next(u for u in gateway.api("GET", "/users").body["data"] if u["role"] == "root")
    for change, param in (({"role": "admin"}, "role"), ({"status": "disabled"}, "status")):
        bad(gateway, "PATCH", f"/users/{root['id']}", change, param)
    assert gateway.api("GET", "/auth/me").body["role"] == "root"

    # a second root may be demoted by the first; the first can never demote itself
    second = gateway.user(balance_usd=0, role="root")
    assert gateway.api("PATCH", f"/users/{second['id']}", {"role": "admin"}).body["role"] == "admin"
    bad(gateway, "PATCH", f"/users/{root['id']}", {"role": "user"}, "role")
    assert gateway.api("GET", f"/users/{root['id']}").body["status"] == "active"


def test_a_new_host_for_a_channel_needs_its_own_keys(gateway: Gateway, upstream: FakeUpstream) -> None:
    """The stored upstream keys must not follow a base_url to another host."""
    channel = gateway.channel(upstream, ["m-" + secrets.token_hex(4)])
    path = f"/channels/{channel['id']}"
    parts = urllib.parse.urlsplit(upstream.base_url)
    for elsewhere in (
        "https://attacker.example/v1",
        f"https://{parts.netloc}/v1",  # another scheme
        f"http://{parts.hostname}:{parts.port + 1}/v1",  # another port
    ):
        bad(gateway, "PATCH", path, {"base_url": elsewhere}, "keys")
    assert gateway.api("GET", path).body["base_url"] == upstream.base_url
    # the same host, another path: the keys stay
    same_host = gateway.api("PATCH", path, {"base_url": upstream.base_url + "/"})
    assert same_host.status == 200 and same_host.body["keys"] == channel["keys"]
    moved = gateway.api("PATCH", path, {"base_url": "https://other.example/v1", "keys": ["sk-new-key-1"]})
    assert moved.status == 200 and [k["hint"] for k in moved.body["keys"]] == ["...ey-1"]
    gateway.api("DELETE", path)
