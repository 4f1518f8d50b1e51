"""HTTP/1.1 to upstreams: a small client on gevent sockets, with keep-alive pools per origin.

It does only what relaying needs, in few system calls: one `sendall` per request (head and body
together, TCP_NODELAY set), headers parsed once, bodies framed by Content-Length, chunked encoding or
connection close (RFC 9112 section 6), and streamed bodies handed on as soon as bytes arrive. A pooled
connection the upstream closed while idle is retried once on a new one, before any byte of an answer.

Transport failures become `GatewayError`s: 504 on a timeout, 502 on anything else, both worth failing
over.
"""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.neutral import GatewayError

CONNECT_TIMEOUT_S = 10.0
MAX_IDLE_PER_ORIGIN = 512
RECV_BYTES = 65536
MAX_HEAD_BYTES = 65536


@dataclass(slots=True, frozen=True)
class UpstreamRequest:
    method: str
    url: str  # absolute
    headers: dict[str, str]
    body: bytes


class StaleConnection(Exception):
    """A pooled connection turned out closed before any byte of the answer came back."""


class Origin:
    """Idle keep-alive connections to one scheme://host:port."""

    def __init__(self, scheme: str, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.secure = scheme == "https"
        default_port = 443 if self.secure else 80
        self.host_header = host if port == default_port else f"{host}:{port}"
        self._tls = ssl.create_default_context() if self.secure else None
        self._idle: list[socket.socket] = []

    def connect(self, timeout_s: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=min(CONNECT_TIMEOUT_S, timeout_s))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        return sock

    def take(self) -> socket.socket | None:
        return self._idle.pop() if self._idle else None

    def give_back(self, sock: socket.socket) -> None:
        if len(self._idle) < MAX_IDLE_PER_ORIGIN:
            self._idle.append(sock)
        else:
            sock.close()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


class Pools:
    def __init__(self) -> None:
        self._origins: dict[tuple[str, str, int], Origin] = {}

    def origin(self, scheme: str, host: str, port: int) -> Origin:
        ident = (scheme, host, port)
        origin = self._origins.get(ident)
        if origin is None:
            origin = self._origins[ident] = Origin(scheme, host, port)
        return origin

    def close(self) -> None:
        for origin in self._origins.values():
            origin.close()


class Response:
    """An upstream answer whose head has been read; read or stream its body exactly once."""

    def __init__(
        self,
        origin: Origin,
        sock: socket.socket,
        status: int,
        headers: dict[str, str],
        rest: bytearray,
        method: str,
    ) -> None:
        self._origin = origin
        self._sock: socket.socket | None = sock
        self.status_code = status
        self.headers = headers
        self._buffer = rest
        self._keep_alive = headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304):
            self._length: int | None = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._length = None
        elif "content-length" in headers:
            self._length = int(headers["content-length"])
        else:
            self._length = -1  # until the connection closes
            self._keep_alive = False

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def _recv(self) -> bytes:
        if self._sock is None:
            raise ConnectionResetError("upstream connection already released")
        return self._sock.recv(RECV_BYTES)

    def _pieces(self) -> Iterator[bytes]:
        buffer = self._buffer
        if self._length is not None and self._length >= 0:  # Content-Length
            left = self._length
            while left:
                if not buffer:
                    data = self._recv()
                    if not data:
                        raise ConnectionResetError("upstream closed the connection mid-body")
                    buffer += data
                piece = bytes(buffer[:left])
                del buffer[: len(piece)]
                left -= len(piece)
                yield piece
            self._done(clean=not buffer)
        elif self._length == -1:  # until close
            if buffer:
                yield bytes(buffer)
                buffer.clear()
            while data := self._recv():
                yield data
            self._done(clean=False)
        else:
            yield from self._chunked(buffer)
            self._done(clean=not buffer)

    def _chunked(self, buffer: bytearray) -> Iterator[bytes]:
        while True:
            end = buffer.find(b"\r\n")
            while end < 0:
                self._fill(buffer)
                end = buffer.find(b"\r\n")
            size = int(bytes(buffer[:end]).split(b";", 1)[0].strip() or b"0", 16)
            del buffer[: end + 2]
            if size == 0:  # last chunk; then optional trailer fields and an empty line
                while True:
                    end = buffer.find(b"\r\n")
                    while end < 0:
                        self._fill(buffer)
                        end = buffer.find(b"\r\n")
                    line_empty = end == 0
                    del buffer[: end + 2]
                    if line_empty:
                        return
            while size:  # hand on what has arrived, even part of a chunk
                if not buffer:
                    self._fill(buffer)
                piece = bytes(buffer[:size])
                del buffer[: len(piece)]
                size -= len(piece)
                yield piece
            while len(buffer) < 2:
                self._fill(buffer)
            del buffer[:2]  # the CRLF after the chunk data

    def _fill(self, buffer: bytearray) -> None:
        data = self._recv()
        if not data:
            raise ConnectionResetError("upstream closed the connection mid-body")
        buffer += data

    def _done(self, clean: bool) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if clean and self._keep_alive:
            self._origin.give_back(sock)
        else:
            sock.close()

    def release(self) -> None:
        """Give the connection up; unless the body was read to its end, it is closed."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def read(self) -> bytes:
        length, buffer = self._length, self._buffer
        if length is not None and 0 <= length == len(buffer):  # the whole body came with the head
            body = bytes(buffer)
            buffer.clear()
            self._done(clean=True)
            return body
        try:
            return b"".join(self._pieces())
        except Exception as exc:
            self.release()
            raise transport_error(exc) from None

    def iter_body(self) -> Iterator[bytes]:
        """Body bytes as soon as they arrive. Closing the iterator early closes the connection, which
        stops the upstream's work (a client that went away)."""
        try:
            yield from self._pieces()
        except GeneratorExit:
            raise
        except Exception as exc:
            raise transport_error(exc) from None
        finally:
            self.release()


def transport_error(exc: BaseException) -> GatewayError:
    """Name the failure without echoing anything that could hold a secret."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, TimeoutError | socket.timeout):
        return GatewayError(
            504, "The upstream did not answer in time.", "server_error", "upstream_timeout", retryable=True
        )
    return GatewayError(
        502,
        f"Could not reach the upstream ({type(exc).__name__}).",
        "server_error",
        "upstream_unreachable",
        retryable=True,
    )


def _head(request: UpstreamRequest, origin: Origin, target: str) -> bytes:
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {origin.host_header}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    lines.append(f"Content-Length: {len(request.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_head(sock: socket.socket, reused: bool) -> tuple[int, dict[str, str], bytearray]:
    buffer = bytearray()
    while True:
        end = buffer.find(b"\r\n\r\n")
        while end < 0:
            data = sock.recv(RECV_BYTES)
            if not data:
                if reused and not buffer:
                    raise StaleConnection()
                raise ConnectionResetError("upstream closed the connection before answering")
            buffer += data
            if len(buffer) > MAX_HEAD_BYTES:
                raise ValueError("upstream response head too large")
            end = buffer.find(b"\r\n\r\n")
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        del buffer[: end + 4]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ValueError("not an HTTP response")
        status = int(parts[1])
        if 100 <= status < 200:  # interim answers (100 Continue, 103 Early Hints) come before the real one
            continue
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        return status, headers, buffer


@functools.lru_cache(maxsize=1024)
def _split(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = parts.scheme
    port = parts.port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return scheme, parts.hostname or "", port, target


def _send_all(sock: socket.socket, data: bytes) -> None:
    """`sendall`, with one system call in the common case (gevent's own asks for the buffer size first)."""
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def send(pools: Pools, request: UpstreamRequest, timeout_s: float) -> Response:
    """Send the request and read the answer's head."""
    scheme, host, port, target = _split(request.url)
    origin = pools.origin(scheme, host, port)
    payload = _head(request, origin, target) + request.body
    while True:
        sock = origin.take()
        reused = sock is not None
        try:
            if sock is None:
                sock = origin.connect(timeout_s)
            sock.settimeout(timeout_s)
            _send_all(sock, payload)
            status, headers, rest = _read_head(sock, reused)
            return Response(origin, sock, status, headers, rest, request.method)
        except Exception as exc:
            if sock is not None:
                sock.close()
            if reused and isinstance(exc, StaleConnection | BrokenPipeError | ConnectionResetError):
                continue  # the upstream closed it while idle: nothing was processed, so try another
            raise transport_error(exc) from None


def read_body(response: Response) -> bytes:
    return response.read()


def iter_body(response: Response) -> Iterator[bytes]:
    return response.iter_body()
