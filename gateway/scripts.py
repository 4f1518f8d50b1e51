"""A lean caller of Redis Lua scripts, for the few scripts every relayed request runs (hold, settle,
admit).

redis-py spends some 150 µs of Python per command (the connection pool, retries, the reply parser); on
the relay's path that came to half of a gateway's CPU. These scripts take a few keys and numbers and
answer one integer, so one `EVALSHA` written as bytes and one integer read back is all they need. Each
connection serves one call at a time; idle ones wait in a list for the next greenlet. Anything else goes
through redis-py.
"""

from __future__ import annotations

import hashlib
import socket
from urllib.parse import unquote, urlsplit

import redis


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class _Connection:
    __slots__ = ("sock", "buffer")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
                return line
            chunk = self.sock.recv(65536)
            if not chunk:
                raise redis.ConnectionError("Redis closed the connection")
            self.buffer += chunk

    def reply(self) -> object:
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b":":
            return int(rest)
        if kind == b"+":
            return rest
        if kind == b"-":
            return redis.ResponseError(rest.decode("utf-8", "replace"))
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buffer) < size + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise redis.ConnectionError("Redis closed the connection")
                self.buffer += chunk
            value, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
            return value
        raise redis.ResponseError(f"unexpected reply from Redis: {line[:40]!r}")


class Scripts:
    """Run registered Lua scripts by their SHA1, loading them on first use (`NOSCRIPT`)."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", ""):
            raise ValueError("the lean script caller speaks plain redis:// only")
        self._address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._password = unquote(parts.password) if parts.password else None
        self._username = unquote(parts.username) if parts.username else None
        path = parts.path.strip("/")
        self._db = int(path) if path else 0
        self._timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._scripts: dict[bytes, bytes] = {}

    def register(self, source: str) -> bytes:
        body = source.encode()
        sha = hashlib.sha1(body).hexdigest().encode()
        self._scripts[sha] = body
        return sha

    def _connect(self) -> _Connection:
        sock = socket.create_connection(self._address, timeout=self._timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(sock)
        setup = []
        if self._password is not None:
            auth = [b"AUTH", self._password.encode()]
            if self._username:
                auth.insert(1, self._username.encode())
            setup.append(_command(*auth))
        if self._db:
            setup.append(_command(b"SELECT", b"%d" % self._db))
        if setup:
            sock.sendall(b"".join(setup))
            for _ in setup:
                answer = conn.reply()
                if isinstance(answer, Exception):
                    sock.close()
                    raise answer
        return conn

    def __call__(self, sha: bytes, keys: list[str], args: list[object]) -> object:
        conn = self._idle.pop() if self._idle else self._connect()
        try:
            tail = [b"%d" % len(keys), *(k.encode() for k in keys), *map(_bytes, args)]
            conn.sock.sendall(_command(b"EVALSHA", sha, *tail))
            answer = conn.reply()
            if isinstance(answer, redis.ResponseError) and str(answer).startswith("NOSCRIPT"):
                conn.sock.sendall(_command(b"EVAL", self._scripts[sha], *tail))
                answer = conn.reply()
        except BaseException:
            conn.sock.close()
            raise
        self._idle.append(conn)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        for conn in self._idle:
            conn.sock.close()
        self._idle.clear()
