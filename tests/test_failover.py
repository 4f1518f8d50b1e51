"""Channel choice and failover: priority tiers, retries before the first byte only, keys set aside,
channels disabled automatically and brought back by the probe."""

from __future__ import annotations

import secrets
import time

import openai
import pytest

from tests.conftest import Gateway
from tests.fake_upstream import FakeUpstream

HI = [{"role": "user", "content": "hi"}]


def two_channels(gateway: Gateway, first: FakeUpstream, second: FakeUpstream, **first_fields: object):
    model = "fo-" + secrets.token_hex(4)
    a = gateway.channel(first, [model], priority=10, **first_fields)
    b = gateway.channel(second, [model], priority=0)
    gateway.price(model)
    user = gateway.user(10)
    return model, a, b, user, gateway.key(user)


def test_higher_priority_channel_is_tried_first(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    model, a, b, user, key = two_channels(gateway, fresh_upstream, upstream2)
    client = gateway.client(key)
    for _ in range(3):
        client.chat.completions.create(model=model, messages=HI)
    rows = gateway.logs_of(user, 3)
    assert {r["channel_id"] for r in rows} == {a["id"]}


def test_fails_over_when_first_channel_answers_500(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    model, a, b, user, key = two_channels(gateway, fresh_upstream, upstream2)
    fresh_upstream.behave(status=500)
    seen_before = len(upstream2.requests)
    reply = gateway.client(key).chat.completions.with_raw_response.create(model=model, messages=HI)
    assert reply.parse().choices[0].message.content
    assert len(fresh_upstream.requests) == 1 and len(upstream2.requests) == seen_before + 1
    row = gateway.wait_for_log(reply.headers["x-request-id"])
    assert row["channel_id"] == b["id"] and row["attempts"] == 2 and row["status"] == 200
    # both channels' health, as the health page will show it
    failing = gateway.ok("GET", f"/channels/{a['id']}")
    assert failing["total_requests"] == 1 and failing["total_failures"] == 1 and failing["last_error"]
    serving = gateway.ok("GET", f"/channels/{b['id']}")
    assert serving["total_requests"] == 1 and serving["total_failures"] == 0
    assert serving["last_latency_ms"] is not None


def test_fails_over_when_first_channel_times_out(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    model, a, b, user, key = two_channels(gateway, fresh_upstream, upstream2, timeout_s=0.5)
    fresh_upstream.behave(stall_s=5)
    started = time.monotonic()
    completion = gateway.client(key).chat.completions.create(model=model, messages=HI)
    assert completion.choices[0].message.content
    assert time.monotonic() - started < 4
    row = gateway.logs_of(user, 1)[0]
    assert row["channel_id"] == b["id"] and row["attempts"] == 2


def test_stream_fails_over_before_the_first_byte(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    model, a, b, user, key = two_channels(gateway, fresh_upstream, upstream2)
    fresh_upstream.behave(status=503)
    chunks = list(gateway.client(key).chat.completions.create(model=model, messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert gateway.logs_of(user, 1)[0]["channel_id"] == b["id"]


def test_no_retry_once_streaming_started(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    model, a, b, user, key = two_channels(gateway, fresh_upstream, upstream2)
    fresh_upstream.behave(chunks=6, cut_after_chunks=2)
    seen_before = len(upstream2.requests)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in gateway.client(key).chat.completions.create(model=model, messages=HI, stream=True):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert received, "the chunks before the cut reached the client"
    assert len(upstream2.requests) == seen_before, "a started stream must never be retried elsewhere"
    row = gateway.logs_of(user, 1)[0]
    assert row["channel_id"] == a["id"] and row["status"] == 502
    assert row["usage_source"] == "estimated" and row["completion_tokens"] > 0


def test_upstream_429_fails_over_then_reaches_client(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(fresh_upstream)
    fresh_upstream.behave(status=429)
    with pytest.raises(openai.RateLimitError) as caught:
        gateway.client(key).chat.completions.create(model=model, messages=HI)
    assert caught.value.response.headers.get("retry-after")
    row = gateway.logs_of(user, 1)[0]
    assert row["status"] == 429 and row["cost_micro_usd"] == 0


def test_channel_disabled_after_failures_and_probed_back(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    model, a, b, user, key = two_channels(gateway, fresh_upstream, upstream2)
    fresh_upstream.behave(status=500)
    client = gateway.client(key)
    for _ in range(10):  # AUTO_DISABLE_AFTER (10) failures, and at least AUTO_DISABLE_RATE of the requests
        client.chat.completions.create(model=model, messages=HI)
    channel = gateway.ok("GET", f"/channels/{a['id']}")
    assert channel["status"] == "auto_disabled"
    assert "10 of 10 requests failed" in channel["status_reason"]
    assert gateway.ok("GET", "/status")["channels"]["auto_disabled"] >= 1
    tried = len(fresh_upstream.requests)
    client.chat.completions.create(model=model, messages=HI)
    assert len(fresh_upstream.requests) == tried, "a disabled channel gets no traffic"
    fresh_upstream.reset()  # the upstream recovers; the probe (every second in tests) lets it go half-open,
    deadline = time.time() + 15  # then enables it after a few successes in a row
    while time.time() < deadline and gateway.ok("GET", f"/channels/{a['id']}")["status"] != "enabled":
        time.sleep(0.2)
    assert gateway.ok("GET", f"/channels/{a['id']}")["status"] == "enabled"
    client.chat.completions.create(model=model, messages=HI)
    assert any(
        r.path.endswith("/chat/completions") and r.json.get("model") == model for r in fresh_upstream.requests
    )


def test_rejected_key_is_set_aside_and_others_keep_serving(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    model = "keys-" + secrets.token_hex(4)
    fresh_upstream.behave(require_key="sk-good-key-0001")
    channel = gateway.channel(fresh_upstream, [model], keys=["sk-bad-key-00001", "sk-good-key-0001"])
    gateway.price(model)
    user = gateway.user(5)
    client = gateway.client(gateway.key(user))
    for _ in range(4):
        assert client.chat.completions.create(model=model, messages=HI).choices
    keys = gateway.ok("GET", f"/channels/{channel['id']}")["keys"]
    assert [k["status"] for k in keys] == ["set_aside", "active"]
    assert "401" in keys[0]["status_reason"]
    assert gateway.ok("GET", f"/channels/{channel['id']}")["status"] == "enabled"
    # the set-aside key is probed and brought back once the upstream accepts it
    fresh_upstream.reset()
    deadline = time.time() + 10
    while time.time() < deadline:
        if [k["status"] for k in gateway.ok("GET", f"/channels/{channel['id']}")["keys"]] == [
            "active",
            "active",
        ]:
            break
        time.sleep(0.2)
    assert [k["status"] for k in gateway.ok("GET", f"/channels/{channel['id']}")["keys"]] == [
        "active",
        "active",
    ]


def test_quota_exhausted_disables_a_single_key_channel_at_once(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    model, a, b, user, key = two_channels(gateway, fresh_upstream, upstream2)
    fresh_upstream.behave(quota_exhausted=True)
    assert gateway.client(key).chat.completions.create(model=model, messages=HI).choices
    channel = gateway.ok("GET", f"/channels/{a['id']}")
    assert channel["status"] == "auto_disabled"
    assert "insufficient_quota" in channel["status_reason"]


def test_weighted_choice_inside_a_tier(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    model = "w-" + secrets.token_hex(4)
    heavy = gateway.channel(fresh_upstream, [model], weight=9)
    light = gateway.channel(upstream2, [model], weight=1)
    gateway.price(model)
    user = gateway.user(10)
    client = gateway.client(gateway.key(user))
    for _ in range(40):
        client.chat.completions.create(model=model, messages=HI, max_tokens=5)
    rows = gateway.logs_of(user, 40)
    heavy_share = sum(r["channel_id"] == heavy["id"] for r in rows)
    assert 26 <= heavy_share <= 40 and {r["channel_id"] for r in rows} <= {heavy["id"], light["id"]}
