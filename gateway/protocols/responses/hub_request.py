"""A converted call's hub request: `request_to_hub` for `/v1/responses` (messages, tools, format, reasoning,
limits), and for `/v1/responses/compact` a request to the same model for a summary of the conversation; also
hub content back as Responses input parts.
"""

from __future__ import annotations

import secrets
from typing import Any

from gateway.neutral import Call
from gateway.protocols.responses.tables import COMPACT_PROMPT, EFFORTS, PASSED, SUMMARY_INTRO
from gateway.protocols.responses.tools import _tool_choice, _tools
from gateway.protocols.responses.transcript import _instructions, _text_of, _Transcript
from gateway.protocols.responses_store import input_items


def request_to_hub(call: Call) -> dict[str, Any]:
    if call.endpoint == "compact":
        return _compact_request(call)
    body = call.body
    names, tools = _tools(body)
    call.extra["names"] = names
    conversation = _Transcript(names, call.extra).convert(input_items(body), call.extra.get("history"))
    call.extra["conversation"] = conversation  # what a stored response keeps, with its answer
    instructions = _instructions(body)
    messages = ([{"role": "system", "content": instructions}] if instructions else []) + conversation
    hub: dict[str, Any] = {"model": call.model, "messages": messages, "stream": call.stream}
    if tools:
        hub["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"), names)
        if choice is not None:
            hub["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):  # OpenAI refuses it without tools
            hub["parallel_tool_calls"] = body["parallel_tool_calls"]
    for key in PASSED:
        if body.get(key) is not None:
            hub[key] = body[key]
    hub.update(_format(body.get("text")))
    hub.update(_reasoning(body.get("reasoning")))
    if call.max_output_tokens is not None:
        hub["max_tokens"] = call.max_output_tokens
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str):
        hub["user"] = user
    return hub


def _format(text: Any) -> dict[str, Any]:
    form = text.get("format") if isinstance(text, dict) else None
    if not isinstance(form, dict):
        return {}
    if form.get("type") == "json_object":
        return {"response_format": {"type": "json_object"}}
    if form.get("type") == "json_schema":
        schema = {k: form[k] for k in ("name", "schema", "strict", "description") if k in form}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    return {}


def _reasoning(reasoning: Any) -> dict[str, Any]:
    if not isinstance(reasoning, dict):
        return {}
    out: dict[str, Any] = {}
    effort = EFFORTS.get(str(reasoning.get("effort")))
    if effort:
        out["reasoning_effort"] = effort
    if reasoning.get("summary"):
        out["include_reasoning"] = True
    return out


def _compact_request(call: Call) -> dict[str, Any]:
    """Compaction on a channel without `/responses/compact`: the same model is asked for a summary of the
    conversation, told as a transcript (so that no upstream needs the tools it used)."""
    names, _ = _tools(call.body)
    conversation = _Transcript(names, call.extra).convert(input_items(call.body), call.extra.get("history"))
    call.extra["kept"] = [
        _user_item(m) for m in conversation if m["role"] == "user" and not _is_summary(m.get("content"))
    ]
    lines = [_transcript_line(m) for m in conversation if m["role"] != "system"]
    hub: dict[str, Any] = {
        "model": call.model,
        "messages": [
            {"role": "system", "content": COMPACT_PROMPT},
            {"role": "user", "content": "\n\n".join(line for line in lines if line)},
        ],
        "stream": False,
    }
    if call.max_output_tokens is not None:
        hub["max_tokens"] = call.max_output_tokens
    return hub


def _is_summary(content: Any) -> bool:
    return isinstance(content, str) and content.startswith(SUMMARY_INTRO)


def _transcript_line(message: dict[str, Any]) -> str:
    role = message["role"]
    if role == "tool":
        return f"[result of {message.get('name') or message.get('tool_call_id')}]: {message.get('content')}"
    content = message.get("content")
    text = content if isinstance(content, str) else _text_of(content)
    lines = [f"[{role}]: {text}"] if text else []
    for call in message.get("tool_calls") or ():
        lines.append(f"[{role} called {call['function']['name']} with {call['function']['arguments']}]")
    return "\n".join(lines)


def _user_item(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_" + secrets.token_hex(16),
        "status": "completed",
        "role": "user",
        "content": _input_parts(message.get("content")),
    }


def _input_parts(content: Any) -> list[dict[str, Any]]:
    """Hub content as Responses input parts."""
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    out: list[dict[str, Any]] = []
    for part in content or ():
        if part.get("type") == "text":
            out.append({"type": "input_text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            image = part.get("image_url") or {}
            out.append(
                {"type": "input_image", "image_url": image.get("url"), "detail": image.get("detail", "auto")}
            )
        elif part.get("type") == "file":
            out.append({"type": "input_file", **(part.get("file") or {})})
    return out
