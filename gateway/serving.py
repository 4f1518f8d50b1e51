"""The HTTP server: gevent's WSGI server with gevent-websocket's handler, trimmed where every request pays.

`Handler` keeps pywsgi's request loop, keep-alive, chunked input and error handling, and
gevent-websocket's upgrade, and trims the hot path:

- the request head is parsed by `RequestHead` instead of `http.client.parse_headers`, which runs the
  e-mail package's parser on every request;
- a request that asks for no WebSocket goes straight to the application and to pywsgi's own
  `start_response`, without gevent-websocket's per-request checks and debug logging;
- a response's head and its first body piece leave in one `send`, not two `sendall`s (each of which also
  asks the kernel for the socket's buffer size), and the Date header is formatted once a second;
- no access log line: every relayed request has its usage log row instead.

TCP_NODELAY is set on every connection, so that each streamed event leaves at once instead of waiting on
Nagle's algorithm and the client's delayed ACK (some 40 ms).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from gevent.pywsgi import WSGIHandler, WSGIServer, format_date_time
from geventwebsocket.handler import WebSocketHandler

MAX_HEADER_LINE = 65536
MAX_HEADERS = 100


class RequestHead:
    """The parsed header lines of one request, with the part of `email.message.Message`'s interface that
    pywsgi and gevent-websocket use: `get`, `getheader`, `typeheader`, `status`, `del`."""

    __slots__ = ("pairs", "status", "_first")

    def __init__(self, pairs: list[tuple[str, str]], status: str = "") -> None:
        self.pairs = pairs  # (name as sent, value), in order, folded lines joined
        self.status = status  # not empty when the head is malformed: pywsgi then answers 400
        first: dict[str, str] = {}
        for name, value in pairs:
            first.setdefault(name.lower(), value)
        self._first = first  # lower-case name -> the first value, as `Message.get` answers

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    getheader = get

    @property
    def typeheader(self) -> str | None:
        return self._first.get("content-type")

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        self.pairs = [(k, v) for k, v in self.pairs if k.lower() != name]
        self._first.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._first

    @classmethod
    def read(cls, rfile: Any) -> RequestHead:
        pairs: list[tuple[str, str]] = []
        while True:
            line = rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                return cls([], "Line too long")
            if line in (b"\r\n", b"\n", b""):
                return cls(pairs)
            text = line.decode("latin-1").rstrip("\r\n")
            if text[:1] in (" ", "\t"):  # an obsolete folded continuation of the previous header
                if not pairs:
                    return cls([], "Header continuation without a header")
                name, value = pairs[-1]
                pairs[-1] = (name, value + " " + text.strip())
                continue
            name, sep, value = text.partition(":")
            if not sep or not name or name != name.strip():
                return cls([], "Malformed header line")
            pairs.append((name, value.strip()))
            if len(pairs) > MAX_HEADERS:
                return cls([], "Too many headers")


class Handler(WebSocketHandler):
    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().__init__(sock, *args, **kwargs)

    def MessageClass(self, rfile: Any, *_: Any) -> RequestHead:  # noqa: N802 (pywsgi's name)
        return RequestHead.read(rfile)

    def _headers(self) -> Iterator[tuple[str, str]]:
        """The `HTTP_*` environ entries, as pywsgi makes them (names with `_` are dropped)."""
        for name, value in self.headers.pairs:
            if "_" in name:
                continue
            key = name.replace("-", "_").upper()
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                yield "HTTP_" + key, value

    def _check_http_version(self) -> bool:
        return self.request_version in ("HTTP/1.1", "HTTP/1.0") or super()._check_http_version()

    def run_application(self) -> None:
        environ = self.environ
        if environ["REQUEST_METHOD"] != "GET" or "HTTP_UPGRADE" not in environ:
            return WSGIHandler.run_application(self)
        return super().run_application()

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
        if "wsgi.websocket" in self.environ:
            return super().start_response(status, headers, exc_info)
        return WSGIHandler.start_response(self, status, headers, exc_info)

    def finalize_headers(self) -> None:
        if self.provided_date is None:
            self.response_headers.append((b"Date", _http_date()))
            self.provided_date = "set"
        super().finalize_headers()

    def _sendall(self, data: bytes | bytearray) -> None:
        try:
            sent = self.socket.send(data)
            if sent < len(data):
                self.socket.sendall(memoryview(data)[sent:])
        except OSError as ex:
            self.status = f"socket error: {ex}"
            if self.code > 0:
                self.code = -self.code
            raise
        self.response_length += len(data)

    def _write_with_headers(self, data: bytes) -> None:
        self.headers_sent = True
        self.finalize_headers()
        out = bytearray(b"HTTP/1.1 ")
        out += self.status
        out += b"\r\n"
        for name, value in self.response_headers:
            out += name
            out += b": "
            out += value
            out += b"\r\n"
        out += b"\r\n"
        if data:
            if self.response_use_chunked:
                out += b"%x\r\n" % len(data)
                out += data
                out += b"\r\n"
            else:
                out += data
        self._sendall(out)

    def log_request(self) -> None:
        """No access log (see the module's doc)."""


_date: list = [0, b""]  # the second, and the Date header for it


def _http_date() -> bytes:
    """The Date header, formatted once a second rather than once a response."""
    now = int(time.time())
    if now != _date[0]:
        _date[0], _date[1] = now, format_date_time(now)
    return _date[1]


def make_server(app: Callable, host: str, port: int) -> WSGIServer:
    """Relayhouse's server for a WSGI app (bench/ceiling.py uses it too)."""
    return WSGIServer(
        (host, port), app, handler_class=Handler, log=None, error_log=logging.getLogger("relayhouse.http")
    )
