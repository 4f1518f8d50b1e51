"""What a converted call carries through the client in a reasoning item's `encrypted_content`: a hub thinking
block's foreign signature (`wrap_signature`), and the gateway's private forms for what the hub has and a
reasoning item has no field for (an Anthropic redacted_thinking block, the signature of one tool call).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.protocols.base import Signature, wrap_signature
from gateway.protocols.responses.tables import name

# private `encrypted_content` forms, for what the hub has and a reasoning item has no field for
REDACTED_PREFIX = "rhx."  # an Anthropic redacted_thinking block
CALL_SIGNATURE_PREFIX = "rht."  # the signature of one tool call (Gemini's thoughtSignature)


def _thinking_secret(block: dict[str, Any]) -> str | None:
    if block.get("type") == "redacted_thinking":
        return REDACTED_PREFIX + str(block.get("data") or "")
    signature = block.get("signature")
    return wrap_signature(signature, name) if signature else None


def _call_secret(call_id: str, signature: Signature) -> str:
    return CALL_SIGNATURE_PREFIX + orjson.dumps([call_id, signature[0], signature[1]]).decode()


def _open_call_signature(secret: str) -> tuple[str, Signature]:
    try:
        call_id, origin, value = orjson.loads(secret[len(CALL_SIGNATURE_PREFIX) :])
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return "", ("", "")
    return str(call_id), (str(origin), str(value))
