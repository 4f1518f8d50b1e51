"""Errors in both directions: a GatewayError rendered for an Anthropic client (`{"type": "error", "error":
{"type", "message"}}`, as a body or as an `error` event that ends a stream), and an Anthropic upstream's
error answer read as a GatewayError (retryable or not, and whether it sets the key aside)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from gateway.neutral import Call, GatewayError, Reply
from gateway.protocols.anthropic.wire import ERROR_TYPES_TO_HUB, JSON_HEADERS, error_type, frame
from gateway.protocols.openai import retry_after_s


# -- to the client -----------------------------------------------------------------------------------
def _error_body(err: GatewayError) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type(err.status), "message": err.message}})


def render_error(err: GatewayError) -> Reply:
    headers = list(JSON_HEADERS)
    if err.retry_after is not None:
        headers.append(("Retry-After", str(err.retry_after)))
    return Reply(err.status, headers, _error_body(err))


def stream_error(err: GatewayError, call: Call) -> bytes:
    return frame(b"error", _error_body(err))


# -- from the upstream -------------------------------------------------------------------------------
CREDIT_MARKER = "credit balance is too low"  # a 400 Anthropic sends when the account has run dry
RETRYABLE = frozenset((401, 402, 403, 408, 409, 429, 500, 502, 503, 504, 529))


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    """An Anthropic error answer (`{"type": "error", "error": {"type", "message"}}`). A rejected key (401)
    or an account out of credit (402, or 400 "credit balance is too low") sets the key aside and tries
    another channel; 403, 429, 5xx and 529 (overloaded) try another channel too; other 4xx do not."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    error = error if isinstance(error, dict) else {}
    kind = error.get("type") if isinstance(error.get("type"), str) else error_type(status)
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    no_credit = status == 402 or kind == "billing_error" or CREDIT_MARKER in message.lower()
    return GatewayError(
        status,
        message or f"The upstream answered {status}.",
        ERROR_TYPES_TO_HUB.get(kind, "server_error" if status >= 500 else "invalid_request_error"),
        kind,
        retryable=status in RETRYABLE or no_credit,
        retry_after=retry_after_s(headers),
        upstream_status=status,
        disables_key=status == 401 or no_credit,
    )
