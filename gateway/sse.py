"""Server-sent events: split an upstream byte stream into events and frame events for the client.

Accepts `\\n` and `\\r\\n` line ends (the spec allows both). Only `data:` lines matter to the OpenAI
protocol; comments and other fields are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator


class EventSplitter:
    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Return the data payloads of every event completed by `data`."""
        buffer = self._buffer + data
        held = b""
        if b"\r" in buffer:  # a CRLF may be split between two reads: a last CR waits for the next
            if buffer.endswith(b"\r"):
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n")
        events = buffer.split(b"\n\n")
        self._buffer = events.pop() + held
        return [payload for block in events if (payload := _payload(block)) is not None]

    def rest(self) -> bytes:
        return self._buffer


def _payload(block: bytes) -> bytes | None:
    if block.startswith(b"data:") and b"\n" not in block:  # the common case: one data line
        return block[6:] if block[5:6] == b" " else block[5:]
    lines = [line[5:].removeprefix(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


_TYPE = re.compile(rb'^\s*\{\s*"type"\s*:\s*"([A-Za-z0-9_.]+)"')


def named_events(chunks: Iterator[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """An upstream byte stream as (event name, data) pairs, as they complete, for the protocols that name
    their events (Anthropic's, the Responses API's). An event without an `event:` line is named after its
    data's leading `type`, as those APIs name every event, else `message`."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        if b"\r" in buffer:  # a trailing CR stays until its LF arrives
            buffer = buffer.replace(b"\r\n", b"\n")
        *blocks, buffer = buffer.split(b"\n\n")
        for block in blocks:
            event, data = b"", []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[5:].removeprefix(b" "))
                elif line.startswith(b"event:"):
                    event = line[6:].strip()
            if not data:
                continue
            payload = b"\n".join(data)
            if not event:
                match = _TYPE.match(payload)
                event = match.group(1) if match else b"message"
            yield event, payload


def frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def named_frame(event: bytes, payload: bytes) -> bytes:
    return b"event: " + event + b"\ndata: " + payload + b"\n\n"


def events(chunks: Iterator[bytes]) -> Iterator[bytes]:
    splitter = EventSplitter()
    for chunk in chunks:
        yield from splitter.feed(chunk)
