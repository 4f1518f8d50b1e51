"""Estimates: what a request reserves before it is sent (images count as their allowance, not their
bytes), and token counts that never stall the event loop."""

from __future__ import annotations

import base64
import json
import os
import time
from http.client import HTTPConnection
from urllib.parse import urlsplit

from gateway import tokens
from tests.conftest import Gateway, http
from tests.fake_upstream import FakeUpstream


def test_a_large_image_reserves_an_allowance_not_its_bytes(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(
        upstream, balance_usd=1, input_per_mtok_usd=2.5, output_per_mtok_usd=10
    )
    image = "data:image/png;base64," + base64.b64encode(os.urandom(2 << 20)).decode()
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": image, "detail": "high"}},
    ]
    completion = gateway.client(key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}]
    )
    usage = completion.usage
    assert usage is not None
    row = gateway.logs_of(user, 1)[0]
    expected = usage.prompt_tokens * 25 // 10 + usage.completion_tokens * 10  # micro-USD
    assert row["status"] == 200 and row["usage_source"] == "upstream"
    assert row["cost_micro_usd"] == expected
    assert gateway.balance(user) == 1_000_000 - expected


def test_reservations_stay_an_upper_bound_for_text() -> None:
    for text in (
        "The quick brown fox jumps over the lazy dog. " * 200,
        "日本語のテキストです。" * 300,
        "x" * 5000,
    ):
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
        raw = json.dumps(body, ensure_ascii=False).encode()
        assert tokens.reserve_prompt_tokens("chat", body, len(raw)) >= tokens.count_prompt(
            "gpt-4o", "chat", body
        )
    picture = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    small = {**picture, "image_url": {**picture["image_url"], "detail": "low"}}
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, picture, small]}]}
    raw = len(json.dumps(body))
    reserved = tokens.reserve_prompt_tokens("chat", body, raw)
    assert tokens.IMAGE_TOKENS_HIGH + tokens.IMAGE_TOKENS_LOW < reserved < 2000


def test_images_count_as_their_allowance_in_every_protocol() -> None:
    data = "A" * 100_000
    for body in (
        {
            "messages": [
                {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": data}}]}
            ]
        },
        {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": data}}]}]},
        {
            "input": [
                {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png," + data}]}
            ]
        },
    ):
        reserved = tokens.reserve_prompt_tokens("chat", body, len(json.dumps(body)))
        assert tokens.IMAGE_TOKENS_HIGH <= reserved < 1600, body.keys()


def test_counting_a_huge_prompt_does_not_stall_other_requests(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    model, user, key = gateway.setup_model(fresh_upstream, balance_usd=100)
    fresh_upstream.behave(no_usage=True)  # the gateway must count the 30 MB prompt itself
    prompt = "hello world " * 2_500_000
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}], "stream": True})
    parts = urlsplit(gateway.url)
    huge = HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Authorization": f"Bearer {key['key']}", "Content-Type": "application/json"}
    huge.request("POST", "/v1/chat/completions", body=body.encode(), headers=headers)
    response = huge.getresponse()
    assert response.status == 200
    huge_id = response.getheader("x-request-id")
    received = b""
    while b"[DONE]" not in received:  # the count starts as the stream ends
        chunk = response.read1(65536)
        assert chunk
        received += chunk
    started = time.monotonic()
    small = http("GET", gateway.url + "/api/status")
    small_s = time.monotonic() - started
    response.read()
    huge.close()
    row = gateway.wait_for_log(huge_id, timeout=30)
    assert row["usage_source"] == "estimated" and row["prompt_tokens"] > 4_000_000
    deadline = time.time() + 5
    while huge_id + " POST" not in (log := gateway.server_log()) and time.time() < deadline:
        time.sleep(0.05)  # access lines are written a few times a second
    small_at, huge_at = log.find(small.headers["x-request-id"]), log.find(huge_id + " POST")
    assert 0 <= small_at < huge_at, "the small request waited for the count"
    assert small_s < 1.0, small_s
