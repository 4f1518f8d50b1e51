"""The fixed parts of the Anthropic Messages wire format, shared by both directions: the protocol's name,
version, paths and headers; the tables that map its error types, stop reasons, tool choices and efforts to
the hub's and back; the `event:`/`data:` framing of its streams; and the shape of a `tool_use` input.

Spec: https://docs.anthropic.com/en/api/messages, /en/api/messages-streaming, /en/api/errors.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway import sse

name = "anthropic"
API_VERSION = "2023-06-01"  # the SDKs' default `anthropic-version`
PATHS = {"messages": "/v1/messages", "count_tokens": "/v1/messages/count_tokens"}
KINDS = {"messages": "chat", "count_tokens": "count"}
PASSED_HEADERS = ("anthropic-version", "anthropic-beta")  # to an Anthropic upstream, when native
DEFAULT_MAX_TOKENS = 4096  # `max_tokens` is required; a hub request may have none
MIN_THINKING_BUDGET = 1024  # the API's minimum `budget_tokens`
TOOL_NAME_MAX_CHARS = 64  # OpenAI's limit on a function's name; Anthropic's is 128
USER_ID_MAX_CHARS = 64  # longer ids (Claude Code sends a JSON object) travel as a digest in hub `user`
JSON_HEADERS = [("Content-Type", "application/json")]
STREAM_HEADERS = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
]

# status -> error.type (api-contracts.md section 5); the SDK raises its typed exception by status
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# an upstream's error.type -> the OpenAI-flavoured type a GatewayError carries
ERROR_TYPES_TO_HUB = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "billing_error": "insufficient_quota",
    "permission_error": "permission_error",
    "not_found_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
    "api_error": "server_error",
    "overloaded_error": "server_error",
    "timeout_error": "server_error",
}
STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
TOOL_CHOICE_TO_HUB = {"auto": "auto", "any": "required", "none": "none"}
TOOL_CHOICE_FROM_HUB = {"auto": "auto", "required": "any", "none": "none"}
SAMPLING = ("temperature", "top_p", "top_k")  # same names on both sides
# output_config.effort -> hub reasoning_effort
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
DEFAULT_EFFORT = "medium"
THINKING_TYPES = ("enabled", "adaptive", "between_tools")
# hub reasoning_effort -> thinking budget_tokens, towards an Anthropic upstream
# `none` asks for no thinking; OpenAI's newer `xhigh` and `max` get the largest budget
EFFORT_BUDGETS = {
    "none": 0,
    "minimal": 1024,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 32000,
    "max": 32000,
}
TOOL_ID = re.compile(r"[^A-Za-z0-9_-]")  # what a tool_use id may not contain
JSON_INSTRUCTION = "Answer with a single valid JSON object only: no prose before or after it, no code fences."
SCHEMA_INSTRUCTION = (
    "Answer with JSON only (no prose, no code fences) that is valid against this JSON Schema:\n"
)


# -- error types, stream framing, tool input ---------------------------------------------------------
def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


frame = sse.named_frame


def hub_assistant(
    texts: list[str], thinking: list[dict[str, Any]], calls: list[dict[str, Any]]
) -> dict[str, Any]:
    """An assistant turn in the hub's shape from an Anthropic turn's blocks, read in order: its text, its
    reasoning (the thinking blocks' text joined) beside the blocks themselves, and its tool calls."""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    reasoning = "".join(b["thinking"] for b in thinking if b["type"] == "thinking")
    if reasoning:
        message["reasoning_content"] = reasoning
    if thinking:
        message["thinking_blocks"] = thinking
    if calls:
        message["tool_calls"] = calls
    return message


def _event(data: dict[str, Any]) -> bytes:
    return frame(data["type"].encode(), orjson.dumps(data))


def _arguments(text: Any) -> dict[str, Any]:
    """Tool arguments (a JSON string) as the object a `tool_use` block holds; {} when they are no object."""
    try:
        value = orjson.loads(text) if isinstance(text, str) and text.strip() else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
