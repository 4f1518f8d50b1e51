"""The client's side of the Responses API: a request parsed and checked into a `Call`, errors in OpenAI's
shape (a broken stream ends with an `error` event), and `/v1/responses/input_tokens` counted here when no
channel counts natively.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

import orjson

from gateway import tokens
from gateway.neutral import Call, GatewayError, bad_request
from gateway.protocols import openai
from gateway.protocols.responses.events import _frame
from gateway.protocols.responses.tables import KINDS, PATHS, name
from gateway.protocols.responses.tools import _tools
from gateway.protocols.responses.transcript import _instructions, _message_text, _Transcript
from gateway.protocols.responses_store import input_items

if TYPE_CHECKING:
    from gateway.relay import Inbound

render_error = openai.render_error


def stream_error(err: GatewayError, call: Call) -> bytes:
    """The `error` event that ends a broken stream (openai-python yields it as a ResponseErrorEvent); its
    sequence number follows the last event sent."""
    event = {
        "type": "error",
        "code": err.code or err.type,
        "message": err.message,
        "param": err.param,
        "sequence_number": call.extra.get("sequence", 0),
    }
    return _frame(b"error", orjson.dumps(event))


def stream_headers(call: Call) -> list[tuple[str, str]]:
    return list(openai.STREAM_HEADERS)


def parse_request(endpoint: str, raw: bytes, inbound: Inbound | None = None) -> Call:
    body = openai.json_object(raw)
    model = openai.check_model(body.get("model"))
    data = body.get("input")
    if data is not None and not isinstance(data, str | list):
        raise bad_request("Invalid type for 'input': expected a string or an array of input items.", "input")
    if isinstance(data, list) and not all(isinstance(item, dict) for item in data):
        raise bad_request("Invalid type for 'input': every input item must be an object.", "input")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean.", "stream")
    if stream and endpoint != "responses":
        raise bad_request(f"Streaming is not supported on /v1{PATHS[endpoint]}.", "stream")
    for field_name, kind in (("previous_response_id", str), ("tools", list), ("include", list)):
        if body.get(field_name) is not None and not isinstance(body[field_name], kind):
            raise bad_request(f"Invalid type for '{field_name}'.", field_name)
    max_output = body.get("max_output_tokens")
    if max_output is not None and (
        not isinstance(max_output, int) or isinstance(max_output, bool) or max_output < 0
    ):
        raise bad_request("'max_output_tokens' must be a non-negative integer.", "max_output_tokens")
    token = secrets.token_hex(16)
    return Call(
        endpoint,
        model,
        body,
        raw,
        bool(stream),
        True,
        max_output,
        {"token": token, "response_id": "resp_" + token, "created_at": int(time.time())},
        protocol=name,
        kind=KINDS[endpoint],
    )


def estimate_count(call: Call) -> bytes:
    """The answer of `/v1/responses/input_tokens` when no channel counts natively: counted here."""
    names, tools = _tools(call.body)
    conversation = _Transcript(names, call.extra).convert(input_items(call.body), call.extra.get("history"))
    text = [_instructions(call.body)] + [_message_text(m) for m in conversation]
    if tools:
        text.append(orjson.dumps(tools).decode())
    count = tokens.count(call.model, "\n".join(t for t in text if t))
    return orjson.dumps({"object": "response.input_tokens", "input_tokens": count})
