"""The seam every upstream adaptor fills: five methods, no Flask, no database."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from gateway.catalog import ChannelInfo, UpstreamKey
from gateway.neutral import Call, GatewayError, Usage
from gateway.upstream import UpstreamRequest


class Adaptor(Protocol):
    def build_request(self, call: Call, channel: ChannelInfo, key: UpstreamKey) -> UpstreamRequest:
        """The upstream HTTP request for this call (model mapped, stream usage asked for)."""

    def parse_response(self, call: Call, body: bytes) -> tuple[bytes, Usage | None]:
        """A successful non-streaming answer as OpenAI JSON bytes, and the usage it reports."""

    def stream_events(self, call: Call, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """A successful stream as OpenAI `data:` payloads (JSON bytes, then b"[DONE]")."""

    def event_usage(self, payload: bytes) -> Usage | None:
        """The usage an OpenAI stream payload reports, if any."""

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        """An upstream error answer as a GatewayError: retryable or not, and whether it sets the key aside."""
