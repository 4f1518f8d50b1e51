"""Anthropic Messages, in both directions: `POST /v1/messages` (streamed or not) and
`POST /v1/messages/count_tokens`, as the client's protocol and as an upstream's (channel type `anthropic`).

Spec: the Anthropic API reference (https://docs.anthropic.com/en/api/messages, /en/api/messages-streaming,
/en/api/errors) as anthropics/anthropic-sdk-python types it. Errors are `{"type": "error", "error": {"type",
"message"}}`, the SDK picks its exception by status. Streams are `event:`/`data:` pairs whose event name is
the data's `type` (the SDK skips events without a name); usage comes in `message_start` and, cumulative, in
`message_delta`; `message_stop` ends a stream. `input_tokens` excludes cache reads and cache writes, which
the hub counts in `prompt_tokens`.

Where the protocols do not meet (docs/protocols.md lists every such choice):
  * A signature of another protocol rides through an Anthropic client wrapped (`wrap_signature`). A hub tool
    call's own signature (Gemini's `thoughtSignature`) becomes a thinking block with empty text just before
    its `tool_use` block; coming back, such a block (empty text, foreign signature, directly before a
    `tool_use`) is that call's signature again.
  * Thinking text without a signature is shown with `signature: ""`; an empty signature coming back is none,
    and an Anthropic upstream gets only thinking blocks it signed itself.
  * Thinking blocks are shown only to a client that asked for thinking (`thinking` enabled or adaptive), so
    that `content[0].text` keeps working for the others.
  * Into the hub: text-only content becomes one string (DeepSeek and others take no part lists); a tool
    name longer than 64 characters (OpenAI's limit) is shortened and named back in the answer; a
    `metadata.user_id` longer than 64 characters becomes its SHA-256 digest.
  * A stream cut before its `message_delta` keeps `message_start`'s input counts; its output is counted
    from the delivered text.
  * Towards an Anthropic upstream: every system or developer message goes into the top-level `system`, in
    order, mid-conversation ones included; `response_format` becomes an instruction appended to it (the
    Messages API has no JSON mode); thinking is switched off when the last assistant turn calls tools
    without a thinking block of Anthropic's (the API refuses that turn otherwise), and `temperature` and
    `top_k` are left out while thinking (the API refuses them).

The package, one module per concern:
  * `wire`: the protocol's name, version, paths, headers and mapping tables; stream framing.
  * `client_request`: parsing a client's request, and turning it into a hub request.
  * `client_answer`: hub answers, whole or streamed, as the client's Anthropic answers.
  * `upstream_request`: the request to an Anthropic upstream, native or built from a hub request.
  * `upstream_answer`: an upstream's answers, whole or streamed, passed through or turned into hub data.
  * `usage`: Anthropic usage objects and the hub's Usage, both ways.
  * `errors`: errors rendered for the client and read from the upstream.
"""

from __future__ import annotations

from gateway.protocols.anthropic.client_answer import response_from_hub, stream_from_hub, stream_headers
from gateway.protocols.anthropic.client_request import (
    estimate_count,
    parse_request,
    request_to_hub,
    wants_thinking,
)
from gateway.protocols.anthropic.errors import CREDIT_MARKER, RETRYABLE, map_error, render_error, stream_error
from gateway.protocols.anthropic.upstream_answer import (
    answered_text,
    delivered_text,
    events,
    native_response,
    native_stream,
    response_to_hub,
    stream_to_hub,
)
from gateway.protocols.anthropic.upstream_request import body_from_hub, build_request
from gateway.protocols.anthropic.usage import usage_from, usage_json
from gateway.protocols.anthropic.wire import (
    API_VERSION,
    DEFAULT_EFFORT,
    DEFAULT_MAX_TOKENS,
    EFFORT_BUDGETS,
    EFFORTS,
    ERROR_TYPES,
    ERROR_TYPES_TO_HUB,
    FINISH_TO_STOP,
    JSON_HEADERS,
    JSON_INSTRUCTION,
    KINDS,
    MIN_THINKING_BUDGET,
    PASSED_HEADERS,
    PATHS,
    SAMPLING,
    SCHEMA_INSTRUCTION,
    STOP_TO_FINISH,
    STREAM_HEADERS,
    THINKING_TYPES,
    TOOL_CHOICE_FROM_HUB,
    TOOL_CHOICE_TO_HUB,
    TOOL_ID,
    TOOL_NAME_MAX_CHARS,
    USER_ID_MAX_CHARS,
    error_type,
    frame,
    name,
)

__all__ = [
    "API_VERSION",
    "CREDIT_MARKER",
    "DEFAULT_EFFORT",
    "DEFAULT_MAX_TOKENS",
    "EFFORTS",
    "EFFORT_BUDGETS",
    "ERROR_TYPES",
    "ERROR_TYPES_TO_HUB",
    "FINISH_TO_STOP",
    "JSON_HEADERS",
    "JSON_INSTRUCTION",
    "KINDS",
    "MIN_THINKING_BUDGET",
    "PASSED_HEADERS",
    "PATHS",
    "RETRYABLE",
    "SAMPLING",
    "SCHEMA_INSTRUCTION",
    "STOP_TO_FINISH",
    "STREAM_HEADERS",
    "THINKING_TYPES",
    "TOOL_CHOICE_FROM_HUB",
    "TOOL_CHOICE_TO_HUB",
    "TOOL_ID",
    "TOOL_NAME_MAX_CHARS",
    "USER_ID_MAX_CHARS",
    "answered_text",
    "body_from_hub",
    "build_request",
    "delivered_text",
    "error_type",
    "estimate_count",
    "events",
    "frame",
    "map_error",
    "name",
    "native_response",
    "native_stream",
    "parse_request",
    "render_error",
    "request_to_hub",
    "response_from_hub",
    "response_to_hub",
    "stream_error",
    "stream_from_hub",
    "stream_headers",
    "stream_to_hub",
    "usage_from",
    "usage_json",
    "wants_thinking",
]
