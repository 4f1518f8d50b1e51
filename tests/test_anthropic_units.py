"""The Anthropic protocol module's conversions, called directly on dicts and bytes (no server)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway import tokens
from gateway.neutral import Call, GatewayError, Usage
from gateway.protocols import anthropic
from gateway.protocols.base import Tally, wrap_signature
from tests.fake_anthropic import check_sequence, parse_sse

CLAUDE_RECORDINGS = Path("/work/shared/clients/claude.jsonl")


@dataclass
class Headers:
    values: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return {k.lower(): v for k, v in self.values.items()}.get(name.lower(), default)


@dataclass
class Inbound:
    headers: Headers = field(default_factory=Headers)
    query: str = ""


@dataclass
class Channel:
    base_url: str = "https://api.anthropic.com"
    model_mapping: dict[str, str] = field(default_factory=dict)

    def upstream_model(self, model: str) -> str:
        return self.model_mapping.get(model, model)


@dataclass
class Key:
    secret: str = "sk-ant-upstream"


def call_of(body: dict[str, Any], endpoint: str = "messages", inbound: Any = None) -> Call:
    return anthropic.parse_request(endpoint, orjson.dumps(body), inbound)


def messages_body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": list(messages), **fields}


def hub_response(message: dict[str, Any], finish: str = "stop", usage: Usage | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}


def sse(*events: dict[str, Any]) -> list[bytes]:
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]


# -- parsing and errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]},
            "max_tokens: Field required",
        ),
        ({"max_tokens": 5, "messages": []}, "model: Field required"),
        ({"model": "claude-x", "max_tokens": 5, "messages": []}, "at least one message"),
        (
            {"model": "claude-x", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
            "max_tokens",
        ),
        ({"model": "claude-x", "max_tokens": 5, "messages": "hi"}, "messages"),
    ],
)
def test_parse_refuses_what_the_api_refuses_in_anthropic_shape(body: dict[str, Any], message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        call_of(body)
    reply = anthropic.render_error(caught.value)
    assert reply.status == 400
    payload = orjson.loads(reply.body)
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert message in payload["error"]["message"]


def test_parse_keeps_version_betas_and_beta_query_and_never_refuses_unknown_fields() -> None:
    headers = Headers(
        {"Anthropic-Version": "2023-06-01", "anthropic-beta": "context-1m-2025-08-07", "x-app": "cli"}
    )
    body = messages_body({"role": "user", "content": "hi"}, stream=True, some_future_field={"a": 1})
    call = call_of(body, inbound=Inbound(headers, "beta=true"))
    assert (call.protocol, call.kind, call.stream, call.max_output_tokens) == ("anthropic", "chat", True, 100)
    assert call.extra["headers"] == {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "context-1m-2025-08-07",
    }
    request = anthropic.build_request(call, Channel(), Key(), None)
    assert request.url == "https://api.anthropic.com/v1/messages?beta=true"
    assert request.body == call.raw  # untouched: the unknown field goes on
    assert request.headers["x-api-key"] == "sk-ant-upstream"
    assert request.headers["anthropic-beta"] == "context-1m-2025-08-07"
    count = call_of({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}, "count_tokens")
    assert (count.kind, count.stream) == ("count", False)
    assert anthropic.build_request(count, Channel(), Key(), None).url.endswith("/v1/messages/count_tokens")


def test_native_request_maps_the_model_by_reserialising() -> None:
    call = call_of(messages_body({"role": "user", "content": "claude-x is the model"}))
    request = anthropic.build_request(
        call, Channel("https://api.anthropic.com/v1/", {"claude-x": "claude-y"}), Key(), None
    )
    sent = orjson.loads(request.body)
    assert sent["model"] == "claude-y" and sent["messages"][0]["content"] == "claude-x is the model"
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers["anthropic-version"] == "2023-06-01" and "anthropic-beta" not in request.headers


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_render_error_maps_status_to_type(status: int, kind: str) -> None:
    err = GatewayError(status, "nope", "whatever_openai_type", retry_after=3 if status == 429 else None)
    reply = anthropic.render_error(err)
    assert reply.status == status
    assert orjson.loads(reply.body) == {"type": "error", "error": {"type": kind, "message": "nope"}}
    assert (("Retry-After", "3") in reply.headers) == (status == 429)


def test_stream_error_is_a_named_error_event() -> None:
    frame = anthropic.stream_error(GatewayError(502, "broke", "server_error"), Call("messages", "m", {}, b""))
    assert parse_sse(frame) == [
        ("error", {"type": "error", "error": {"type": "api_error", "message": "broke"}})
    ]


# -- request_to_hub ----------------------------------------------------------------------------------
def recorded(scenario: str, seq: int) -> dict[str, Any]:
    for line in CLAUDE_RECORDINGS.read_text().splitlines():
        record = json.loads(line)
        if record["scenario"] == scenario and record.get("seq") == seq:
            return record["body"]
    raise LookupError(scenario)


def test_claude_code_tool_turn_becomes_a_hub_conversation() -> None:
    body = recorded("claude-tool-read", 3)
    hub = anthropic.request_to_hub(call_of(body))
    roles = [m["role"] for m in hub["messages"]]
    assert roles == ["system", "user", "system", "assistant", "tool"]
    assert hub["messages"][0]["content"].startswith("x-anthropic-billing-header")
    assert "You are a Claude agent" in hub["messages"][0]["content"]
    assert isinstance(hub["messages"][1]["content"], str)  # text blocks as one string
    assert "Read the file /home/dev/project/claude/hello.txt" in hub["messages"][1]["content"]
    assert hub["messages"][2]["content"].startswith("Available agent types")  # where it stood
    call = hub["messages"][3]["tool_calls"][0]
    assert call["function"]["name"] == "Read" and call["id"] == body["messages"][2]["content"][0]["id"]
    assert json.loads(call["function"]["arguments"]) == {"file_path": "/home/dev/project/claude/hello.txt"}
    tool = hub["messages"][4]
    assert tool == {
        "role": "tool",
        "tool_call_id": call["id"],
        "content": "1\tThe secret word is pineapple.\n2\t",
        "name": "Read",
    }
    assert len(hub["tools"]) == 24 and hub["tools"][0]["function"]["parameters"]["type"] == "object"
    assert hub["max_tokens"] == 64000 and hub["stream"] is True
    assert hub["include_reasoning"] is True and hub["reasoning_effort"] == "high"
    assert len(hub["user"]) <= 64  # Claude Code's JSON user id, as a digest
    assert "context_management" not in hub and "metadata" not in hub


def test_haiku_budget_and_sampling_and_choice() -> None:
    body = messages_body(
        {"role": "user", "content": "hi"},
        thinking={"type": "enabled", "budget_tokens": 2048},
        temperature=0.3,
        top_p=0.9,
        top_k=5,
        stop_sequences=["END"],
        tools=[
            {"name": "f", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    hub = anthropic.request_to_hub(call_of(body))
    assert (
        hub["thinking_budget"] == 2048 and hub["include_reasoning"] is True and "reasoning_effort" not in hub
    )
    assert (hub["temperature"], hub["top_p"], hub["top_k"], hub["stop"]) == (0.3, 0.9, 5, ["END"])
    assert [t["function"]["name"] for t in hub["tools"]] == ["f"]  # the server tool has no hub form
    assert hub["tool_choice"] == "required" and hub["parallel_tool_calls"] is False
    named = anthropic.request_to_hub(call_of({**body, "tool_choice": {"type": "tool", "name": "f"}}))
    assert named["tool_choice"] == {"type": "function", "function": {"name": "f"}}


def test_user_turn_splits_into_tool_messages_then_the_rest() -> None:
    body = messages_body(
        {"role": "user", "content": "use a tool"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "here:"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "is_error": True,
                    "content": [
                        {"type": "text", "text": "failed"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                        },
                    ],
                },
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            ],
        },
    )
    messages = anthropic.request_to_hub(call_of(body))["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    assert messages[1]["content"] is None and messages[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": "failed",
        "is_error": True,
        "name": "shot",
    }
    assert messages[3]["content"] == [
        {"type": "text", "text": "here:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},  # from the tool result
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "document.pdf"},
        },
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]


def test_thinking_blocks_and_signatures_come_back_with_their_origin() -> None:
    gemini_call_sig = wrap_signature(("gemini", "g-call"), "anthropic")
    gemini_text_sig = wrap_signature(("gemini", "g-text"), "anthropic")
    body = messages_body(
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "mine", "signature": "ant-sig"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "thinking", "thinking": "theirs", "signature": gemini_text_sig},
                {"type": "thinking", "thinking": "unsigned", "signature": ""},
                {"type": "text", "text": "Calling."},
                {"type": "thinking", "thinking": "", "signature": gemini_call_sig},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
                {"type": "tool_use", "id": "t2", "name": "f", "input": {"a": 2}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "1"}]},
    )
    assistant = anthropic.request_to_hub(call_of(body))["messages"][1]
    assert assistant["content"] == "Calling."
    assert assistant["reasoning_content"] == "minetheirsunsigned"
    assert assistant["thinking_blocks"] == [
        {"type": "thinking", "thinking": "mine", "signature": ("anthropic", "ant-sig")},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "thinking", "thinking": "theirs", "signature": ("gemini", "g-text")},
        {"type": "thinking", "thinking": "unsigned", "signature": None},
    ]
    first, second = assistant["tool_calls"]
    assert first["signature"] == ("gemini", "g-call") and "signature" not in second


def test_structured_output_and_count_estimate() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = messages_body(
        {"role": "user", "content": "one two three"},
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    hub = anthropic.request_to_hub(call_of(body))
    assert hub["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }
    small = orjson.loads(anthropic.estimate_count(call_of(body, "count_tokens")))["input_tokens"]
    tools = [
        {"name": "lookup", "description": "Looks a word up in a long dictionary", "input_schema": schema}
    ]
    large = orjson.loads(anthropic.estimate_count(call_of({**body, "tools": tools}, "count_tokens")))[
        "input_tokens"
    ]
    assert 0 < small < large


# -- hub answers to the client -----------------------------------------------------------------------
def test_response_from_hub_usage_stop_reason_and_tool_signature() -> None:
    call = call_of(messages_body({"role": "user", "content": "go"}))
    message = {
        "role": "assistant",
        "content": "Checking.",
        "reasoning_content": "hidden unless asked",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "f", "arguments": '{"city": "Oslo"}'},
                "signature": ("gemini", "g1"),
            }
        ],
    }
    usage = Usage(100, 20, cached_tokens=30, cache_write_tokens=10, reasoning_tokens=5)
    body = orjson.loads(anthropic.response_from_hub(call, hub_response(message, "tool_calls", usage)))
    assert body["type"] == "message" and body["model"] == "claude-x" and body["stop_reason"] == "tool_use"
    assert body["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "thinking", "thinking": "", "signature": wrap_signature(("gemini", "g1"), "anthropic")},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"city": "Oslo"}},
    ]
    assert body["usage"] == {
        "input_tokens": 60,
        "output_tokens": 20,
        "cache_creation_input_tokens": 10,
        "cache_read_input_tokens": 30,
        "output_tokens_details": {"thinking_tokens": 5},
    }
    thinking_call = call_of(messages_body({"role": "user", "content": "go"}, thinking={"type": "adaptive"}))
    shown = orjson.loads(
        anthropic.response_from_hub(thinking_call, hub_response(message, "tool_calls", usage))
    )
    assert shown["content"][0] == {"type": "thinking", "thinking": "hidden unless asked", "signature": ""}


@pytest.mark.parametrize(
    ("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")]
)
def test_finish_reasons(finish: str, stop: str) -> None:
    call = call_of(messages_body({"role": "user", "content": "go"}))
    body = orjson.loads(anthropic.response_from_hub(call, hub_response({"content": "x"}, finish)))
    assert body["stop_reason"] == stop


def hub_chunks(
    *deltas: dict[str, Any], finish: str = "stop", usage: Usage | None = None
) -> list[dict[str, Any]]:
    chunks = [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage is not None:
        chunks.append({"choices": [], "usage": usage})
    return chunks


def test_stream_from_hub_is_a_valid_event_sequence_the_sdk_accumulates() -> None:
    call = call_of(
        messages_body(
            {"role": "user", "content": "go"},
            thinking={"type": "enabled", "budget_tokens": 1024},
            stream=True,
        )
    )
    chunks = hub_chunks(
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Hmm, "},
        {"reasoning_content": "weather."},
        {"thinking_signature": ("anthropic", "sig-1")},
        {"content": "Let me "},
        {"content": "check."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "function": {"name": "weather", "arguments": ""},
                    "signature": ("gemini", "g"),
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ' "Oslo"}'}}]},
        {"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "time", "arguments": "{}"}}]},
        finish="tool_calls",
        usage=Usage(50, 12, cached_tokens=20),
    )
    frames = list(anthropic.stream_from_hub(call, iter(chunks)))
    events = parse_sse(b"".join(frames))
    assert len(frames) == len(events)  # one event per frame
    message = check_sequence(events)
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "thinking", "tool_use", "tool_use"]
    assert (
        message["content"][0]["thinking"] == "Hmm, weather." and message["content"][0]["signature"] == "sig-1"
    )
    assert message["content"][1]["text"] == "Let me check."
    assert message["content"][2]["signature"] == wrap_signature(("gemini", "g"), "anthropic")
    assert message["content"][3]["input"] == {"city": "Oslo"} and message["content"][3]["id"] == "call_a"
    assert message["content"][4]["input"] == {} and message["stop_reason"] == "tool_use"
    assert message["usage"]["input_tokens"] == 30 and message["usage"]["cache_read_input_tokens"] == 20
    assert message["usage"]["output_tokens"] == 12


def test_stream_from_hub_pulls_the_first_chunk_before_any_frame() -> None:
    def failing() -> Any:
        raise GatewayError(502, "upstream down", "server_error", retryable=True)
        yield  # pragma: no cover

    frames = anthropic.stream_from_hub(
        call_of(messages_body({"role": "user", "content": "x"}, stream=True)), failing()
    )
    with pytest.raises(GatewayError):
        next(frames)


def test_client_echo_of_a_streamed_answer_restores_the_hub_message() -> None:
    """What a client builds from the stream and sends back is the hub message it came from."""
    call = call_of(
        messages_body({"role": "user", "content": "go"}, thinking={"type": "adaptive"}, stream=True)
    )
    chunks = hub_chunks(
        {"reasoning_content": "plan"},
        {"thinking_signature": ("responses", "enc-1")},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "c1",
                    "function": {"name": "f", "arguments": "{}"},
                    "signature": ("gemini", "g"),
                }
            ]
        },
        finish="tool_calls",
    )
    message = check_sequence(parse_sse(b"".join(anthropic.stream_from_hub(call, iter(chunks)))))
    echoed = messages_body(
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": message["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "ok"}]},
    )
    assistant = anthropic.request_to_hub(call_of(echoed))["messages"][1]
    assert assistant["thinking_blocks"] == [
        {"type": "thinking", "thinking": "plan", "signature": ("responses", "enc-1")}
    ]
    assert assistant["tool_calls"][0]["signature"] == ("gemini", "g")


# -- hub requests to an Anthropic upstream -----------------------------------------------------------
def test_body_from_hub_merges_turns_and_gathers_system() -> None:
    hub = {
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": ("gemini", "g")}],
                "tool_calls": [
                    {
                        "id": "call.1:x",
                        "type": "function",
                        "function": {"name": "a", "arguments": '{"q": 1}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call.1:x", "content": "one"},
            {"role": "tool", "tool_call_id": "call_2", "content": "two", "is_error": True},
            {"role": "developer", "content": "Mid-way note."},
            {"role": "user", "content": "thanks"},
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                    }
                ],
            },
        ],
        "temperature": 1.7,
        "stop": ["  ", "END"],
        "tools": [
            {
                "type": "function",
                "function": {"name": "a", "description": "A", "parameters": {"properties": {}}},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "alice",
        "frequency_penalty": 0.5,
    }
    body = anthropic.body_from_hub(hub, "claude-y", stream=True)
    assert (
        body["model"] == "claude-y" and body["max_tokens"] == anthropic.DEFAULT_MAX_TOKENS and body["stream"]
    )
    assert body["system"] == "Be brief.\n\nMid-way note."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"},
    }
    assistant = body["messages"][1]["content"]
    assert [b["type"] for b in assistant] == [
        "tool_use",
        "tool_use",
    ]  # the Gemini thinking block stays behind
    assert assistant[0] == {"type": "tool_use", "id": "call_1_x", "name": "a", "input": {"q": 1}}
    results = body["messages"][2]["content"]
    assert [b["type"] for b in results] == ["tool_result", "tool_result", "text", "document"]
    assert results[0]["tool_use_id"] == "call_1_x" and results[1]["is_error"] is True
    assert results[3] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        "title": "a.pdf",
    }
    assert body["temperature"] == 1.0 and body["stop_sequences"] == ["END"]
    assert body["tools"] == [
        {"name": "a", "input_schema": {"type": "object", "properties": {}}, "description": "A"}
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["metadata"] == {"user_id": "alice"} and "frequency_penalty" not in body


def test_body_from_hub_thinking_budget_effort_and_tool_turns() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2, "top_k": 3}
    body = anthropic.body_from_hub({**base, "reasoning_effort": "high", "max_tokens": 1000}, "m", False)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16384} and body["max_tokens"] == 17384
    assert "temperature" not in body and "top_k" not in body  # the API refuses them while thinking
    body = anthropic.body_from_hub({**base, "thinking_budget": 10}, "m", False)
    assert body["thinking"]["budget_tokens"] == 1024 and body["max_tokens"] == 4096
    assert "thinking" not in anthropic.body_from_hub({**base, "thinking_budget": 0}, "m", False)
    tool_turn = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "done"},
    ]
    assert "thinking" not in anthropic.body_from_hub(
        {**base, "messages": tool_turn, "reasoning_effort": "low"}, "m", False
    )
    tool_turn[1]["thinking_blocks"] = [{"type": "thinking", "thinking": "t", "signature": ["anthropic", "s"]}]
    body = anthropic.body_from_hub({**base, "messages": tool_turn, "reasoning_effort": "low"}, "m", False)
    assert body["thinking"]["budget_tokens"] == 1024
    assert body["messages"][1]["content"][0] == {"type": "thinking", "thinking": "t", "signature": "s"}


def test_body_from_hub_emulates_json_mode_with_an_instruction() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    hub = {
        "messages": [{"role": "user", "content": "n?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    body = anthropic.body_from_hub(hub, "m", False)
    assert (
        body["system"].startswith(anthropic.SCHEMA_INSTRUCTION)
        and json.dumps(schema, separators=(",", ":")) in body["system"]
    )
    assert (
        anthropic.body_from_hub({**hub, "response_format": {"type": "json_object"}}, "m", False)["system"]
        == anthropic.JSON_INSTRUCTION
    )


def test_embeddings_are_refused_so_another_channel_may_serve() -> None:
    call = Call("embeddings", "m", {}, b"{}", kind="embeddings")
    with pytest.raises(GatewayError) as caught:
        anthropic.build_request(call, Channel(), Key(), {"model": "m", "input": ["x"]})
    assert caught.value.retryable


# -- Anthropic answers to the hub --------------------------------------------------------------------
START_USAGE = {
    "input_tokens": 40,
    "cache_read_input_tokens": 100,
    "cache_creation_input_tokens": 5,
    "output_tokens": 1,
}
UPSTREAM_STREAM = sse(
    {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                          "content": [], "model": "claude-y", "usage": START_USAGE}},
    {"type": "ping"},
    {"type": "content_block_start", "index": 0,
     "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Think."}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s1"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi there"}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2,
     "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}},
    {"type": "content_block_delta", "index": 2,
     "delta": {"type": "input_json_delta", "partial_json": '{"a"'}},
    {"type": "content_block_delta", "index": 2,
     "delta": {"type": "input_json_delta", "partial_json": ": 1}"}},
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 25}},
    {"type": "message_stop"},
)  # fmt: skip


def split_bytes(frames: list[bytes], size: int = 7) -> list[bytes]:
    data = b"".join(frames).replace(b"\n", b"\r\n")  # CRLF line ends, split anywhere
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_stream_to_hub_and_usage_normalised() -> None:
    tally = Tally()
    call = call_of(messages_body({"role": "user", "content": "x"}, stream=True))
    chunks = list(anthropic.stream_to_hub(call, iter(split_bytes(UPSTREAM_STREAM)), tally))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Think."
    assert {"thinking_signature": ("anthropic", "s1")} in deltas
    assert "".join(d.get("content", "") for d in deltas[1:]) == "Hi there"
    calls = [tc for d in deltas for tc in d.get("tool_calls", ())]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_9",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    assert "".join(tc["function"]["arguments"] for tc in calls) == '{"a": 1}'
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1] == {"choices": [], "usage": tally.usage}
    assert tally.usage == Usage(145, 25, 100, cache_write_tokens=5)
    assert tally.text() == "Think.Hi theref" + '{"a": 1}'


def test_stream_to_hub_raises_on_an_error_event() -> None:
    frames = UPSTREAM_STREAM[:8] + sse(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    with pytest.raises(GatewayError) as caught:
        list(
            anthropic.stream_to_hub(
                call_of(messages_body({"role": "user", "content": "x"})), iter(frames), Tally()
            )
        )
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        502,
        "upstream_stream_error",
        "Overloaded",
    )


def test_native_stream_keeps_event_names_and_reads_cumulative_usage() -> None:
    tally = Tally()
    frames = UPSTREAM_STREAM[:-2] + sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 30, "input_tokens": 41},
        },
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    call = call_of(messages_body({"role": "user", "content": "x"}, stream=True))
    out = list(anthropic.native_stream(call, iter(split_bytes(frames, 5)), tally))
    assert b"".join(out) == b"".join(frames)  # byte for byte, event lines included
    assert tally.usage == Usage(
        146, 30, 100, cache_write_tokens=5
    )  # input_tokens from the last message_delta


def test_native_stream_names_events_that_came_without_a_name() -> None:
    payload = b'{"type":"message_stop"}'
    out = list(
        anthropic.native_stream(
            call_of(messages_body({"role": "user", "content": "x"})),
            iter([b"data: " + payload + b"\n\n"]),
            Tally(),
        )
    )
    assert out == [b"event: message_stop\ndata: " + payload + b"\n\n"]


def test_response_to_hub() -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "content": [
            {"type": "thinking", "thinking": "T", "signature": "s"},
            {"type": "redacted_thinking", "data": "R"},
            {"type": "text", "text": "A"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": [1]}},
        ],
        "stop_reason": "max_tokens",
        "usage": {
            "input_tokens": 3,
            "output_tokens": 4,
            "cache_read_input_tokens": 2,
            "output_tokens_details": {"thinking_tokens": 1},
        },
    }
    hub = anthropic.response_to_hub(
        call_of(messages_body({"role": "user", "content": "x"})), orjson.dumps(body)
    )
    choice = hub["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == "A" and choice["message"]["reasoning_content"] == "T"
    assert choice["message"]["thinking_blocks"] == [
        {"type": "thinking", "thinking": "T", "signature": ("anthropic", "s")},
        {"type": "redacted_thinking", "data": "R"},
    ]
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x":[1]}'}
    assert hub["usage"] == Usage(5, 4, 2, reasoning_tokens=1)
    assert anthropic.native_response(None, orjson.dumps(body))[1] == Usage(5, 4, 2, reasoning_tokens=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "body", "retryable", "disables"),
    [
        (400, {"type": "invalid_request_error", "message": "bad"}, False, False),
        (
            400,
            {
                "type": "invalid_request_error",
                "message": "Your credit balance is too low to access the Anthropic API.",
            },
            True,
            True,
        ),
        (401, {"type": "authentication_error", "message": "invalid x-api-key"}, True, True),
        (402, {"type": "billing_error", "message": "pay"}, True, True),
        (403, {"type": "permission_error", "message": "no"}, True, False),
        (404, {"type": "not_found_error", "message": "model: x"}, False, False),
        (429, {"type": "rate_limit_error", "message": "slow down"}, True, False),
        (500, {"type": "api_error", "message": "oops"}, True, False),
        (529, {"type": "overloaded_error", "message": "Overloaded"}, True, False),
    ],
)
def test_map_error(status: int, body: dict[str, Any], retryable: bool, disables: bool) -> None:
    err = anthropic.map_error(status, orjson.dumps({"type": "error", "error": body}), {"retry-after": "7"})
    assert (err.retryable, err.disables_key, err.upstream_status) == (retryable, disables, status)
    assert err.message == body["message"] and err.code == body["type"] and err.retry_after == 7


def test_a_cut_stream_keeps_its_input_counts_and_estimates_its_output() -> None:
    call = call_of(messages_body({"role": "user", "content": "x"}, stream=True))
    for convert in (anthropic.native_stream, anthropic.stream_to_hub):
        tally = Tally()
        list(convert(call, iter(UPSTREAM_STREAM[:9]), tally))  # up to the text block's stop: no message_delta
        assert tally.usage is not None and tally.usage.source == "estimated"
        assert (tally.usage.prompt_tokens, tally.usage.cached_tokens, tally.usage.cache_write_tokens) == (
            145,
            100,
            5,
        )
        assert tally.usage.completion_tokens == tokens.count("claude-x", "Think.Hi there") > 1
    tally = Tally()
    list(anthropic.native_stream(call, iter(UPSTREAM_STREAM), tally))
    assert tally.usage == Usage(145, 25, 100, cache_write_tokens=5)  # complete: as reported


def test_tool_names_longer_than_openai_takes_are_shortened_and_named_back() -> None:
    long = "mcp__" + "a_very_long_server_name_" * 3 + "__search_files"
    schema = {"type": "object", "properties": {}}
    body = messages_body(
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": long, "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "none"}]},
        tools=[{"name": long, "input_schema": schema}, {"name": "Read", "input_schema": schema}],
        tool_choice={"type": "tool", "name": long},
        stream=True,
    )
    call = call_of(body)
    hub = anthropic.request_to_hub(call)
    short = hub["tools"][0]["function"]["name"]
    assert len(long) > 64 >= len(short) and hub["tools"][1]["function"]["name"] == "Read"
    assert hub["tool_choice"]["function"]["name"] == short
    assert hub["messages"][1]["tool_calls"][0]["function"]["name"] == short == hub["messages"][2]["name"]
    tool_call = {"id": "c1", "type": "function", "function": {"name": short, "arguments": "{}"}}
    answer = orjson.loads(
        anthropic.response_from_hub(call, hub_response({"tool_calls": [tool_call]}, "tool_calls"))
    )
    assert answer["content"][0]["name"] == long
    chunks = hub_chunks({"tool_calls": [{"index": 0, **tool_call}]}, finish="tool_calls")
    message = check_sequence(parse_sse(b"".join(anthropic.stream_from_hub(call, iter(chunks)))))
    assert message["content"][0]["name"] == long
