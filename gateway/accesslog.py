"""The access log: one line per HTTP request, on stderr, as text or JSON (`ACCESS_LOG=off|text|json`).

A relayed request's line carries what its usage log row says (request id, user, key, model, tokens) beside
the HTTP status and the latency; any other request's line carries its method, path, status and latency.
Nothing that could hold a secret is written: no header, no body, no query string (`?key=` is a way to send
an API key), and a text line quotes any value with spaces or control characters, so a client cannot forge
a line.

The relay hands its `Record` over with `noted`, keyed by the greenlet that serves the request (the one that
calls `AccessLog.request` when the answer has gone out). Lines are built with plain string formatting,
not `logging`'s machinery, and written to stderr in one `write` per tick of the connection sweeper (or
once 64 KB have gathered), not one per line.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import orjson
from gevent import getcurrent

if TYPE_CHECKING:
    from gateway.writer import Record

MODES = ("off", "text", "json")
FLUSH_BYTES = 65536
MAX_NOTES = 100_000  # notes no answer ever collected (a caller outside the server): dropped past this

_notes: dict[Any, Record] = {}


def noted(record: Record) -> Record:
    """Keep the relay's account of the request the current greenlet is serving, for its access line."""
    if len(_notes) >= MAX_NOTES:
        _notes.clear()
    _notes[getcurrent()] = record
    return record


def _clean(value: str) -> str:
    """`value` as one token of a text line: quoted when it holds spaces or control characters."""
    if value and value.isprintable() and " " not in value:
        return value
    return orjson.dumps(value).decode()


class AccessLog:
    def __init__(self, mode: str, fd: int = 2) -> None:
        if mode not in MODES:
            raise ValueError(f"ACCESS_LOG must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.fd = fd
        self._lines: list[bytes] = []
        self._size = 0
        self._second = -1
        self._stamp = ""

    def _time(self, now: float) -> str:
        """ISO 8601 UTC with milliseconds; the part up to the second formatted once a second."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1000):03d}Z"

    def request(self, handler: Any) -> None:
        """The line for the answer `handler` (a `gateway.serving.Handler`) has just sent."""
        record = _notes.pop(getcurrent(), None)
        if self.mode == "off":
            return
        now = time.time()
        latency_ms = int(((handler.time_finish or now) - handler.time_start) * 1000)
        status = abs(handler.code or 0)
        address = handler.client_address
        ip = address[0] if isinstance(address, tuple) else str(address or "-")
        if handler.error_id is not None:  # answered by the HTTP layer: the request line is not trusted
            request_id, method, path = handler.error_id, "-", "-"
        else:
            environ = handler.environ
            method, path = environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "-")
            request_id = record.request_id if record is not None else _request_id(handler)
        if self.mode == "json":
            fields: dict[str, Any] = {
                "time": self._time(now),
                "request_id": request_id,
                "method": method,
                "path": path,
                "status": status,
                "latency_ms": latency_ms,
                "ip": ip,
            }
            if record is not None:
                fields["user_id"] = record.user_id
                fields["key_id"] = record.key_id
                fields["model"] = record.model
                fields["prompt_tokens"] = record.prompt_tokens
                fields["completion_tokens"] = record.completion_tokens
                if record.status != status:
                    fields["result"] = record.status
            line = orjson.dumps(fields) + b"\n"
        else:
            text = f"{self._time(now)} {request_id} {method} {_clean(path)} {status} {latency_ms}ms ip={ip}"
            if record is not None:
                text += (
                    f" user={record.user_id} key={record.key_id} model={_clean(record.model)}"
                    f" prompt_tokens={record.prompt_tokens} completion_tokens={record.completion_tokens}"
                )
                if record.status != status:
                    text += f" result={record.status}"
            line = (text + "\n").encode("utf-8", "replace")
        self._lines.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        data = memoryview(b"".join(self._lines))
        self._lines.clear()
        self._size = 0
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            pass  # stderr is gone: nothing else could report it either


def _request_id(handler: Any) -> str:
    for name, value in handler.response_headers or ():
        if name == b"X-Request-Id":
            return value.decode("latin-1")
    return "-"
