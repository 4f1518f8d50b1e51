"""Every client protocol against every upstream protocol, through the real gateway with the official SDKs:
`openai` (chat completions and the Responses API), `anthropic` and `google-genai`, each against an OpenAI, an
Anthropic and a Gemini channel (and the Responses API natively), streamed and not.

For every pair the answer is valid in the client's protocol, and the log row and the wallet show exactly
the usage the upstream reported, as the fake sent it (read back from the bytes it wrote, and normalised here
independently of the gateway's code), priced with cache reads and writes apart."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest
from google import genai
from google.genai import types

from tests.conftest import Gateway
from tests.fake_upstream import FakeUpstream

PRICE = {  # USD per 1M tokens: one token costs that many micro-USD
    "input_per_mtok_usd": 1000,
    "output_per_mtok_usd": 3000,
    "cached_input_per_mtok_usd": 100,
    "cache_write_per_mtok_usd": 1250,
}
CLIENTS = ["openai", "responses", "anthropic", "gemini"]
CHANNELS = ["openai", "anthropic", "gemini", "deepseek"]  # deepseek: OpenAI's chat protocol, no Responses API


@dataclass
class Counts:
    prompt: int = 0
    cached: int = 0
    cache_write: int = 0
    completion: int = 0
    reasoning: int = 0

    def cost(self) -> int:
        uncached = self.prompt - self.cached - self.cache_write
        return (
            uncached * PRICE["input_per_mtok_usd"]
            + self.cached * PRICE["cached_input_per_mtok_usd"]
            + self.cache_write * PRICE["cache_write_per_mtok_usd"]
            + self.completion * PRICE["output_per_mtok_usd"]
        )


def _n(data: dict[str, Any], *path: str) -> int:
    for name in path:
        data = data.get(name) if isinstance(data, dict) else None
    return data if isinstance(data, int) else 0


def reported(path: str, usages: list[dict[str, Any]]) -> Counts:
    """The usage an upstream reported, by its protocol, from the usage objects it sent."""
    assert usages, f"the fake reported no usage on {path}"
    last = usages[-1]
    if path.endswith("/chat/completions"):
        return Counts(
            _n(last, "prompt_tokens"),
            _n(last, "prompt_tokens_details", "cached_tokens"),
            0,
            _n(last, "completion_tokens"),
            _n(last, "completion_tokens_details", "reasoning_tokens"),
        )
    if path.endswith("/responses"):
        return Counts(
            _n(last, "input_tokens"),
            _n(last, "input_tokens_details", "cached_tokens"),
            0,
            _n(last, "output_tokens"),
            _n(last, "output_tokens_details", "reasoning_tokens"),
        )
    if path.endswith("/messages"):  # message_start's counts, then message_delta's cumulative ones
        merged: dict[str, Any] = {}
        for usage in usages:
            merged.update({k: v for k, v in usage.items() if v is not None})
        read, written = _n(merged, "cache_read_input_tokens"), _n(merged, "cache_creation_input_tokens")
        return Counts(_n(merged, "input_tokens") + read + written, read, written, _n(merged, "output_tokens"))
    thoughts = _n(last, "thoughtsTokenCount")  # Gemini
    return Counts(
        _n(last, "promptTokenCount"),
        _n(last, "cachedContentTokenCount"),
        0,
        _n(last, "candidatesTokenCount") + thoughts,
        thoughts,
    )


def ask(gateway: Gateway, client: str, model: str, key: str, stream: bool) -> str:
    """One question in the client's protocol; the answer's text."""
    prompt = "Say hello to the gateway"
    if client == "openai":
        chat = gateway.client(key)
        messages = [{"role": "user", "content": prompt}]
        if not stream:
            return chat.chat.completions.create(model=model, messages=messages).choices[0].message.content
        chunks = chat.chat.completions.create(model=model, messages=messages, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if client == "responses":
        api = gateway.client(key).responses
        if not stream:
            return api.create(model=model, input=prompt).output_text
        with api.stream(model=model, input=prompt) as events:
            return events.get_final_response().output_text
    if client == "anthropic":
        messages_api = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0).messages
        messages = [{"role": "user", "content": prompt}]
        if not stream:
            answer = messages_api.create(model=model, max_tokens=100, messages=messages)
            return "".join(b.text for b in answer.content if b.type == "text")
        with messages_api.stream(model=model, max_tokens=100, messages=messages) as events:
            return "".join(b.text for b in events.get_final_message().content if b.type == "text")
    options = types.HttpOptions(base_url=gateway.url, api_version="v1beta", timeout=30_000)
    google = genai.Client(api_key=key, http_options=options)  # held: a dropped client closes its connections
    if not stream:
        return google.models.generate_content(model=model, contents=prompt).text
    chunks = google.models.generate_content_stream(model=model, contents=prompt)
    return "".join(c.text or "" for c in chunks)


def channel_for(gateway: Gateway, fake: FakeUpstream, kind: str, model: str) -> dict:
    base = fake.base_url if kind in ("openai", "deepseek") else fake.root_url
    return gateway.channel(fake, [model], type=kind, base_url=base)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("client", CLIENTS)
def test_every_pair_answers_and_bills_what_the_upstream_reported(
    gateway: Gateway, fresh_upstream: FakeUpstream, client: str, channel: str, stream: bool
) -> None:
    fresh_upstream.behave(cached_tokens=2)
    model = "m-" + secrets.token_hex(4)
    channel_for(gateway, fresh_upstream, channel, model)
    gateway.price(model, **PRICE)
    user = gateway.user(100)
    text = ask(gateway, client, model, gateway.key(user)["key"], stream)
    assert text.startswith("Hello from the fake upstream."), text

    sent = fresh_upstream.last_request
    expected_path = {
        ("responses", "openai"): "/v1/responses",
        ("anthropic", "anthropic"): "/v1/messages",
    }
    if channel == "anthropic":
        assert sent.path == "/v1/messages"
    elif channel == "gemini":
        assert sent.path.endswith(":streamGenerateContent" if stream else ":generateContent")
    else:
        assert sent.path == expected_path.get((client, channel), "/v1/chat/completions")
    counts = reported(sent.path, sent.usages)
    assert counts.cached == 2 and counts.prompt > counts.cached and counts.completion > 0

    row = gateway.logs_of(user, 1)[0]
    assert row["protocol"] == client and row["channel_type"] == channel and row["status"] == 200
    assert row["usage_source"] == "upstream" and row["stream"] is stream
    logged = Counts(
        row["prompt_tokens"],
        row["cached_tokens"],
        row["cache_write_tokens"],
        row["completion_tokens"],
        row["reasoning_tokens"],
    )
    assert logged == counts
    assert row["cost_micro_usd"] == counts.cost()
    assert gateway.balance(user) == 100_000_000 - counts.cost()
