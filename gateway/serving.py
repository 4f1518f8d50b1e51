"""The HTTP server: gevent's WSGI server with gevent-websocket's handler, trimmed where every request pays,
and guarded against clients that hold connections without using them.

`Handler` keeps pywsgi's request loop, keep-alive, chunked input and gevent-websocket's upgrade, and trims
the hot path:

- the request head is parsed by `RequestHead` instead of `http.client.parse_headers`, which runs the
  e-mail package's parser on every request;
- a request that asks for no WebSocket goes straight to the application and to pywsgi's own
  `start_response`, without gevent-websocket's per-request checks and debug logging;
- a response's head and its first body piece leave in one `send`, not two `sendall`s (each of which also
  asks the kernel for the socket's buffer size), and the Date header is formatted once a second;
- errors of the HTTP layer itself (a malformed head, a URL too long, a body too slow) are answered in
  OpenAI's error shape with an `X-Request-Id`, as the relay's own errors are.

Slow and idle clients are dropped, by deadlines that one sweeper greenlet (`Connections`) checks a few
times a second, as `gateway.upstream`'s watchdog does for upstreams: no timer per read. A request head
must arrive whole within `header_timeout_s` of its first byte (408), a keep-alive connection may idle
`keepalive_timeout_s` before its next request (then it is closed without a word), and a body read may
go `body_timeout_s` without a byte (408). The sweeper wakes an expired connection by shutting down its
read side, so the blocked read returns end-of-file and the connection's own greenlet answers and closes.

At most `max_connections` are open. Beyond that, a new connection first displaces the one that has
waited longest for a request head (a slow or idle client: nginx reuses idle keep-alive connections the
same way), so that a flood of slow connections cannot lock ordinary requests out; if every open
connection is busy, the new one gets an immediate 503 with `Retry-After: 1` and is closed.

TCP_NODELAY is set on every connection, so that each streamed event leaves at once instead of waiting on
Nagle's algorithm and the client's delayed ACK (some 40 ms).
"""

from __future__ import annotations

import io
import logging
import math
import socket
import time
from collections.abc import Callable, Iterator
from socket import SocketIO
from typing import Any

import gevent
import orjson
from gevent.pywsgi import WSGIHandler, WSGIServer, format_date_time
from geventwebsocket.handler import WebSocketHandler

from gateway.accesslog import AccessLog
from gateway.config import Settings
from gateway.neutral import GatewayError, new_request_id

log = logging.getLogger("relayhouse.http")
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
MAX_REQUEST_LINE = 8192  # pywsgi's own limit on the method and URL
READ_BUFFER_BYTES = io.DEFAULT_BUFFER_SIZE
# where a connection is in its request loop, which decides the deadline that applies to it
IDLE, HEAD, BODY, DRAIN, UPGRADED = 0, 1, 2, 3, 4
STATUS_LINES = {
    400: "400 Bad Request",
    408: "408 Request Timeout",
    414: "414 URI Too Long",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}
# why pywsgi refused a request line, by the start of its message (which quotes the line: never logged)
REQUEST_LINE_ERRORS = {
    "Invalid http version": "The request line's HTTP version is not HTTP/1.0 or HTTP/1.1.",
    "Expected GET method": "The request line is not `METHOD /path HTTP/1.1`.",
    "Invalid HTTP method": "The request line is not `METHOD /path HTTP/1.1`.",
    "Unexpected Content-Length": "A HEAD request may not have a body (Content-Length).",
}


def error_response(
    status: int, message: str, code: str, request_id: str, extra: tuple[tuple[str, str], ...] = ()
) -> bytes:
    """A whole HTTP/1.1 answer in OpenAI's error shape that ends the connection."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})
    head = [
        f"HTTP/1.1 {STATUS_LINES[status]}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"X-Request-Id: {request_id}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in extra),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class RequestHead:
    """The parsed header lines of one request, with the part of `email.message.Message`'s interface that
    pywsgi and gevent-websocket use: `get`, `getheader`, `typeheader`, `status`, `del`."""

    __slots__ = ("pairs", "status", "_first")

    def __init__(self, pairs: list[tuple[str, str]], status: str = "") -> None:
        self.pairs = pairs  # (name as sent, value), in order, folded lines joined
        self.status = status  # not empty when the head is malformed: what is wrong, for the client
        first: dict[str, str] = {}
        for name, value in pairs:
            lower = name.lower()
            if lower not in first:
                first[lower] = value
            elif lower == "content-length" and first[lower] != value:  # RFC 9112 section 6.3
                self.status = "The request has two different Content-Length headers."
        self._first = first  # lower-case name -> the first value, as `Message.get` answers
        length = first.get("content-length")
        if length is not None and not (length.isdigit() and length.isascii()):  # int() takes "+1_0 "
            self.status = "The Content-Length header is not a number of bytes."

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
                return cls([], f"A header line is longer than {MAX_HEADER_LINE} bytes.")
            if line in (b"\r\n", b"\n", b""):
                return cls(pairs)
            text = line.decode("latin-1").rstrip("\r\n")
            if text[:1] in (" ", "\t"):  # an obsolete folded continuation of the previous header
                if not pairs:
                    return cls([], "The first header line is a continuation line.")
                name, value = pairs[-1]
                pairs[-1] = (name, value + " " + text.strip())
                continue
            name, sep, value = text.partition(":")
            if not sep or not name or name != name.strip():
                return cls([], "A header line is not `Name: value`.")
            pairs.append((name, value.strip()))
            if len(pairs) > MAX_HEADERS:
                return cls([], f"The request has more than {MAX_HEADERS} header lines.")


class Connections:
    """The open connections, their deadlines, and the one greenlet that enforces them.

    Each connection keeps a `phase` and a `deadline` as plain attributes, which its own greenlet sets as it
    goes (a few assignments per request). Every `tick_s` the sweeper walks them: an IDLE or HEAD
    connection past its deadline expires; a BODY or DRAIN connection expires when it has been waiting
    on a read, with no new read begun, for `body_timeout_s`."""

    def __init__(self, settings: Settings) -> None:
        self.header_timeout_s = settings.header_timeout_s
        self.body_timeout_s = settings.body_timeout_s
        self.keepalive_timeout_s = settings.keepalive_timeout_s
        self.cap = settings.max_connections
        shortest = min(self.header_timeout_s, self.body_timeout_s, self.keepalive_timeout_s)
        self.tick_s = min(0.5, max(0.05, shortest / 4))
        self.open: set[Handler] = set()
        self.waiting: dict[Handler, None] = {}  # waiting for a request head, the longest-waiting first
        self.refused = 0
        self.displaced = 0
        self.on_tick: list[Callable[[], None]] = []
        self._sweeper: gevent.Greenlet | None = None

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = gevent.spawn(self._sweep)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.kill()
            self._sweeper = None
        for task in self.on_tick:
            task()

    def admit(self) -> bool:
        """Room for one more connection: under the cap, or by displacing the longest wait for a head."""
        if len(self.open) < self.cap:
            return True
        if not self.waiting:
            self.refused += 1
            return False
        next(iter(self.waiting)).expire()
        self.displaced += 1
        return True

    def _sweep(self) -> None:
        last_report = time.monotonic()
        while True:
            gevent.sleep(self.tick_s)
            now = time.monotonic()
            try:
                self._expire(now)
                for task in self.on_tick:
                    task()
            except Exception:  # never let one failure stop the watch over the others
                log.exception("the connection sweeper failed")
            if now - last_report >= 60 and (self.refused or self.displaced):
                log.warning(
                    "connection cap %d reached: %d refused, %d slow or idle connections displaced in %.0f s",
                    self.cap,
                    self.refused,
                    self.displaced,
                    now - last_report,
                )
                self.refused = self.displaced = 0
                last_report = now

    def _expire(self, now: float) -> None:
        due = []
        body_timeout_s = self.body_timeout_s
        for conn in self.open:
            phase = conn.phase
            if phase >= BODY:
                if phase == UPGRADED or not conn.reading:
                    continue  # the application is busy, not waiting on the client
                if conn.progressed:  # a read began since the last tick
                    conn.progressed = False
                    conn.deadline = now + body_timeout_s
                    continue
            if conn.deadline <= now:
                due.append(conn)
        for conn in due:
            conn.expire()


class _Reader(SocketIO):
    """The connection's raw reader: it tells the sweeper when a read begins, and reads nothing more once
    the connection has expired."""

    def __init__(self, sock: socket.socket, conn: Handler) -> None:
        super().__init__(sock, "rb")
        self.conn = conn

    def readinto(self, buffer: Any) -> int:
        conn = self.conn
        if conn.expired is not None:
            return conn.expired_read()
        conn.reading = conn.progressed = True
        try:
            received = self._sock.recv_into(buffer)
        except OSError:
            if conn.expired is None:
                raise
            return conn.expired_read()  # the sweeper's shutdown woke this read
        conn.reading = False
        return received


class Handler(WebSocketHandler):
    phase = IDLE
    deadline = math.inf
    reading = False  # a read of the client's bytes is under way
    progressed = False  # a read began since the sweeper last looked
    expired: int | None = None  # the phase in which the sweeper expired this connection
    error_id: str | None = None  # the request id of an answer the HTTP layer made itself

    def __init__(self, sock: socket.socket, address: Any, server: Server) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections = server.connections
        self.access = server.access
        sock._io_refs += 1  # as `socket.makefile` counts it  # type: ignore[attr-defined]
        rfile = io.BufferedReader(_Reader(sock, self), READ_BUFFER_BYTES)
        super().__init__(sock, address, server, rfile)

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

    # -- the request loop, with deadlines -----------------------------------------------------------
    def handle(self) -> None:
        connections = self.connections
        connections.open.add(self)
        connections.waiting[self] = None
        self.deadline = time.monotonic() + connections.header_timeout_s  # a new connection owes a head
        try:
            super().handle()
        finally:
            connections.open.discard(self)
            connections.waiting.pop(self, None)

    def handle_one_request(self) -> tuple[str, bytes] | bool | None:
        """pywsgi's, with the phases the sweeper reads, and errors in OpenAI's shape."""
        connections = self.connections
        rfile = self.rfile
        try:
            if not rfile.peek(1):  # the client closed, or the connection idled past its deadline
                return None
            self.phase, self.deadline = HEAD, time.monotonic() + connections.header_timeout_s
            line = rfile.readline(MAX_REQUEST_LINE)
        except OSError:
            return None
        self.requestline = line.decode("latin-1")
        self.response_length = 0
        self.error_id = None
        if self.expired is not None:
            return self._refuse(408, self._head_timeout_message(), "request_timeout")
        if len(line) >= MAX_REQUEST_LINE and not line.endswith(b"\n"):
            return self._refuse(414, f"The URL is longer than {MAX_REQUEST_LINE} bytes.", "url_too_long")
        try:
            self.read_request(self.requestline)
        except Exception as ex:
            if self.expired is not None:
                return self._refuse(408, self._head_timeout_message(), "request_timeout")
            return self._handle_client_error(ex)
        if self.expired is not None:
            return self._refuse(408, self._head_timeout_message(), "request_timeout")
        connections.waiting.pop(self, None)
        self.phase = BODY
        self.deadline = time.monotonic() + connections.body_timeout_s
        self.environ = self.get_environ()
        self.application = self.server.application
        self.handle_one_response()
        if self.close_connection or rfile.closed or self.expired is not None:
            return None
        self.phase, self.deadline = IDLE, time.monotonic() + connections.keepalive_timeout_s
        connections.waiting[self] = None
        return True

    def _head_timeout_message(self) -> str:
        return f"The request head did not arrive within {self.connections.header_timeout_s:g} s."

    def expire(self) -> None:
        """Called by the sweeper: wake this connection's read with end-of-file (its greenlet then answers
        if a request had begun, and closes)."""
        connections = self.connections
        self.expired = self.phase
        self.deadline = math.inf
        connections.waiting.pop(self, None)
        connections.open.discard(self)
        sock = self.__dict__.get("socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def expired_read(self) -> int:
        """What a read answers once the connection expired: a body read learns why, once; then end-of-file."""
        self.reading = False
        if self.expired == BODY and self.phase == BODY:
            self.expired = DRAIN
            seconds = self.connections.body_timeout_s
            raise GatewayError(
                408, f"The request body stalled: no byte arrived for {seconds:g} s.", code="request_timeout"
            )
        return 0

    # -- answers -------------------------------------------------------------------------------------
    def _refuse(self, status: int, message: str, code: str) -> tuple[str, bytes]:
        """An answer made by the HTTP layer (a tuple that pywsgi's `handle` sends, logs, then closes on)."""
        self.error_id = new_request_id()
        self.code = status
        return STATUS_LINES[status], error_response(status, message, code, self.error_id)

    def _handle_client_error(self, ex: Exception) -> tuple[str, bytes]:
        """A malformed head: say what is wrong without echoing it (a URL may carry `?key=`)."""
        message = "The request head could not be parsed."
        status = getattr(self.headers, "status", "")
        text = str(ex)
        if text.startswith("Invalid headers status") and status:
            message = status
        else:
            for start, reason in REQUEST_LINE_ERRORS.items():
                if text.startswith(start):
                    message = reason
                    break
        log.debug("refused a malformed request from %s: %s", self.client_address, message)
        return self._refuse(400, message, "invalid_request")

    def _send_error_response_if_possible(self, error_code: int) -> None:
        if self.response_length:
            self.close_connection = True
            return
        if error_code == 400:
            message, code = "The request body could not be read.", "unreadable_body"
        else:
            error_code, code = 500, "internal_error"
            message = "Internal error in the HTTP server."
        self.error_id = new_request_id()
        headers = [
            ("Content-Type", "application/json"),
            ("X-Request-Id", self.error_id),
            ("Connection", "close"),
        ]
        body = orjson.dumps(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error" if error_code == 400 else "server_error",
                    "param": None,
                    "code": code,
                }
            }
        )
        headers.append(("Content-Length", str(len(body))))
        try:
            self.start_response(STATUS_LINES[error_code], headers)
            self.write(body)
        except OSError:
            self.close_connection = True

    def run_application(self) -> None:
        environ = self.environ
        try:
            if environ["REQUEST_METHOD"] != "GET" or "HTTP_UPGRADE" not in environ:
                return WSGIHandler.run_application(self)
            self.phase = UPGRADED  # a WebSocket lives as long as it likes
            return super().run_application()
        finally:
            if self.phase == BODY:
                self.phase = DRAIN  # pywsgi reads what the application left of the body

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
        if self.expired is not None:  # the body stalled: where this request ends is unknown
            headers = [*headers, ("Connection", "close")]
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
        self.access.request(self)


_date: list = [0, b""]  # the second, and the Date header for it


def _http_date() -> bytes:
    """The Date header, formatted once a second rather than once a response."""
    now = int(time.time())
    if now != _date[0]:
        _date[0], _date[1] = now, format_date_time(now)
    return _date[1]


class Server(WSGIServer):
    """pywsgi's server, with the connection cap and the sweeper of `Connections`."""

    def __init__(self, listener: Any, app: Callable, settings: Settings) -> None:
        super().__init__(
            listener, app, handler_class=Handler, log=None, error_log=logging.getLogger("relayhouse.http")
        )
        self.connections = Connections(settings)
        self.access = AccessLog(settings.access_log)
        self.connections.on_tick.append(self.access.flush)

    def start(self) -> None:
        self.connections.start()
        super().start()

    def stop(self, timeout: float | None = None) -> None:
        super().stop(timeout)
        self.connections.stop()

    def handle(self, sock: socket.socket, address: Any) -> None:
        if self.connections.admit():
            Handler(sock, address, self).handle()
            return
        refuse_connection(sock)


BUSY = error_response(
    503,
    "The server is at its connection limit; retry shortly.",
    "too_many_connections",
    "-",
    (("Retry-After", "1"),),
)


def refuse_connection(sock: socket.socket) -> None:
    """The 503 for a connection over the cap: one send that cannot block, then close, reading what the
    client sent so that the close does not reset the connection before the answer is read."""
    try:
        sock.send(BUSY.replace(b"X-Request-Id: -", b"X-Request-Id: " + new_request_id().encode()))
        sock.shutdown(socket.SHUT_WR)
        sock._sock.recv(65536)  # type: ignore[attr-defined]  # the non-blocking socket under gevent's
    except OSError:
        pass
    finally:
        sock.close()


def _settings_of(app: Callable) -> Settings:
    runtime = getattr(app, "extensions", {}).get("relayhouse")
    return runtime.settings if runtime is not None else Settings()


def make_server(
    app: Callable, host: str, port: int, listener: Any = None, settings: Settings | None = None
) -> WSGIServer:
    """Relayhouse's server for a WSGI app (bench/ceiling.py uses it too), on `listener` when given (a
    socket already bound), else on host and port. The HTTP limits come from `settings`, by default the
    app's own (a bare app gets the defaults)."""
    return Server(listener if listener is not None else (host, port), app, settings or _settings_of(app))
