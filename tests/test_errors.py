"""Errors a client sees, in OpenAI's shape and with the statuses the SDK maps to its exception classes;
limits on keys; and no secret in any answer or log line."""

from __future__ import annotations

import json
import secrets
import threading
import time

import openai
import pytest

from tests.conftest import Gateway, http, oversized_chat
from tests.fake_upstream import FakeUpstream

HI = [{"role": "user", "content": "hi"}]


def assert_openai_error(reply, status: int, code: str | None = None) -> None:
    assert reply.status == status, (reply.status, reply.body)
    assert set(reply.body["error"]) == {"message", "type", "param", "code"}
    if code is not None:
        assert reply.body["error"]["code"] == code
    assert reply.headers["x-request-id"].startswith("req_")


def test_authentication_errors(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError):
        gateway.client("sk-" + "x" * 48).chat.completions.create(model="any", messages=HI)
    reply = http("POST", gateway.v1 + "/chat/completions", {"model": "x", "messages": HI})
    assert_openai_error(reply, 401)


def test_permission_errors(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream)
    other = "other-" + secrets.token_hex(3)
    gateway.channel(upstream, [other])
    gateway.price(other)
    limited = gateway.client(gateway.key(user, models=[model]))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        limited.chat.completions.create(model=other, messages=HI)
    assert caught.value.code == "model_not_allowed"
    unpriced = "unpriced-" + secrets.token_hex(3)
    gateway.channel(upstream, [unpriced])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        gateway.client(key).chat.completions.create(model=unpriced, messages=HI)
    assert caught.value.code == "model_not_priced"
    rows = gateway.logs_of(user, 2)
    assert {r["status"] for r in rows} == {403} and all(r["cost_micro_usd"] == 0 for r in rows)


def test_unknown_model_is_404_pointing_to_model_list(gateway: Gateway, upstream: FakeUpstream) -> None:
    _, _, key = gateway.setup_model(upstream)
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.client(key).chat.completions.create(model="no-such-model", messages=HI)
    assert caught.value.code == "model_not_found" and "GET /v1/models" in caught.value.message


def test_bad_requests_are_400(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, _, key = gateway.setup_model(upstream)
    headers = {"Authorization": f"Bearer {key['key']}", "Content-Type": "application/json"}
    assert_openai_error(
        http("POST", gateway.v1 + "/chat/completions", raw=b"{not json", headers=headers), 400
    )
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client(key).chat.completions.create(model=model, messages=[])
    assert caught.value.param == "messages"
    reply = http("POST", gateway.v1 + "/embeddings", {"input": "x"}, headers)
    assert_openai_error(reply, 400)
    assert reply.body["error"]["param"] == "model"


def test_empty_wallet_is_402(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream, balance_usd=0)
    with pytest.raises(openai.APIStatusError) as caught:
        gateway.client(key).chat.completions.create(model=model, messages=HI)
    assert caught.value.status_code == 402 and caught.value.code == "insufficient_quota"
    assert not any(r.json and r.json.get("model") == model for r in upstream.requests)


def test_key_spend_limit_is_402(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, _ = gateway.setup_model(upstream, input_per_mtok_usd=10000, output_per_mtok_usd=10000)
    client = gateway.client(gateway.key(user, spend_limit_usd=0.01))
    client.chat.completions.create(model=model, messages=HI, max_tokens=10)  # costs more than $0.01
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=model, messages=HI, max_tokens=10)
    assert caught.value.status_code == 402 and caught.value.code == "key_spend_limit_reached"


def test_requests_per_minute_is_429_with_retry_after(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, _ = gateway.setup_model(upstream)
    client = gateway.client(gateway.key(user, requests_per_minute=2))
    client.chat.completions.create(model=model, messages=HI)
    client.chat.completions.create(model=model, messages=HI)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=model, messages=HI)
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60


def test_requests_per_hour(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, _ = gateway.setup_model(upstream)
    client = gateway.client(gateway.key(user, requests_per_hour=1))
    client.chat.completions.create(model=model, messages=HI)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=model, messages=HI)


def test_tokens_per_minute(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, _ = gateway.setup_model(upstream)
    client = gateway.client(gateway.key(user, tokens_per_minute=8))
    client.chat.completions.create(model=model, messages=HI)  # uses 5 + 5 tokens: the window is full
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=model, messages=HI)
    assert caught.value.response.headers["retry-after"]


def test_monthly_token_cap(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, _ = gateway.setup_model(upstream)
    key = gateway.key(user, tokens_per_month=5)
    client = gateway.client(key)
    first = client.chat.completions.create(model=model, messages=HI)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=model, messages=HI)
    assert caught.value.code == "token_cap_reached"
    gateway.logs_of(user, 2)
    assert gateway.ok("GET", f"/keys/{key['id']}")["month_tokens"] == first.usage.total_tokens


def test_concurrency_limit(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    model, user, _ = gateway.setup_model(fresh_upstream)
    fresh_upstream.behave(chunks=5, chunk_delay_s=0.3)
    client = gateway.client(gateway.key(user, max_concurrent=1))
    done = threading.Event()

    def slow() -> None:
        list(client.chat.completions.create(model=model, messages=HI, stream=True))
        done.set()

    worker = threading.Thread(target=slow)
    worker.start()
    time.sleep(0.5)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=model, messages=HI)
    assert caught.value.response.headers["retry-after"]
    worker.join(10)
    assert done.is_set()
    assert client.chat.completions.create(model=model, messages=HI, stream=False).choices


def test_disabled_user_is_403(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream)
    gateway.ok("PATCH", f"/users/{user['id']}", {"status": "disabled"})
    with pytest.raises(openai.PermissionDeniedError):
        gateway.client(key).chat.completions.create(model=model, messages=HI)


def test_body_too_large_is_413(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, _, key = gateway.setup_model(upstream)
    big = oversized_chat(model)
    reply = http(
        "POST",
        gateway.v1 + "/chat/completions",
        raw=big,
        headers={"Authorization": f"Bearer {key['key']}", "Content-Type": "application/json"},
    )
    assert_openai_error(reply, 413)


def test_no_enabled_channel_is_503(gateway: Gateway, upstream: FakeUpstream) -> None:
    model = "off-" + secrets.token_hex(3)
    channel = gateway.channel(upstream, [model])
    gateway.price(model)
    gateway.ok("PATCH", f"/channels/{channel['id']}", {"status": "disabled"})
    user = gateway.user(5)
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.client(gateway.key(user)).chat.completions.create(model=model, messages=HI)
    assert caught.value.status_code == 503


def test_upstream_failure_is_502_and_timeout_504(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(fresh_upstream)
    fresh_upstream.behave(status=500)
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.client(key).chat.completions.create(model=model, messages=HI)
    assert caught.value.status_code == 502
    slow_model = "slow-" + secrets.token_hex(3)
    gateway.channel(fresh_upstream, [slow_model], timeout_s=0.5)
    gateway.price(slow_model)
    fresh_upstream.reset()
    fresh_upstream.behave(stall_s=3)
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.client(key).chat.completions.create(model=slow_model, messages=HI)
    assert caught.value.status_code == 504
    rows = gateway.logs_of(user, 2)
    assert sorted(r["status"] for r in rows) == [502, 504] and all(r["cost_micro_usd"] == 0 for r in rows)


def test_no_secret_in_answers_or_logs(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    upstream_secret = "sk-upstream-secret-" + secrets.token_hex(8)
    model = "sec-" + secrets.token_hex(3)
    fresh_upstream.behave(require_key="sk-something-else")  # its 401 message quotes the key it got
    channel = gateway.channel(fresh_upstream, [model], keys=[upstream_secret])
    gateway.price(model)
    user = gateway.user(5)
    key = gateway.key(user)
    reply = http(
        "POST",
        gateway.v1 + "/chat/completions",
        {"model": model, "messages": HI},
        {"Authorization": f"Bearer {key['key']}"},
    )
    assert reply.status == 502
    assert upstream_secret not in reply.raw.decode() and upstream_secret[-8:] not in reply.raw.decode()
    listing = gateway.api("GET", f"/channels/{channel['id']}").raw.decode()
    assert upstream_secret not in listing
    stored = gateway.query("SELECT key_encrypted FROM channel_keys WHERE channel_id = :c", c=channel["id"])
    assert stored and upstream_secret not in stored[0][0]  # encrypted at rest
    hashes = gateway.query("SELECT key_hash, prefix FROM api_keys WHERE id = :k", k=key["id"])
    assert key["key"] not in str(hashes)  # API keys are kept only as a hash and a short prefix
    row = gateway.logs_of(user, 1)[0]
    assert upstream_secret not in str(row)
    time.sleep(0.3)
    log_text = gateway.server_log()
    assert upstream_secret not in log_text and key["key"] not in log_text
    assert gateway.admin_token not in log_text


def test_stream_timeout_counts_silence_not_length(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    """`timeout_s` bounds each wait for the upstream: a slow but steady stream completes, a stream that
    goes silent mid-way ends with an error event, billed for what was delivered."""
    model = "tick-" + secrets.token_hex(3)
    gateway.channel(fresh_upstream, [model], timeout_s=0.6)
    gateway.price(model, input_per_mtok_usd=1, output_per_mtok_usd=2)
    user = gateway.user(5)
    client = gateway.client(gateway.key(user))
    fresh_upstream.behave(chunks=6, chunk_delay_s=0.3, content="one two three four five six")
    started = time.monotonic()
    stream = client.chat.completions.create(model=model, messages=HI, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "one two three four five six" and time.monotonic() - started > 1.5

    fresh_upstream.behave(chunks=3, chunk_delay_s=3)
    started = time.monotonic()
    reply = http(
        "POST",
        gateway.v1 + "/chat/completions",
        {"model": model, "messages": HI, "stream": True},
        headers={"Authorization": f"Bearer {client.api_key}"},
    )
    elapsed = time.monotonic() - started
    assert reply.status == 200 and elapsed < 2.5, elapsed
    events = [line[6:] for line in reply.raw.decode().split("\n") if line.startswith("data: ")]
    assert '"role":"assistant"' in events[0]
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_stream_cut" and "did not answer in time" in error["message"]
    rows = gateway.logs_of(user, 2)
    cut = next(r for r in rows if r["request_id"] == reply.headers["x-request-id"])
    assert cut["status"] == 502 and cut["completion_tokens"] == 0 and cut["usage_source"] == "estimated"
