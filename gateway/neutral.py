"""Neutral forms that move through the relay pipeline, whatever protocol the client or upstream speaks.

`GatewayError` is an error as data: every front-end renders it in its own protocol's shape, as a `Reply`.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class GatewayError(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    retryable: bool = False
    retry_after: int | None = None
    # set when the upstream's own answer caused it, so failover and auto-disable can judge it
    upstream_status: int | None = None
    disables_key: bool = False

    def __str__(self) -> str:
        return f"{self.status} {self.code or self.type}: {self.message}"


REDACTED = "[redacted]"
# A masked key as upstreams print it: a prefix of the key, a run of mask characters, its last four
# (OpenAI: `sk-abc1****************wxyz`, `sk-proj-...wxyz`).
_MASKED = r"([A-Za-z0-9_-]*)(?:[*\u2022\u2026]+|\.{2,})"
MIN_MASKED_KEY_LEN = 8  # shorter keys (a vLLM "EMPTY") are no secret and their last four too common


def redact_secret(text: str, secret: str) -> str:
    """`text` with every form of `secret` it quotes replaced: exact, in any letter case, and masked."""
    if not secret or not text:
        return text
    if len(secret) < MIN_MASKED_KEY_LEN:
        return text.replace(secret, REDACTED)
    text = re.sub(re.escape(secret), REDACTED, text, flags=re.IGNORECASE)
    head = secret.lower()

    def masked(match: re.Match[str]) -> str:
        prefix = match.group(1).lower()
        return REDACTED if head.startswith(prefix) else match.group(0)

    return re.sub(_MASKED + re.escape(secret[-4:]), masked, text, flags=re.IGNORECASE)


def redacted(err: GatewayError, secret: str) -> GatewayError:
    """Upstream messages may quote the key they were sent, whole or masked, in any case: never pass that
    on. A rejected key's message is replaced whole (OpenAI's quotes a masked form of the key)."""
    if err.disables_key:
        err.message = f"The upstream rejected its key ({err.upstream_status})."
    else:
        err.message = redact_secret(err.message, secret)
    return err


def bad_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", code, param)


def empty_stream() -> GatewayError:
    """An upstream stream that ended before its first event: nothing reached the client, so it fails over."""
    return GatewayError(
        502,
        "The upstream closed the stream before sending anything.",
        "server_error",
        "upstream_empty_stream",
        retryable=True,
    )


@dataclass(slots=True)
class Usage:
    """Usage normalised across protocols: `prompt_tokens` counts every input token, cache reads
    (`cached_tokens`) and cache writes (`cache_write_tokens`) included; `completion_tokens` counts every
    output token, reasoning (`reasoning_tokens`) included. `images` counts the images an image generation
    made: a per-request price is charged once per image."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    source: str = "upstream"  # upstream or estimated
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Call:
    """One client request, parsed just enough to route, price and limit it."""

    endpoint: str  # the inbound protocol's own: chat, completions, messages, generate, responses, ...
    model: str
    body: dict[str, Any]
    raw: bytes
    stream: bool = False
    wants_usage: bool = False  # the client asked for stream usage itself
    max_output_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    protocol: str = "openai"  # the inbound protocol module's name
    kind: str = "chat"  # the hub family: chat or embeddings converts; anything else passes through only
    pin_channel: int | None = None  # only this channel may serve the call (a stored response's maker)
    served_by: int | None = None  # the channel of the current attempt
    hub: dict[str, Any] | None = None  # the hub request, made once, on the first converted attempt


@dataclass(slots=True)
class Reply:
    """An answer as data. `body` is bytes, or an iterable of bytes for a stream, which the server closes when
    it ends or when the client goes away."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | Iterable[bytes]


_PROCESS_TAG = os.urandom(4).hex()
_SEQUENCE = itertools.count()


def new_request_id() -> str:
    """`req_` and 26 hex digits: the time in milliseconds, a tag random per process, and a counter.

    Unique without a system call per request, and in time order, so new rows land at the end of the
    `request_id` indexes instead of at random places in them."""
    return f"req_{time.time_ns() // 1_000_000:012x}{_PROCESS_TAG}{next(_SEQUENCE) & 0xFFFFFF:06x}"
