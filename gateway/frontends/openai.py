"""The OpenAI front-end protocol: request parsing, OpenAI-shaped errors, and the text a stream delivered.

Spec: the OpenAI API reference (openai/openai-openapi). Errors are `{"error": {"message", "type", "param",
"code"}}`; the SDK maps 400/401/403/404/429 to its exception classes by status.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.domain.models import UsageLog
from gateway.neutral import Call, GatewayError, Reply, bad_request

DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
# the model is logged with every request: a longer name than its column holds is refused here, by name,
# rather than by the database later
MODEL_MAX_CHARS: int = UsageLog.__table__.c.model.type.length


def render_error(err: GatewayError) -> Reply:
    body = {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    headers = [("Content-Type", "application/json")]
    if err.retry_after is not None:
        headers.append(("Retry-After", str(err.retry_after)))
    return Reply(err.status, headers, orjson.dumps(body))


def _int_or_none(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad_request(f"`{name}` must be a non-negative integer.", name)
    return value


def parse_request(endpoint: str, raw: bytes) -> Call:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    model = body.get("model")
    if endpoint == "moderations" and model is None:
        model = DEFAULT_MODERATION_MODEL
    if not isinstance(model, str) or not model:
        raise bad_request("you must provide a model parameter", "model")
    if len(model) > MODEL_MAX_CHARS:
        raise bad_request(f"'model' must be at most {MODEL_MAX_CHARS} characters long.", "model")
    required = {"chat": "messages", "completions": "prompt", "embeddings": "input", "moderations": "input"}[
        endpoint
    ]
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
    if stream and endpoint not in ("chat", "completions"):
        raise bad_request(f"Streaming is not supported on /v1/{endpoint}.", "stream")
    options = body.get("stream_options")
    wants_usage = bool(stream and isinstance(options, dict) and options.get("include_usage"))
    max_output = _int_or_none(body, "max_completion_tokens")
    if max_output is None:
        max_output = _int_or_none(body, "max_tokens")
    return Call(
        endpoint, model, body, raw, bool(stream), wants_usage, max_output, {"rewrite": "model" not in body}
    )


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
            for call in delta.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
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
