"""Fake OpenAI Responses API endpoints, served by tests.fake_upstream.FakeUpstream (see its `_protocol_fake`).

`POST /v1/responses` (JSON, or the typed event stream with `event:` lines and `sequence_number`s),
`/v1/responses/compact`, `/v1/responses/input_tokens`, `GET`/`DELETE /v1/responses/{id}` and
`POST /v1/responses/{id}/cancel`, with a small in-memory store per FakeUpstream so that
`previous_response_id` works as it does at api.openai.com (an unknown one is a 404).

The answer: when the request has tools and its last input item is a user message that says "tool", a call of
the first tool (a `custom_tool_call` with input `FAKE_TOOL_INPUT` for a custom tool, else a `function_call`
whose arguments fill the tool's required parameters with "fake"); otherwise a message with the `content`
knob. A reasoning item comes first when `reasoning.summary` is set (its summary is `REASONING_SUMMARY`) or
`include` asks for `reasoning.encrypted_content` (then it carries `encrypted_content`).

Token counts are deterministic: input = per input item (and per item of the previous response's turn),
the words of its text + 3, plus the words of `instructions`, at least 1 (`input_tokens`); output = the words
of the text, tool input or arguments, plus the reasoning summary's words (its `reasoning_tokens`).
Knobs honoured: chunks, chunk_delay_s, content, no_usage, cached_tokens, cut_after_chunks, error_event,
and the failure knobs (through `failure`).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from typing import Any

from tests.fake_upstream import (
    _invalid_key_error,
    count_words,
    error_object,
    split_content,
)

POST_PATHS = ("/v1/responses", "/v1/responses/compact", "/v1/responses/input_tokens")
_ITEM_PATH = re.compile(r"^/v1/responses/([^/]+)(/cancel)?$")
FAKE_TOOL_INPUT = 'const r = await tools.exec_command({cmd: "cat hello.txt"});\ntext(r);\n'
REASONING_SUMMARY = "Thinking it over."
ENCRYPTED_PREFIX = "enc_fake_"
_lock = threading.Lock()


def owns(method: str, path: str) -> bool:
    if path in POST_PATHS:
        return True
    found = _ITEM_PATH.match(path)
    return bool(found) and found.group(1) not in ("compact", "input_tokens")


def _store(handler: Any) -> dict[str, dict[str, Any]]:
    fake = handler.server.fake
    with _lock:
        if not hasattr(fake, "responses_store"):
            fake.responses_store = {}
        return fake.responses_store


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


# -- token counts -------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    if isinstance(value, dict):
        for key in ("text", "output", "input", "arguments", "content"):
            if key in value:
                return _text(value[key])
    return ""


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    data = body.get("input")
    if isinstance(data, str):
        return [{"type": "message", "role": "user", "content": data}]
    return [i for i in data or () if isinstance(i, dict) and i.get("type") != "additional_tools"]


def input_tokens(body: dict[str, Any], previous: dict[str, Any] | None = None) -> int:
    """Per input item, the words of its text + 3; plus those of `instructions`; at least 1. A follow-up
    also counts the previous turn's input and output items."""
    items = input_items(body)
    if previous is not None:
        items = previous["input"] + previous["response"]["output"] + items
    total = sum(count_words(_text(i)) + 3 for i in items) + count_words(_text(body.get("instructions")))
    return max(1, total)


# -- the answer ----------------------------------------------------------------------------------------
def _tools(body: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    found: list[tuple[str | None, dict[str, Any]]] = []
    declared = list(body.get("tools") or ())
    for item in body.get("input") if isinstance(body.get("input"), list) else ():
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            declared += item.get("tools") or []
    for tool in declared:
        if tool.get("type") == "namespace":
            found += [(tool.get("name"), inner) for inner in tool.get("tools") or ()]
        elif tool.get("type") in ("function", "custom"):
            found.append((None, tool))
    return found


def _wants_tool(body: dict[str, Any]) -> bool:
    items = input_items(body)
    last = items[-1] if items else {}
    return (
        bool(_tools(body))
        and last.get("role") == "user"
        and last.get("type", "message") == "message"
        and "tool" in _text(last.get("content")).lower()
    )


def _tool_call(body: dict[str, Any]) -> dict[str, Any]:
    namespace, tool = _tools(body)[0]
    item: dict[str, Any] = {"id": _new_id("fc_"), "call_id": _new_id("call_"), "name": tool["name"]}
    if tool.get("type") == "custom":
        item = {"type": "custom_tool_call", **item, "input": FAKE_TOOL_INPUT}
    else:
        required = (tool.get("parameters") or {}).get("required") or []
        item = {"type": "function_call", **item, "arguments": json.dumps({p: "fake" for p in required})}
    if namespace:
        item["namespace"] = namespace
    item["status"] = "completed"
    return item


def _reasoning(body: dict[str, Any]) -> dict[str, Any] | None:
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    encrypted = "reasoning.encrypted_content" in (body.get("include") or ())
    if not reasoning.get("summary") and not encrypted:
        return None
    item: dict[str, Any] = {"type": "reasoning", "id": _new_id("rs_"), "summary": []}
    if reasoning.get("summary"):
        item["summary"] = [{"type": "summary_text", "text": REASONING_SUMMARY}]
    if encrypted:
        item["encrypted_content"] = ENCRYPTED_PREFIX + uuid.uuid4().hex
    return item


def _usage(handler: Any, prompt: int, output: int, reasoning: int) -> dict[str, Any] | None:
    if handler.beh.no_usage:
        return None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": handler.beh.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + output,
    }


def _response(body: dict[str, Any], output: list[dict[str, Any]], usage: Any, status: str) -> dict[str, Any]:
    return {
        "id": _new_id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "usage": usage,
        "metadata": body.get("metadata") or {},
    }


def _answer(handler: Any, body: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    reasoning = _reasoning(body)
    reasoning_tokens = count_words(REASONING_SUMMARY) if reasoning and reasoning["summary"] else 0
    if reasoning:
        output.append(reasoning)
    if _wants_tool(body):
        output.append(_tool_call(body))
    else:
        text = handler.beh.content
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        output.append(
            {
                "type": "message",
                "id": _new_id("msg_"),
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    produced = sum(count_words(_text(i)) for i in output if i["type"] != "reasoning") + reasoning_tokens
    usage = _usage(handler, input_tokens(body, previous), produced, reasoning_tokens)
    return _response(body, output, usage, "completed")


# -- endpoints -----------------------------------------------------------------------------------------
def handle(handler: Any, path: str, body: Any) -> None:
    if path in POST_PATHS:
        if handler.command != "POST":
            handler._send_json(405, error_object(f"Use POST for {path}.", "invalid_request_error"))
        elif not isinstance(body, dict) or not isinstance(body.get("model"), str):
            handler._send_json(
                400, error_object("you must provide a model parameter", "invalid_request_error")
            )
        else:
            {
                "/v1/responses": _create,
                "/v1/responses/compact": _compact,
                "/v1/responses/input_tokens": _count,
            }[path](handler, body)
        return
    found = _ITEM_PATH.match(path)
    response_id, cancel = found.group(1), bool(found.group(2))
    stored = _store(handler).get(response_id)
    if stored is None:
        message = f"Response with id '{response_id}' not found."
        handler._send_json(404, error_object(message, "invalid_request_error", None, "response_id"))
    elif cancel:
        message = "Cannot cancel a response that is not in progress."
        handler._send_json(400, error_object(message, "invalid_request_error", None, None))
    elif handler.command == "DELETE":
        del _store(handler)[response_id]
        handler._send_json(200, {"id": response_id, "object": "response", "deleted": True})
    else:
        handler._send_json(200, stored["response"])


def _previous(handler: Any, body: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    previous_id = body.get("previous_response_id")
    if previous_id is None:
        return True, None
    previous = _store(handler).get(previous_id)
    if previous is None:
        message = f"Previous response with id '{previous_id}' not found."
        error = error_object(
            message, "invalid_request_error", "previous_response_not_found", "previous_response_id"
        )
        handler._send_json(400, error)
        return False, None
    return True, previous


def _create(handler: Any, body: dict[str, Any]) -> None:
    ok, previous = _previous(handler, body)
    if not ok:
        return
    response = _answer(handler, body, previous)
    if body.get("store", True) is not False:
        history = (previous["input"] + previous["response"]["output"]) if previous else []
        _store(handler)[response["id"]] = {"input": history + input_items(body), "response": response}
    if body.get("stream"):
        _stream(handler, response)
    else:
        handler._send_json(200, response)


def _compact(handler: Any, body: dict[str, Any]) -> None:
    ok, previous = _previous(handler, body)
    if not ok:
        return
    items = (previous["input"] + previous["response"]["output"] if previous else []) + input_items(body)
    kept = [
        _user_message(i) for i in items if i.get("type", "message") == "message" and i.get("role") == "user"
    ]
    compaction = {
        "type": "compaction",
        "id": _new_id("cmp_"),
        "encrypted_content": "fake_compaction_" + uuid.uuid4().hex,
    }
    usage = _usage(handler, input_tokens(body, previous), 5, 0)
    answer = {
        "id": _new_id("resp_"),
        "object": "response.compaction",
        "created_at": int(time.time()),
        "output": [*kept, compaction],
        "usage": usage,
    }
    handler._send_json(200, answer)


def _user_message(item: dict[str, Any]) -> dict[str, Any]:
    content = item.get("content")
    parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else content
    return {"type": "message", "id": _new_id("msg_"), "status": "completed", "role": "user", "content": parts}


def _count(handler: Any, body: dict[str, Any]) -> None:
    ok, previous = _previous(handler, body)
    if ok:
        handler._send_json(
            200, {"object": "response.input_tokens", "input_tokens": input_tokens(body, previous)}
        )


# -- the typed event stream ------------------------------------------------------------------------------
class _Writer:
    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> bool:
        data = json.dumps({"type": kind, **fields, "sequence_number": self.sequence}, separators=(",", ":"))
        self.sequence += 1
        return self.handler.write_chunk(f"event: {kind}\ndata: {data}\n\n".encode())


def _stream(handler: Any, response: dict[str, Any]) -> None:
    """The typed events of `response` (api-contracts.md section 4), honouring chunks, chunk_delay_s,
    cut_after_chunks and error_event; the pieces of the text (or of a tool's arguments or input) are the
    chunks a cut counts."""
    beh, fake = handler.beh, handler.server.fake
    send = _Writer(handler)
    handler.start_stream()
    skeleton = {**response, "status": "in_progress", "output": [], "usage": None}
    if not (send("response.created", response=skeleton) and send("response.in_progress", response=skeleton)):
        return
    sent = 0
    for index, item in enumerate(response["output"]):
        pieces = split_content(_text(item), beh.chunks) if item["type"] != "reasoning" else []
        for piece_frames in _item_events(item, index, pieces):
            if piece_frames is None:  # a content piece follows
                if beh.cut_after_chunks is not None and sent >= beh.cut_after_chunks:
                    handler.cut_stream()
                    return
                if beh.chunk_delay_s > 0 and fake._stopping.wait(beh.chunk_delay_s):
                    handler.cut_stream()
                    return
                sent += 1
                continue
            kind, fields = piece_frames
            if not send(kind, **fields):
                return
    if beh.error_event is not None:
        error = {k: v for k, v in beh.error_event.items() if k not in ("type", "sequence_number")}
        if send("error", **error):
            handler.end_stream()
        return
    if beh.cut_after_chunks is not None:
        handler.cut_stream()
        return
    if send("response.completed", response=response):
        handler.end_stream()


def _item_events(item: dict[str, Any], index: int, pieces: list[str]) -> Any:
    """The events of one output item; None before each content piece (where delays and cuts happen)."""
    where = {"item_id": item["id"], "output_index": index}
    kind = item["type"]
    if kind == "message":
        text = item["content"][0]["text"]
        yield (
            "response.output_item.added",
            {"output_index": index, "item": {**item, "status": "in_progress", "content": []}},
        )
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield "response.content_part.added", {**where, "content_index": 0, "part": empty}
        for piece in pieces:
            yield None
            yield "response.output_text.delta", {**where, "content_index": 0, "delta": piece, "logprobs": []}
        yield "response.output_text.done", {**where, "content_index": 0, "text": text, "logprobs": []}
        yield "response.content_part.done", {**where, "content_index": 0, "part": item["content"][0]}
    elif kind == "function_call":
        yield (
            "response.output_item.added",
            {"output_index": index, "item": {**item, "arguments": "", "status": "in_progress"}},
        )
        for piece in pieces:
            yield None
            yield "response.function_call_arguments.delta", {**where, "delta": piece}
        yield (
            "response.function_call_arguments.done",
            {**where, "arguments": item["arguments"], "name": item["name"]},
        )
    elif kind == "custom_tool_call":
        yield "response.output_item.added", {"output_index": index, "item": {**item, "input": ""}}
        for piece in pieces:
            yield None
            yield "response.custom_tool_call_input.delta", {**where, "delta": piece}
        yield "response.custom_tool_call_input.done", {**where, "input": item["input"]}
    elif kind == "reasoning":
        yield "response.output_item.added", {"output_index": index, "item": {**item, "summary": []}}
        for summary_index, part in enumerate(item["summary"]):
            at = {**where, "summary_index": summary_index}
            yield (
                "response.reasoning_summary_part.added",
                {**at, "part": {"type": "summary_text", "text": ""}},
            )
            yield "response.reasoning_summary_text.delta", {**at, "delta": part["text"]}
            yield "response.reasoning_summary_text.done", {**at, "text": part["text"]}
            yield "response.reasoning_summary_part.done", {**at, "part": part}
    yield "response.output_item.done", {"output_index": index, "item": item}


# -- failures ----------------------------------------------------------------------------------------------
def failure(handler: Any, status: int, body: Any) -> None:
    """OpenAI's error bodies, as the chat endpoints of FakeUpstream send them."""
    if status == 401:
        handler._send_json(401, _invalid_key_error(handler.rec.headers.get("authorization", "")))
    else:
        handler._send_failure(body)
