"""Thought signatures as a Gemini client carries them: Gemini's own as they are, another protocol's wrapped
with its origin and base64-encoded (google-genai takes `thoughtSignature` as bytes only), and another
protocol's signed thinking blocks packed whole into one signature (`pack_thinking`), to come back intact.

Spec: https://ai.google.dev/gemini-api/docs/thought-signatures
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from gateway.protocols.base import Signature, unwrap_signature, wrap_signature
from gateway.protocols.gemini.fields import _dict, _list
from gateway.protocols.gemini.tables import name

_WRAPPED_B64 = base64.b64encode(b"rh1.").decode()[:5]  # how every base64-encoded wrapped signature begins
_URLSAFE = str.maketrans("-_", "+/")
_ENVELOPE_B64 = base64.b64encode(b'{"rh":1,"').decode()  # how every `pack_thinking` envelope begins


def client_signature(text: str) -> Signature:
    """A signature a Gemini client sent back: Gemini's own as it is, another protocol's as `wrap_for_client`
    made it (in either base64 alphabet: google-genai re-encodes bytes URL-safe)."""
    decoded = _b64decode(text) if text.startswith(_WRAPPED_B64) else None
    try:
        return unwrap_signature(decoded.decode() if decoded else text, name)
    except UnicodeDecodeError:
        return unwrap_signature(text, name)


def wrap_for_client(signature: Signature) -> str:
    """A signature as a Gemini client carries it. `thoughtSignature` is bytes on Gemini's wire (base64 in
    JSON), and google-genai refuses a response whose signature is not base64: so another protocol's
    signature, wrapped with its origin, goes out base64-encoded."""
    if signature[0] == name:
        return signature[1]
    return base64.b64encode(wrap_signature(signature, name).encode()).decode()


def _b64decode(text: str) -> bytes | None:
    """Base64 in either alphabet, padded or not (google-genai sends bytes back URL-safe)."""
    try:
        return base64.b64decode(text.translate(_URLSAFE) + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        return None


def pack_thinking(blocks: list[Any]) -> str | None:
    """Another protocol's thinking blocks as one `thoughtSignature`, for a Gemini client to carry back: the
    signed ones with their text (an Anthropic signature is worth nothing without the thinking it signs, and
    a client may drop or never see thought parts) and the redacted ones. Base64 of a JSON envelope."""
    items: list[dict[str, Any]] = []
    for block in blocks:
        block = _dict(block)
        signature = _signature(block.get("signature"))
        if block.get("type") == "thinking" and signature:
            items.append(
                {"type": "thinking", "thinking": block.get("thinking") or "", "signature": list(signature)}
            )
        elif block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
            items.append({"type": "redacted_thinking", "data": block["data"]})
    if not items:
        return None
    return base64.b64encode(orjson.dumps({"rh": 1, "blocks": items})).decode()


def unpack_thinking(text: str) -> list[dict[str, Any]] | None:
    """The thinking blocks `pack_thinking` put in a signature; None for any other signature."""
    if not text.startswith(_ENVELOPE_B64):
        return None
    try:
        envelope = orjson.loads(_b64decode(text) or b"")
    except orjson.JSONDecodeError:
        return None
    blocks = []
    for item in _list(_dict(envelope).get("blocks")):
        item = _dict(item)
        signature = _signature(item.get("signature"))
        if item.get("type") == "thinking" and signature and isinstance(item.get("thinking"), str):
            blocks.append({"type": "thinking", "thinking": item["thinking"], "signature": signature})
        elif item.get("type") == "redacted_thinking" and isinstance(item.get("data"), str):
            blocks.append({"type": "redacted_thinking", "data": item["data"]})
    return blocks


def _signature(value: Any) -> Signature | None:
    if isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, str) and v for v in value):
        return value[0], value[1]
    return None
