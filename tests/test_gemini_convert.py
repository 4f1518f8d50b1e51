"""The Gemini protocol module's conversions, called directly on bodies and bytes (no server): Gemini requests
to the hub and back, hub answers and streams as Gemini's, Gemini upstream answers and streams as the hub's,
errors both ways, and what google-genai makes of the gateway's error bodies."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from gateway import tokens
from gateway.catalog import ChannelInfo, UpstreamKey
from gateway.neutral import Call, GatewayError, Usage
from gateway.protocols import gemini
from gateway.protocols.base import Tally, wrap_signature

CLIENTS = Path("/work/shared/clients/gemini.jsonl")


def inbound(model: str = "gemini-2.5-flash", query: str = "") -> Any:
    return SimpleNamespace(params={"model": model}, query=query, path="", headers={})


def parse(
    body: dict[str, Any], endpoint: str = "generateContent", model: str = "gemini-2.5-flash", query: str = ""
) -> Call:
    return gemini.parse_request(endpoint, orjson.dumps(body), inbound(model, query))


def channel(
    model_mapping: dict[str, str] | None = None, base_url: str = "https://generativelanguage.googleapis.com"
) -> ChannelInfo:
    return ChannelInfo(
        1,
        "g",
        "gemini",
        base_url,
        frozenset(),
        model_mapping or {},
        frozenset(),
        0,
        1,
        "enabled",
        None,
        "",
        (),
    )


KEY = UpstreamKey(7, "AIza-upstream-secret")


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def model_turn(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "model", "parts": list(parts)}


def recorded(scenario: str, seq: int) -> dict[str, Any]:
    for line in CLIENTS.read_text().splitlines():
        record = json.loads(line)
        if record["scenario"] == scenario and record["seq"] == seq:
            return record
    raise LookupError((scenario, seq))


# -- parsing ------------------------------------------------------------------------------------------------
def test_parse_takes_the_model_from_the_path_and_the_framing_from_alt() -> None:
    body = {"contents": [user({"text": "hi"})], "somethingNew": {"x": 1}}
    call = parse(body, "streamGenerateContent", "models/gemini-2.5-flash", "alt=sse")
    assert (call.model, call.kind, call.stream, call.protocol) == ("gemini-2.5-flash", "chat", True, "gemini")
    assert call.extra["sse"] is True and call.body["somethingNew"] == {"x": 1}
    assert gemini.stream_headers(call)[0] == ("Content-Type", "text/event-stream")
    array = parse(body, "streamGenerateContent")
    assert array.extra["sse"] is False and gemini.stream_headers(array)[0] == (
        "Content-Type",
        "application/json",
    )
    kinds = {
        e: parse({"content": {"parts": [{"text": "x"}]}, "contents": [user({"text": "x"})]}, e).kind
        for e in gemini.KINDS
    }
    assert kinds == {
        "generateContent": "chat",
        "streamGenerateContent": "chat",
        "countTokens": "count",
        "embedContent": "embeddings",
        "batchEmbedContents": "embeddings",
    }


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": [user({"text": "x"})], "generationConfig": {"candidateCount": 2}}, "candidateCount"),
        ({"contents": [user({"text": "x"})], "generationConfig": {"maxOutputTokens": -1}}, "maxOutputTokens"),
    ],
)
def test_parse_refuses_what_google_refuses(body: dict[str, Any], field: str) -> None:
    with pytest.raises(GatewayError) as caught:
        parse(body)
    assert caught.value.status == 400 and caught.value.param == field


def test_parse_reads_the_output_allowance() -> None:
    call = parse({"contents": [user({"text": "x"})], "generationConfig": {"maxOutputTokens": 50}})
    assert call.max_output_tokens == 50


# -- request to the hub ----------------------------------------------------------------------------------
def test_gemini_cli_tool_turn_to_hub() -> None:
    record = recorded("gemini-tool-read_file", 3)
    call = parse(record["body"], "streamGenerateContent", "gemini-3.8-flash", "alt=sse")
    hub = gemini.request_to_hub(call)
    roles = [m["role"] for m in hub["messages"]]
    assert roles == ["system", "user", "assistant", "tool"]
    assert hub["messages"][1]["content"][1] == {
        "type": "text",
        "text": record["body"]["contents"][0]["parts"][1]["text"],
    }
    (tool_call,) = hub["messages"][2]["tool_calls"]
    assert tool_call["id"] == "read_file_1796285018130_0"
    assert json.loads(tool_call["function"]["arguments"]) == {
        "file_path": "/home/dev/project/gemini/hello.txt"
    }
    assert tool_call["signature"] == ("gemini", "skip_thought_signature_validator")
    tool = hub["messages"][3]
    assert tool["tool_call_id"] == "read_file_1796285018130_0" and tool["name"] == "read_file"
    assert json.loads(tool["content"]) == {"output": "The secret word is pineapple.\n"}
    names = [t["function"]["name"] for t in hub["tools"]]
    assert "read_file" in names and len(names) == 8
    read_file = next(t for t in hub["tools"] if t["function"]["name"] == "read_file")
    assert read_file["function"]["parameters"]["type"] == "object"
    assert hub["temperature"] == 1 and hub["top_p"] == 0.95 and hub["top_k"] == 64
    assert hub["reasoning_effort"] == "high" and hub["include_reasoning"] is True and hub["stream"] is True


def test_gemini_cli_classifier_schema_becomes_json_schema() -> None:
    record = recorded("gemini-say-hi", 1)
    hub = gemini.request_to_hub(parse(record["body"], model="gemini-3.5-flash-lite"))
    schema = hub["response_format"]["json_schema"]["schema"]
    assert hub["response_format"]["type"] == "json_schema"
    assert schema["type"] == "object" and schema["properties"]["complexity_score"]["type"] == "integer"
    assert schema["required"] == ["complexity_reasoning", "complexity_score"]


def test_calls_without_ids_get_ids_matched_to_their_results_by_name_and_order() -> None:
    body = {
        "contents": [
            user({"text": "weather in Oslo and Rome, then time"}),
            model_turn(
                {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
                {"functionCall": {"name": "clock.now", "args": {}}},
            ),
            user(
                {"functionResponse": {"name": "clock.now", "response": {"output": "noon"}}},
                {"functionResponse": {"name": "weather", "response": {"temp": 7}}},
                {"functionResponse": {"name": "weather", "response": {"error": "no data"}}},
                {"text": "thanks"},
            ),
        ]
    }
    first = gemini.request_to_hub(parse(body))
    assert first == gemini.request_to_hub(parse(body)), "made-up ids must be the same for the same history"
    calls = first["messages"][1]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_weather_0", "call_weather_1", "call_clock_now_2"]
    assert calls[0]["signature"] == ("gemini", "c2ln") and "signature" not in calls[1]
    tools = first["messages"][2:5]
    assert [(t["tool_call_id"], t["name"]) for t in tools] == [
        ("call_clock_now_2", "clock.now"),
        ("call_weather_0", "weather"),
        ("call_weather_1", "weather"),
    ]
    assert tools[2]["is_error"] is True and "is_error" not in tools[1]
    assert first["messages"][5] == {"role": "user", "content": "thanks"}


def test_thoughts_and_signatures_of_a_model_turn() -> None:
    body = {
        "contents": [
            user({"text": "q"}),
            model_turn(
                {"text": "Let me think. ", "thought": True},
                {"text": "Done thinking.", "thought": True},
                {"text": "The answer", "thoughtSignature": "R2VtaW5p"},
                {"text": " is 4."},
            ),
            user({"text": "and?"}),
        ]
    }
    assistant = gemini.request_to_hub(parse(body))["messages"][1]
    assert assistant["content"] == "The answer is 4."
    assert assistant["reasoning_content"] == "Let me think. Done thinking."
    assert assistant["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Let me think. Done thinking.", "signature": ("gemini", "R2VtaW5p")}
    ]


def test_foreign_signatures_are_base64_for_google_genai_and_come_back_in_either_alphabet() -> None:
    signature = ("anthropic", "EqQBCkYIBxgCKkA+/x" * 5)
    wrapped = gemini.wrap_for_client(signature)
    answer = {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "a", "thoughtSignature": wrapped}]}}]
    }
    parsed = genai_types.GenerateContentResponse._from_response(response=answer, kwargs={})
    echoed = parsed.candidates[0].content.parts[0].model_dump(mode="json", by_alias=True)["thoughtSignature"]
    assert gemini.client_signature(echoed) == gemini.client_signature(wrapped) == signature
    urlsafe = base64.urlsafe_b64encode(wrap_signature(("anthropic", "a~~~b?>>"), "gemini").encode()).decode()
    assert "-" in urlsafe or "_" in urlsafe  # google-genai sends bytes back in the URL-safe alphabet
    assert gemini.client_signature(urlsafe) == ("anthropic", "a~~~b?>>")
    assert gemini.client_signature("skip_thought_signature_validator") == (
        "gemini",
        "skip_thought_signature_validator",
    )
    assert gemini.wrap_for_client(("gemini", "R2Vt")) == "R2Vt"


def test_a_wrapped_foreign_signature_comes_back_with_its_origin() -> None:
    wrapped = gemini.wrap_for_client(("anthropic", "EqQBCkYIBxgC"))
    body = {
        "contents": [
            user({"text": "q"}),
            model_turn({"text": "thinking", "thought": True, "thoughtSignature": wrapped}, {"text": "4"}),
            user({"text": "more"}),
        ]
    }
    assistant = gemini.request_to_hub(parse(body))["messages"][1]
    assert assistant["thinking_blocks"][0]["signature"] == ("anthropic", "EqQBCkYIBxgC")
    assert assistant["thinking_blocks"][0]["thinking"] == "thinking"


def test_openapi_schemas_become_json_schema() -> None:
    parameters = {
        "type": "OBJECT",
        "properties": {
            "type": {"type": "STRING", "enum": ["a", "b"], "format": "enum"},
            "count": {"type": "INTEGER", "nullable": True},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
            "where": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]},
        },
        "required": ["type"],
        "propertyOrdering": ["type", "count"],
    }
    assert gemini.json_schema(parameters) == {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["a", "b"]},
            "count": {"type": ["integer", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "where": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        },
        "required": ["type"],
    }


@pytest.mark.parametrize(
    "config, choice, names",
    [
        ({"mode": "AUTO"}, "auto", ["a", "b"]),
        ({"mode": "NONE"}, "none", ["a", "b"]),
        ({"mode": "ANY"}, "required", ["a", "b"]),
        (
            {"mode": "ANY", "allowedFunctionNames": ["b"]},
            {"type": "function", "function": {"name": "b"}},
            ["b"],
        ),
    ],
)
def test_tool_config_becomes_tool_choice(config: dict[str, Any], choice: Any, names: list[str]) -> None:
    declarations = [{"name": "a", "parameters": {"type": "OBJECT"}}, {"name": "b", "description": "B"}]
    body = {
        "contents": [user({"text": "x"})],
        "tools": [{"functionDeclarations": declarations}, {"googleSearch": {}}, {"codeExecution": {}}],
        "toolConfig": {"functionCallingConfig": config},
    }
    hub = gemini.request_to_hub(parse(body))
    assert hub["tool_choice"] == choice
    assert [t["function"]["name"] for t in hub["tools"]] == names


def test_generation_config_and_media_to_hub() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            user(
                {"text": "look"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBER"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
            )
        ],
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generationConfig": {
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
            "responseMimeType": "application/json",
            "thinkingConfig": {"thinkingBudget": 2048},
        },
    }
    hub = gemini.request_to_hub(parse(body))
    assert hub["messages"][0] == {"role": "system", "content": "Be brief."}
    assert hub["messages"][1]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "file.pdf"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    assert hub["max_tokens"] == 100 and hub["stop"] == ["END"] and hub["thinking_budget"] == 2048
    assert hub["response_format"] == {"type": "json_object"}
    assert "safetySettings" not in hub and "reasoning_effort" not in hub


def test_embeddings_to_hub_and_back() -> None:
    single = parse({"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4}, "embedContent")
    assert gemini.request_to_hub(single) == {"model": "gemini-2.5-flash", "input": ["hello"], "dimensions": 4}
    answer = {"data": [{"embedding": [0.1, 0.2]}], "usage": None}
    assert json.loads(gemini.response_from_hub(single, answer)) == {"embedding": {"values": [0.1, 0.2]}}
    requests = [{"model": "models/e", "content": {"parts": [{"text": t}]}} for t in ("a", "b")]
    batch = parse({"requests": requests}, "batchEmbedContents")
    assert gemini.request_to_hub(batch)["input"] == ["a", "b"]
    answer = {"data": [{"embedding": [1.0]}, {"embedding": [2.0]}], "usage": None}
    assert json.loads(gemini.response_from_hub(batch, answer)) == {
        "embeddings": [{"values": [1.0]}, {"values": [2.0]}]
    }


def test_count_is_estimated_with_the_tokenizer() -> None:
    body = {"contents": [user({"text": "How many tokens is this sentence?"})]}
    answer = json.loads(gemini.estimate_count(parse(body, "countTokens")))
    assert answer == {"totalTokens": tokens.count("gemini-2.5-flash", "How many tokens is this sentence?")}
    wrapped = {"generateContentRequest": {"model": "models/gemini-2.5-flash", **body}}
    assert json.loads(gemini.estimate_count(parse(wrapped, "countTokens"))) == answer


# -- hub answers as Gemini's -------------------------------------------------------------------------------
def hub_answer(message: dict[str, Any], finish: str = "stop", usage: Usage | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


def test_response_from_hub_with_tool_calls_and_usage() -> None:
    call = parse({"contents": [user({"text": "x"})]})
    message = {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "clock", "arguments": ""},
                "signature": ("anthropic", "sig-a"),
            },
        ],
    }
    usage = Usage(100, 30, 40, reasoning_tokens=10)
    answer = json.loads(gemini.response_from_hub(call, hub_answer(message, "tool_calls", usage)))
    candidate = answer["candidates"][0]
    assert candidate["finishReason"] == "STOP" and candidate["content"]["role"] == "model"
    parts = candidate["content"]["parts"]
    assert parts[0] == {"text": "Checking."}
    assert parts[1] == {"functionCall": {"id": "call_1", "name": "weather", "args": {"city": "Oslo"}}}
    assert parts[2]["functionCall"]["args"] == {}
    assert gemini.client_signature(parts[2]["thoughtSignature"]) == ("anthropic", "sig-a")
    assert answer["usageMetadata"] == {
        "promptTokenCount": 100,
        "candidatesTokenCount": 20,
        "totalTokenCount": 130,
        "cachedContentTokenCount": 40,
        "thoughtsTokenCount": 10,
    }
    assert answer["modelVersion"] == "gemini-2.5-flash" and answer["responseId"] == "chatcmpl-1"


@pytest.mark.parametrize(
    "finish, expected", [("stop", "STOP"), ("length", "MAX_TOKENS"), ("content_filter", "SAFETY")]
)
def test_finish_reasons_to_gemini(finish: str, expected: str) -> None:
    call = parse({"contents": [user({"text": "x"})]})
    answer = json.loads(gemini.response_from_hub(call, hub_answer({"content": "a"}, finish)))
    assert answer["candidates"][0]["finishReason"] == expected


FOREIGN_BLOCKS = [
    {"type": "thinking", "thinking": "2+2", "signature": ("anthropic", "S+/=")},
    {"type": "redacted_thinking", "data": "R"},
]


def echoed(parts: list[dict[str, Any]], keep_thoughts: bool) -> dict[str, Any]:
    """The hub assistant message of a model turn a client sent back, with or without its thought parts."""
    kept = [p for p in parts if keep_thoughts or not p.get("thought")]
    body = {"contents": [user({"text": "q"}), model_turn(*kept), user({"text": "more"})]}
    return gemini.request_to_hub(parse(body))["messages"][1]


def test_reasoning_is_shown_only_to_a_client_that_asked_for_thoughts_and_comes_back_whole() -> None:
    message = {"content": "4", "reasoning_content": "2+2", "thinking_blocks": FOREIGN_BLOCKS}
    plain = parse({"contents": [user({"text": "x"})]})
    answer = json.loads(gemini.response_from_hub(plain, hub_answer(message)))
    parts = answer["candidates"][0]["content"]["parts"]
    assert parts == [{"text": "4", "thoughtSignature": gemini.pack_thinking(FOREIGN_BLOCKS)}]
    assert echoed(parts, keep_thoughts=True)["thinking_blocks"] == FOREIGN_BLOCKS
    asked = parse(
        {"contents": [user({"text": "x"})], "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
    )
    parts = json.loads(gemini.response_from_hub(asked, hub_answer(message)))["candidates"][0]["content"][
        "parts"
    ]
    assert parts == [
        {"text": "2+2", "thought": True},
        {"text": "4", "thoughtSignature": gemini.pack_thinking(FOREIGN_BLOCKS)},
    ]
    for keep in (True, False):
        back = echoed(parts, keep_thoughts=keep)
        assert back["thinking_blocks"] == FOREIGN_BLOCKS and back["content"] == "4"


def test_thinking_rides_on_a_function_call_without_becoming_its_signature() -> None:
    call = {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    message = {"content": None, "thinking_blocks": FOREIGN_BLOCKS[:1], "tool_calls": [call]}
    answer = gemini.response_from_hub(
        parse({"contents": [user({"text": "x"})]}), hub_answer(message, "tool_calls")
    )
    parts = json.loads(answer)["candidates"][0]["content"]["parts"]
    assert parts[0]["functionCall"]["id"] == "toolu_1" and "thoughtSignature" in parts[0]
    parsed = genai_types.GenerateContentResponse._from_response(response=json.loads(answer), kwargs={})
    history = parsed.candidates[0].content.model_dump(mode="json", by_alias=True, exclude_none=True)
    back = echoed(history["parts"], keep_thoughts=False)
    assert back["thinking_blocks"] == FOREIGN_BLOCKS[:1]
    assert back["tool_calls"][0]["id"] == "toolu_1" and "signature" not in back["tool_calls"][0]


def hub_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def tool_fragment(
    index: int, arguments: str, ident: str | None = None, fn: str | None = None
) -> dict[str, Any]:
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if ident:
        fragment["id"] = ident
        fragment["function"]["name"] = fn
    return fragment


HUB_STREAM = [
    hub_chunk({"role": "assistant", "content": ""}),
    hub_chunk({"content": "Let me "}),
    hub_chunk({"content": "check."}),
    hub_chunk({"tool_calls": [tool_fragment(0, '{"ci', "call_a", "weather")]}),
    hub_chunk({"tool_calls": [tool_fragment(0, 'ty":"Oslo"}')]}),
    hub_chunk({"tool_calls": [tool_fragment(1, "{}", "call_b", "clock")]}),
    hub_chunk({}, "tool_calls"),
    {"choices": [], "usage": Usage(12, 9)},
]


def sse_payloads(frames: list[bytes]) -> list[dict[str, Any]]:
    text = b"".join(frames).decode()
    return [json.loads(event[len("data: ") :]) for event in text.split("\n\n") if event]


def test_stream_from_hub_sends_text_as_it_comes_and_each_call_whole() -> None:
    call = parse({"contents": [user({"text": "x"})]}, "streamGenerateContent", query="alt=sse")
    frames = list(gemini.stream_from_hub(call, iter(HUB_STREAM)))
    chunks = sse_payloads(frames)
    parts = [c["candidates"][0]["content"]["parts"] for c in chunks]
    assert parts[:4] == [
        [{"text": "Let me "}],
        [{"text": "check."}],
        [{"functionCall": {"id": "call_a", "name": "weather", "args": {"city": "Oslo"}}}],
        [{"functionCall": {"id": "call_b", "name": "clock", "args": {}}}],
    ]
    last = chunks[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"] == {"promptTokenCount": 12, "candidatesTokenCount": 9, "totalTokenCount": 21}
    assert all("usageMetadata" not in c for c in chunks[:-1])
    assert len({c["responseId"] for c in chunks}) == 1


def test_stream_from_hub_as_a_json_array_and_its_error_element() -> None:
    call = parse({"contents": [user({"text": "x"})]}, "streamGenerateContent")
    frames = list(gemini.stream_from_hub(call, iter(HUB_STREAM)))
    assert frames[0].startswith(b"[{") and frames[1].startswith(b",\r\n{") and frames[-1].endswith(b"]")
    assert len(json.loads(b"".join(frames))) == len(frames)

    def breaks() -> Iterator[dict[str, Any]]:
        yield hub_chunk({"content": "partial"})
        raise GatewayError(502, "cut", "server_error", "upstream_stream_error")

    stream = gemini.stream_from_hub(call, breaks())
    sent = [next(stream)]
    with pytest.raises(GatewayError) as caught:
        next(stream)
    sent.append(gemini.stream_error(caught.value, call))
    elements = json.loads(b"".join(sent))
    assert elements[0]["candidates"][0]["content"]["parts"] == [{"text": "partial"}]
    assert elements[1] == {
        "error": {
            "code": 502,
            "message": "cut",
            "status": "UNAVAILABLE",
            "details": [
                {"@type": gemini.ERROR_INFO, "reason": "upstream_stream_error", "domain": "relayhouse"}
            ],
        }
    }
    sse_call = parse({"contents": [user({"text": "x"})]}, "streamGenerateContent", query="alt=sse")
    next(gemini.stream_from_hub(sse_call, iter(HUB_STREAM)))
    assert gemini.stream_error(caught.value, sse_call).startswith(b'data: {"error":')


def test_stream_from_hub_pulls_the_first_chunk_before_yielding() -> None:
    def failing() -> Iterator[dict[str, Any]]:
        raise GatewayError(503, "down", "server_error", retryable=True)
        yield {}

    stream = gemini.stream_from_hub(
        parse({"contents": [user({"text": "x"})]}, "streamGenerateContent"), failing()
    )
    with pytest.raises(GatewayError):
        next(stream)


def test_stream_from_hub_thoughts_and_signed_blocks() -> None:
    stream = [
        hub_chunk({"reasoning_content": "2+"}),
        hub_chunk({"reasoning_content": "2"}),
        hub_chunk({"thinking_signature": ("anthropic", "S+/=")}),
        hub_chunk({"redacted_thinking": "R"}),
        hub_chunk({"content": "4"}),
        hub_chunk({}, "stop"),
    ]
    packed = gemini.pack_thinking(FOREIGN_BLOCKS)
    body = {
        "contents": [user({"text": "x"})],
        "generationConfig": {"thinkingConfig": {"includeThoughts": True}},
    }
    shown = sse_payloads(
        list(gemini.stream_from_hub(parse(body, "streamGenerateContent", query="alt=sse"), iter(stream)))
    )
    assert [c["candidates"][0]["content"]["parts"] for c in shown] == [
        [{"text": "2+", "thought": True}],
        [{"text": "2", "thought": True}],
        [{"text": "4", "thoughtSignature": packed}],
        [{"text": ""}],
    ]
    plain = parse({"contents": [user({"text": "x"})]}, "streamGenerateContent", query="alt=sse")
    hidden = sse_payloads(list(gemini.stream_from_hub(plain, iter(stream))))
    assert [c["candidates"][0]["content"]["parts"] for c in hidden] == [
        [{"text": "4", "thoughtSignature": packed}],
        [{"text": ""}],
    ]
    only_thinking = sse_payloads(list(gemini.stream_from_hub(plain, iter(stream[:4]))))
    assert only_thinking[-1]["candidates"][0]["content"]["parts"] == [
        {"text": "", "thoughtSignature": packed}
    ]


# -- errors rendered for google-genai ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "status, name, exception",
    [
        (400, "INVALID_ARGUMENT", genai_errors.ClientError),
        (401, "UNAUTHENTICATED", genai_errors.ClientError),
        (402, "FAILED_PRECONDITION", genai_errors.ClientError),
        (403, "PERMISSION_DENIED", genai_errors.ClientError),
        (404, "NOT_FOUND", genai_errors.ClientError),
        (413, "INVALID_ARGUMENT", genai_errors.ClientError),
        (429, "RESOURCE_EXHAUSTED", genai_errors.ClientError),
        (500, "INTERNAL", genai_errors.ServerError),
        (502, "UNAVAILABLE", genai_errors.ServerError),
        (503, "UNAVAILABLE", genai_errors.ServerError),
        (504, "DEADLINE_EXCEEDED", genai_errors.ServerError),
    ],
)
def test_render_error_as_google_does(status: int, name: str, exception: type) -> None:
    retry_after = 3 if status == 429 else None
    reply = gemini.render_error(GatewayError(status, "nope", code="some_reason", retry_after=retry_after))
    assert reply.status == status
    body = json.loads(reply.body)
    assert (
        body["error"]["code"] == status
        and body["error"]["status"] == name
        and body["error"]["message"] == "nope"
    )
    assert (("Retry-After", "3") in reply.headers) == (status == 429)
    with pytest.raises(exception) as caught:
        genai_errors.APIError.raise_error(status, body, None)
    assert caught.value.code == status and caught.value.status == name and caught.value.message == "nope"


# -- requests to a Gemini upstream -------------------------------------------------------------------------
def test_native_requests_keep_the_body_and_put_the_model_in_the_url() -> None:
    body = {"contents": [user({"text": "x"})], "unknownField": True}
    call = parse(body, "streamGenerateContent")  # the client wants the JSON array
    request = gemini.build_request(call, channel({"gemini-2.5-flash": "gemini-2.5-pro"}), KEY, None)
    assert (
        request.url
        == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )
    assert request.body == call.raw and request.headers["x-goog-api-key"] == "AIza-upstream-secret"
    versioned = channel(base_url="http://127.0.0.1:9/v1beta/")
    assert (
        gemini.build_request(parse(body), versioned, KEY, None).url
        == "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:generateContent"
    )
    batch = parse(
        {"requests": [{"model": "models/e1", "content": {"parts": [{"text": "a"}]}}]},
        "batchEmbedContents",
        "e1",
    )
    request = gemini.build_request(batch, channel({"e1": "e2"}), KEY, None)
    assert request.url.endswith("/models/e2:batchEmbedContents")
    assert json.loads(request.body)["requests"][0]["model"] == "models/e2"


def hub_request(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": messages, **fields}


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
    {"role": "user", "content": "Weather in Oslo?"},
    {
        "role": "assistant",
        "content": None,
        "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": ("anthropic", "A")}],
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                "signature": ("gemini", "G1"),
            },
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Bergen"}'},
                "signature": ("anthropic", "A2"),
            },
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 7}'},
    {"role": "tool", "tool_call_id": "c2", "content": "rain", "is_error": True},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c3", "type": "function", "function": {"name": "clock", "arguments": "{}"}}],
    },
    {"role": "tool", "tool_call_id": "c3", "content": "noon"},
]


def test_request_from_hub_turns_and_signatures() -> None:
    body = gemini.request_from_hub(hub_request(CONVERSATION), "gemini-2.5-flash")
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use tools."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user", "model", "user"]
    model = body["contents"][1]["parts"]
    assert model[0] == {
        "functionCall": {"name": "weather", "args": {"city": "Oslo"}, "id": "c1"},
        "thoughtSignature": "G1",
    }
    assert model[1] == {"functionCall": {"name": "weather", "args": {"city": "Bergen"}, "id": "c2"}}
    results = body["contents"][2]["parts"]
    assert results == [
        {"functionResponse": {"id": "c1", "name": "weather", "response": {"temp": 7}}},
        {"functionResponse": {"id": "c2", "name": "weather", "response": {"error": "rain"}}},
    ]
    assert body["contents"][3]["parts"] == [{"functionCall": {"name": "clock", "args": {}, "id": "c3"}}]
    assert body["contents"][4]["parts"] == [
        {"functionResponse": {"id": "c3", "name": "clock", "response": {"output": "noon"}}}
    ]


def test_gemini_3_gets_the_escape_signature_on_each_step_of_the_current_turn_only() -> None:
    history = [
        {"role": "user", "content": "first"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "h", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "h", "content": "{}"},
        {"role": "assistant", "content": "ok"},
    ]
    body = gemini.request_from_hub(hub_request(history + CONVERSATION[2:]), "gemini-3-pro-preview")
    calls = [p for c in body["contents"] if c["role"] == "model" for p in c["parts"] if "functionCall" in p]
    signatures = [(p["functionCall"]["id"], p.get("thoughtSignature")) for p in calls]
    assert signatures == [("h", None), ("c1", "G1"), ("c2", None), ("c3", gemini.SKIP_SIGNATURE)]
    older = gemini.request_from_hub(hub_request(CONVERSATION), "gemini-2.5-flash")
    assert all(
        p.get("thoughtSignature") != gemini.SKIP_SIGNATURE for c in older["contents"] for p in c["parts"]
    )


def test_request_from_hub_options() -> None:
    tools = [
        {"type": "function", "function": {"name": "f", "description": "F", "parameters": {"type": "object"}}}
    ]
    hub = hub_request(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png?s=1"}},
                ],
            }
        ],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "f"}},
        max_tokens=64,
        stop=["X"],
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        reasoning_effort="low",
        include_reasoning=True,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
        parallel_tool_calls=False,
        user="u",
    )
    body = gemini.request_from_hub(hub, "gemini-2.5-flash")
    assert body["contents"][0]["parts"] == [
        {"text": "see"},
        {"inlineData": {"mimeType": "image/png", "data": "AAA"}},
        {"fileData": {"fileUri": "https://x.test/a.png?s=1", "mimeType": "image/png"}},
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {"name": "f", "description": "F", "parametersJsonSchema": {"type": "object"}}
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}
    assert body["generationConfig"] == {
        "maxOutputTokens": 64,
        "temperature": 0.5,
        "topP": 0.9,
        "topK": 40,
        "stopSequences": ["X"],
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
        "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True},
    }
    gemini3 = gemini.request_from_hub(hub, "gemini-3-flash")["generationConfig"]["thinkingConfig"]
    assert gemini3 == {"thinkingLevel": "LOW", "includeThoughts": True}
    budget = gemini.request_from_hub(hub_request([], thinking_budget=31999), "gemini-2.5-flash")
    assert budget["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 24576}


def test_embeddings_request_from_hub() -> None:
    call = Call("embeddings", "e", {}, b"", kind="embeddings")
    request = gemini.build_request(call, channel(), KEY, {"model": "e", "input": ["a", "b"], "dimensions": 3})
    assert request.url.endswith("/v1beta/models/e:batchEmbedContents")
    assert json.loads(request.body) == {
        "requests": [
            {"model": "models/e", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 3},
            {"model": "models/e", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 3},
        ]
    }
    answer = gemini.response_to_hub(call, b'{"embeddings": [{"values": [1.0]}, {"values": [2.0]}]}')
    assert answer["data"] == [{"embedding": [1.0]}, {"embedding": [2.0]}]


# -- Gemini upstream answers as the hub's -----------------------------------------------------------------
CHAT = Call("chat", "m", {}, b"")


def test_response_to_hub() -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Plan: ", "thought": True},
                        {"text": "I'll check.", "thoughtSignature": "U1"},
                        {
                            "functionCall": {"name": "weather", "args": {"city": "Oslo"}},
                            "thoughtSignature": "U2",
                        },
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 50,
            "cachedContentTokenCount": 20,
            "candidatesTokenCount": 8,
            "thoughtsTokenCount": 30,
            "toolUsePromptTokenCount": 5,
            "totalTokenCount": 93,
        },
        "responseId": "r1",
    }
    hub = gemini.response_to_hub(CHAT, orjson.dumps(body))
    choice = hub["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and hub["id"] == "r1"
    message = choice["message"]
    assert message["content"] == "I'll check." and message["reasoning_content"] == "Plan: "
    assert message["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Plan: ", "signature": ("gemini", "U1")}
    ]
    (tool_call,) = message["tool_calls"]
    assert tool_call["id"].startswith("call_") and tool_call["signature"] == ("gemini", "U2")
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "Oslo"}
    assert hub["usage"] == Usage(55, 38, 20, reasoning_tokens=30)


@pytest.mark.parametrize(
    "body, finish",
    [
        ({"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "MAX_TOKENS"}]}, "length"),
        ({"candidates": [{"content": {"parts": []}, "finishReason": "RECITATION"}]}, "content_filter"),
        ({"candidates": [{"finishReason": "SAFETY"}]}, "content_filter"),
        ({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}, "content_filter"),
        ({"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "OTHER"}]}, "stop"),
    ],
)
def test_finish_reasons_from_gemini(body: dict[str, Any], finish: str) -> None:
    assert gemini.response_to_hub(CHAT, orjson.dumps(body))["choices"][0]["finish_reason"] == finish


def sse(*events: dict[str, Any]) -> list[bytes]:
    return [b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events]


def gemini_chunk(
    parts: list[dict[str, Any]], finish: str | None = None, usage: dict | None = None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], **({"usageMetadata": usage} if usage else {})}


GEMINI_STREAM = sse(
    gemini_chunk(
        [{"text": "Thinking", "thought": True}], usage={"promptTokenCount": 10, "totalTokenCount": 10}
    ),
    gemini_chunk(
        [{"text": "Hel", "thoughtSignature": "T1"}], usage={"promptTokenCount": 10, "totalTokenCount": 10}
    ),
    gemini_chunk([{"text": "lo"}]),
    gemini_chunk(
        [{"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "F1"}],
        "STOP",
        {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 4, "totalTokenCount": 19},
    ),
)


def test_stream_to_hub() -> None:
    tally = Tally()
    chunks = list(gemini.stream_to_hub(CHAT, iter(GEMINI_STREAM), tally))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "reasoning_content": "Thinking"}
    assert deltas[1:4] == [{"thinking_signature": ("gemini", "T1")}, {"content": "Hel"}, {"content": "lo"}]
    (fragment,) = deltas[4]["tool_calls"]
    assert fragment["index"] == 0 and fragment["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert fragment["signature"] == ("gemini", "F1") and fragment["id"].startswith("call_")
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1] == {"choices": [], "usage": Usage(10, 9, 0, reasoning_tokens=4)}
    assert tally.usage == Usage(10, 9, 0, reasoning_tokens=4) and len(tally.payloads) == 4
    assert tally.text() == 'ThinkingHello{"name":"f","args":{"a":1}}'


def test_stream_to_hub_raises_on_an_error_event() -> None:
    events = GEMINI_STREAM[:2] + sse(
        {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    )
    tally = Tally()
    stream = gemini.stream_to_hub(CHAT, iter(events), tally)
    with pytest.raises(GatewayError) as caught:
        list(stream)
    assert caught.value.status == 502 and caught.value.code == "upstream_stream_error"
    assert caught.value.message == "overloaded" and tally.usage == Usage(10, 0)


def test_native_stream_reframes_as_an_array_and_keeps_the_last_usage() -> None:
    call = parse({"contents": [user({"text": "x"})]}, "streamGenerateContent")
    tally = Tally()
    # network chunks need not follow event boundaries
    raw = b"".join(GEMINI_STREAM)
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    frames = list(gemini.native_stream(call, iter(pieces), tally))
    elements = json.loads(b"".join(frames))
    assert elements == [json.loads(e[6:]) for e in GEMINI_STREAM]
    assert tally.usage == Usage(10, 9, 0, reasoning_tokens=4)
    sse_call = parse({"contents": [user({"text": "x"})]}, "streamGenerateContent", query="alt=sse")
    frames = list(gemini.native_stream(sse_call, iter(GEMINI_STREAM), Tally()))
    assert frames == [b"data: " + e[6:-4] + b"\n\n" for e in GEMINI_STREAM]


def test_native_response_usage() -> None:
    body = orjson.dumps(
        gemini_chunk([{"text": "a"}], "STOP", {"promptTokenCount": 3, "candidatesTokenCount": 1})
    )
    assert gemini.native_response(CHAT, body) == (body, Usage(3, 1))


# -- upstream errors ---------------------------------------------------------------------------------------
def google_error(status: int, name: str, message: str, *details: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"error": {"code": status, "message": message, "status": name, "details": list(details)}}
    )


def test_map_error_sets_a_bad_key_aside() -> None:
    info = {"@type": gemini.ERROR_INFO, "reason": "API_KEY_INVALID", "domain": "googleapis.com"}
    err = gemini.map_error(400, google_error(400, "INVALID_ARGUMENT", "API key not valid.", info), {})
    assert err.disables_key and err.retryable and err.upstream_status == 400


def test_map_error_rate_limits_wait_as_asked() -> None:
    retry = {"@type": gemini.RETRY_INFO, "retryDelay": "6.2s"}
    err = gemini.map_error(429, google_error(429, "RESOURCE_EXHAUSTED", "quota", retry), {})
    assert (
        err.retryable and not err.disables_key and err.retry_after == 7 and err.code == "RESOURCE_EXHAUSTED"
    )
    assert (
        gemini.map_error(
            429, google_error(429, "RESOURCE_EXHAUSTED", "q", retry), {"retry-after": "2"}
        ).retry_after
        == 2
    )


@pytest.mark.parametrize(
    "status, name, retryable",
    [
        (400, "INVALID_ARGUMENT", False),
        (404, "NOT_FOUND", False),
        (400, "FAILED_PRECONDITION", True),
        (403, "PERMISSION_DENIED", True),
        (500, "INTERNAL", True),
        (503, "UNAVAILABLE", True),
    ],
)
def test_map_error_retries_what_another_channel_may_serve(status: int, name: str, retryable: bool) -> None:
    body = orjson.dumps([{"error": {"code": status, "message": "m", "status": name}}])  # the JSON-array shape
    err = gemini.map_error(status, body, {})
    assert err.retryable == retryable and not err.disables_key and err.message == "m"
    rendered = json.loads(gemini.render_error(err).body)["error"]
    assert rendered["status"] == name and rendered["code"] == status


# -- round trips -------------------------------------------------------------------------------------------
def test_a_gemini_conversation_survives_the_hub_to_a_gemini_upstream() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "contents": [
            user({"text": "q"}),
            model_turn(
                {"functionCall": {"id": "x1", "name": "f", "args": {"a": 1}}, "thoughtSignature": "S1"}
            ),
            user({"functionResponse": {"id": "x1", "name": "f", "response": {"output": "r"}}}),
        ],
    }
    again = gemini.request_from_hub(gemini.request_to_hub(parse(body)), "gemini-2.5-flash")
    assert again["systemInstruction"] == body["systemInstruction"]
    assert again["contents"] == body["contents"]


def test_proto_field_names_are_read_as_well_as_json_names() -> None:
    """Google's proto-JSON parser takes `thinking_config` as well as `thinkingConfig`, and google-genai
    sends some nested fields that way."""
    camel = {
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "contents": [
            user({"text": "q"}),
            model_turn(
                {"functionCall": {"name": "f", "args": {"file_path": "x"}}, "thoughtSignature": "UzE="}
            ),
            user(
                {"functionResponse": {"name": "f", "response": {"output": "r"}}},
                {"inlineData": {"mimeType": "image/png", "data": "AA"}},
            ),
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "f",
                        "parametersJsonSchema": {
                            "type": "object",
                            "properties": {"file_path": {"type": "string"}},
                        },
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
        "generationConfig": {
            "maxOutputTokens": 9,
            "topP": 0.5,
            "responseMimeType": "application/json",
            "responseSchema": {"type": "OBJECT", "anyOf": [{"type": "STRING"}], "maxItems": 2},
            "thinkingConfig": {"includeThoughts": True, "thinkingLevel": "LOW"},
        },
    }
    snake = {
        "system_instruction": {"parts": [{"text": "sys"}]},
        "contents": [
            user({"text": "q"}),
            model_turn(
                {"function_call": {"name": "f", "args": {"file_path": "x"}}, "thought_signature": "UzE="}
            ),
            user(
                {"function_response": {"name": "f", "response": {"output": "r"}}},
                {"inline_data": {"mime_type": "image/png", "data": "AA"}},
            ),
        ],
        "tools": [
            {
                "function_declarations": [
                    {
                        "name": "f",
                        "parameters_json_schema": {
                            "type": "object",
                            "properties": {"file_path": {"type": "string"}},
                        },
                    }
                ]
            }
        ],
        "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["f"]}},
        "generation_config": {
            "max_output_tokens": 9,
            "top_p": 0.5,
            "response_mime_type": "application/json",
            "response_schema": {"type": "OBJECT", "any_of": [{"type": "STRING"}], "max_items": 2},
            "thinking_config": {"include_thoughts": True, "thinking_level": "LOW"},
        },
    }
    call = parse(snake)
    assert call.max_output_tokens == 9 and call.extra["thoughts"] is True
    hub = gemini.request_to_hub(call)
    assert hub == gemini.request_to_hub(parse(camel))
    assert hub["messages"][2]["tool_calls"][0]["signature"] == ("gemini", "UzE=")
    assert hub["response_format"]["json_schema"]["schema"] == {
        "type": "object",
        "anyOf": [{"type": "string"}],
        "maxItems": 2,
    }
    assert (
        hub["tool_choice"] == {"type": "function", "function": {"name": "f"}}
        and hub["reasoning_effort"] == "low"
    )
