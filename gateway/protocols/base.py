"""The seam every protocol module fills, and the hub the modules convert through.

A protocol module (`openai`, `responses`, `anthropic`, `gemini`) holds both directions of one wire
protocol: as the client's protocol (inbound) and as an upstream's (outbound). When the client and the
channel speak the same protocol, the call passes through as bytes (`native_*`), with only the model name
mapped and usage read on the way. Otherwise it goes through the hub: the inbound module turns the request
into a hub request, the outbound module sends it in its own protocol and turns the answer back into hub
data, and the inbound module renders that. Adding a protocol means one module, not one per pair.

The hub is OpenAI Chat Completions as Python data (dicts, never serialised), with these extensions:

request (`request_to_hub` returns, `build_request` takes):
  * the standard chat fields: `model`, `messages` (roles system, developer, user, assistant, tool; parts
    `text`, `image_url` (http or `data:` URL), `file` ({`file_data`: data URL, `filename`}) for PDFs),
    `tools` (function tools), `tool_choice`, `parallel_tool_calls`, `response_format`, `stop` (a list),
    `temperature`, `top_p`, `max_tokens` (the output allowance, set when known), `stream`, `user`,
    `reasoning_effort` (`none`, `minimal`, `low`, `medium`, `high`, and OpenAI's `xhigh`, `max`).
  * `top_k`: int.  `thinking_budget`: int tokens (Anthropic `budget_tokens`, Gemini `thinkingBudget`);
    `include_reasoning`: bool, the client wants reasoning text back.
  * assistant messages: `reasoning_content` (text) and `thinking_blocks`, a list of
    `{"type": "thinking", "thinking": str, "signature": Signature | None}` or
    `{"type": "redacted_thinking", "data": str}`; `tool_calls[i]["signature"]`: a Signature that belongs
    to that call (Gemini's `thoughtSignature` on a `functionCall` part).
  * tool messages may carry `is_error`: bool, and `name` (the function's name: Gemini needs it).
  A `Signature` is `(origin, value)`: the protocol that made it and its opaque text. A module passes a
  signature to its upstream only when the origin is its own; `wrap_signature`/`unwrap_signature` carry a
  foreign one through a client that only echoes text.

response (`response_to_hub` returns, `response_from_hub` takes): a `chat.completion` dict with one choice,
  `message` as above (`content` str or None, `reasoning_content`, `thinking_blocks`, `tool_calls` with
  `signature`), `finish_reason` one of `stop`, `length`, `tool_calls`, `content_filter`, and `usage` a
  `gateway.neutral.Usage` object (or None).

stream (`stream_to_hub` yields, `stream_from_hub` takes): `chat.completion.chunk` dicts with one choice;
  `delta` may hold `role`, `content`, `reasoning_content`, `thinking_signature` (a Signature closing the
  current thinking block), `redacted_thinking` (str), `tool_calls` ([{`index`, `id`, `function`:
  {`name`, `arguments`}, `signature`}], id and name on the first fragment of an index); the last chunk
  has `finish_reason`; a chunk with `usage` (a Usage) comes once, at the end, when the upstream reports
  it. Every stream module also records that usage in the `Tally` it is handed.

embeddings: the hub request is an OpenAI embeddings request (`model`, `input` a list of strings,
`dimensions`), the hub response `{"data": [{"embedding": [floats]}], "usage": Usage | None}`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gateway.neutral import Call, GatewayError, Reply, Usage

if TYPE_CHECKING:
    from gateway.catalog import ChannelInfo, UpstreamKey
    from gateway.relay import Inbound
    from gateway.upstream import UpstreamRequest

Signature = tuple[str, str]  # (origin protocol, opaque value)
_WRAP = "rh1."


def wrap_signature(signature: Signature, protocol: str) -> str:
    """The text a client of `protocol` carries for `signature`: as is when it is the protocol's own, else
    tagged with its origin so that it finds its way back to an upstream of that origin."""
    origin, value = signature
    if origin == protocol:
        return value
    tag = base64.urlsafe_b64encode(origin.encode()).decode().rstrip("=")
    return f"{_WRAP}{tag}.{value}"


def unwrap_signature(text: str, protocol: str) -> Signature:
    """The inverse of `wrap_signature`, for a signature text a client of `protocol` sent back."""
    if text.startswith(_WRAP):
        tag, _, value = text[len(_WRAP) :].partition(".")
        try:
            origin = base64.urlsafe_b64decode(tag + "=" * (-len(tag) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return protocol, text
        if value and origin.isidentifier():
            return origin, value
    return protocol, text


@dataclass(slots=True)
class Tally:
    """What a stream has shown so far, for billing: the usage the upstream reported, and the raw payloads
    delivered (read by `text_of` only when no usage came, to estimate it)."""

    usage: Usage | None = None
    payloads: list[bytes] = field(default_factory=list)
    text_of: Callable[[list[bytes]], str] = lambda payloads: ""

    def text(self) -> str:
        return self.text_of(self.payloads)


class ProtocolModule(Protocol):
    name: str  # "openai", "responses", "anthropic", "gemini"

    # -- inbound: the client's side ------------------------------------------------------------------
    def parse_request(self, endpoint: str, raw: bytes, inbound: Inbound) -> Call:
        """The call, checked just enough to route, price and limit it; a 400 GatewayError otherwise.
        Unknown fields are never refused. `call.kind` says which hub family it belongs to."""

    def render_error(self, err: GatewayError) -> Reply:
        """An error in this protocol's shape, with `Retry-After` when the error has one."""

    def stream_error(self, err: GatewayError, call: Call) -> bytes:
        """The frame that ends a stream that broke mid-way (the call holds what the stream's framing
        needs, such as the next sequence number)."""

    def stream_headers(self, call: Call) -> list[tuple[str, str]]:
        """The headers of a streamed answer (Content-Type and the like)."""

    def request_to_hub(self, call: Call) -> dict[str, Any]:
        """The call as a hub request (see above)."""

    def response_from_hub(self, call: Call, hub: dict[str, Any]) -> bytes:
        """A hub response as this protocol's JSON body."""

    def stream_from_hub(self, call: Call, chunks: Iterator[dict[str, Any]]) -> Iterator[bytes]:
        """Hub chunks as this protocol's stream, framed (`event:`/`data:` lines and blank line), one event
        at a time as they arrive. Pulls the first hub chunk before yielding anything, so that an upstream
        that fails before its first event can still fail over."""

    # -- outbound: the upstream's side ---------------------------------------------------------------
    def build_request(
        self, call: Call, channel: ChannelInfo, key: UpstreamKey, hub: dict[str, Any] | None
    ) -> UpstreamRequest:
        """The upstream request: `call.raw` passed through (model mapped) when `hub` is None, else the hub
        request converted to this protocol."""

    def native_response(self, call: Call, body: bytes) -> tuple[bytes, Usage | None]:
        """A whole answer passed through, and the usage it reports."""

    def native_stream(self, call: Call, chunks: Iterator[bytes], tally: Tally) -> Iterator[bytes]:
        """A stream passed through frame by frame (event names kept), usage recorded in `tally`."""

    def response_to_hub(self, call: Call, body: bytes) -> dict[str, Any]:
        """A whole answer as a hub response (its `usage` a Usage or None)."""

    def stream_to_hub(self, call: Call, chunks: Iterator[bytes], tally: Tally) -> Iterator[dict[str, Any]]:
        """A stream as hub chunks, as they arrive; usage recorded in `tally`. An error event raises a
        GatewayError (status 502)."""

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        """An upstream error answer as a GatewayError: retryable or not, and whether it sets the key aside."""
