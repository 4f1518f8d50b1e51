"""Google's Gemini API (`generativelanguage.googleapis.com`, `/v1beta` and `/v1`) in both directions:
`generateContent`, `streamGenerateContent`, `countTokens`, `embedContent` and `batchEmbedContents`.

Spec: https://ai.google.dev/api (GenerateContentRequest and Response, Content, Part, Tool, ToolConfig,
GenerationConfig, UsageMetadata, EmbedContentRequest), errors per
https://ai.google.dev/gemini-api/docs/troubleshooting, thought signatures per
https://ai.google.dev/gemini-api/docs/thought-signatures; checked against googleapis/python-genai and the
requests Gemini CLI 0.61.0 sends.

* The model is in the URL (`/v1beta/models/<model>:<action>`), never in the body: inbound it comes from the
  route, outbound it goes into the URL, so a native pass-through sends the client's body untouched.
* Streams: with `?alt=sse` they are `data:` events with no end marker; without it, one JSON array sent
  element by element (`[`, then `,\\r\\n` between elements, then `]`). The gateway always asks its upstream
  for SSE, and re-frames for a client that asked for the array.
* Usage: `promptTokenCount` includes `cachedContentTokenCount`; `candidatesTokenCount` excludes
  `thoughtsTokenCount` (the hub's completion counts both). In a stream every chunk repeats the usage so far:
  the last one wins.
* Function calls come without ids from Google's API: one is made up, and results are matched to calls by
  name and order.
* Thought signatures ride on parts (`thoughtSignature`), on a `functionCall` part for the reasoning behind
  that call, else on a text part. Gemini 3 models refuse a current turn's function call without one: for a
  call made elsewhere the documented escape value `skip_thought_signature_validator` stands in. Another
  protocol's signed thinking reaches a Gemini client as one base64 `thoughtSignature` holding the blocks
  whole (`pack_thinking`), on the first part that is not a thought: google-genai takes signatures as base64
  bytes only, and a client may drop thought parts, while Anthropic wants its thinking text back.
* Requests are read by JSON name or proto name (`thinkingConfig` or `thinking_config`), as Google's parser
  does: google-genai sends some nested fields in snake case.

The package, one thing a module:
  `tables`      the mappings between Gemini's wire values and the hub's, both directions side by side
  `fields`      reading Gemini's JSON: typed values, JSON or proto field names, model ids, part texts
  `schema`      Gemini's Schema as JSON Schema
  `signatures`  thought signatures as a Gemini client carries them, and packed thinking blocks
  `inbound`     a client's request parsed and checked, errors in Google's shape, model objects
  `to_hub`      a client's request as a hub request; `countTokens` estimated here
  `from_hub`    a hub answer as a client's GenerateContentResponse or embedding response
  `streams`     streams both ways: framing for the client, hub chunks rendered, upstream events read
  `upstream`    requests to a Gemini upstream: URL, headers, the body passed through or converted
  `answers`     whole answers and errors from a Gemini upstream
"""

from __future__ import annotations

from gateway.protocols.gemini.answers import map_error, native_response, response_to_hub
from gateway.protocols.gemini.from_hub import response_from_hub
from gateway.protocols.gemini.inbound import model_object, parse_request, render_error
from gateway.protocols.gemini.schema import json_schema
from gateway.protocols.gemini.signatures import client_signature, pack_thinking, wrap_for_client
from gateway.protocols.gemini.streams import (
    native_stream,
    stream_error,
    stream_from_hub,
    stream_headers,
    stream_to_hub,
)
from gateway.protocols.gemini.tables import ERROR_INFO, KINDS, RETRY_INFO, SKIP_SIGNATURE, name
from gateway.protocols.gemini.to_hub import estimate_count, request_to_hub
from gateway.protocols.gemini.upstream import build_request, request_from_hub

__all__ = [
    # the protocol module interface (gateway.protocols.base.ProtocolModule)
    "name",
    "parse_request",
    "render_error",
    "stream_error",
    "stream_headers",
    "request_to_hub",
    "response_from_hub",
    "stream_from_hub",
    "estimate_count",
    "build_request",
    "native_response",
    "native_stream",
    "response_to_hub",
    "stream_to_hub",
    "map_error",
    "model_object",
    # what the tests read beside it
    "KINDS",
    "ERROR_INFO",
    "RETRY_INFO",
    "SKIP_SIGNATURE",
    "client_signature",
    "json_schema",
    "pack_thinking",
    "request_from_hub",
    "wrap_for_client",
]
