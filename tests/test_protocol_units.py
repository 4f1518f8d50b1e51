"""Unit tests of the pieces every protocol shares: the OpenAI module as the hub's own shape (signatures a
client carries back), server-sent event framing, and a channel's output ceiling on a converted request."""

from __future__ import annotations

import orjson

from gateway import sse
from gateway.neutral import Call, Usage
from gateway.protocols import anthropic, gemini, openai
from gateway.protocols.base import unwrap_signature, wrap_signature


def chat_call(body: dict) -> Call:
    return openai.parse_request("chat", orjson.dumps(body))


def test_a_whole_answer_carries_signatures_an_openai_client_can_send_back() -> None:
    hub = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "Because.",
                    "thinking_blocks": [
                        {"type": "thinking", "thinking": "Because.", "signature": ("anthropic", "s1")}
                    ],
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                            "signature": ("gemini", "g-sig"),
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": Usage(5, 7),
    }
    call = chat_call({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    message = orjson.loads(openai.response_from_hub(call, hub))["choices"][0]["message"]
    assert message["tool_calls"][0]["extra_content"] == {"google": {"thought_signature": "g-sig"}}
    block = message["thinking_blocks"][0]
    assert block["thinking"] == "Because." and unwrap_signature(block["signature"], "openai") == (
        "anthropic",
        "s1",
    )
    # the client sends the message back as it got it: the hub sees the same signatures again
    echoed = chat_call({"model": "m", "messages": [{"role": "user", "content": "hi"}, message]})
    back = openai.request_to_hub(echoed)["messages"][1]
    assert back["tool_calls"][0]["signature"] == ("gemini", "g-sig")
    assert back["thinking_blocks"][0]["signature"] == ("anthropic", "s1")


def test_a_streamed_thinking_block_gets_its_text_back_from_reasoning_content() -> None:
    signature = wrap_signature(("anthropic", "s2"), "openai")
    message = {
        "role": "assistant",
        "content": "Done.",
        "reasoning_content": "Step by step.",
        "thinking_blocks": [{"type": "thinking", "thinking": "", "signature": signature}],
    }
    call = chat_call({"model": "m", "messages": [{"role": "user", "content": "hi"}, message]})
    block = openai.request_to_hub(call)["messages"][1]["thinking_blocks"][0]
    assert block == {"type": "thinking", "thinking": "Step by step.", "signature": ("anthropic", "s2")}


def test_events_split_anywhere_even_inside_a_crlf() -> None:
    data = b'data: {"a":1}\r\n\r\ndata: {"b":2}\r\n\r\n'
    for size in range(1, len(data)):
        splitter = sse.EventSplitter()
        payloads = []
        for start in range(0, len(data), size):
            payloads += splitter.feed(data[start : start + size])
        assert payloads == [b'{"a":1}', b'{"b":2}'], size
    named = list(sse.named_events(iter([b"event: ping\r", b"\ndata: {}\r\n\r", b'\ndata: {"type":"x"}\n\n'])))
    assert named == [(b"ping", b"{}"), (b"x", b'{"type":"x"}')]


def test_an_output_ceiling_is_shared_by_thinking_and_the_answer() -> None:
    hub = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 64000, "reasoning_effort": "high"}
    body = anthropic.body_from_hub(hub, "claude-x", False, 8000)
    assert body["max_tokens"] == 8000 and body["thinking"]["budget_tokens"] < 8000
    assert "thinking" not in anthropic.body_from_hub(hub, "claude-x", False, 1500)  # too little to think


def test_a_gemini_file_that_is_no_image_is_not_sent_as_one() -> None:
    from gateway.relay import Inbound

    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Summarise"},
                    {"fileData": {"mimeType": "application/pdf", "fileUri": "https://x/files/a"}},
                    {"fileData": {"mimeType": "image/png", "fileUri": "https://x/files/b"}},
                ],
            }
        ]
    }
    inbound = Inbound({}, None, None, lambda n: b"", "", "", {"model": "gemini-x"})
    call = gemini.parse_request("generateContent", orjson.dumps(body), inbound)
    content = gemini.request_to_hub(call)["messages"][-1]["content"]
    assert {"type": "text", "text": "[file: https://x/files/a]"} in content
    assert {"type": "image_url", "image_url": {"url": "https://x/files/b"}} in content
