"""OpenAI Chat Completions, legacy completions, embeddings, moderations and image generation, in both
directions (image generation and moderations pass through to OpenAI-compatible channels only); also the
hub's own shape (see `gateway.protocols.base`), so converting to or from it is mostly the identity.

Spec: the OpenAI API reference (openai/openai-openapi). Errors are `{"error": {"message", "type", "param",
"code"}}`; the SDK maps 400/401/403/404/429 to its exception classes by status. Streams are `data:` lines
ending with `data: [DONE]`; usage comes in a last chunk with `"choices": []` when `include_usage` is asked,
which the gateway always asks of its upstream and passes on only when the client asked too.

Channel types of the OpenAI-compatible family use this module as their upstream protocol; `azure` differs
only in its URLs (`/openai/deployments/<deployment>/...?api-version=`) and its `api-key` header.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import time
from collections.abc import Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from gateway import sse, tokens
from gateway.domain.models import UsageLog
from gateway.neutral import Call, GatewayError, Reply, Usage, bad_request
from gateway.protocols.base import Tally, unwrap_signature, wrap_signature
from gateway.upstream import UpstreamRequest

if TYPE_CHECKING:
    from gateway.catalog import ChannelInfo, UpstreamKey
    from gateway.relay import Inbound

name = "openai"
DEFAULT_MODELS = {"moderations": "omni-moderation-latest", "images": "dall-e-2"}  # as OpenAI defaults them
# the model is logged with every request: a longer name than its column holds is refused here, by name,
# rather than by the database later
MODEL_MAX_CHARS: int = UsageLog.__table__.c.model.type.length
PATHS = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "moderations": "/moderations",
    "images": "/images/generations",
}
KINDS = {
    "chat": "chat",
    "completions": "completions",
    "embeddings": "embeddings",
    "moderations": "moderations",
    "images": "images",
}
REQUIRED = {
    "chat": "messages",
    "completions": "prompt",
    "embeddings": "input",
    "moderations": "input",
    "images": "prompt",
}
# image generation: OpenAI's own bounds (gpt-image-1 takes the longest prompt, dall-e-2 the most images)
IMAGE_PROMPT_MAX_CHARS = 32_000
IMAGES_MAX = 10
# the output tokens held per image asked for, when an image model is priced per token: gpt-image-1's
# dearest image (1536 x 1024, high quality) is 6,240 tokens
IMAGE_OUTPUT_RESERVE_TOKENS = 6240
QUOTA_CODES = ("insufficient_quota", "billing_hard_limit_reached", "quota_exceeded")
AZURE_API_VERSION = "2024-10-21"
AZURE_RESPONSES_API_VERSION = "2025-04-01-preview"
# OpenAI's reasoning models refuse `max_tokens`: they take `max_completion_tokens`
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
# hub extensions no OpenAI upstream takes (see gateway.protocols.base)
HUB_ONLY = ("top_k", "thinking_budget", "include_reasoning")
JSON_HEADERS = [("Content-Type", "application/json")]
STREAM_HEADERS = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
]
DONE = b"data: [DONE]\n\n"


# -- inbound -----------------------------------------------------------------------------------------
def render_error(err: GatewayError) -> Reply:
    body = {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    headers = [("Content-Type", "application/json")]
    if err.retry_after is not None:
        headers.append(("Retry-After", str(err.retry_after)))
    return Reply(err.status, headers, orjson.dumps(body))


def stream_error(err: GatewayError, call: Call) -> bytes:
    body = {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    return sse.frame(orjson.dumps(body))


def stream_headers(call: Call) -> list[tuple[str, str]]:
    return list(STREAM_HEADERS)


def _int_or_none(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad_request(f"`{name}` must be a non-negative integer.", name)
    return value


def check_model(model: Any) -> str:
    if not isinstance(model, str) or not model:
        raise bad_request("you must provide a model parameter", "model")
    if len(model) > MODEL_MAX_CHARS:
        raise bad_request(f"'model' must be at most {MODEL_MAX_CHARS} characters long.", "model")
    return model


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def parse_request(endpoint: str, raw: bytes, inbound: Inbound | None = None) -> Call:
    body = json_object(raw)
    model = body.get("model")
    if model is None and endpoint in DEFAULT_MODELS:
        model = DEFAULT_MODELS[endpoint]
    model = check_model(model)
    required = REQUIRED[endpoint]
    value = body.get(required)
    if value is None or value == "" or value == []:
        raise bad_request(
            f"Missing required parameter: '{required}'.", required, "missing_required_parameter"
        )
    if endpoint == "chat" and not (isinstance(value, list) and all(isinstance(m, dict) for m in value)):
        raise bad_request("'messages' must be a non-empty array of message objects.", "messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise bad_request("'stream' must be a boolean.", "stream")
    if stream and endpoint not in ("chat", "completions", "images"):
        raise bad_request(f"Streaming is not supported on /v1{PATHS[endpoint]}.", "stream")
    options = body.get("stream_options")
    wants_usage = bool(stream and isinstance(options, dict) and options.get("include_usage"))
    extra: dict[str, Any] = {"rewrite": "model" not in body}
    if endpoint == "images":
        _check_image_request(body)
        # what the reservation holds: each image asked for, and its output tokens when priced per token
        extra["images"] = body.get("n") or 1
        max_output = extra["images"] * IMAGE_OUTPUT_RESERVE_TOKENS
    else:
        max_output = _int_or_none(body, "max_completion_tokens")
        if max_output is None:
            max_output = _int_or_none(body, "max_tokens")
    kind = KINDS[endpoint]
    return Call(endpoint, model, body, raw, bool(stream), wants_usage, max_output, extra, kind=kind)


def _check_image_request(body: dict[str, Any]) -> None:
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise bad_request("'prompt' must be a string.", "prompt")
    if len(prompt) > IMAGE_PROMPT_MAX_CHARS:
        raise bad_request(f"'prompt' must be at most {IMAGE_PROMPT_MAX_CHARS} characters long.", "prompt")
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= IMAGES_MAX):
        raise bad_request(f"'n' must be an integer from 1 to {IMAGES_MAX}.", "n")


def request_to_hub(call: Call) -> dict[str, Any]:
    if call.kind == "embeddings":
        data = call.body.get("input")
        if isinstance(data, str):
            data = [data]
        if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
            raise bad_request("Only text input can be embedded by this model's channel.", "input")
        hub = {"model": call.model, "input": data}
        if isinstance(call.body.get("dimensions"), int):
            hub["dimensions"] = call.body["dimensions"]
        return hub
    hub = dict(call.body)
    hub["model"] = call.model
    hub["messages"] = [_message_to_hub(m) if m.get("role") == "assistant" else m for m in hub["messages"]]
    if call.max_output_tokens is not None:
        hub["max_tokens"] = call.max_output_tokens
    hub.pop("max_completion_tokens", None)
    stop = hub.get("stop")
    if isinstance(stop, str):
        hub["stop"] = [stop]
    return hub


def _message_to_hub(message: dict[str, Any]) -> dict[str, Any]:
    """An assistant message with the signatures this gateway handed out turned back into hub Signatures:
    `thinking_blocks` (as LiteLLM shapes them) and Google's `extra_content.google.thought_signature` on a
    tool call (as Gemini's own OpenAI-compatible API does)."""
    blocks, calls = message.get("thinking_blocks"), message.get("tool_calls")
    if not blocks and not calls:
        return message
    message = dict(message)
    if isinstance(blocks, list):
        hub_blocks = []
        for block in blocks:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
                hub_blocks.append({"type": "redacted_thinking", "data": block["data"]})
            elif block.get("type") == "thinking":
                signature = block.get("signature")
                hub_blocks.append(
                    {
                        "type": "thinking",
                        "thinking": block.get("thinking") if isinstance(block.get("thinking"), str) else "",
                        "signature": unwrap_signature(signature, name)
                        if isinstance(signature, str)
                        else None,
                    }
                )
        thinking = [b for b in hub_blocks if b["type"] == "thinking"]
        text = message.get("reasoning_content")
        if len(thinking) == 1 and not thinking[0]["thinking"] and isinstance(text, str):
            thinking[0]["thinking"] = text  # a stream sent the text as reasoning_content, its signature apart
        message["thinking_blocks"] = hub_blocks
    if isinstance(calls, list):
        hub_calls = []
        for tool_call in calls:
            if not isinstance(tool_call, dict):
                continue
            extra = tool_call.get("extra_content")
            google = extra.get("google") if isinstance(extra, dict) else None
            signature = google.get("thought_signature") if isinstance(google, dict) else None
            function = tool_call.get("function") if isinstance(tool_call.get("function"), dict) else {}
            hub_call = {
                "id": tool_call.get("id") or new_id("call_"),
                "type": "function",
                "function": {
                    "name": function.get("name") or "",
                    "arguments": function.get("arguments") or "{}",
                },
            }
            if isinstance(signature, str) and signature:
                hub_call["signature"] = unwrap_signature(signature, "gemini")
            hub_calls.append(hub_call)
        message["tool_calls"] = hub_calls
    return message


def _tool_call_json(tool_call: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": tool_call["id"], "type": "function", "function": tool_call["function"]}
    signature = tool_call.get("signature")
    if signature:
        out["extra_content"] = {"google": {"thought_signature": wrap_signature(signature, "gemini")}}
    return out


def _thinking_json(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for block in blocks:
        if block.get("type") == "redacted_thinking":
            out.append({"type": "redacted_thinking", "data": block.get("data", "")})
        else:
            signature = block.get("signature")
            out.append(
                {
                    "type": "thinking",
                    "thinking": block.get("thinking") or "",
                    "signature": wrap_signature(signature, name) if signature else None,
                }
            )
    return out


def usage_json(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _message_json(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content"), "refusal": None}
    if message.get("reasoning_content"):
        out["reasoning_content"] = message["reasoning_content"]
    if message.get("thinking_blocks"):
        out["thinking_blocks"] = _thinking_json(message["thinking_blocks"])
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = [_tool_call_json(c) for c in calls]
    return out


def response_from_hub(call: Call, hub: dict[str, Any]) -> bytes:
    if call.kind == "embeddings":
        usage = hub.get("usage")
        body = {
            "object": "list",
            "model": call.model,
            "data": [
                {"object": "embedding", "index": i, "embedding": item["embedding"]}
                for i, item in enumerate(hub.get("data") or ())
            ],
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens}
            if usage
            else {"prompt_tokens": 0, "total_tokens": 0},
        }
        return orjson.dumps(body)
    choice = hub["choices"][0]
    body = {
        "id": hub.get("id") or new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": hub.get("created") or int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": _message_json(choice.get("message") or {}),
                "finish_reason": choice.get("finish_reason") or "stop",
                "logprobs": None,
            }
        ],
        "usage": usage_json(hub.get("usage")),
    }
    return orjson.dumps(body)


def stream_from_hub(call: Call, chunks: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    ident, created = new_id("chatcmpl-"), int(time.time())
    usage: Usage | None = None
    for chunk in chunks:
        found = chunk.get("usage")
        if found is not None:
            usage = found
        choices = chunk.get("choices")
        if not choices:
            continue
        choice = choices[0]
        hub_delta = choice.get("delta") or {}
        delta = {k: v for k, v in hub_delta.items() if k in _DELTA_FIELDS}
        calls = delta.get("tool_calls")
        if calls:
            delta["tool_calls"] = [_tool_delta_json(c) for c in calls]
        if hub_delta.get("thinking_signature") or hub_delta.get("redacted_thinking"):
            # one block per delta, in LiteLLM's shape, for clients that echo it back
            signature, data = hub_delta.get("thinking_signature"), hub_delta.get("redacted_thinking")
            delta["thinking_blocks"] = _thinking_json(
                [{"type": "redacted_thinking", "data": data}]
                if data
                else [{"type": "thinking", "signature": signature}]
            )
        out = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": call.model,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason"), "logprobs": None}
            ],
        }
        yield sse.frame(orjson.dumps(out))
    if usage is not None and call.wants_usage:
        out = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": call.model,
            "choices": [],
            "usage": usage_json(usage),
        }
        yield sse.frame(orjson.dumps(out))
    yield DONE


def _tool_delta_json(fragment: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in fragment.items() if k != "signature"}
    if fragment.get("id"):
        out["type"] = "function"
    if fragment.get("signature"):
        out["extra_content"] = {
            "google": {"thought_signature": wrap_signature(fragment["signature"], "gemini")}
        }
    return out


_DELTA_FIELDS = frozenset(("role", "content", "reasoning_content", "tool_calls", "refusal"))


def delivered_text(payloads: list[bytes]) -> str:
    """The text a stream carried to the client, to estimate its tokens when no usage came."""
    parts: list[str] = []
    for payload in payloads:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        for choice in data.get("choices") or () if isinstance(data, dict) else ():
            if not isinstance(choice, dict):
                continue
            if isinstance(choice.get("text"), str):  # legacy completions
                parts.append(choice["text"])
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            for field in ("content", "refusal", "reasoning_content"):
                if isinstance(delta.get(field), str):
                    parts.append(delta[field])
            for tool_call in delta.get("tool_calls") or ():
                function = tool_call.get("function") if isinstance(tool_call, dict) else None
                if isinstance(function, dict):
                    parts.extend(
                        v for v in (function.get("name"), function.get("arguments")) if isinstance(v, str)
                    )
    return "".join(parts)


def answered_text(body: bytes) -> str:
    """The text of a whole (non-streamed) answer, to estimate its tokens when no usage came."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    parts = []
    for choice in data.get("choices") or () if isinstance(data, dict) else ():
        message = choice.get("message") or {}
        parts.append(message.get("content") or choice.get("text") or "")
    return "".join(p for p in parts if isinstance(p, str))


# -- outbound ----------------------------------------------------------------------------------------
def usage_from(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    prompt = data.get("prompt_tokens")
    if not isinstance(prompt, int):
        return None
    completion = data.get("completion_tokens") or 0
    details = data.get("prompt_tokens_details")
    cached = details.get("cached_tokens") or 0 if isinstance(details, dict) else 0
    details = data.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") or 0 if isinstance(details, dict) else 0
    return Usage(
        prompt,
        completion if isinstance(completion, int) else 0,
        cached if isinstance(cached, int) else 0,
        reasoning_tokens=reasoning if isinstance(reasoning, int) else 0,
    )


def retry_after_s(headers: Mapping[str, str]) -> int | None:
    """The wait an upstream asks for, in whole seconds rounded up: OpenAI's `retry-after-ms`, else
    `Retry-After` as seconds or as an HTTP date (RFC 9110 section 10.2.3); None when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0, math.ceil(float(millis) / 1000))
        except (ValueError, OverflowError):  # not a number, or NaN, or infinite
            pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=dt.UTC)
    return max(0, math.ceil((when - dt.datetime.now(dt.UTC)).total_seconds()))


def endpoint_url(channel: ChannelInfo, path: str, upstream_model: str) -> str:
    """Where `path` (such as `/chat/completions`) lives on the channel's upstream."""
    if channel.type == "azure":
        if path.startswith("/responses"):  # Azure's Responses API is not per deployment
            version = channel.settings.get("api_version") or AZURE_RESPONSES_API_VERSION
            return f"{channel.base_url}/openai{path}?api-version={version}"
        version = channel.settings.get("api_version") or AZURE_API_VERSION
        return f"{channel.base_url}/openai/deployments/{upstream_model}{path}?api-version={version}"
    return channel.base_url + path


def auth_headers(channel: ChannelInfo, key: UpstreamKey) -> dict[str, str]:
    if channel.type == "azure":
        return {"api-key": key.secret}
    return {"Authorization": "Bearer " + key.secret}


def model_lookup(channel: ChannelInfo, key: UpstreamKey, model: str) -> UpstreamRequest:
    """`GET /models/<model>` on the channel's upstream: a free test that the key and the model are good."""
    path = "/models/" + quote(channel.upstream_model(model), safe="")
    return UpstreamRequest("GET", channel.base_url + path, auth_headers(channel, key), b"")


def build_request(
    call: Call, channel: ChannelInfo, key: UpstreamKey, hub: dict[str, Any] | None
) -> UpstreamRequest:
    upstream_model = channel.upstream_model(call.model)
    if hub is not None:
        endpoint = "embeddings" if call.kind == "embeddings" else "chat"
        body = orjson.dumps(_from_hub(hub, upstream_model, call.stream))
    else:
        endpoint = call.endpoint
        body = call.raw
        asks_usage = call.stream and call.kind != "images"  # an image stream reports usage unasked
        if asks_usage and not call.wants_usage or upstream_model != call.model or call.extra.get("rewrite"):
            changed = dict(call.body)
            changed["model"] = upstream_model
            if asks_usage:
                options = changed.get("stream_options")
                changed["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
            body = orjson.dumps(changed)
    headers = {
        **auth_headers(channel, key),
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if call.stream else "application/json",
    }
    return UpstreamRequest("POST", endpoint_url(channel, PATHS[endpoint], upstream_model), headers, body)


def _from_hub(hub: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """A hub request as an OpenAI chat (or embeddings) body: extensions off, signatures dropped (no OpenAI
    chat upstream takes them), the output allowance named as the model wants it."""
    body = {k: v for k, v in hub.items() if k not in HUB_ONLY}
    body["model"] = model
    if "messages" not in body:  # embeddings
        return body
    messages = []
    for message in body["messages"]:
        if message.get("role") == "assistant":
            message = {k: v for k, v in message.items() if k not in ("thinking_blocks", "reasoning_content")}
            if message.get("tool_calls"):
                message["tool_calls"] = [
                    {"id": c["id"], "type": "function", "function": c["function"]}
                    for c in message["tool_calls"]
                ]
        elif message.get("role") == "tool":
            message = {k: v for k, v in message.items() if k != "is_error"}
        messages.append(message)
    body["messages"] = messages
    if model.lower().startswith(REASONING_PREFIXES):
        if "max_tokens" in body:
            body["max_completion_tokens"] = body.pop("max_tokens")
        if "reasoning_effort" not in body and isinstance(hub.get("thinking_budget"), int):
            budget = hub["thinking_budget"]
            if budget > 0:
                body["reasoning_effort"] = (
                    "low" if budget <= 2048 else "medium" if budget <= 16384 else "high"
                )
    else:  # other models refuse the parameter (gpt-4o answers 400): another protocol's thinking is dropped
        body.pop("reasoning_effort", None)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def upstream_json(body: bytes) -> dict[str, Any]:
    """An upstream's JSON object answer, or a retryable 502."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_upstream("The upstream answered with invalid JSON.") from None
    if not isinstance(data, dict):
        raise bad_upstream("The upstream answered with an unexpected body.")
    return data


def bad_upstream(message: str) -> GatewayError:
    return GatewayError(502, message, "server_error", "bad_upstream_response", retryable=True)


def native_response(call: Call, body: bytes) -> tuple[bytes, Usage | None]:
    data = upstream_json(body)
    if call.kind == "images":
        images = data.get("data")
        made = sum(1 for item in images if isinstance(item, dict)) if isinstance(images, list) else 0
        return body, _image_usage(call, made, data.get("usage"))
    return body, usage_from(data.get("usage"))


def _image_usage(call: Call, made: int, reported: Any) -> Usage:
    """An image generation's usage: the tokens gpt-image models report (`input_tokens`, `output_tokens`),
    and the images made, by which a per-request price is charged. Without reported tokens (dall-e), the
    prompt's tokens are counted here."""
    if isinstance(reported, dict) and isinstance(reported.get("input_tokens"), int):
        output = reported.get("output_tokens")
        details = reported.get("input_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else 0
        return Usage(
            reported["input_tokens"],
            output if isinstance(output, int) else 0,
            cached if isinstance(cached, int) else 0,
            images=made,
        )
    prompt = call.body["prompt"]
    counted = tokens.estimate_usage(call.model, "completions", {"prompt": prompt}, "", len(prompt))
    return dataclasses.replace(counted, images=made)


def native_stream(call: Call, chunks: Iterator[bytes], tally: Tally) -> Iterator[bytes]:
    """The upstream's events as they come; the usage chunk the gateway asked for is read and, unless the
    client asked for it too, not passed on."""
    if call.kind == "images":
        yield from _image_stream(call, chunks, tally)
        return
    tally.text_of = delivered_text
    wants_usage, payloads = call.wants_usage, tally.payloads
    for payload in sse.events(chunks):
        if payload == b"[DONE]":
            yield DONE
            return
        found = event_usage(payload)
        if found is not None:
            tally.usage = found
            if not wants_usage and (b'"choices":[]' in payload or b'"choices": []' in payload):
                continue  # the gateway asked for this chunk, the client did not
        payloads.append(payload)
        yield sse.frame(payload)


def _image_stream(call: Call, chunks: Iterator[bytes], tally: Tally) -> Iterator[bytes]:
    """A streamed image generation (gpt-image models): named events passed on as they come, the
    `image_generation.partial_image` previews and one `image_generation.completed` per image, which carries
    its tokens. Each completed image is counted as it arrives, so a stream cut later still pays for it; with
    several images the prompt is counted once and their output tokens added up."""
    tally.text_of = _no_text
    made, reported = 0, None
    for event, payload in sse.named_events(chunks):
        if event == b"image_generation.completed":
            made += 1
            try:
                usage = orjson.loads(payload).get("usage")
            except (orjson.JSONDecodeError, AttributeError):
                usage = None
            if isinstance(usage, dict) and isinstance(usage.get("input_tokens"), int):
                output = usage.get("output_tokens") if isinstance(usage.get("output_tokens"), int) else 0
                if reported is not None:
                    output += reported["output_tokens"]
                    usage = {**usage, "input_tokens": max(usage["input_tokens"], reported["input_tokens"])}
                reported = {**usage, "output_tokens": output}
            tally.usage = _image_usage(call, made, reported)
        yield sse.named_frame(event, payload)


def _no_text(payloads: list[bytes]) -> str:
    return ""  # an image stream delivers no text to count


def event_usage(payload: bytes) -> Usage | None:
    # a literal `"usage":{` cannot occur inside a JSON string, so this test never misfires on content
    if b'"usage":{' not in payload and b'"usage": {' not in payload:
        return None
    try:
        return usage_from(orjson.loads(payload).get("usage"))
    except (orjson.JSONDecodeError, AttributeError):
        return None


def response_to_hub(call: Call, body: bytes) -> dict[str, Any]:
    data = upstream_json(body)
    usage = usage_from(data.get("usage"))
    if call.kind == "embeddings":
        items = sorted(
            (d for d in data.get("data") or () if isinstance(d, dict)), key=lambda d: d.get("index", 0)
        )
        return {"data": [{"embedding": d.get("embedding")} for d in items], "usage": usage}
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        out["reasoning_content"] = reasoning
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        out["tool_calls"] = [
            {
                "id": c.get("id") or new_id("call_"),
                "type": "function",
                "function": {
                    "name": (c.get("function") or {}).get("name", ""),
                    "arguments": (c.get("function") or {}).get("arguments") or "{}",
                },
            }
            for c in calls
            if isinstance(c, dict)
        ]
    finish = choice.get("finish_reason") or ("tool_calls" if out.get("tool_calls") else "stop")
    return {
        "id": data.get("id"),
        "created": data.get("created"),
        "choices": [{"index": 0, "message": out, "finish_reason": finish}],
        "usage": usage,
    }


def stream_to_hub(call: Call, chunks: Iterator[bytes], tally: Tally) -> Iterator[dict[str, Any]]:
    tally.text_of = delivered_text
    for payload in sse.events(chunks):
        if payload == b"[DONE]":
            return
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("error"), dict):
            error = data["error"]
            raise GatewayError(
                502, str(error.get("message") or "upstream error"), "server_error", "upstream_stream_error"
            )
        usage = usage_from(data.get("usage"))
        if usage is not None:
            tally.usage = usage
        tally.payloads.append(payload)
        choices = data.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            if "reasoning" in delta and "reasoning_content" not in delta:  # OpenRouter, some vLLM builds
                delta = {**delta, "reasoning_content": delta["reasoning"]}
            yield {"choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason")}]}
        if usage is not None:
            yield {"choices": [], "usage": usage}


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    error = error if isinstance(error, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    kind = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    quota = code in QUOTA_CODES or kind in QUOTA_CODES
    return GatewayError(
        status,
        message or f"The upstream answered {status}.",
        kind or ("server_error" if status >= 500 else "invalid_request_error"),
        code,
        error.get("param") if isinstance(error.get("param"), str) else None,
        retryable=status in (408, 409, 429) or status >= 500 or status in (401, 403) or quota,
        retry_after=retry_after_s(headers),
        upstream_status=status,
        disables_key=status == 401 or quota,
    )


def new_id(prefix: str) -> str:
    """A fresh id such as `chatcmpl-...` for an answer the gateway composes."""
    return prefix + os.urandom(12).hex()
