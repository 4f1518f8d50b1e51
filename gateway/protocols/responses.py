"""OpenAI's Responses API in both directions, with its state: `POST /v1/responses` (streamed or not),
`/v1/responses/compact`, `/v1/responses/input_tokens`, and GET, DELETE and cancel of a stored response.

Spec: the OpenAI API reference (openai/openai-openapi: CreateResponse, Response, ResponseStreamEvent,
CompactResource, TokenCountsResource) and openai-python's `types/responses`; what Codex CLI sends (an
`additional_tools` input item, `namespace` and freeform `custom` tools, ids on every input item,
developer messages instead of `instructions`, `store: false` with encrypted reasoning) is accepted as is.

Native: a channel that serves `/v1/responses` itself (type `openai`, unless its `responses` setting says
`convert`; any OpenAI-compatible type whose setting says `native`) gets the body untouched but for the
model, and its frames are forwarded with their `event:` lines. A response id it made stays bound to it:
follow-ups (`previous_response_id`) and GET, DELETE and cancel go back to that channel.

Converted: any other channel serves the call through the hub (`gateway.protocols.base`); this module then
renders the Response object and its typed event stream, and keeps the conversation itself
(`gateway.protocols.responses_store`) for `previous_response_id`, GET and DELETE. Tools become hub
functions: a namespace's tools are flattened to `<namespace>__<name>` (a short hash when longer than 64
characters), a freeform custom tool becomes a function of one string argument `input`, and both come back
under their own names (a custom tool's call as a `custom_tool_call`). Reasoning items become thinking
blocks; their `encrypted_content` carries a foreign signature (`wrap_signature`) through the client.
Compaction asks the same model for a summary, which the client keeps as a signed compaction item.

What a converted call cannot carry is dropped on purpose (docs/protocols.md): hosted tools (`web_search`,
`file_search`, ...) and their call items, `input_image` by `file_id`, `input_file` by `file_id` or
`file_url`, audio, images in tool outputs, `text.verbosity`, `truncation`, `service_tier`,
`prompt_cache_key`, `client_metadata`, `metadata` (echoed back, not sent), compaction items an upstream made
(opaque to every other upstream), and, in compaction summaries, system and developer messages (clients
send them again with every request).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from gateway import sse, tokens
from gateway.neutral import Call, GatewayError, Usage, bad_request
from gateway.protocols import openai
from gateway.protocols.base import Signature, Tally, unwrap_signature, wrap_signature
from gateway.protocols.responses_store import input_items, own_item_id, seal
from gateway.protocols.responses_store import manage as manage  # the relay's hooks live with the state
from gateway.protocols.responses_store import prepare as prepare
from gateway.upstream import UpstreamRequest

if TYPE_CHECKING:
    from gateway.catalog import ChannelInfo, UpstreamKey
    from gateway.relay import Inbound

name = "responses"
PATHS = {
    "responses": "/responses",
    "compact": "/responses/compact",
    "input_tokens": "/responses/input_tokens",
}
KINDS = {"responses": "chat", "compact": "chat", "input_tokens": "count"}

# -- conversion tables -------------------------------------------------------------------------------
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
TEXT_PARTS = {
    "input_text": "text",
    "output_text": "text",
    "text": "text",
    "refusal": "refusal",
    "summary_text": "text",
    "reasoning_text": "text",
}
EFFORTS = {
    "none": None,
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}
PASSED = ("temperature", "top_p")  # same name, same meaning in the hub
TOOL_CHOICES = {"auto": "auto", "none": "none", "required": "required"}
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
TERMINAL_EVENTS = (b"response.completed", b"response.incomplete", b"response.failed")
ENCRYPTED_INCLUDE = "reasoning.encrypted_content"
MAX_TOOL_NAME = 64
NAMESPACE_JOIN = "__"
CUSTOM_PARAMETERS = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's whole input, as free text."}},
    "required": ["input"],
}
# private `encrypted_content` forms, for what the hub has and a reasoning item has no field for
REDACTED_PREFIX = "rhx."  # an Anthropic redacted_thinking block
CALL_SIGNATURE_PREFIX = "rht."  # the signature of one tool call (Gemini's thoughtSignature)
SUMMARY_INTRO = "Summary of the earlier conversation, which was compacted:\n\n"
COMPACT_PROMPT = (
    "You compact a conversation between a user and an assistant so that it can go on in a smaller context. "
    "Write a summary that keeps everything needed to continue the work: the user's goals and constraints, "
    "the decisions made, the facts learned, the tools called and their important results, the files, "
    "names and identifiers involved, and what remains to be done. Write only the summary."
)


# -- inbound: parsing and errors ---------------------------------------------------------------------
render_error = openai.render_error
map_error = openai.map_error


def stream_error(err: GatewayError, call: Call) -> bytes:
    """The `error` event that ends a broken stream (openai-python yields it as a ResponseErrorEvent); its
    sequence number follows the last event sent."""
    event = {
        "type": "error",
        "code": err.code or err.type,
        "message": err.message,
        "param": err.param,
        "sequence_number": call.extra.get("sequence", 0),
    }
    return _frame(b"error", orjson.dumps(event))


def stream_headers(call: Call) -> list[tuple[str, str]]:
    return list(openai.STREAM_HEADERS)


def parse_request(endpoint: str, raw: bytes, inbound: Inbound | None = None) -> Call:
    body = openai.json_object(raw)
    model = openai.check_model(body.get("model"))
    data = body.get("input")
    if data is not None and not isinstance(data, str | list):
        raise bad_request("Invalid type for 'input': expected a string or an array of input items.", "input")
    if isinstance(data, list) and not all(isinstance(item, dict) for item in data):
        raise bad_request("Invalid type for 'input': every input item must be an object.", "input")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean.", "stream")
    if stream and endpoint != "responses":
        raise bad_request(f"Streaming is not supported on /v1{PATHS[endpoint]}.", "stream")
    for field_name, kind in (("previous_response_id", str), ("tools", list), ("include", list)):
        if body.get(field_name) is not None and not isinstance(body[field_name], kind):
            raise bad_request(f"Invalid type for '{field_name}'.", field_name)
    max_output = body.get("max_output_tokens")
    if max_output is not None and (
        not isinstance(max_output, int) or isinstance(max_output, bool) or max_output < 0
    ):
        raise bad_request("'max_output_tokens' must be a non-negative integer.", "max_output_tokens")
    token = secrets.token_hex(16)
    return Call(
        endpoint,
        model,
        body,
        raw,
        bool(stream),
        True,
        max_output,
        {"token": token, "response_id": "resp_" + token, "created_at": int(time.time())},
        protocol=name,
        kind=KINDS[endpoint],
    )


def estimate_count(call: Call) -> bytes:
    """The answer of `/v1/responses/input_tokens` when no channel counts natively: counted here."""
    names, tools = _tools(call.body)
    conversation = _Transcript(names, call.extra).convert(input_items(call.body), call.extra.get("history"))
    text = [_instructions(call.body)] + [_message_text(m) for m in conversation]
    if tools:
        text.append(orjson.dumps(tools).decode())
    count = tokens.count(call.model, "\n".join(t for t in text if t))
    return orjson.dumps({"object": "response.input_tokens", "input_tokens": count})


# -- tools -------------------------------------------------------------------------------------------
@dataclass(slots=True)
class ToolNames:
    """The client's tools by their hub (flat) names: flat name -> (namespace, name, custom)."""

    tools: dict[str, tuple[str | None, str, bool]] = field(default_factory=dict)

    def add(self, namespace: str | None, tool_name: str, custom: bool) -> str:
        flat = flat_name(namespace, tool_name)
        self.tools[flat] = (namespace, tool_name, custom)
        return flat

    def resolve(self, namespace: Any, tool_name: Any) -> str:
        """The flat name of a call the client sent back; one without its namespace is found by its name when
        that is unambiguous."""
        tool_name = str(tool_name or "")
        if isinstance(namespace, str) and namespace:
            return flat_name(namespace, tool_name)
        if tool_name in self.tools:
            return tool_name
        found = [flat for flat, (_, inner, _) in self.tools.items() if inner == tool_name]
        return found[0] if len(found) == 1 else tool_name

    def original(self, flat: str) -> tuple[str | None, str, bool]:
        return self.tools.get(flat, (None, flat, False))


def flat_name(namespace: str | None, tool_name: str) -> str:
    if not namespace:
        return tool_name
    flat = f"{namespace}{NAMESPACE_JOIN}{tool_name}"
    if len(flat) <= MAX_TOOL_NAME:
        return flat
    digest = hashlib.sha256(flat.encode()).hexdigest()[:12]
    return f"{flat[: MAX_TOOL_NAME - 13]}_{digest}"


def _tools(body: dict[str, Any]) -> tuple[ToolNames, list[dict[str, Any]]]:
    """The client's tools (top-level, and those of `additional_tools` input items) as hub functions."""
    names, hub = ToolNames(), []
    declared = list(body.get("tools") or ())
    for item in input_items(body):
        if item.get("type") == "additional_tools" and isinstance(item.get("tools"), list):
            declared.extend(item["tools"])
    for tool in declared:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "namespace":
            for inner in tool.get("tools") or ():
                if isinstance(inner, dict):
                    hub.extend(_hub_tool(names, inner, str(tool.get("name") or "")))
        else:
            hub.extend(_hub_tool(names, tool, None))
    return names, hub


def _hub_tool(names: ToolNames, tool: dict[str, Any], namespace: str | None) -> list[dict[str, Any]]:
    kind, tool_name = tool.get("type"), tool.get("name")
    if kind not in ("function", "custom") or not isinstance(tool_name, str) or not tool_name:
        return []  # hosted tools (web_search, file_search, ...) have no hub form
    if flat_name(namespace, tool_name) in names.tools:
        return []  # declared twice (top-level and in an additional_tools item): upstreams refuse duplicates
    description = tool.get("description") if isinstance(tool.get("description"), str) else ""
    if kind == "custom":
        function = {
            "name": names.add(namespace, tool_name, True),
            "description": _custom_description(description, tool.get("format")),
            "parameters": CUSTOM_PARAMETERS,
        }
    else:
        parameters = tool.get("parameters")
        function = {
            "name": names.add(namespace, tool_name, False),
            "description": description,
            "parameters": parameters
            if isinstance(parameters, dict)
            else {"type": "object", "properties": {}},
        }
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
    return [{"type": "function", "function": function}]


def _custom_description(description: str, form: Any) -> str:
    """A freeform tool's grammar, told to the model in words, since a hub function has no grammar."""
    if isinstance(form, dict) and form.get("type") == "grammar" and isinstance(form.get("definition"), str):
        syntax = form.get("syntax") or "grammar"
        return f"{description}\n\nThe `input` must match this {syntax} grammar:\n{form['definition']}".strip()
    return description


def _tool_choice(choice: Any, names: ToolNames) -> Any:
    if isinstance(choice, str):
        return TOOL_CHOICES.get(choice, "auto")
    if not isinstance(choice, dict):
        return None
    if choice.get("type") in ("function", "custom") and isinstance(choice.get("name"), str):
        flat = names.resolve(choice.get("namespace"), choice["name"])
        return {"type": "function", "function": {"name": flat}}
    if choice.get("type") == "allowed_tools":
        return "required" if choice.get("mode") == "required" else "auto"
    return "auto"  # a hosted tool's choice


# -- inbound: input items to hub messages ------------------------------------------------------------
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


# -- inbound: the hub request ------------------------------------------------------------------------
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


# -- inbound: the Response object --------------------------------------------------------------------
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


def _thinking_secret(block: dict[str, Any]) -> str | None:
    if block.get("type") == "redacted_thinking":
        return REDACTED_PREFIX + str(block.get("data") or "")
    signature = block.get("signature")
    return wrap_signature(signature, name) if signature else None


def _call_secret(call_id: str, signature: Signature) -> str:
    return CALL_SIGNATURE_PREFIX + orjson.dumps([call_id, signature[0], signature[1]]).decode()


def _open_call_signature(secret: str) -> tuple[str, Signature]:
    try:
        call_id, origin, value = orjson.loads(secret[len(CALL_SIGNATURE_PREFIX) :])
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return "", ("", "")
    return str(call_id), (str(origin), str(value))


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


# -- inbound: the typed event stream -----------------------------------------------------------------
def _frame(event: bytes, data: bytes) -> bytes:
    return b"event: " + event + b"\ndata: " + data + b"\n\n"


@dataclass(slots=True)
class _Open:
    """An output item being streamed."""

    index: int
    item_id: str
    text: str = ""
    signature: Signature | None = None
    call_id: str = ""
    flat: str = ""


class _Stream:
    """Hub chunks as Responses events, one chunk at a time; also the assistant message, for the store."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.names: ToolNames = call.extra.get("names") or ToolNames()
        self.summary, self.encrypted = _visibility(call)
        self.ids = _Ids(call.extra["token"])
        self.sequence = call.extra["sequence"] = 0
        self.output: dict[int, dict[str, Any]] = {}
        self.next_index = 0
        self.reasoning: _Open | None = None
        self.text: _Open | None = None
        self.calls: dict[int, _Open] = {}
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.message: dict[str, Any] = {"role": "assistant", "content": None}

    def event(self, kind: str, **fields: Any) -> bytes:
        data = orjson.dumps({"type": kind, **fields, "sequence_number": self.sequence})
        self.sequence += 1
        self.call.extra["sequence"] = self.sequence
        return _frame(kind.encode(), data)

    def _index(self) -> int:
        self.next_index += 1
        return self.next_index - 1

    def start(self) -> list[bytes]:
        skeleton = _response_object(self.call, "in_progress", [], None)
        return [
            self.event("response.created", response=skeleton),
            self.event("response.in_progress", response=skeleton),
        ]

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or ()
        if not choices:
            return []
        choice, frames = choices[0], []
        delta = choice.get("delta") or {}
        if delta.get("reasoning_content"):
            frames += self._think(delta["reasoning_content"])
        if delta.get("thinking_signature"):
            frames += self._close_reasoning(delta["thinking_signature"])
        if delta.get("redacted_thinking"):
            frames += self._close_reasoning()
            self._block({"type": "redacted_thinking", "data": delta["redacted_thinking"]})
            frames += self._standalone_reasoning(REDACTED_PREFIX + delta["redacted_thinking"])
        if delta.get("content"):
            frames += self._close_reasoning() + self._say(delta["content"])
        for fragment in delta.get("tool_calls") or ():
            frames += self._close_reasoning() + self._close_text() + self._call(fragment)
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]
        return frames

    def end(self) -> list[bytes]:
        frames = self._close_reasoning() + self._close_text()
        for index in sorted(self.calls):
            frames += self._close_call(self.calls.pop(index))
        status, incomplete = _status(self.finish)
        output = [self.output[i] for i in sorted(self.output)]
        response = _response_object(self.call, status, output, self.usage, incomplete)
        frames.append(self.event(f"response.{status}", response=response))
        _keep(self.call, response, self.message)
        return frames

    # reasoning
    def _block(self, block: dict[str, Any]) -> None:
        self.message.setdefault("thinking_blocks", []).append(block)

    def _think(self, text: str) -> list[bytes]:
        self.message["reasoning_content"] = (self.message.get("reasoning_content") or "") + text
        frames = []
        if self.reasoning is None:
            frames += self._open_reasoning()
        state = self.reasoning
        state.text += text
        if self.summary:
            frames.append(
                self.event(
                    "response.reasoning_summary_text.delta",
                    item_id=state.item_id,
                    output_index=state.index,
                    summary_index=0,
                    delta=text,
                )
            )
        return frames

    def _open_reasoning(self) -> list[bytes]:
        self.reasoning = state = _Open(
            self._index() if self.summary or self.encrypted else -1, self.ids("rs")
        )
        if state.index < 0:
            return []
        item = {"type": "reasoning", "id": state.item_id, "summary": [], "status": "in_progress"}
        frames = [self.event("response.output_item.added", output_index=state.index, item=item)]
        if self.summary:
            part = {"type": "summary_text", "text": ""}
            frames.append(
                self.event(
                    "response.reasoning_summary_part.added",
                    item_id=state.item_id,
                    output_index=state.index,
                    summary_index=0,
                    part=part,
                )
            )
        return frames

    def _close_reasoning(self, signature: Signature | None = None) -> list[bytes]:
        if self.reasoning is None and signature is None:
            return []
        frames = self._open_reasoning() if self.reasoning is None else []
        state, self.reasoning = self.reasoning, None
        block = {"type": "thinking", "thinking": state.text, "signature": signature}
        self._block(block)
        if state.index < 0:
            return frames
        where = {"item_id": state.item_id, "output_index": state.index, "summary_index": 0}
        if self.summary:
            frames.append(self.event("response.reasoning_summary_text.done", **where, text=state.text))
            part = {"type": "summary_text", "text": state.text}
            frames.append(self.event("response.reasoning_summary_part.done", **where, part=part))
        item = _reasoning_item(
            state.item_id, state.text, _thinking_secret(block), self.summary, self.encrypted
        )
        return frames + self._done(state.index, item)

    def _standalone_reasoning(self, secret: str) -> list[bytes]:
        if not self.encrypted:
            return []
        index, item_id = self._index(), self.ids("rs")
        added = {"type": "reasoning", "id": item_id, "summary": [], "status": "in_progress"}
        item = _reasoning_item(item_id, "", secret, False, True)
        return [
            self.event("response.output_item.added", output_index=index, item=added),
            *self._done(index, item),
        ]

    def _done(self, index: int, item: dict[str, Any]) -> list[bytes]:
        self.output[index] = item
        return [self.event("response.output_item.done", output_index=index, item=item)]

    # text
    def _say(self, text: str) -> list[bytes]:
        self.message["content"] = (self.message["content"] or "") + text
        frames = []
        if self.text is None:
            self.text = _Open(self._index(), self.ids("msg"))
            item = _message_item(self.text.item_id, "", "in_progress")
            frames.append(self.event("response.output_item.added", output_index=self.text.index, item=item))
            frames.append(
                self.event(
                    "response.content_part.added",
                    item_id=self.text.item_id,
                    output_index=self.text.index,
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                )
            )
        self.text.text += text
        where = {"item_id": self.text.item_id, "output_index": self.text.index, "content_index": 0}
        frames.append(self.event("response.output_text.delta", **where, delta=text, logprobs=[]))
        return frames

    def _close_text(self) -> list[bytes]:
        state, self.text = self.text, None
        if state is None:
            return []
        where = {"item_id": state.item_id, "output_index": state.index, "content_index": 0}
        part = {"type": "output_text", "text": state.text, "annotations": [], "logprobs": []}
        return [
            self.event("response.output_text.done", **where, text=state.text, logprobs=[]),
            self.event("response.content_part.done", **where, part=part),
            *self._done(state.index, _message_item(state.item_id, state.text)),
        ]

    # tool calls: a function's arguments stream as they come; a custom tool's input is inside the JSON of
    # its hub arguments, so it is sent whole when the call ends
    def _call(self, fragment: dict[str, Any]) -> list[bytes]:
        position = fragment.get("index", 0)
        function = fragment.get("function") or {}
        frames = []
        state = self.calls.get(position)
        if state is None:
            state = _Open(-1, self.ids("fc"), call_id=fragment.get("id") or "call_" + secrets.token_hex(12))
            state.flat = function.get("name") or ""
            self.calls[position] = state
        if fragment.get("signature"):
            state.signature = fragment["signature"]
        if state.index < 0 and state.flat:
            if self.encrypted and state.signature:
                frames += self._standalone_reasoning(_call_secret(state.call_id, state.signature))
            state.index = self._index()
            item = _tool_item(state.item_id, state.call_id, state.flat, "", self.names, False)
            frames.append(self.event("response.output_item.added", output_index=state.index, item=item))
        piece = function.get("arguments") or ""
        state.text += piece
        if piece and state.index >= 0 and not self.names.original(state.flat)[2]:
            frames.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=state.item_id,
                    output_index=state.index,
                    delta=piece,
                )
            )
        return frames

    def _close_call(self, state: _Open) -> list[bytes]:
        hub_call: dict[str, Any] = {
            "id": state.call_id,
            "type": "function",
            "function": {"name": state.flat, "arguments": state.text or "{}"},
        }
        if state.signature:
            hub_call["signature"] = state.signature
        self.message.setdefault("tool_calls", []).append(hub_call)
        if state.index < 0:
            return []
        where = {"item_id": state.item_id, "output_index": state.index}
        item = _tool_item(state.item_id, state.call_id, state.flat, state.text or "{}", self.names, True)
        if item["type"] == "custom_tool_call":
            frames = [
                self.event("response.custom_tool_call_input.delta", **where, delta=item["input"]),
                self.event("response.custom_tool_call_input.done", **where, input=item["input"]),
            ]
        else:
            frames = [
                self.event(
                    "response.function_call_arguments.done",
                    **where,
                    arguments=item["arguments"],
                    name=item["name"],
                )
            ]
        return frames + self._done(state.index, item)


def stream_from_hub(call: Call, chunks: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    chunks = iter(chunks)
    first = next(chunks, None)  # before anything is sent, so that an upstream failing now can fail over
    if first is None:
        raise GatewayError(
            502,
            "The upstream closed the stream before sending anything.",
            "server_error",
            "upstream_empty_stream",
            retryable=True,
        )
    stream = _Stream(call)
    yield from stream.start()
    yield from stream.feed(first)
    for chunk in chunks:
        yield from stream.feed(chunk)
    yield from stream.end()


# -- outbound: a Responses-native upstream -----------------------------------------------------------
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
    data = openai._json(body)
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
    data = openai._json(body)
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
