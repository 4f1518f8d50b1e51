"""The upstream side, for a channel that serves `/v1/responses` itself: the request (the body untouched but
for the model, and for what only the gateway understands: a conversation it kept, its own compaction items
and item ids), the answer and its events passed through with usage read from them, upstream errors, and a
native answer read as the hub's to estimate its tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from gateway import sse
from gateway.neutral import Call, GatewayError, Usage
from gateway.protocols import openai
from gateway.protocols.base import Tally
from gateway.protocols.responses.events import _frame
from gateway.protocols.responses.hub_request import _input_parts
from gateway.protocols.responses.response_object import _tool_item
from gateway.protocols.responses.tables import PATHS, SUMMARY_INTRO, TERMINAL_EVENTS
from gateway.protocols.responses.tools import ToolNames, _tools
from gateway.protocols.responses.transcript import _output_text, _text_of
from gateway.protocols.responses_store import input_items
from gateway.upstream import UpstreamRequest

if TYPE_CHECKING:
    from gateway.catalog import ChannelInfo, UpstreamKey

map_error = openai.map_error


def build_request(
    call: Call, channel: ChannelInfo, key: UpstreamKey, hub: dict[str, Any] | None
) -> UpstreamRequest:
    if hub is not None:  # route() sends hub requests for OpenAI-protocol channels to the openai module
        raise GatewayError(500, "The Responses protocol takes no hub requests.", "server_error")
    upstream_model = channel.upstream_model(call.model)
    body = call.raw
    rewritten = _native_input(call)
    if upstream_model != call.model or rewritten is not None:
        changed = dict(call.body)
        changed["model"] = upstream_model
        if rewritten is not None:
            changed["input"] = rewritten
            if call.extra.get("history") is not None:
                changed.pop("previous_response_id", None)  # the gateway kept that conversation: sent in full
        body = orjson.dumps(changed)
    headers = {
        **openai.auth_headers(channel, key),
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if call.stream else "application/json",
    }
    return UpstreamRequest(
        "POST", openai.endpoint_url(channel, PATHS[call.endpoint], upstream_model), headers, body
    )


def _native_input(call: Call) -> list[dict[str, Any]] | None:
    """The input a native upstream needs in place of what only the gateway understands: a conversation the
    gateway kept (converted earlier), its own compaction items and item ids; None when nothing changes."""
    history = call.extra.get("history")
    summaries, references = call.extra.get("summaries") or {}, call.extra.get("references") or {}
    items = input_items(call.body)
    if history is None and not summaries and not references:
        return None
    out = _items_from_hub(history, _tools(call.body)[0]) if history else []
    for item in items:
        secret = item.get("encrypted_content")
        if item.get("type") == "compaction" and isinstance(secret, str) and secret in summaries:
            text = SUMMARY_INTRO + summaries[secret]
            out.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
        elif item.get("type") == "item_reference" and str(item.get("id")) in references:
            out.append(references[str(item.get("id"))])
        else:
            out.append(item)
    return out


def _items_from_hub(messages: list[dict[str, Any]], names: ToolNames) -> list[dict[str, Any]]:
    """Hub messages as Responses input items, for a native upstream. Thinking blocks are left out: an
    OpenAI upstream takes back only reasoning items it made, by their ids, which the hub does not keep."""
    items: list[dict[str, Any]] = []
    custom_calls: set[str] = set()
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer", "user"):
            items.append({"type": "message", "role": role, "content": _input_parts(message.get("content"))})
        elif role == "assistant":
            if message.get("content"):
                text = (
                    message["content"]
                    if isinstance(message["content"], str)
                    else _text_of(message["content"])
                )
                items.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text}],
                    }
                )
            for call in message.get("tool_calls") or ():
                item = _tool_item(
                    "", call["id"], call["function"]["name"], call["function"]["arguments"], names, True
                )
                item.pop("id")
                items.append(item)
                if item["type"] == "custom_tool_call":
                    custom_calls.add(call["id"])
        elif role == "tool":
            call_id = message.get("tool_call_id") or ""
            kind = "custom_tool_call_output" if call_id in custom_calls else "function_call_output"
            items.append({"type": kind, "call_id": call_id, "output": _output_text(message.get("content"))})
    return items


def usage_from(data: Any) -> Usage | None:
    if not isinstance(data, dict) or not isinstance(data.get("input_tokens"), int):
        return None
    details = data.get("input_tokens_details") if isinstance(data.get("input_tokens_details"), dict) else {}
    output = data.get("output_tokens_details") if isinstance(data.get("output_tokens_details"), dict) else {}
    return Usage(
        data["input_tokens"],
        _int(data.get("output_tokens")),
        _int(details.get("cached_tokens")),
        cache_write_tokens=_int(details.get("cache_write_tokens")),
        reasoning_tokens=_int(output.get("reasoning_tokens")),
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def native_response(call: Call, body: bytes) -> tuple[bytes, Usage | None]:
    data = openai.upstream_json(body)
    if call.endpoint == "input_tokens":
        return body, Usage()  # counting is free
    keeper = call.extra.get("keep")
    if keeper is not None and call.endpoint == "responses":
        keeper.native(call, data)
    return body, usage_from(data.get("usage"))


_sse_blocks = sse.named_events


def native_stream(call: Call, chunks: Iterator[bytes], tally: Tally) -> Iterator[bytes]:
    """The upstream's events as they come, with their names; usage from the terminal event."""
    tally.text_of = delivered_text
    keeper = call.extra.get("keep")
    call.extra["sequence"] = 0
    for event, payload in _sse_blocks(chunks):
        call.extra["sequence"] += 1  # OpenAI numbers its events from 0, one by one
        if not event:  # a server that names its events only inside the data
            found = re.match(rb'\s*\{\s*"type"\s*:\s*"([^"]+)"', payload)
            event = found.group(1) if found else b"message"
        tally.payloads.append(payload)
        if event in TERMINAL_EVENTS:
            try:
                response = orjson.loads(payload).get("response")
            except (orjson.JSONDecodeError, AttributeError):
                response = None
            if isinstance(response, dict):
                tally.usage = usage_from(response.get("usage")) or tally.usage
                if keeper is not None:
                    keeper.native(call, response)
        yield _frame(event, payload)


def delivered_text(payloads: list[bytes]) -> str:
    """The text a Responses stream delivered (every `*.delta`), to estimate its tokens when no usage came."""
    parts: list[str] = []
    for payload in payloads:
        if b'.delta"' not in payload:
            continue
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict) and isinstance(data.get("delta"), str):
            parts.append(data["delta"])
    return "".join(parts)


def response_to_hub(call: Call, body: bytes) -> dict[str, Any]:
    """A Response object as a hub answer. No hub request goes to a Responses upstream (`route` sends those
    to the openai module); the relay reads a native answer this way to estimate its tokens when the
    upstream reported no usage."""
    data = openai.upstream_json(body)
    text, reasoning, calls = [], [], []
    for item in data.get("output") or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            text.append(_text_of(item.get("content")))
        elif item.get("type") == "reasoning":
            reasoning.append(_text_of(item.get("summary")))
        elif item.get("type") in ("function_call", "custom_tool_call"):
            arguments = item.get("arguments") if item["type"] == "function_call" else item.get("input")
            function = {"name": str(item.get("name") or ""), "arguments": str(arguments or "")}
            calls.append({"id": str(item.get("call_id") or ""), "type": "function", "function": function})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if any(reasoning):
        message["reasoning_content"] = "\n".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    finish = "tool_calls" if calls else "length" if data.get("status") == "incomplete" else "stop"
    return {
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage_from(data.get("usage")),
    }


def stream_to_hub(call: Call, chunks: Iterator[bytes], tally: Tally) -> Iterator[dict[str, Any]]:
    raise GatewayError(500, "The Responses protocol is not a hub upstream.", "server_error")
