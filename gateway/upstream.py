"""HTTP/1.1 to upstreams: a small client on gevent sockets, with keep-alive pools per origin.

It does only what relaying needs, in few system calls: one `sendall` per request (head and body
together, TCP_NODELAY set), headers parsed once, bodies framed by Content-Length, chunked encoding or
connection close (RFC 9112 section 6), and streamed bodies handed on as soon as bytes arrive. A pooled
connection the upstream closed while idle is retried once on a new one, before any byte of an answer.

`timeout_s` bounds every wait for the upstream: no byte for that long and the exchange fails. Under
gevent this is kept by one watchdog greenlet that closes the sockets whose deadline passed (which wakes
their reader), so a wait costs no timer of its own; a stream gets thousands of waits. Without gevent's
patched sockets, the sockets' own timeouts do it.

Transport failures become `GatewayError`s: 504 on a timeout, 502 on anything else, both worth failing
over.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import gevent
from gevent import monkey

from gateway.neutral import GatewayError

log = logging.getLogger("relayhouse.upstream")
CONNECT_TIMEOUT_S = 10.0
MAX_IDLE_PER_ORIGIN = 512
ADDRESS_TTL_S = 60.0
WATCHDOG_TICK_S = 0.2
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
        self._addresses: list[tuple[int, Any]] = []
        self._resolved_until = 0.0

    def addresses(self) -> list[tuple[int, Any]]:
        """The host's addresses, resolved at most once per ADDRESS_TTL_S (once for an IP address): a burst
        of new connections must not queue a lookup each on the resolver's threads."""
        now = time.monotonic()
        if now >= self._resolved_until:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            self._addresses = [(family, sockaddr) for family, _, _, _, sockaddr in infos]
            self._resolved_until = now + (math.inf if _is_ip(self.host) else ADDRESS_TTL_S)
        return self._addresses

    def connect(self, timeout_s: float) -> socket.socket:
        failure: OSError | None = None
        for family, sockaddr in self.addresses():
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(min(CONNECT_TIMEOUT_S, timeout_s))
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            return sock
        self._resolved_until = 0.0  # every address failed: look the name up afresh next time
        raise failure or OSError(f"no address for {self.host}")

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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Lease:
    """One exchange's hold on a connection, with the deadline the watchdog enforces."""

    __slots__ = ("sock", "timeout_s", "deadline", "timed_out", "_leases")

    def __init__(self, sock: socket.socket, timeout_s: float, leases: set[Lease] | None) -> None:
        self.sock = sock
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.timed_out = False
        self._leases = leases
        if leases is not None:
            leases.add(self)

    def waiting(self) -> None:
        """A wait for the upstream begins: it may last `timeout_s`."""
        self.deadline = time.monotonic() + self.timeout_s

    def idle(self) -> None:
        """No wait for the upstream (the relay is busy with the client, which may be slow): no deadline."""
        self.deadline = math.inf

    def end(self) -> None:
        if self._leases is not None:
            self._leases.discard(self)


class Pools:
    def __init__(self) -> None:
        self._origins: dict[tuple[str, str, int], Origin] = {}
        self._leases: set[Lease] = set()
        self._watchdog: gevent.Greenlet | None = None
        self.watched = monkey.is_module_patched("socket")

    def lease(self, sock: socket.socket, timeout_s: float) -> Lease:
        if not self.watched:
            sock.settimeout(timeout_s)
            return Lease(sock, timeout_s, None)
        if self._watchdog is None:
            self._watchdog = gevent.spawn(self._watch)
        if sock.gettimeout() is not None:  # a new connection, still with its connect timeout
            sock.settimeout(None)
        return Lease(sock, timeout_s, self._leases)

    def _watch(self) -> None:
        while True:
            gevent.sleep(WATCHDOG_TICK_S)
            now = time.monotonic()
            for lease in [lease for lease in self._leases if lease.deadline <= now]:
                lease.timed_out = True
                lease.end()
                try:
                    lease.sock.close()  # the greenlet waiting on it wakes with an error
                except Exception:  # never let one socket stop the watch over the others
                    log.exception("closing a timed-out upstream connection failed")

    def origin(self, scheme: str, host: str, port: int) -> Origin:
        ident = (scheme, host, port)
        origin = self._origins.get(ident)
        if origin is None:
            origin = self._origins[ident] = Origin(scheme, host, port)
        return origin

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog = None
        for origin in self._origins.values():
            origin.close()


class Response:
    """An upstream answer whose head has been read; read or stream its body exactly once."""

    def __init__(
        self,
        origin: Origin,
        lease: Lease,
        status: int,
        headers: dict[str, str],
        rest: bytearray,
        method: str,
    ) -> None:
        self._origin = origin
        self._lease = lease
        lease.idle()
        self._sock: socket.socket | None = lease.sock
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
        lease = self._lease
        lease.waiting()
        data = self._sock.recv(RECV_BYTES)
        lease.idle()
        return data

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
        self._lease.end()
        if clean and self._keep_alive and not self._lease.timed_out:
            self._origin.give_back(sock)
        else:
            sock.close()

    def release(self) -> None:
        """Give the connection up; unless the body was read to its end, it is closed."""
        sock, self._sock = self._sock, None
        if sock is not None:
            self._lease.end()
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
            raise transport_error(exc, self._lease.timed_out) from None

    def iter_body(self) -> Iterator[bytes]:
        """Body bytes as soon as they arrive. Closing the iterator early closes the connection, which
        stops the upstream's work (a client that went away)."""
        try:
            yield from self._pieces()
        except GeneratorExit:
            raise
        except Exception as exc:
            raise transport_error(exc, self._lease.timed_out) from None
        finally:
            self.release()


def transport_error(exc: BaseException, timed_out: bool = False) -> GatewayError:
    """Name the failure without echoing anything that could hold a secret."""
    if isinstance(exc, GatewayError):
        return exc
    if timed_out or isinstance(exc, TimeoutError | socket.timeout):
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
        lease: Lease | None = None
        try:
            if sock is None:
                sock = origin.connect(timeout_s)
            lease = pools.lease(sock, timeout_s)
            _send_all(sock, payload)
            status, headers, rest = _read_head(sock, reused)
            return Response(origin, lease, status, headers, rest, request.method)
        except Exception as exc:
            timed_out = False
            if lease is not None:
                lease.end()
                timed_out = lease.timed_out
            if sock is not None:
                sock.close()
            if reused and isinstance(exc, StaleConnection | BrokenPipeError | ConnectionResetError):
                continue  # the upstream closed it while idle: nothing was processed, so try another
            raise transport_error(exc, timed_out) from None


def read_body(response: Response) -> bytes:
    return response.read()


def iter_body(response: Response) -> Iterator[bytes]:
    return response.iter_body()
