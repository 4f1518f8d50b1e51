"""Anthropic Messages through the real gateway with the official `anthropic` SDK: each case served once by an
Anthropic channel (native pass-through) and once by an OpenAI channel (converted through the hub), with
the cost logged and debited exactly as the upstream's usage and the price say. Also Claude Code's recorded
requests replayed, failover from an overloaded Anthropic channel, typed errors, and the OpenAI SDK against
an Anthropic channel."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import Gateway, http
from tests.fake_anthropic import (
    SIGNATURE_PREFIX,
    THINKING_TEXT,
    answer_blocks,
    check_sequence,
    output_tokens,
    parse_sse,
    prompt_tokens,
)
from tests.fake_upstream import FakeUpstream, chat_answer, chat_prompt_tokens, count_words, split_content

CONTENT = "Hello from the fake upstream."
CLAUDE_RECORDINGS = Path("/work/shared/clients/claude.jsonl")
INPUT_PER_MTOK, OUTPUT_PER_MTOK = 1000, 3000  # USD: one token costs 1000 / 3000 micro-USD
PNG = base64.b64encode(bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")).decode()
ROUTES = ["native", "converted"]


@dataclass
class Setup:
    gateway: Gateway
    fake: FakeUpstream
    route: str
    model: str
    user: dict
    key: dict
    funds_usd: int = 10
    spent_micro_usd: int = 0  # by the calls checked so far

    @property
    def client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.gateway.url, api_key=self.key["key"], max_retries=0, timeout=30
        )

    @property
    def native(self) -> bool:
        return self.route == "native"

    def upstream_usage(self) -> tuple[int, int]:
        """(prompt, completion) tokens the fake reported for its last answer, whichever protocol it spoke."""
        body = self.fake.last_request.json
        if self.native:
            return prompt_tokens(body), output_tokens(answer_blocks(body, CONTENT)[0])
        call, text, reasoning = chat_answer(body, CONTENT)
        completion = count_words(call["function"]["arguments"] if call else text) + count_words(reasoning)
        return chat_prompt_tokens(body["messages"]), completion

    def check_billed(self, request_id: str, prompt: int, completion: int, cached: int = 0) -> dict:
        row = self.gateway.wait_for_log(request_id)
        cost = (prompt - cached) * INPUT_PER_MTOK + cached * 100 + completion * OUTPUT_PER_MTOK
        assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (
            prompt,
            completion,
            cached,
        )
        assert row["cost_micro_usd"] == cost and row["usage_source"] == "upstream"
        assert row["protocol"] == "anthropic" and row["status"] == 200
        assert row["channel_type"] == ("anthropic" if self.native else "openai")
        self.spent_micro_usd += cost
        assert self.gateway.balance(self.user) == self.funds_usd * 1_000_000 - self.spent_micro_usd
        return row


def make_channel(gateway: Gateway, fake: FakeUpstream, route: str, models: list[str], **fields: Any) -> dict:
    if route == "native":
        return gateway.channel(fake, models, type="anthropic", base_url=fake.root_url, **fields)
    return gateway.channel(fake, models, type="openai", base_url=fake.base_url, **fields)


@pytest.fixture(params=ROUTES)
def setup(request: pytest.FixtureRequest, gateway: Gateway, fresh_upstream: FakeUpstream) -> Setup:
    model = "claude-" + secrets.token_hex(4)
    make_channel(gateway, fresh_upstream, request.param, [model])
    gateway.price(
        model,
        input_per_mtok_usd=INPUT_PER_MTOK,
        output_per_mtok_usd=OUTPUT_PER_MTOK,
        cached_input_per_mtok_usd=100,
    )
    user = gateway.user(10)
    return Setup(gateway, fresh_upstream, request.param, model, user, gateway.key(user))


def text_of(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


# -- messages.create and messages.stream -------------------------------------------------------------
def test_create_is_relayed_and_billed_as_reported(setup: Setup) -> None:
    setup.fake.behave(cached_tokens=2)
    raw = setup.client.messages.with_raw_response.create(
        model=setup.model,
        max_tokens=200,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hello to the gateway"}],
        extra_body={"temperature": 0.5},  # the SDK's own signature has no sampling fields any more
    )
    message = raw.parse()
    assert text_of(message) == CONTENT and message.stop_reason == "end_turn" and message.model == setup.model
    prompt, completion = setup.upstream_usage()
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens == prompt
    assert message.usage.cache_read_input_tokens == 2 and message.usage.output_tokens == completion
    sent = setup.fake.last_request
    if setup.native:
        assert sent.path == "/v1/messages" and sent.headers["anthropic-version"]  # the SDK's own version
        assert (
            sent.headers["x-api-key"].startswith("sk-upstream-") and sent.json["system"] == "You are terse."
        )
    else:
        assert sent.path == "/v1/chat/completions" and sent.headers["authorization"].startswith(
            "Bearer sk-upstream-"
        )
        assert sent.json["messages"][0] == {"role": "system", "content": "You are terse."}
        assert sent.json["max_tokens"] == 200 and sent.json["temperature"] == 0.5
    setup.check_billed(raw.headers["x-request-id"], prompt, completion, cached=2)


def test_stream_final_message_and_billing(setup: Setup) -> None:
    setup.fake.behave(chunks=4)
    with setup.client.messages.stream(
        model=setup.model, max_tokens=100, messages=[{"role": "user", "content": "Stream it please"}]
    ) as stream:
        texts = list(stream.text_stream)
        message = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert "".join(texts) == CONTENT == text_of(message) and len(texts) == 4
    prompt, completion = setup.upstream_usage()
    assert message.usage.output_tokens == completion and message.stop_reason == "end_turn"
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == prompt
    setup.check_billed(request_id, prompt, completion)


def test_raw_stream_is_a_valid_event_sequence(setup: Setup) -> None:
    body = {
        "model": setup.model,
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    reply = http("POST", setup.gateway.url + "/v1/messages", body, {"x-api-key": setup.key["key"]})
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    message = check_sequence(parse_sse(reply.raw))
    assert message["content"] == [{"type": "text", "text": CONTENT, "citations": None}]


# -- tools ---------------------------------------------------------------------------------------------
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_tool_use_round_trip(setup: Setup) -> None:
    question = {"role": "user", "content": "What is the weather in Oslo? Please use a tool."}
    raw = setup.client.messages.with_raw_response.create(
        model=setup.model, max_tokens=100, tools=[WEATHER], messages=[question]
    )
    first = raw.parse()
    assert first.stop_reason == "tool_use"
    setup.check_billed(raw.headers["x-request-id"], *setup.upstream_usage())
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "fake city"}
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}
    with setup.client.messages.stream(
        model=setup.model,
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [result]},
        ],
    ) as stream:
        second = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert text_of(second) == f"{CONTENT} The tool returned: Sunny, 21 C"
    setup.check_billed(request_id, *setup.upstream_usage())


def test_tool_history_is_converted_for_an_openai_channel(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    setup = converted_setup(gateway, fresh_upstream)
    messages = [
        {"role": "user", "content": "What is the weather in Oslo? Please use a tool."},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "Sunny, 21 C"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    message = setup.client.messages.create(
        model=setup.model, max_tokens=100, tools=[WEATHER], tool_choice={"type": "auto"}, messages=messages
    )
    assert text_of(message) == CONTENT
    sent = setup.fake.last_request.json
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "user"]
    assert sent["messages"][1]["tool_calls"] == [
        {
            "id": "toolu_01",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
        }
    ]
    assert sent["messages"][2] == {
        "role": "tool",
        "tool_call_id": "toolu_01",
        "content": "Sunny, 21 C",
        "name": "get_weather",
    }
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    assert sent["tool_choice"] == "auto"


def test_a_long_tool_name_survives_an_openai_channel(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    setup = converted_setup(gateway, fresh_upstream)
    long = "mcp__" + "a_very_long_server_name_" * 3 + "__get_weather"
    tool = {**WEATHER, "name": long}
    question = {"role": "user", "content": "Weather in Oslo? Please use a tool."}
    first = setup.client.messages.create(model=setup.model, max_tokens=100, tools=[tool], messages=[question])
    call = first.content[-1]
    assert call.type == "tool_use" and call.name == long
    sent = fresh_upstream.last_request.json["tools"][0]["function"]["name"]
    assert len(sent) <= 64 < len(long)
    result = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}],
    }
    messages = [question, {"role": "assistant", "content": first.content}, result]
    second = setup.client.messages.create(model=setup.model, max_tokens=100, tools=[tool], messages=messages)
    assert text_of(second) == f"{CONTENT} The tool returned: Sunny"
    assert fresh_upstream.last_request.json["messages"][1]["tool_calls"][0]["function"]["name"] == sent


# -- images and thinking -------------------------------------------------------------------------------
def test_image_input(setup: Setup) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    content = [image, {"type": "text", "text": "What is in this picture?"}]
    message = setup.client.messages.create(
        model=setup.model, max_tokens=100, messages=[{"role": "user", "content": content}]
    )
    assert text_of(message) == CONTENT
    sent = setup.fake.last_request.json["messages"][0]["content"]
    if setup.native:
        assert sent == content
    else:
        assert sent[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}


def test_thinking_shown_and_echoed(setup: Setup) -> None:
    if not setup.native:  # only OpenAI's reasoning models take `reasoning_effort`: serve the model by one
        channel = next(c for c in setup.gateway.ok("GET", "/channels")["data"] if setup.model in c["models"])
        setup.gateway.ok("PATCH", f"/channels/{channel['id']}", {"model_mapping": {setup.model: "o4-mini"}})
    request = {
        "model": setup.model,
        "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Think first."}],
    }
    with setup.client.messages.stream(**request) as stream:
        message = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert [b.type for b in message.content] == ["thinking", "text"] and text_of(message) == CONTENT
    thinking = message.content[0]
    assert thinking.thinking == THINKING_TEXT
    if setup.native:
        assert thinking.signature.startswith(SIGNATURE_PREFIX)
    else:  # an OpenAI channel was asked for reasoning, and its reasoning text carries no signature
        assert setup.fake.last_request.json["reasoning_effort"] == "low" and thinking.signature == ""
    setup.check_billed(request_id, *setup.upstream_usage())
    follow_up = [
        *request["messages"],
        {"role": "assistant", "content": message.content},
        {"role": "user", "content": "And again."},
    ]
    again = setup.client.messages.create(**{**request, "messages": follow_up})  # the fake checks signatures
    assert text_of(again) == CONTENT
    if not setup.native:  # an unsigned thinking block is not sent on
        assert setup.fake.last_request.json["messages"][1] == {"role": "assistant", "content": CONTENT}


# -- count_tokens ----------------------------------------------------------------------------------------
def test_count_tokens_is_free(setup: Setup) -> None:
    messages = [{"role": "user", "content": "How many tokens are these seven words?"}]
    counted = setup.client.messages.count_tokens(model=setup.model, messages=messages, system="Be brief.")
    if setup.native:
        assert setup.fake.last_request.path == "/v1/messages/count_tokens"
        assert counted.input_tokens == prompt_tokens({"system": "Be brief.", "messages": messages})
    else:
        assert setup.fake.requests == [] and 10 < counted.input_tokens < 40  # counted by the gateway
    assert setup.gateway.balance(setup.user) == 10_000_000


# -- errors ----------------------------------------------------------------------------------------------
def test_bad_key_and_unknown_model_raise_typed_errors(setup: Setup) -> None:
    stranger = anthropic.Anthropic(base_url=setup.gateway.url, api_key="sk-not-a-key", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.AuthenticationError) as caught:
        stranger.messages.create(model=setup.model, max_tokens=10, messages=messages)
    assert caught.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as missing:
        setup.client.messages.create(
            model="claude-none-" + secrets.token_hex(3), max_tokens=10, messages=messages
        )
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError):
        setup.client.messages.create(model=setup.model, max_tokens=0, messages=messages)


def test_upstream_rate_limit_is_a_rate_limit_error(setup: Setup) -> None:
    setup.fake.behave(status=429, retry_after="2")
    with pytest.raises(anthropic.RateLimitError) as caught:
        setup.client.messages.create(
            model=setup.model, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.response.headers["retry-after"] in ("1", "2")
    assert caught.value.body["error"]["type"] == "rate_limit_error"


def test_every_channel_failing_is_a_server_error(setup: Setup) -> None:
    setup.fake.behave(status=529 if setup.native else 503)
    with pytest.raises(anthropic.InternalServerError) as caught:
        setup.client.messages.create(
            model=setup.model, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 502 and caught.value.body["error"]["type"] == "api_error"
    with pytest.raises(anthropic.InternalServerError):
        with setup.client.messages.stream(
            model=setup.model, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            stream.get_final_message()


def test_empty_wallet_is_a_402(setup: Setup) -> None:
    broke = setup.gateway.user(0)
    client = anthropic.Anthropic(
        base_url=setup.gateway.url, api_key=setup.gateway.key(broke)["key"], max_retries=0
    )
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model=setup.model, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 402 and caught.value.body["error"]["type"] == "billing_error"
    assert setup.fake.requests == []


def test_upstream_error_mid_stream_ends_with_an_error_event(setup: Setup) -> None:
    setup.fake.behave(error_event={"error": {"type": "overloaded_error", "message": "Overloaded"}})
    with pytest.raises(anthropic.APIStatusError) as caught:
        with setup.client.messages.stream(
            model=setup.model, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            stream.get_final_message()
    assert "Overloaded" in str(caught.value)


def test_a_cut_stream_ends_with_an_error_event_and_bills_what_was_delivered(setup: Setup) -> None:
    setup.fake.behave(cut_after_chunks=2, chunks=5)
    body = {
        "model": setup.model,
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    reply = http("POST", setup.gateway.url + "/v1/messages", body, {"x-api-key": setup.key["key"]})
    events = parse_sse(reply.raw)
    assert events[0][0] == "message_start" and events[-1][0] == "error"
    deltas = [data["delta"].get("text", "") for name, data in events if name == "content_block_delta"]
    assert "".join(deltas) == "".join(split_content(CONTENT, 5)[:2])
    row = setup.gateway.wait_for_log(reply.headers["x-request-id"])
    assert row["status"] == 502 and row["usage_source"] == "estimated" and row["completion_tokens"] >= 1
    if setup.native:  # message_start's input count is exact; only the output is counted here
        assert row["prompt_tokens"] == prompt_tokens(setup.fake.last_request.json)
    cost = row["prompt_tokens"] * INPUT_PER_MTOK + row["completion_tokens"] * OUTPUT_PER_MTOK
    assert row["cost_micro_usd"] == cost and setup.gateway.balance(setup.user) == 10_000_000 - cost


# -- failover and replays --------------------------------------------------------------------------------
def native_setup(gateway: Gateway, fake: FakeUpstream) -> Setup:
    return _setup(gateway, fake, "native")


def converted_setup(gateway: Gateway, fake: FakeUpstream) -> Setup:
    return _setup(gateway, fake, "converted")


def _setup(gateway: Gateway, fake: FakeUpstream, route: str, funds_usd: int = 10) -> Setup:
    model = "claude-" + secrets.token_hex(4)
    make_channel(gateway, fake, route, [model])
    gateway.price(model, input_per_mtok_usd=INPUT_PER_MTOK, output_per_mtok_usd=OUTPUT_PER_MTOK)
    user = gateway.user(funds_usd)
    return Setup(gateway, fake, route, model, user, gateway.key(user), funds_usd)


def test_failover_from_an_overloaded_anthropic_channel_to_an_openai_one(gateway: Gateway) -> None:
    with FakeUpstream("ant") as ant, FakeUpstream("oai") as oai:
        setup = _setup(gateway, oai, "converted")
        make_channel(gateway, ant, "native", [setup.model], priority=10)
        ant.behave(status=529)
        with setup.client.messages.stream(
            model=setup.model, max_tokens=50, messages=[{"role": "user", "content": "Anyone there?"}]
        ) as stream:
            message = stream.get_final_message()
            request_id = stream.response.headers["x-request-id"]
        assert text_of(message) == CONTENT
        assert [r.path for r in ant.requests] == ["/v1/messages"] and len(oai.requests) == 1
        row = setup.check_billed(request_id, *setup.upstream_usage())
        assert row["attempts"] == 2


def claude_requests() -> list[tuple[str, dict[str, Any]]]:
    records = [json.loads(line) for line in CLAUDE_RECORDINGS.read_text().splitlines()]
    return [(f"{r['scenario']}-{r['seq']}", r) for r in records if r["method"] == "POST"]


REPLAYS = claude_requests()


@pytest.mark.parametrize(("name", "record"), REPLAYS, ids=[name for name, _ in REPLAYS])
@pytest.mark.parametrize("route", ROUTES)
def test_claude_code_requests_replayed(
    gateway: Gateway, fresh_upstream: FakeUpstream, route: str, name: str, record: dict
) -> None:
    setup = _setup(gateway, fresh_upstream, route, funds_usd=1000)  # max_tokens 64,000 is held at 3000 USD/M
    body = {**record["body"], "model": setup.model}
    kept = (
        "anthropic-version",
        "anthropic-beta",
        "anthropic-dangerous-direct-browser-access",
        "x-app",
        "user-agent",
    )
    headers = {k: v for k, v in record["headers"].items() if k in kept}
    headers["x-api-key"] = setup.key["key"]
    query = "?beta=true" if record.get("query", {}).get("beta") == ["true"] else ""
    reply = http("POST", f"{setup.gateway.url}/v1/messages{query}", body, headers)
    assert reply.status == 200, reply.raw[:500]
    message = check_sequence(parse_sse(reply.raw))
    sent = fresh_upstream.last_request
    if route == "native":
        assert sent.json == body and sent.query == "beta=true"
        assert sent.headers["anthropic-beta"] == record["headers"]["anthropic-beta"]
        expected = record["answer"]
        if "tool_call" in expected:
            assert message["content"][-1]["type"] == "tool_use"
        else:
            assert message["content"][-1]["text"].startswith(CONTENT)
    else:
        call, text, reasoning = chat_answer(sent.json, CONTENT)
        kinds = ["thinking"] * bool(reasoning) + (["tool_use"] if call else ["text"])
        assert [b["type"] for b in message["content"]] == kinds
        assert call or message["content"][-1]["text"] == text
        assert sent.json["model"] == setup.model and len(sent.json["tools"]) == 24
        assert sent.json["messages"][0]["role"] == "system"
    setup.check_billed(reply.headers["x-request-id"], *setup.upstream_usage())


# -- the OpenAI SDK against an Anthropic channel ----------------------------------------------------------
def openai_client(setup: Setup) -> openai.OpenAI:
    return setup.gateway.client(setup.key)


def test_openai_chat_on_an_anthropic_channel(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    setup = native_setup(gateway, fresh_upstream)
    fresh_upstream.behave(cached_tokens=3)
    raw = openai_client(setup).chat.completions.with_raw_response.create(
        model=setup.model,
        messages=[
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Hello there friend"},
        ],
        temperature=1.5,
        stop="END",
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == CONTENT and completion.choices[0].finish_reason == "stop"
    sent = fresh_upstream.last_request.json
    assert sent["system"] == "Be kind." and sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello there friend"}]}
    ]
    assert sent["max_tokens"] == 4096 and sent["temperature"] == 1.0 and sent["stop_sequences"] == ["END"]
    prompt = prompt_tokens(sent)
    assert (
        completion.usage.prompt_tokens == prompt and completion.usage.prompt_tokens_details.cached_tokens == 3
    )
    row = gateway.wait_for_log(raw.headers["x-request-id"])
    assert (row["protocol"], row["channel_type"], row["cached_tokens"]) == ("openai", "anthropic", 3)
    assert row["cost_micro_usd"] == prompt * INPUT_PER_MTOK + count_words(CONTENT) * OUTPUT_PER_MTOK


def test_openai_tool_round_trip_on_an_anthropic_channel_streamed(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    setup = native_setup(gateway, fresh_upstream)
    client = openai_client(setup)
    tool = {"type": "function", "function": {"name": WEATHER["name"], "parameters": WEATHER["input_schema"]}}
    question = {"role": "user", "content": "Weather in Oslo? use a tool"}
    stream = client.chat.completions.create(
        model=setup.model,
        messages=[question],
        tools=[tool],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id.startswith("toolu_fake_") and calls[0].function.name == "get_weather"
    arguments = "".join(tc.function.arguments or "" for tc in calls)
    assert json.loads(arguments) == {"city": "fake city"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens == count_words(json.dumps({"city": "fake city"}))
    function = {"name": "get_weather", "arguments": arguments}
    follow_up = [
        question,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": calls[0].id, "type": "function", "function": function}],
        },
        {"role": "tool", "tool_call_id": calls[0].id, "content": "Rainy"},
    ]
    answer = client.chat.completions.create(model=setup.model, messages=follow_up, tools=[tool])
    assert answer.choices[0].message.content == f"{CONTENT} The tool returned: Rainy"
    sent = fresh_upstream.last_request.json["messages"]
    assert sent[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "Rainy"}],
    }


def test_openai_reasoning_on_an_anthropic_channel(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    setup = native_setup(gateway, fresh_upstream)
    completion = openai_client(setup).chat.completions.create(
        model=setup.model,
        messages=[{"role": "user", "content": "Think"}],
        reasoning_effort="medium",
        max_tokens=500,
    )
    sent = fresh_upstream.last_request.json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096} and sent["max_tokens"] == 4596
    message = completion.choices[0].message
    assert message.content == CONTENT and message.model_extra["reasoning_content"] == THINKING_TEXT
