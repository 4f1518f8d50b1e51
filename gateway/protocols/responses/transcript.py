"""Responses input items as hub messages: `instructions`, messages and their content parts, tool calls and
their outputs, reasoning items (thinking blocks and call signatures), the gateway's compaction items and
`item_reference`s, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.neutral import GatewayError
from gateway.protocols.base import Signature, unwrap_signature
from gateway.protocols.responses.encrypted import CALL_SIGNATURE_PREFIX, REDACTED_PREFIX, _open_call_signature
from gateway.protocols.responses.tables import ROLES, SUMMARY_INTRO, TEXT_PARTS, name
from gateway.protocols.responses.tools import ToolNames


def _instructions(body: dict[str, Any]) -> str:
    value = body.get("instructions")
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # instructions may be input items too
        return "\n".join(_text_of(item.get("content")) for item in value if isinstance(item, dict))
    return ""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content or ():
        if isinstance(part, dict) and part.get("type") in TEXT_PARTS:
            text = part.get(TEXT_PARTS[part["type"]])
            if isinstance(text, str):
                parts.append(text)
    return "\n".join(parts)


def _hub_parts(content: Any) -> list[dict[str, Any]]:
    """A message's content parts in the hub's terms; images by id, files by id or URL, audio: dropped."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    out: list[dict[str, Any]] = []
    for part in content or ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in TEXT_PARTS and isinstance(part.get(TEXT_PARTS[kind]), str):
            out.append({"type": "text", "text": part[TEXT_PARTS[kind]]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            out.append({"type": "image_url", "image_url": image})
        elif kind == "input_file" and isinstance(part.get("file_data"), str):
            out.append({"type": "file", "file": _file(part)})
    return out


def _file(part: dict[str, Any]) -> dict[str, Any]:
    data, filename = part["file_data"], part.get("filename") or "file.pdf"
    if not data.startswith("data:"):  # bare base64, as some clients send it
        data = "data:application/pdf;base64," + data
    return {"file_data": data, "filename": filename}


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any) -> str:
    """A tool output: a string, or content parts whose text is joined (images in it are dropped)."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(
            p.get("text", "") for p in output if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return orjson.dumps(output).decode() if output is not None else ""


class _Transcript:
    """Responses input items as hub messages, in order. An assistant's consecutive items (reasoning, text,
    tool calls) make one assistant message, as chat has it; tool outputs become tool messages."""

    def __init__(self, names: ToolNames, extra: Mapping[str, Any]) -> None:
        self.names = names
        self.summaries: dict[str, str] = extra.get("summaries") or {}
        self.references: dict[str, dict[str, Any]] = extra.get("references") or {}
        self.messages: list[dict[str, Any]] = []
        self._turn: dict[str, Any] | None = None
        self._call_names: dict[str, str] = {}
        self._call_signatures: dict[str, Signature] = {}

    def convert(
        self, items: list[dict[str, Any]], history: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        for message in history or ():
            self.messages.append(message)
            for call in message.get("tool_calls") or ():
                self._call_names[call["id"]] = call["function"]["name"]
        for item in items:
            self.add(item)
        for message in self.messages:
            for call in message.get("tool_calls") or ():
                if call["id"] in self._call_signatures:
                    call["signature"] = self._call_signatures[call["id"]]
        # an assistant turn of reasoning alone has nothing a chat upstream takes
        return [
            m for m in self.messages if m["role"] != "assistant" or m.get("content") or m.get("tool_calls")
        ]

    def add(self, item: dict[str, Any]) -> None:
        kind = item.get("type") or ("message" if "role" in item else "")
        handler = _ITEM_HANDLERS.get(kind)
        if handler is not None:
            handler(self, item)

    def _assistant(self) -> dict[str, Any]:
        if self._turn is None:
            self._turn = {"role": "assistant", "content": None}
            self.messages.append(self._turn)
        return self._turn

    def message(self, item: dict[str, Any]) -> None:
        role = ROLES.get(str(item.get("role") or "user"), "user")
        parts = _hub_parts(item.get("content"))
        if role == "assistant":
            text = "".join(p["text"] for p in parts if p["type"] == "text")
            turn = self._assistant()
            turn["content"] = (turn["content"] or "") + text if text else turn["content"]
            return
        self._turn = None
        if role == "system":
            self.messages.append({"role": "system", "content": "\n".join(p.get("text", "") for p in parts)})
        elif parts:
            self.messages.append({"role": "user", "content": _content(parts)})

    def function_call(self, item: dict[str, Any]) -> None:
        arguments = item.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        self._tool_call(item, arguments)

    def custom_tool_call(self, item: dict[str, Any]) -> None:
        text = item.get("input") if isinstance(item.get("input"), str) else ""
        self._tool_call(item, orjson.dumps({"input": text}).decode())

    def _tool_call(self, item: dict[str, Any], arguments: str) -> None:
        flat = self.names.resolve(item.get("namespace"), item.get("name"))
        call_id = str(item.get("call_id") or item.get("id") or "")
        call = {"id": call_id, "type": "function", "function": {"name": flat, "arguments": arguments}}
        self._assistant().setdefault("tool_calls", []).append(call)
        self._call_names[call_id] = flat

    def tool_output(self, item: dict[str, Any]) -> None:
        self._turn = None
        call_id = str(item.get("call_id") or "")
        message = {"role": "tool", "tool_call_id": call_id, "content": _output_text(item.get("output"))}
        if call_id in self._call_names:
            message["name"] = self._call_names[call_id]
        self.messages.append(message)

    def reasoning(self, item: dict[str, Any]) -> None:
        text = "\n".join(
            s["text"]
            for key in ("summary", "content")
            for s in item.get(key) or ()
            if isinstance(s, dict) and isinstance(s.get("text"), str)
        )
        secret = item.get("encrypted_content") if isinstance(item.get("encrypted_content"), str) else ""
        if secret.startswith(CALL_SIGNATURE_PREFIX):
            call_id, signature = _open_call_signature(secret)
            if call_id:
                self._call_signatures[call_id] = signature
            return
        turn = self._assistant()
        if secret.startswith(REDACTED_PREFIX):
            block: dict[str, Any] = {"type": "redacted_thinking", "data": secret[len(REDACTED_PREFIX) :]}
        elif secret or text:
            signature = unwrap_signature(secret, name) if secret else None
            block = {"type": "thinking", "thinking": text, "signature": signature}
        else:
            return
        turn.setdefault("thinking_blocks", []).append(block)
        if text:
            turn["reasoning_content"] = (turn.get("reasoning_content") or "") + text

    def compaction(self, item: dict[str, Any]) -> None:
        self._turn = None
        summary = self.summaries.get(item.get("encrypted_content") or "")
        if summary is not None:  # an upstream's own compaction item is opaque here: dropped
            self.messages.append({"role": "user", "content": SUMMARY_INTRO + summary})

    def item_reference(self, item: dict[str, Any]) -> None:
        found = self.references.get(str(item.get("id")))
        if found is None:
            raise GatewayError(
                404, f"Item with id '{item.get('id')}' not found.", "invalid_request_error", None, "input"
            )
        if found.get("type") != "item_reference":
            self.add(found)


_ITEM_HANDLERS = {
    "message": _Transcript.message,
    "function_call": _Transcript.function_call,
    "custom_tool_call": _Transcript.custom_tool_call,
    "function_call_output": _Transcript.tool_output,
    "custom_tool_call_output": _Transcript.tool_output,
    "reasoning": _Transcript.reasoning,
    "compaction": _Transcript.compaction,
    "item_reference": _Transcript.item_reference,
}


def _message_text(message: dict[str, Any]) -> str:
    parts = [
        _text_of(message.get("content"))
        if not isinstance(message.get("content"), str)
        else message["content"]
    ]
    for call in message.get("tool_calls") or ():
        parts.append(f"{call['function']['name']}({call['function']['arguments']})")
    return "\n".join(p for p in parts if p)
