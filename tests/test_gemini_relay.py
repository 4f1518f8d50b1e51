"""Gemini's API through the real gateway with the official `google-genai` SDK: each case served once by a
Gemini channel (native pass-through) and once by an OpenAI channel (converted through the hub), with the
cost logged and debited exactly as the upstream's usage and the price say. Also function calls with their
thought signatures (natively, and through an Anthropic channel with thinking), typed errors, the JSON-array
stream, the OpenAI SDK against a Gemini channel, and Gemini CLI's recorded requests replayed."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from gateway import tokens
from tests.conftest import Gateway, http
from tests.fake_gemini import THOUGHT, fake_args, prompt_tokens, signature_for
from tests.fake_upstream import FakeUpstream, chat_prompt_tokens, count_words

CONTENT = "Hello from the fake upstream."
GEMINI_CLI = Path("/work/shared/clients/gemini.jsonl")
INPUT_PER_MTOK, OUTPUT_PER_MTOK, CACHED_PER_MTOK = 1000, 3000, 100  # USD: a token costs that many micro-USD
ROUTES = ["native", "converted"]
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="The weather in a city.",
    parameters_json_schema={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
NO_AUTO_CALLS = types.AutomaticFunctionCallingConfig(disable=True)


def genai_client(gateway: Gateway, key: str, api_version: str = "v1beta") -> genai.Client:
    options = types.HttpOptions(base_url=gateway.url, api_version=api_version, timeout=30_000)
    return genai.Client(api_key=key, http_options=options)


def make_channel(gateway: Gateway, fake: FakeUpstream, route: str, models: list[str], **fields: Any) -> dict:
    if route == "native":
        return gateway.channel(fake, models, type="gemini", base_url=fake.root_url, **fields)
    return gateway.channel(fake, models, type="openai", base_url=fake.base_url, **fields)


def priced(gateway: Gateway, model: str) -> None:
    gateway.price(
        model,
        input_per_mtok_usd=INPUT_PER_MTOK,
        output_per_mtok_usd=OUTPUT_PER_MTOK,
        cached_input_per_mtok_usd=CACHED_PER_MTOK,
    )


def cost_of(prompt: int, completion: int, cached: int = 0) -> int:
    return (prompt - cached) * INPUT_PER_MTOK + cached * CACHED_PER_MTOK + completion * OUTPUT_PER_MTOK


@dataclass
class Setup:
    gateway: Gateway
    fake: FakeUpstream
    route: str
    model: str
    user: dict
    key: dict
    clients: dict[str, genai.Client] = field(
        default_factory=dict
    )  # a client closes its connections when dropped

    @property
    def native(self) -> bool:
        return self.route == "native"

    def client(self, api_version: str = "v1beta") -> genai.Client:
        if api_version not in self.clients:
            self.clients[api_version] = genai_client(self.gateway, self.key["key"], api_version)
        return self.clients[api_version]

    def upstream_usage(self, reported: Any, thoughts: bool = False) -> tuple[int, int]:
        """(prompt, completion) tokens of the last answer as the client saw them in `reported` (its
        usageMetadata), checked against what the fake counted, whichever protocol it spoke."""
        prompt = reported.prompt_token_count
        completion = reported.candidates_token_count + (reported.thoughts_token_count or 0)
        request = self.fake.last_request
        if self.native:
            expected = count_words(CONTENT) + (count_words(THOUGHT) if thoughts else 0)
            assert (prompt, completion) == (prompt_tokens(request.json), expected)
        else:
            assert prompt == chat_prompt_tokens(request.json["messages"])
            assert reported.candidates_token_count == count_words(CONTENT)
        return prompt, completion

    def check_billed(self, row: dict, prompt: int, completion: int, cached: int = 0) -> None:
        assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (
            prompt,
            completion,
            cached,
        )
        assert (
            row["cost_micro_usd"] == cost_of(prompt, completion, cached) and row["usage_source"] == "upstream"
        )
        assert row["protocol"] == "gemini" and row["status"] == 200
        assert row["channel_type"] == ("gemini" if self.native else "openai")
        assert self.gateway.balance(self.user) == 10_000_000 - row["cost_micro_usd"]


@pytest.fixture(params=ROUTES)
def setup(request: pytest.FixtureRequest, gateway: Gateway, fresh_upstream: FakeUpstream) -> Setup:
    model = "gemini-2.5-flash-" + secrets.token_hex(4)
    make_channel(gateway, fresh_upstream, request.param, [model])
    priced(gateway, model)
    user = gateway.user(10)
    return Setup(gateway, fresh_upstream, request.param, model, user, gateway.key(user))


def row_of(gateway: Gateway, response: Any) -> dict:
    return gateway.wait_for_log(response.sdk_http_response.headers["x-request-id"])


# -- generate_content and generate_content_stream ----------------------------------------------------------
@pytest.mark.parametrize("api_version", ["v1beta", "v1"])
def test_generate_content_is_relayed_and_billed_as_reported(setup: Setup, api_version: str) -> None:
    setup.fake.behave(cached_tokens=2)
    config = types.GenerateContentConfig(
        system_instruction="You are terse.", temperature=0.5, max_output_tokens=200
    )
    response = setup.client(api_version).models.generate_content(
        model=setup.model, contents="Say hello to the gateway", config=config
    )
    assert response.text == CONTENT and response.candidates[0].finish_reason == types.FinishReason.STOP
    prompt, completion = setup.upstream_usage(response.usage_metadata)
    assert response.usage_metadata.cached_content_token_count == 2
    sent = setup.fake.last_request
    if setup.native:
        assert sent.path == f"/v1beta/models/{setup.model}:generateContent" and sent.query == ""
        assert (
            sent.headers["x-goog-api-key"].startswith("sk-upstream-") and "authorization" not in sent.headers
        )
        assert sent.json["systemInstruction"] == {"parts": [{"text": "You are terse."}], "role": "user"}
        assert sent.json["generationConfig"] == {"temperature": 0.5, "maxOutputTokens": 200}
    else:
        assert sent.path == "/v1/chat/completions" and sent.json["model"] == setup.model
        assert sent.json["messages"] == [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to the gateway"},
        ]
        assert sent.json["max_tokens"] == 200 and sent.json["temperature"] == 0.5
    setup.check_billed(row_of(setup.gateway, response), prompt, completion, cached=2)


def test_stream_is_relayed_chunk_by_chunk_and_billed(setup: Setup) -> None:
    setup.fake.behave(chunks=4)
    chunks = list(setup.client().models.generate_content_stream(model=setup.model, contents="Say hello"))
    assert "".join(c.text or "" for c in chunks) == CONTENT and len(chunks) >= 4
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    prompt, completion = setup.upstream_usage(chunks[-1].usage_metadata)
    if setup.native:
        assert setup.fake.last_request.query == "alt=sse"
    else:
        assert setup.fake.last_request.json["stream"] is True
    setup.check_billed(row_of(setup.gateway, chunks[0]), prompt, completion)


def test_stream_without_alt_sse_is_one_json_array(setup: Setup) -> None:
    setup.fake.behave(chunks=3)
    url = f"{setup.gateway.url}/v1beta/models/{setup.model}:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}
    reply = http("POST", url, body, {"x-goog-api-key": setup.key["key"]})
    assert reply.status == 200 and reply.headers["content-type"].startswith("application/json")
    assert isinstance(reply.body, list) and len(reply.body) >= 3 and b",\r\n{" in reply.raw
    text = "".join(p.get("text", "") for c in reply.body for p in c["candidates"][0]["content"]["parts"])
    assert text == CONTENT and reply.body[-1]["candidates"][0]["finishReason"] == "STOP"
    if setup.native:  # asked of the upstream as SSE all the same
        assert setup.fake.last_request.query == "alt=sse"
    usage = types.GenerateContentResponseUsageMetadata._from_response(
        response=reply.body[-1]["usageMetadata"], kwargs={}
    )
    prompt, completion = setup.upstream_usage(usage)
    setup.check_billed(setup.gateway.wait_for_log(reply.headers["x-request-id"]), prompt, completion)


def test_thoughts_are_shown_when_asked_and_billed_as_output(setup: Setup) -> None:
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=512)
    )
    response = setup.client().models.generate_content(
        model=setup.model, contents="Think, then say hello", config=config
    )
    assert response.text == CONTENT
    prompt, completion = setup.upstream_usage(response.usage_metadata, thoughts=setup.native)
    thoughts = "".join(p.text for p in response.candidates[0].content.parts if p.thought)
    assert (response.usage_metadata.thoughts_token_count or 0) == count_words(thoughts)
    if setup.native:
        assert thoughts == THOUGHT
    else:  # the hub's own fields never reach an OpenAI upstream
        sent = setup.fake.last_request.json
        assert (
            "thinking_budget" not in sent and "include_reasoning" not in sent and "thinkingConfig" not in sent
        )
    setup.check_billed(row_of(setup.gateway, response), prompt, completion)


@pytest.mark.parametrize("stream", [False, True])
def test_answers_without_usage_are_estimated_and_billed(setup: Setup, stream: bool) -> None:
    setup.fake.behave(no_usage=True)
    client = setup.client()
    if stream:
        chunks = list(client.models.generate_content_stream(model=setup.model, contents="Say hello"))
        text, first = "".join(c.text or "" for c in chunks), chunks[0]
    else:
        first = client.models.generate_content(model=setup.model, contents="Say hello")
        text = first.text
    assert text == CONTENT
    row = row_of(setup.gateway, first)
    assert row["usage_source"] == "estimated" and row["prompt_tokens"] > 0
    assert row["completion_tokens"] == tokens.count(setup.model, CONTENT)
    assert row["cost_micro_usd"] == cost_of(row["prompt_tokens"], row["completion_tokens"])
    assert setup.gateway.balance(setup.user) == 10_000_000 - row["cost_micro_usd"]


# -- function calls ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gemini-2.5-flash-", "gemini-3-flash-"])
def test_function_call_round_trip_with_its_thought_signature(
    gateway: Gateway, fresh_upstream: FakeUpstream, family: str
) -> None:
    model = family + secrets.token_hex(4)
    make_channel(gateway, fresh_upstream, "native", [model])
    priced(gateway, model)
    user = gateway.user(10)
    client = genai_client(gateway, gateway.key(user)["key"])
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])], automatic_function_calling=NO_AUTO_CALLS
    )
    history: list[Any] = [types.Content(role="user", parts=[types.Part(text="Use get_weather for Oslo")])]
    first = client.models.generate_content(model=model, contents=history, config=config)
    (call,) = first.function_calls
    assert call.name == "get_weather" and call.args == fake_args(WEATHER.parameters_json_schema)
    part = first.candidates[0].content.parts[0]
    assert part.thought_signature == b"fake-signature:get_weather"  # the SDK holds it as bytes
    history += [
        first.candidates[0].content,
        types.Content(
            role="user", parts=[types.Part.from_function_response(name="get_weather", response={"temp_c": 7})]
        ),
    ]
    second = client.models.generate_content(model=model, contents=history, config=config)
    assert second.text == CONTENT + ' The tool returned: {"temp_c": 7}'
    echoed = fresh_upstream.last_request.json["contents"][1]["parts"][0]
    assert echoed["thoughtSignature"] == signature_for("get_weather")  # as Google checks it (fake_gemini)
    rows = gateway.logs_of(user, 2)
    assert all(r["status"] == 200 and r["channel_type"] == "gemini" for r in rows)


def test_function_call_history_is_converted_for_an_openai_channel(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    model = "gemini-2.5-flash-" + secrets.token_hex(4)
    make_channel(gateway, fresh_upstream, "converted", [model])
    priced(gateway, model)
    client = genai_client(gateway, gateway.key(gateway.user(10))["key"])
    history = [
        types.Content(role="user", parts=[types.Part(text="Weather in Oslo and Rome?")]),
        types.Content(
            role="model",
            parts=[
                types.Part(
                    function_call=types.FunctionCall(name="get_weather", args={"city": "Oslo"}),
                    thought_signature=b"sig",
                ),
                types.Part(function_call=types.FunctionCall(name="get_weather", args={"city": "Rome"})),
            ],
        ),
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(name="get_weather", response={"temp_c": 7}),
                types.Part.from_function_response(name="get_weather", response={"temp_c": 20}),
            ],
        ),
    ]
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY")),
        automatic_function_calling=NO_AUTO_CALLS,
    )
    response = client.models.generate_content(model=model, contents=history, config=config)
    assert response.text.startswith(CONTENT)
    sent = fresh_upstream.last_request.json
    assistant, oslo, rome = sent["messages"][1:]
    ids = [c["id"] for c in assistant["tool_calls"]]
    assert len(set(ids)) == 2 and [oslo["tool_call_id"], rome["tool_call_id"]] == ids
    assert json.loads(assistant["tool_calls"][1]["function"]["arguments"]) == {"city": "Rome"}
    assert json.loads(rome["content"]) == {"temp_c": 20} and "signature" not in json.dumps(assistant)
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["tool_choice"] == "required"


def test_tool_turn_with_thinking_through_an_anthropic_channel(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    """Claude signs its thinking, and wants it back with the tool result: the Gemini client carries it (text
    and signature together, as one thought signature) without knowing."""
    model = "claude-sonnet-" + secrets.token_hex(4)
    gateway.channel(fresh_upstream, [model], type="anthropic", base_url=fresh_upstream.root_url)
    priced(gateway, model)
    client = genai_client(gateway, gateway.key(gateway.user(100))["key"])
    config = types.GenerateContentConfig(
        max_output_tokens=4096,
        thinking_config=types.ThinkingConfig(thinking_budget=2048),
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=NO_AUTO_CALLS,
    )
    history: list[Any] = [types.Content(role="user", parts=[types.Part(text="Please use a tool for Oslo")])]
    first = client.models.generate_content(model=model, contents=history, config=config)
    (call,) = first.function_calls
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    assert not any(p.thought for p in first.candidates[0].content.parts)  # thoughts were not asked for
    history += [
        first.candidates[0].content,
        types.Content(
            role="user", parts=[types.Part.from_function_response(name="get_weather", response={"temp_c": 7})]
        ),
    ]
    second = client.models.generate_content(model=model, contents=history, config=config)
    assert second.text.startswith(CONTENT + " The tool returned:") and "temp_c" in second.text
    assistant = fresh_upstream.last_request.json["messages"][1]
    assert [b["type"] for b in assistant["content"]] == ["thinking", "tool_use"]


# -- embeddings and token counts -------------------------------------------------------------------------
def test_embed_content(setup: Setup) -> None:
    config = types.EmbedContentConfig(output_dimensionality=4)
    contents = [types.Content(parts=[types.Part(text=t)]) for t in ("first text", "second one here")]
    result = setup.client().models.embed_content(model=setup.model, contents=contents, config=config)
    assert [len(e.values) for e in result.embeddings] == [4, 4]
    assert result.embeddings[0].values != result.embeddings[1].values
    sent = setup.fake.last_request
    if setup.native:
        assert sent.path.endswith(f"/models/{setup.model}:batchEmbedContents")
        row = setup.gateway.wait_for_log(result.sdk_http_response.headers["x-request-id"])
        assert row["usage_source"] == "estimated" and row["prompt_tokens"] > 0  # Google reports none
    else:
        assert sent.path == "/v1/embeddings" and sent.json["input"] == ["first text", "second one here"]
        assert sent.json["dimensions"] == 4
        row = setup.gateway.wait_for_log(result.sdk_http_response.headers["x-request-id"])
        assert row["usage_source"] == "upstream" and row["prompt_tokens"] == 5
    assert row["cost_micro_usd"] == row["prompt_tokens"] * INPUT_PER_MTOK
    assert setup.gateway.balance(setup.user) == 10_000_000 - row["cost_micro_usd"]


def test_embed_content_single(setup: Setup) -> None:
    url = f"{setup.gateway.url}/v1beta/models/{setup.model}:embedContent"
    reply = http(
        "POST", url, {"content": {"parts": [{"text": "one text"}]}}, {"x-goog-api-key": setup.key["key"]}
    )
    assert reply.status == 200 and len(reply.body["embedding"]["values"]) == 8


def test_count_tokens_is_free(setup: Setup) -> None:
    contents = "How many tokens are these seven words?"
    counted = setup.client().models.count_tokens(model=setup.model, contents=contents)
    if setup.native:
        assert setup.fake.last_request.path.endswith(":countTokens")
        assert counted.total_tokens == prompt_tokens({"contents": [{"parts": [{"text": contents}]}]})
    else:
        assert setup.fake.requests == [] and 5 < counted.total_tokens < 15  # counted by the gateway
    assert setup.gateway.balance(setup.user) == 10_000_000


# -- errors ------------------------------------------------------------------------------------------------
def test_gateway_errors_are_typed_for_google_genai(setup: Setup) -> None:
    stranger = genai_client(setup.gateway, "sk-not-a-key")
    with pytest.raises(errors.ClientError) as caught:
        stranger.models.generate_content(model=setup.model, contents="hi")
    assert (caught.value.code, caught.value.status) == (401, "UNAUTHENTICATED")
    with pytest.raises(errors.ClientError) as caught:
        setup.client().models.generate_content(model="gemini-no-such-model", contents="hi")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")
    broke = genai_client(setup.gateway, setup.gateway.key(setup.gateway.user(0))["key"])
    with pytest.raises(errors.ClientError) as caught:
        broke.models.generate_content(model=setup.model, contents="hi")
    assert (caught.value.code, caught.value.status) == (402, "FAILED_PRECONDITION")
    url = f"{setup.gateway.url}/v1beta/models/{setup.model}:generateContent"
    reply = http("POST", url, {"contents": []}, {"x-goog-api-key": setup.key["key"]})
    assert reply.status == 400 and reply.body["error"]["status"] == "INVALID_ARGUMENT"
    assert setup.fake.requests == []


def test_upstream_rate_limit_is_resource_exhausted(setup: Setup) -> None:
    setup.fake.behave(status=429)
    with pytest.raises(errors.ClientError) as caught:
        setup.client().models.generate_content(model=setup.model, contents="hi")
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert caught.value.response.headers["retry-after"] == "1"
    assert setup.gateway.balance(setup.user) == 10_000_000


def test_every_channel_failing_is_a_server_error(setup: Setup) -> None:
    setup.fake.behave(status=500)
    with pytest.raises(errors.ServerError) as caught:
        setup.client().models.generate_content(model=setup.model, contents="hi")
    assert (caught.value.code, caught.value.status) == (502, "UNAVAILABLE")


def test_upstream_error_mid_stream_reaches_the_client(setup: Setup) -> None:
    if setup.native:
        setup.fake.behave(
            error_event={
                "error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}
            }
        )
    else:
        setup.fake.behave(
            error_event={"error": {"message": "The model is overloaded.", "type": "server_error"}}
        )
    seen: list[str] = []
    with pytest.raises(errors.ServerError) as caught:
        for chunk in setup.client().models.generate_content_stream(model=setup.model, contents="hi"):
            seen.append(chunk.text or "")
    assert "".join(seen) == CONTENT and "overloaded" in caught.value.message
    url = f"{setup.gateway.url}/v1beta/models/{setup.model}:streamGenerateContent"
    reply = http(
        "POST", url, {"contents": [{"parts": [{"text": "hi"}]}]}, {"x-goog-api-key": setup.key["key"]}
    )
    assert isinstance(reply.body, list) and "overloaded" in reply.body[-1]["error"]["message"]


def test_a_key_google_calls_invalid_is_set_aside(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    model = "gemini-2.5-flash-" + secrets.token_hex(4)
    channel = make_channel(
        gateway, fresh_upstream, "native", [model], keys=["AIza-bad-key-1234", "AIza-good-key-5678"]
    )
    priced(gateway, model)
    fresh_upstream.behave(require_key="AIza-good-key-5678")
    client = genai_client(gateway, gateway.key(gateway.user(10))["key"])
    for _ in range(2):  # keys take turns: the bad one is tried once, refused, and the good one serves
        assert client.models.generate_content(model=model, contents="hi").text == CONTENT
    sent = [r.headers["x-goog-api-key"] for r in fresh_upstream.requests]
    assert sent.count("AIza-bad-key-1234") == 1 and sent.count("AIza-good-key-5678") == 2
    deadline = time.time() + 5
    while time.time() < deadline:
        keys = {k["hint"][-4:]: k["status"] for k in gateway.ok("GET", f"/channels/{channel['id']}")["keys"]}
        if keys == {"1234": "set_aside", "5678": "active"}:
            break
        time.sleep(0.1)
    assert keys == {"1234": "set_aside", "5678": "active"}


def test_failover_from_a_failing_gemini_channel_to_an_openai_one(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    model = "gemini-2.5-flash-" + secrets.token_hex(4)
    make_channel(gateway, fresh_upstream, "native", [model], priority=10)
    make_channel(gateway, upstream2, "converted", [model], priority=0)
    priced(gateway, model)
    fresh_upstream.behave(status=503)
    user = gateway.user(10)
    client = genai_client(gateway, gateway.key(user)["key"])
    response = client.models.generate_content(model=model, contents="hi")
    assert response.text == CONTENT
    row = row_of(gateway, response)
    assert row["attempts"] == 2 and row["channel_type"] == "openai" and row["status"] == 200


# -- the OpenAI SDK against a Gemini channel -------------------------------------------------------------
def test_openai_chat_on_a_gemini_channel(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    model = "gemini-2.5-flash-" + secrets.token_hex(4)
    make_channel(gateway, fresh_upstream, "native", [model])
    priced(gateway, model)
    user = gateway.user(10)
    client = gateway.client(gateway.key(user))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
    completion = client.chat.completions.create(model=model, messages=messages, max_tokens=50, stop=["END"])
    assert completion.choices[0].message.content == CONTENT and completion.choices[0].finish_reason == "stop"
    sent = fresh_upstream.last_request
    assert sent.path == f"/v1beta/models/{model}:generateContent"
    assert sent.json["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent.json["generationConfig"] == {"maxOutputTokens": 50, "stopSequences": ["END"]}
    prompt = prompt_tokens(sent.json)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        prompt,
        count_words(CONTENT),
    )
    row = gateway.logs_of(user, 1)[0]
    assert row["protocol"] == "openai" and row["channel_type"] == "gemini"
    assert row["cost_micro_usd"] == cost_of(prompt, count_words(CONTENT))
    chunks = list(
        client.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == CONTENT
    assert chunks[-1].usage.prompt_tokens == prompt


def test_openai_streamed_tool_calls_on_a_gemini_3_channel(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    model = "gemini-3-pro-" + secrets.token_hex(4)
    make_channel(gateway, fresh_upstream, "native", [model])
    priced(gateway, model)
    client = gateway.client(gateway.key(gateway.user(10)))
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": WEATHER.parameters_json_schema},
        }
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Use get_weather for Oslo"}]
    chunks = list(client.chat.completions.create(model=model, messages=messages, tools=tools, stream=True))
    fragments = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert chunks[-1].choices[0].finish_reason == "tool_calls" and fragments[0].function.name == "get_weather"
    arguments = "".join(f.function.arguments or "" for f in fragments)
    assert json.loads(arguments) == {"city": "city-value"}
    extra = next(getattr(f, "extra_content", None) for f in fragments if getattr(f, "extra_content", None))
    assert extra == {"google": {"thought_signature": signature_for("get_weather")}}
    function = {"name": "get_weather", "arguments": arguments}
    call = {"id": fragments[0].id, "type": "function", "function": function, "extra_content": extra}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": fragments[0].id, "content": '{"temp_c": 7}'},
    ]
    answer = client.chat.completions.create(model=model, messages=messages, tools=tools)
    assert answer.choices[0].message.content == CONTENT + ' The tool returned: {"temp_c": 7}'
    sent = fresh_upstream.last_request.json["contents"]
    assert sent[1]["parts"][0]["thoughtSignature"] == signature_for("get_weather")
    assert sent[2]["parts"][0]["functionResponse"]["name"] == "get_weather"


# -- Gemini CLI, replayed -----------------------------------------------------------------------------------
def gemini_cli_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in GEMINI_CLI.read_text().splitlines()]


def test_gemini_cli_requests_replayed_to_an_openai_channel(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    mapping = {"gemini-3.5-flash-lite": "gpt-4o-mini", "gemini-3.8-flash": "gpt-5-mini"}  # a reasoning model
    make_channel(gateway, fresh_upstream, "converted", list(mapping), model_mapping=mapping)
    for model in mapping:
        priced(gateway, model)
    user = gateway.user(100)
    key = gateway.key(user)["key"]
    classifier = '{"complexity_reasoning": "A greeting.", "complexity_score": 1}'
    records = gemini_cli_records()
    for record in records:
        streamed = record["path"].endswith(":streamGenerateContent")
        fresh_upstream.reset()
        fresh_upstream.behave(content=CONTENT if streamed else classifier)
        headers = {"x-goog-api-key": key, "user-agent": record["headers"]["user-agent"]}
        query = "?alt=sse" if streamed else ""
        reply = http("POST", gateway.url + record["path"] + query, record["body"], headers)
        assert reply.status == 200, (record["scenario"], record["seq"], reply.raw[:300])
        sent = fresh_upstream.last_request.json
        model = record["path"].split("/models/")[1].split(":")[0]
        assert sent["model"] == mapping[model] and sent["messages"][0]["role"] == "system"
        if not streamed:
            parts = reply.body["candidates"][0]["content"]["parts"]
            answer = json.loads(
                "".join(p["text"] for p in parts if not p.get("thought"))
            )  # as the CLI reads it
            assert answer["complexity_score"] == 1
            schema = sent["response_format"]["json_schema"]["schema"]
            assert schema["properties"]["complexity_score"]["type"] == "integer"
            continue
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(e[len("data: ") :]) for e in reply.raw.decode().split("\n\n") if e]
        parts = [p for e in events for p in e["candidates"][0]["content"]["parts"] if not p.get("thought")]
        assert "".join(p.get("text", "") for p in parts).startswith(CONTENT)
        assert (
            events[-1]["candidates"][0]["finishReason"] == "STOP"
            and events[-1]["usageMetadata"]["totalTokenCount"] > 0
        )
        assert len(sent["tools"]) == 8 and sent["reasoning_effort"] == "high" and sent["stream"] is True
        if record["seq"] == 3:
            assistant, tool = sent["messages"][-2:]
            assert assistant["tool_calls"][0]["id"] == tool["tool_call_id"] == "read_file_1796285018130_0"
            assert json.loads(tool["content"]) == {"output": "The secret word is pineapple.\n"}
    rows = gateway.logs_of(user, len(records))
    assert all(r["status"] == 200 and r["protocol"] == "gemini" for r in rows)
