"""OpenAI-compatible upstreams (OpenAI, DeepSeek, vLLM, and the many servers that copy its API).

Spec: the OpenAI API reference (openai/openai-openapi): `<base_url>/chat/completions`, `/completions`,
`/embeddings`, `/moderations`; errors `{"error": {"message", "type", "param", "code"}}`. Bodies pass through
unchanged unless the model is mapped or stream usage must be asked for.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from gateway import sse
from gateway.catalog import ChannelInfo, UpstreamKey
from gateway.neutral import Call, GatewayError, Usage
from gateway.upstream import UpstreamRequest

PATHS = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "moderations": "/moderations",
}
QUOTA_CODES = ("insufficient_quota", "billing_hard_limit_reached", "quota_exceeded")


def usage_from(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    prompt = data.get("prompt_tokens")
    if not isinstance(prompt, int):
        return None
    completion = data.get("completion_tokens") or 0
    details = data.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or 0 if isinstance(details, dict) else 0
    return Usage(
        prompt, completion if isinstance(completion, int) else 0, cached if isinstance(cached, int) else 0
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


class OpenAIAdaptor:
    def build_request(self, call: Call, channel: ChannelInfo, key: UpstreamKey) -> UpstreamRequest:
        upstream_model = channel.upstream_model(call.model)
        body = call.raw
        if call.stream and not call.wants_usage or upstream_model != call.model or call.extra.get("rewrite"):
            changed = dict(call.body)
            changed["model"] = upstream_model
            if call.stream:
                options = changed.get("stream_options")
                changed["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
            body = orjson.dumps(changed)
        headers = {
            "Authorization": "Bearer " + key.secret,
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if call.stream else "application/json",
        }
        return UpstreamRequest("POST", channel.base_url + PATHS[call.endpoint], headers, body)

    def parse_response(self, call: Call, body: bytes) -> tuple[bytes, Usage | None]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise GatewayError(
                502,
                "The upstream answered with invalid JSON.",
                "server_error",
                "bad_upstream_response",
                retryable=True,
            ) from None
        if not isinstance(data, dict):
            raise GatewayError(
                502,
                "The upstream answered with an unexpected body.",
                "server_error",
                "bad_upstream_response",
                retryable=True,
            )
        return body, usage_from(data.get("usage"))

    def stream_events(self, call: Call, chunks: Iterator[bytes]) -> Iterator[bytes]:
        return sse.events(chunks)

    def event_usage(self, payload: bytes) -> Usage | None:
        # a literal `"usage":{` cannot occur inside a JSON string, so this test never misfires on content
        if b'"usage":{' not in payload and b'"usage": {' not in payload:
            return None
        try:
            return usage_from(orjson.loads(payload).get("usage"))
        except (orjson.JSONDecodeError, AttributeError):
            return None

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        try:
            error = orjson.loads(body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            error = None
        error = error if isinstance(error, dict) else {}
        code = error.get("code") if isinstance(error.get("code"), str) else None
        kind = error.get("type") if isinstance(error.get("type"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else ""
        quota = code in QUOTA_CODES or kind in QUOTA_CODES
        result = GatewayError(
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
        return result
