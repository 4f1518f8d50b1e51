"""Requests to a Gemini upstream: the URL (model and action in the path, `/v1beta` unless the channel's
base URL names a version), the key header, and the body: the client's own passed through (model fields
mapped), or a hub request converted to a `GenerateContentRequest` or `BatchEmbedContentsRequest`, with
Gemini's thought signatures put back where they were and thinking set as a level or a budget."""

from __future__ import annotations

import mimetypes
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from gateway.neutral import Call
from gateway.protocols.gemini.fields import _args, _dict, _f, _is_int, _list, _texts, model_id
from gateway.protocols.gemini.signatures import _signature
from gateway.protocols.gemini.tables import (
    EFFORT_BUDGETS,
    EFFORT_LEVELS,
    GENERATION_FIELDS,
    MAX_THINKING_BUDGET,
    MAX_THINKING_BUDGET_PRO,
    SKIP_SIGNATURE,
    TOOL_CHOICES,
    name,
)
from gateway.upstream import UpstreamRequest

if TYPE_CHECKING:
    from gateway.catalog import ChannelInfo, UpstreamKey

_GEMINI_MAJOR = re.compile(r"(?:models/)?gemini-(\d+)")
_VERSIONED = re.compile(r"/v1(?:alpha|beta\d*)?$")


def is_gemini3(model: str) -> bool:
    """Gemini 3 and later: thinking levels, and signatures required on the current turn's function calls."""
    found = _GEMINI_MAJOR.match(model.lower())
    return bool(found) and int(found.group(1)) >= 3


def api_root(base_url: str) -> str:
    """The channel's base URL with its API version: `/v1beta` unless the URL names one."""
    base = base_url.rstrip("/")
    return base if _VERSIONED.search(base) else base + "/v1beta"


def build_request(
    call: Call, channel: ChannelInfo, key: UpstreamKey, hub: dict[str, Any] | None
) -> UpstreamRequest:
    upstream_model = str(model_id(channel.upstream_model(call.model)))
    if hub is None:
        action, body = call.endpoint, _native_body(call, upstream_model)
    elif call.kind == "embeddings":
        action, body = "batchEmbedContents", orjson.dumps(_embeddings_from_hub(hub, upstream_model))
    else:
        action = "streamGenerateContent" if call.stream else "generateContent"
        body = orjson.dumps(request_from_hub(hub, upstream_model))
    url = f"{api_root(channel.base_url)}/models/{quote(upstream_model, safe='-._~')}:{action}"
    stream = action == "streamGenerateContent"
    if stream:
        url += "?alt=sse"  # always: a client that asked for the JSON array gets it re-framed
    headers = {
        "x-goog-api-key": key.secret,
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
    }
    return UpstreamRequest("POST", url, headers, body)


def _native_body(call: Call, upstream_model: str) -> bytes:
    """The client's body as it is; only the `model` fields inside an embedding or count request follow a
    mapped model (the URL's must agree with them)."""
    if upstream_model == call.model:
        return call.raw
    body = dict(call.body)
    target = f"models/{upstream_model}"
    if call.endpoint == "batchEmbedContents":
        body["requests"] = [
            {**r, "model": target} if isinstance(r, dict) and "model" in r else r
            for r in _list(body.get("requests"))
        ]
    elif call.endpoint == "embedContent" and "model" in body:
        body["model"] = target
    elif call.endpoint == "countTokens" and "model" in _dict(_f(body, "generateContentRequest")):
        key = "generateContentRequest" if "generateContentRequest" in body else "generate_content_request"
        body[key] = {**body[key], "model": target}
    else:
        return call.raw
    return orjson.dumps(body)


def _embeddings_from_hub(hub: dict[str, Any], model: str) -> dict[str, Any]:
    inputs = hub.get("input")
    inputs = [inputs] if isinstance(inputs, str) else _list(inputs)
    extra = {"outputDimensionality": hub["dimensions"]} if _is_int(hub.get("dimensions")) else {}
    requests = [
        {"model": f"models/{model}", "content": {"parts": [{"text": str(t)}]}, **extra} for t in inputs
    ]
    return {"requests": requests}


def request_from_hub(hub: dict[str, Any], model: str) -> dict[str, Any]:
    """A hub chat request as a GenerateContentRequest for `model`."""
    system, contents = _contents_from_hub(_list(hub.get("messages")), is_gemini3(model))
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    declarations = _declarations(hub.get("tools"))
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
        tool_config = _tool_config(hub.get("tool_choice"))
        if tool_config:
            body["toolConfig"] = tool_config
    config = _generation_config(hub, model)
    if config:
        body["generationConfig"] = config
    return body


def _content_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content] if content else []
    return [t for t in _texts(content) if t]


def _contents_from_hub(
    messages: list[Any], gemini3: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System and developer messages as systemInstruction parts, the rest as turns; tool results go in user
    turns, and consecutive turns of one role are merged, as Gemini wants them."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for the results
    last_user = max((i for i, m in enumerate(messages) if _dict(m).get("role") == "user"), default=-1)
    for index, message in enumerate(messages):
        message = _dict(message)
        role = message.get("role")
        if role in ("system", "developer"):
            system += [{"text": t} for t in _content_texts(message.get("content"))]
            continue
        if role == "assistant":
            turn, parts = "model", _model_parts(message, names, gemini3 and index > last_user)
        elif role == "tool":
            turn, parts = "user", [_function_response(message, names)]
        else:
            turn, parts = "user", _user_parts(message.get("content"))
        if not parts:
            continue
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn, "parts": parts})
    return system, contents


def _model_parts(
    message: dict[str, Any], names: dict[str, str], needs_signature: bool
) -> list[dict[str, Any]]:
    """An assistant message as model parts: Gemini's own thought signatures go back where they were;
    other protocols' reasoning cannot be given to Gemini and is left out."""
    parts: list[dict[str, Any]] = []
    text_signature = None
    for block in _list(message.get("thinking_blocks")):
        signature = _signature(_dict(block).get("signature"))
        if signature is None or signature[0] != name:
            continue
        if block.get("thinking"):
            parts.append({"text": block["thinking"], "thought": True, "thoughtSignature": signature[1]})
        else:
            text_signature = text_signature or signature[1]
    texts = _content_texts(message.get("content"))
    if texts or text_signature:
        part: dict[str, Any] = {"text": "".join(texts)}
        if text_signature:
            part["thoughtSignature"] = text_signature
        parts.append(part)
    for number, tool_call in enumerate(c for c in _list(message.get("tool_calls")) if isinstance(c, dict)):
        function = _dict(tool_call.get("function"))
        fn = str(function.get("name") or "")
        if tool_call.get("id"):
            names[tool_call["id"]] = fn
        call: dict[str, Any] = {"name": fn, "args": _args(function.get("arguments"))}
        if tool_call.get("id"):
            call["id"] = tool_call["id"]
        part = {"functionCall": call}
        signature = _signature(tool_call.get("signature"))
        if signature and signature[0] == name:
            part["thoughtSignature"] = signature[1]
        elif number == 0 and needs_signature:
            part["thoughtSignature"] = SKIP_SIGNATURE
        parts.append(part)
    return parts


def _function_response(message: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    ident = message.get("tool_call_id")
    fn = message.get("name") or names.get(ident) or "function"
    content = message.get("content")
    text = content if isinstance(content, str) else "".join(_texts(content))
    try:
        parsed = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"output": text}
    if message.get("is_error"):
        response = {"error": parsed if isinstance(parsed, dict) else text}
    result: dict[str, Any] = {"name": fn, "response": response}
    if isinstance(ident, str) and ident:
        result = {"id": ident, **result}
    return {"functionResponse": result}


def _data_url(url: str) -> dict[str, Any] | None:
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        return None
    return {"mimeType": head[5:-7] or "application/octet-stream", "data": data}


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in _list(content):
        part = _dict(part)
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = str(_dict(image).get("url") or "") if isinstance(image, dict) else str(image or "")
            inline = _data_url(url)
            if inline:
                parts.append({"inlineData": inline})
            elif url:
                mime = mimetypes.guess_type(url.split("?", 1)[0])[0]
                parts.append({"fileData": {"fileUri": url, **({"mimeType": mime} if mime else {})}})
        elif kind == "file":
            inline = _data_url(str(_dict(part.get("file")).get("file_data") or ""))
            if inline:
                parts.append({"inlineData": inline})
        elif kind == "input_audio":
            audio = _dict(part.get("input_audio"))
            parts.append(
                {
                    "inlineData": {
                        "mimeType": f"audio/{audio.get('format') or 'wav'}",
                        "data": audio.get("data"),
                    }
                }
            )
    return parts


def _declarations(tools: Any) -> list[dict[str, Any]]:
    declarations = []
    for tool in _list(tools):
        function = _dict(_dict(tool).get("function"))
        if _dict(tool).get("type") != "function" or not function.get("name"):
            continue
        declaration: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters"):
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return declarations


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        return {"functionCallingConfig": {"mode": TOOL_CHOICES[choice]}}
    fn = _dict(_dict(choice).get("function")).get("name")
    if isinstance(fn, str) and fn:
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [fn]}}
    return None


def _generation_config(hub: dict[str, Any], model: str) -> dict[str, Any]:
    config = {
        field: hub[target] for field, target in GENERATION_FIELDS.items() if hub.get(target) is not None
    }
    if isinstance(config.get("stopSequences"), str):
        config["stopSequences"] = [config["stopSequences"]]
    response_format = _dict(hub.get("response_format"))
    if response_format.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = _dict(response_format.get("json_schema")).get("schema")
        if isinstance(schema, dict):
            config["responseJsonSchema"] = schema
    elif response_format.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    thinking = _thinking_config(hub, model)
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def _thinking_config(hub: dict[str, Any], model: str) -> dict[str, Any]:
    """Gemini 3 takes a thinking level; earlier models a token budget, which the hub's effort becomes."""
    thinking: dict[str, Any] = {}
    effort, budget = hub.get("reasoning_effort"), hub.get("thinking_budget")
    if is_gemini3(model) and effort in EFFORT_LEVELS:
        thinking["thinkingLevel"] = EFFORT_LEVELS[effort]
    elif _is_int(budget):
        ceiling = MAX_THINKING_BUDGET_PRO if "pro" in model else MAX_THINKING_BUDGET
        thinking["thinkingBudget"] = min(max(budget, 0), ceiling)
    elif effort in EFFORT_BUDGETS:
        thinking["thinkingBudget"] = EFFORT_BUDGETS[effort]
    if hub.get("include_reasoning"):
        thinking["includeThoughts"] = True
    return thinking
