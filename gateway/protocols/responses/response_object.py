"""The Response object a converted call answers with, made from the hub's answer: output items (reasoning,
message, tool calls), status, usage and the request's settings echoed; the compaction body; and the hand-off
of the answer to the conversation store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.neutral import Call, GatewayError, Usage
from gateway.protocols.responses.encrypted import _call_secret, _thinking_secret
from gateway.protocols.responses.tables import ENCRYPTED_INCLUDE, INCOMPLETE
from gateway.protocols.responses.tools import ToolNames
from gateway.protocols.responses_store import own_item_id, seal


@dataclass(slots=True)
class _Ids:
    """Output item ids that name their response (see `responses_store.own_item_id`)."""

    token: str
    count: int = 0

    def __call__(self, prefix: str) -> str:
        self.count += 1
        return own_item_id(prefix, self.token, self.count)


def _visibility(call: Call) -> tuple[bool, bool]:
    """Whether reasoning summaries and encrypted reasoning go to the client, as OpenAI decides them: a summary
    when `reasoning.summary` is set, encrypted content when `include` asks for it."""
    reasoning = call.body.get("reasoning")
    summary = isinstance(reasoning, dict) and bool(reasoning.get("summary"))
    return summary, ENCRYPTED_INCLUDE in (call.body.get("include") or ())


def _reasoning_item(
    item_id: str, text: str, secret: str | None, summary: bool, encrypted: bool
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": item_id,
        "summary": [{"type": "summary_text", "text": text}] if summary and text else [],
        "status": "completed",
    }
    if encrypted and secret:
        item["encrypted_content"] = secret
    return item


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = (
        [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        if status == "completed"
        else []
    )
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _tool_item(
    item_id: str, call_id: str, flat: str, arguments: str, names: ToolNames, done: bool
) -> dict[str, Any]:
    namespace, tool_name, custom = names.original(flat)
    item: dict[str, Any] = {"id": item_id, "call_id": call_id, "name": tool_name}
    if custom:
        item = {"type": "custom_tool_call", **item, "input": _custom_input(arguments) if done else ""}
    else:
        item = {"type": "function_call", **item, "arguments": arguments if done else ""}
    item["status"] = "completed" if done else "in_progress"
    if namespace:
        item["namespace"] = namespace
    return item


def _custom_input(arguments: str) -> str:
    """A custom tool's input from the hub function's arguments `{"input": "..."}`; the raw text otherwise."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return value["input"]
    return arguments


def usage_json(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _status(finish: str | None) -> tuple[str, dict[str, Any] | None]:
    reason = INCOMPLETE.get(finish or "")
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def _response_object(
    call: Call, status: str, output: list[dict[str, Any]], usage: Usage | None, incomplete: Any = None
) -> dict[str, Any]:
    """The Response object, echoing the request's settings as OpenAI does."""
    body = call.body
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    return {
        "id": call.extra["response_id"],
        "object": "response",
        "created_at": call.extra["created_at"],
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": call.model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": body.get("store") is not False,
        "temperature": body.get("temperature"),
        "text": body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "truncation": body.get("truncation") or "disabled",
        "usage": usage_json(usage),
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def response_from_hub(call: Call, hub: dict[str, Any]) -> bytes:
    if call.endpoint == "compact":
        return _compaction_body(call, hub)
    choice = (hub.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output = _output_items(call, message)
    status, incomplete = _status(choice.get("finish_reason"))
    response = _response_object(call, status, output, hub.get("usage"), incomplete)
    _keep(call, response, message)
    return orjson.dumps(response)


def _output_items(call: Call, message: dict[str, Any]) -> list[dict[str, Any]]:
    names: ToolNames = call.extra.get("names") or ToolNames()
    summary, encrypted = _visibility(call)
    ids, output = _Ids(call.extra["token"]), []
    blocks = message.get("thinking_blocks") or []
    if not blocks and message.get("reasoning_content"):
        blocks = [{"type": "thinking", "thinking": message["reasoning_content"], "signature": None}]
    if summary or encrypted:
        for block in blocks:
            output.append(
                _reasoning_item(
                    ids("rs"), block.get("thinking") or "", _thinking_secret(block), summary, encrypted
                )
            )
    if message.get("content"):
        output.append(_message_item(ids("msg"), message["content"]))
    for call_ in message.get("tool_calls") or ():
        if encrypted and call_.get("signature"):
            output.append(
                _reasoning_item(ids("rs"), "", _call_secret(call_["id"], call_["signature"]), False, True)
            )
        function = call_["function"]
        output.append(
            _tool_item(ids("fc"), call_["id"], function["name"], function["arguments"], names, True)
        )
    return output


def _keep(call: Call, response: dict[str, Any], message: dict[str, Any]) -> None:
    """Store the answer before the client has it (the last event or the body), so that a follow-up sent the
    moment it arrives finds it."""
    keeper = call.extra.get("keep")
    if keeper is not None:
        keeper.converted(call, response, message)


def _compaction_body(call: Call, hub: dict[str, Any]) -> bytes:
    if "seal_key" not in call.extra:
        raise GatewayError(500, "Compaction needs the gateway's state.", "server_error")
    choice = (hub.get("choices") or [{}])[0]
    summary = (choice.get("message") or {}).get("content") or ""
    item = {
        "type": "compaction",
        "id": "cmp_" + call.extra["token"],
        "encrypted_content": seal(call.extra["seal_key"], call.extra["user_id"], summary),
    }
    body = {
        "id": call.extra["response_id"],
        "object": "response.compaction",
        "created_at": call.extra["created_at"],
        "output": [*call.extra.get("kept", []), item],
        "usage": usage_json(hub.get("usage") or Usage()),
    }
    return orjson.dumps(body)
