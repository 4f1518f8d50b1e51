"""HTTP to upstreams: pooled keep-alive connections (geventhttpclient), one pool per origin and timeout.

`send` returns the response once its headers are in; `read_body` and `iter_body` read it. Transport
failures become `GatewayError`s: 504 on a timeout, 502 on anything else, both worth failing over.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import gevent
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPSocketPoolResponse

from gateway.neutral import GatewayError

MAX_CONNECTIONS_PER_ORIGIN = 4096
CONNECT_TIMEOUT_S = 10.0


@dataclass(slots=True, frozen=True)
class UpstreamRequest:
    method: str
    url: str  # absolute
    headers: dict[str, str]
    body: bytes


class Pools:
    """One HTTPClient per (scheme, host, port, timeout); created on first use and kept."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str, int, float], HTTPClient] = {}

    def client(self, url: str, timeout_s: float) -> tuple[HTTPClient, str]:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        host = parts.hostname or ""
        ident = (parts.scheme, host, port, timeout_s)
        client = self._clients.get(ident)
        if client is None:
            client = self._clients[ident] = HTTPClient(
                host,
                port,
                ssl=secure,
                concurrency=MAX_CONNECTIONS_PER_ORIGIN,
                connection_timeout=min(CONNECT_TIMEOUT_S, timeout_s),
                network_timeout=timeout_s,
                headers={"User-Agent": "Relayhouse"},
            )
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return client, target

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def transport_error(exc: BaseException) -> GatewayError:
    """Name the failure without echoing anything that could hold a secret."""
    if isinstance(exc, socket.timeout | TimeoutError | gevent.Timeout):
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


def send(pools: Pools, request: UpstreamRequest, timeout_s: float) -> HTTPSocketPoolResponse:
    client, target = pools.client(request.url, timeout_s)
    try:
        return client.request(request.method, target, body=request.body, headers=request.headers)
    except (OSError, gevent.Timeout, ValueError) as exc:
        raise transport_error(exc) from None
    except Exception as exc:  # the HTTP parser's own errors: a broken or closed upstream connection
        raise transport_error(exc) from None


def read_body(response: HTTPSocketPoolResponse) -> bytes:
    try:
        return response.read()
    except Exception as exc:
        response.release()
        raise transport_error(exc) from None


def iter_body(response: HTTPSocketPoolResponse) -> Iterator[bytes]:
    """Yield body bytes as soon as they arrive (the client's `read(n)` would wait for n bytes, which
    would hold SSE events back). Raises GatewayError if the connection breaks mid-body."""
    buffer = response._body_buffer  # geventhttpclient keeps parsed body bytes here
    try:
        while True:
            if buffer:
                data = bytes(buffer)
                del buffer[:]
                yield data
                continue
            if response.message_complete:
                return
            sock = response._sock
            if sock is None:
                raise ConnectionResetError("upstream connection closed mid-body")
            data = sock.recv(65536)
            response.feed(data)  # an empty read tells the parser the connection ended
            if not data and not response.message_complete:
                raise ConnectionResetError("upstream closed the connection mid-body")
    except GeneratorExit:
        raise
    except Exception as exc:
        raise transport_error(exc) from None
    finally:
        response.release()  # closes the socket unless the body was read to its end
