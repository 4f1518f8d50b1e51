"""Server-sent events: split an upstream byte stream into events and frame events for the client.

Accepts `\\n` and `\\r\\n` line ends (the spec allows both). Only `data:` lines matter to the OpenAI
protocol; comments and other fields are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator


class EventSplitter:
    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Return the data payloads of every event completed by `data`."""
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        buffer = self._buffer + data
        events = buffer.split(b"\n\n")
        self._buffer = events.pop()
        return [payload for block in events if (payload := _payload(block)) is not None]

    def rest(self) -> bytes:
        return self._buffer


def _payload(block: bytes) -> bytes | None:
    if block.startswith(b"data:") and b"\n" not in block:  # the common case: one data line
        return block[6:] if block[5:6] == b" " else block[5:]
    lines = [line[5:].removeprefix(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def events(chunks: Iterator[bytes]) -> Iterator[bytes]:
    splitter = EventSplitter()
    for chunk in chunks:
        yield from splitter.feed(chunk)
