"""Whole answers from a Gemini upstream: usage read from `usageMetadata`, a body passed through or read into
a hub response, and an error answer mapped to a GatewayError (retryable or not, whether it sets the key
aside, how long to wait) per https://ai.google.dev/gemini-api/docs/troubleshooting."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.neutral import Call, GatewayError, Usage
from gateway.protocols.gemini.fields import _dict, _is_int, _list
from gateway.protocols.gemini.tables import ERROR_TYPES, FINISH_TO_HUB, KEY_REASONS
from gateway.protocols.gemini.to_hub import assistant_message
from gateway.protocols.openai import new_id, retry_after_s


def usage_from(meta: Any) -> Usage | None:
    """Hub usage from `usageMetadata`: the tool-use prompt counts as input, thoughts as output."""
    if not isinstance(meta, dict):
        return None
    counts = {k: v if _is_int(v) else 0 for k, v in meta.items()}
    if not any(_is_int(meta.get(k)) for k in ("promptTokenCount", "candidatesTokenCount", "totalTokenCount")):
        return None
    thoughts = counts.get("thoughtsTokenCount", 0)
    return Usage(
        counts.get("promptTokenCount", 0) + counts.get("toolUsePromptTokenCount", 0),
        counts.get("candidatesTokenCount", 0) + thoughts,
        counts.get("cachedContentTokenCount", 0),
        reasoning_tokens=thoughts,
    )


def _upstream_json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise GatewayError(
            502,
            "The upstream answered with an unexpected body.",
            "server_error",
            "bad_upstream_response",
            retryable=True,
        )
    return data


def native_response(call: Call, body: bytes) -> tuple[bytes, Usage | None]:
    data = _upstream_json(body)
    return body, usage_from(data.get("usageMetadata")) if call.kind == "chat" else None


def _finish(reason: Any, has_calls: bool) -> str:
    finish = FINISH_TO_HUB.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if has_calls and finish == "stop" else finish


def response_to_hub(call: Call, body: bytes) -> dict[str, Any]:
    data = _upstream_json(body)
    if call.kind == "embeddings":
        vectors = _list(data.get("embeddings")) or [data.get("embedding")]
        return {"data": [{"embedding": _dict(v).get("values") or []} for v in vectors], "usage": None}
    candidates = _list(data.get("candidates"))
    candidate = _dict(candidates[0]) if candidates else {}
    parts = [p for p in _list(_dict(candidate.get("content")).get("parts")) if isinstance(p, dict)]
    message = assistant_message(parts, lambda fn, given: given or new_id("call_"))
    if not candidates and _dict(data.get("promptFeedback")).get("blockReason"):
        finish = "content_filter"
    else:
        finish = _finish(candidate.get("finishReason"), bool(message.get("tool_calls")))
    return {
        "id": data.get("responseId"),
        "created": int(time.time()),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage_from(data.get("usageMetadata")),
    }


def _retry_delay_s(details: list[Any]) -> int | None:
    """google.rpc.RetryInfo's `retryDelay` (a Duration in JSON: `"7s"`, `"0.5s"`), in whole seconds."""
    for detail in details:
        delay = _dict(detail).get("retryDelay")
        if str(_dict(detail).get("@type", "")).endswith("google.rpc.RetryInfo") and isinstance(delay, str):
            try:
                return max(0, math.ceil(float(delay.rstrip("s"))))
            except (ValueError, OverflowError):
                return None
    return None


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:
        data = data[0]
    error = _dict(_dict(data).get("error"))
    details = _list(error.get("details"))
    reasons = {d.get("reason") for d in details if isinstance(d, dict) and isinstance(d.get("reason"), str)}
    google_status = error.get("status") if isinstance(error.get("status"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    disables_key = status == 401 or bool(reasons & KEY_REASONS)
    retry_after = retry_after_s(headers)
    return GatewayError(
        status,
        message or f"The upstream answered {status}.",
        ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        google_status or next(iter(sorted(reasons)), None),
        retryable=disables_key
        or status in (401, 403, 408, 409, 429)
        or status >= 500
        or google_status == "FAILED_PRECONDITION",  # billing or region: another channel may serve
        retry_after=retry_after if retry_after is not None else _retry_delay_s(details),
        upstream_status=status,
        disables_key=disables_key,
    )
