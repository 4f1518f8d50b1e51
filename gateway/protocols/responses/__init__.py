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

The package, a module per concern: `inbound` (parsing, errors, the count estimate), `tools` (the client's
tools as hub functions), `transcript` (input items to hub messages), `hub_request` (the hub request, and the
compaction request), `response_object` (the Response object from a hub answer), `events` (the typed event
stream from hub chunks), `native` (a Responses-native upstream), `encrypted` (what `encrypted_content`
carries), `tables` (names, endpoints and mapping tables). Names with a leading underscore are private to the
package; this module re-exports the protocol interface (`gateway.protocols.base.ProtocolModule`).
"""

from __future__ import annotations

from gateway.protocols.responses.events import stream_from_hub
from gateway.protocols.responses.hub_request import request_to_hub
from gateway.protocols.responses.inbound import (
    estimate_count,
    parse_request,
    render_error,
    stream_error,
    stream_headers,
)
from gateway.protocols.responses.native import (
    build_request,
    map_error,
    native_response,
    native_stream,
    response_to_hub,
    stream_to_hub,
)
from gateway.protocols.responses.response_object import response_from_hub
from gateway.protocols.responses.tables import SUMMARY_INTRO, name
from gateway.protocols.responses_store import manage, prepare  # the relay's hooks live with the state

__all__ = [
    "SUMMARY_INTRO",
    "build_request",
    "estimate_count",
    "manage",
    "map_error",
    "name",
    "native_response",
    "native_stream",
    "parse_request",
    "prepare",
    "render_error",
    "request_to_hub",
    "response_from_hub",
    "response_to_hub",
    "stream_error",
    "stream_from_hub",
    "stream_headers",
    "stream_to_hub",
]
