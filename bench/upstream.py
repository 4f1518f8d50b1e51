#!/usr/bin/env python3
"""A fast fake OpenAI upstream for the Relayhouse benchmark (standard library only).

    python bench/upstream.py --port 18000 [--host 127.0.0.1] [--chunks 40] [--chunk-delay-ms 50]

It is a raw asyncio ``Protocol`` speaking HTTP/1.1 with keep-alive, built so that it is never the
bottleneck of a benchmark (no per-request JSON work on the non-streaming path, pre-built responses).

Endpoints:

``POST /v1/chat/completions``
    Without ``"stream": true``: a fixed ``chat.completion`` (usage: 25 prompt, 30 completion tokens).
    With ``"stream": true``: an SSE stream sent with chunked transfer encoding: a role chunk, N content
    chunks ``chunk_delay_ms`` apart (one token each), a finish chunk, a usage chunk (``choices: []``)
    only when ``stream_options.include_usage`` is true, then ``data: [DONE]``.
    N and the delay come from the headers ``x-bench-chunks`` / ``x-bench-chunk-delay-ms`` when present,
    else from the process-wide config below (defaults 40 and 50).
``GET /v1/models``
    One model, ``gpt-4o-mini``.
``GET|POST /_bench/config``
    Read or set the stream defaults: ``{"chunks": 40, "chunk_delay_ms": 50}`` (a gateway may not forward
    the ``x-bench-*`` headers, so a benchmark driver sets them here).
``GET /_bench/stats``
    Request counters since start: ``{"chat": n, "chat_stream": n, "streams_done": n, ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import sys
import time
from typing import Any

MODEL = "gpt-4o-mini"
CONFIG: dict[str, float] = {"chunks": 40, "chunk_delay_ms": 50.0}
STATS: dict[str, int] = {
    "chat": 0,
    "chat_stream": 0,
    "streams_done": 0,
    "streams_aborted": 0,
    "models": 0,
    "bad_requests": 0,
    "not_found": 0,
    "connections": 0,
}
CREATED = int(time.time())

REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


def _response(
    status: int, body: bytes, content_type: bytes = b"application/json", close: bool = False
) -> bytes:
    """A complete HTTP/1.1 response with Content-Length."""
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
        status,
        REASONS.get(status, b"Error"),
        content_type,
        len(body),
    )
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


CHAT_BODY = _json(
    {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I help you today?",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 25, "completion_tokens": 30, "total_tokens": 55},
        "system_fingerprint": "fp_bench",
    }
)
CHAT_RESPONSE = _response(200, CHAT_BODY)
CHAT_RESPONSE_CLOSE = _response(200, CHAT_BODY, close=True)
MODELS_RESPONSE = _response(
    200,
    _json(
        {
            "object": "list",
            "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}],
        }
    ),
)
NOT_FOUND_BODY = _json(
    {"error": {"message": "not found", "type": "invalid_request_error", "code": "not_found"}}
)

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def _sse_chunk(obj: Any) -> bytes:
    """One SSE event framed as one HTTP chunk."""
    data = b"data: " + _json(obj) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _stream_event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench-stream",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


ROLE_CHUNK = _sse_chunk(_stream_event({"role": "assistant", "content": "", "refusal": None}))
CONTENT_CHUNK = _sse_chunk(_stream_event({"content": " hello"}))
FINISH_CHUNK = _sse_chunk(_stream_event({}, "stop"))
DONE_CHUNK = b"%x\r\n%s\r\n" % (len(b"data: [DONE]\n\n"), b"data: [DONE]\n\n")
LAST_CHUNK = b"0\r\n\r\n"


def _usage_chunk(completion_tokens: int) -> bytes:
    return _sse_chunk(
        {
            "id": "chatcmpl-bench-stream",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [],
            "usage": {
                "prompt_tokens": 25,
                "completion_tokens": completion_tokens,
                "total_tokens": 25 + completion_tokens,
            },
        }
    )


def _header(headers_lower: bytes, name: bytes) -> bytes | None:
    """Value of header ``name`` (lower-case, without colon) in a lower-cased header block, or None."""
    key = b"\r\n" + name + b":"
    i = headers_lower.find(key)
    if i < 0:
        return None
    i += len(key)
    j = headers_lower.find(b"\r\n", i)
    return headers_lower[i : j if j >= 0 else len(headers_lower)].strip()


class Stream:
    """One SSE response being written on a timer (no task per stream: a chain of ``call_at``)."""

    __slots__ = ("proto", "loop", "remaining", "sent", "delay", "start", "usage", "handle")

    def __init__(self, proto: UpstreamProtocol, chunks: int, delay_s: float, usage: bool) -> None:
        self.proto = proto
        self.loop = proto.loop
        self.remaining = chunks
        self.sent = 0
        self.delay = delay_s
        self.usage = usage
        self.start = self.loop.time()
        self.handle: asyncio.TimerHandle | None = None
        proto.transport.write(STREAM_HEAD + ROLE_CHUNK)
        self._schedule()

    def _schedule(self) -> None:
        # absolute times: no drift however late a single wake-up is
        self.handle = self.loop.call_at(self.start + self.delay * (self.sent + 1), self._tick)

    def _tick(self) -> None:
        transport = self.proto.transport
        if transport.is_closing():
            self.cancel()
            return
        if self.remaining > 0:
            self.remaining -= 1
            self.sent += 1
            if self.remaining > 0:
                transport.write(CONTENT_CHUNK)
                self._schedule()
                return
            # last content chunk goes out with the tail of the stream
            tail = CONTENT_CHUNK + FINISH_CHUNK
        else:
            tail = FINISH_CHUNK
        if self.usage:
            tail += _usage_chunk(self.sent)
        transport.write(tail + DONE_CHUNK + LAST_CHUNK)
        self.handle = None
        STATS["streams_done"] += 1
        self.proto.stream_finished()

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
            STATS["streams_aborted"] += 1


class UpstreamProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive server connection; requests on one connection are served in order."""

    __slots__ = ("loop", "transport", "buf", "stream", "close_after")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buf = b""
        self.stream: Stream | None = None
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        STATS["connections"] += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        if self.stream is None:
            self._process()

    def stream_finished(self) -> None:
        self.stream = None
        if self.close_after:
            self.transport.close()
        elif self.buf:
            self._process()

    def _process(self) -> None:
        buf = self.buf
        while buf and self.stream is None and not self.close_after:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._fail(400, b"header block too large")
                return
            head = buf[:end]
            lower = head.lower()
            sp1 = head.find(b" ")
            sp2 = head.find(b" ", sp1 + 1)
            line_end = head.find(b"\r\n")
            if sp1 < 0 or sp2 < 0:
                self._fail(400, b"bad request line")
                return
            method = head[:sp1]
            path = head[sp1 + 1 : sp2]
            version = head[sp2 + 1 : line_end if line_end >= 0 else len(head)]
            body_start = end + 4
            te = _header(lower, b"transfer-encoding")
            if te is not None and b"chunked" in te:
                parsed = _dechunk(buf, body_start)
                if parsed is None:
                    self.buf = buf
                    return
                body, consumed = parsed
                buf = buf[consumed:]
            else:
                cl = _header(lower, b"content-length")
                try:
                    length = int(cl) if cl is not None else 0
                except ValueError:
                    self._fail(400, b"bad content-length")
                    return
                if len(buf) - body_start < length:
                    self.buf = buf
                    return
                body = buf[body_start : body_start + length]
                buf = buf[body_start + length :]
            conn = _header(lower, b"connection")
            if version == b"HTTP/1.0":
                self.close_after = conn is None or b"keep-alive" not in conn
            elif conn is not None and b"close" in conn:
                self.close_after = True
            self.buf = buf
            self._handle(method, path, lower, body)
            buf = self.buf
        if self.close_after and self.stream is None:
            self.transport.close()

    def _fail(self, status: int, message: bytes) -> None:
        STATS["bad_requests"] += 1
        self.buf = b""
        self.close_after = True
        self.transport.write(_response(status, message, b"text/plain", close=True))
        self.transport.close()

    def _handle(self, method: bytes, path: bytes, lower: bytes, body: bytes) -> None:
        q = path.find(b"?")
        if q >= 0:
            path = path[:q]
        write = self.transport.write
        if path == b"/v1/chat/completions" and method == b"POST":
            if b'"stream"' not in body:
                STATS["chat"] += 1
                write(CHAT_RESPONSE_CLOSE if self.close_after else CHAT_RESPONSE)
                return
            try:
                req = json.loads(body)
            except ValueError:
                STATS["bad_requests"] += 1
                write(
                    _response(
                        400, _json({"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
                    )
                )
                return
            if not isinstance(req, dict) or req.get("stream") is not True:
                STATS["chat"] += 1
                write(CHAT_RESPONSE_CLOSE if self.close_after else CHAT_RESPONSE)
                return
            STATS["chat_stream"] += 1
            opts = req.get("stream_options")
            usage = isinstance(opts, dict) and opts.get("include_usage") is True
            chunks = int(CONFIG["chunks"])
            delay_ms = float(CONFIG["chunk_delay_ms"])
            h = _header(lower, b"x-bench-chunks")
            if h is not None and h.isdigit():
                chunks = int(h)
            h = _header(lower, b"x-bench-chunk-delay-ms")
            if h is not None:
                try:
                    delay_ms = float(h)
                except ValueError:
                    pass
            self.stream = Stream(self, max(0, chunks), max(0.0, delay_ms) / 1000.0, usage)
        elif path == b"/v1/models" and method == b"GET":
            STATS["models"] += 1
            write(MODELS_RESPONSE)
        elif path == b"/_bench/config":
            if method == b"POST":
                try:
                    new = json.loads(body or b"{}")
                    if "chunks" in new:
                        CONFIG["chunks"] = max(0, int(new["chunks"]))
                    if "chunk_delay_ms" in new:
                        CONFIG["chunk_delay_ms"] = max(0.0, float(new["chunk_delay_ms"]))
                except (ValueError, TypeError, AttributeError):
                    write(
                        _response(400, _json({"error": 'expected {"chunks": int, "chunk_delay_ms": number}'}))
                    )
                    return
            write(_response(200, _json(CONFIG)))
        elif path == b"/_bench/stats" and method == b"GET":
            write(_response(200, _json(STATS)))
        else:
            STATS["not_found"] += 1
            write(_response(404, NOT_FOUND_BODY))


def _dechunk(buf: bytes, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked request body starting at ``pos``: (body, end offset) or None if incomplete."""
    parts = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(buf[pos:eol].split(b";", 1)[0] or b"0", 16)
        pos = eol + 2
        if size == 0:
            while True:  # trailers, up to the empty line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return b"".join(parts), eol + 2
                pos = eol + 2
        if len(buf) < pos + size + 2:
            return None
        parts.append(buf[pos : pos + size])
        pos += size + 2


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


async def serve(host: str, port: int) -> None:
    """Serve until cancelled or SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=4096, reuse_address=True)
    actual = server.sockets[0].getsockname()[1]
    print(f"bench upstream listening on http://{host}:{actual} (pid {os.getpid()})", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fast fake OpenAI upstream for benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18000, help="0 picks a free port (printed)")
    parser.add_argument("--chunks", type=int, default=40, help="default content chunks per stream")
    parser.add_argument("--chunk-delay-ms", type=float, default=50.0, help="default gap between chunks")
    args = parser.parse_args(argv)
    CONFIG["chunks"] = args.chunks
    CONFIG["chunk_delay_ms"] = args.chunk_delay_ms
    _raise_nofile()
    try:
        asyncio.run(serve(args.host, args.port))
    except OSError as exc:
        print(f"upstream: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
