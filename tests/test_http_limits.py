"""The HTTP layer's limits over raw sockets: slow heads, stalled bodies and idle keep-alive connections are
dropped; connections beyond the cap are refused in OpenAI's error shape, after slow ones are displaced;
the HTTP layer's own errors come in that shape with a request id; and the access log."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import Gateway, http, start_gateway, stop_gateway
from tests.fake_upstream import FakeUpstream
from tests.test_http_server import chat_request, exchange

SECRET = "sk-never-in-a-log-0123456789"


def connect(gateway: Gateway, timeout: float = 5.0) -> socket.socket:
    parts = urlsplit(gateway.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One answer framed by Content-Length; raises if the connection ends before a head."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {buffer!r}"
        buffer += chunk
    head, body = buffer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(lines[0].split(" ")[1]), headers, body[:length]


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closes the connection without sending a byte."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def assert_openai_error(status: int, headers: dict[str, str], body: bytes, expect: int, code: str) -> dict:
    assert status == expect, (status, body)
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"].startswith("req_")
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error
    return error


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with timeouts short enough to watch expire, and no access log."""
    tmp = tmp_path_factory.mktemp("gw-quick")
    gw = start_gateway(
        tmp,
        f"sqlite:///{tmp / 'quick.db'}",
        HEADER_TIMEOUT="0.6",
        BODY_TIMEOUT="0.6",
        KEEPALIVE_TIMEOUT="1",
        ACCESS_LOG="off",
    )
    yield gw
    stop_gateway(gw)


def test_a_slow_request_head_is_408_then_closed(quick: Gateway) -> None:
    with connect(quick) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
        sock.settimeout(0.1)
        received = b""
        for byte in b"Host: x\r\nContent-Type: application/json\r\n" * 5:  # a byte every 0.1 s
            try:
                sock.sendall(bytes([byte]))
                received += sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if received:
                break
        elapsed = time.monotonic() - started
        sock.settimeout(5)
        while b"\r\n\r\n" not in received or not received.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    assert received.startswith(b"HTTP/1.1 408"), received
    head, body = received.split(b"\r\n\r\n", 1)
    assert b"Connection: close" in head and b"X-Request-Id: req_" in head
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert 0.5 < elapsed < 3, elapsed


def test_idle_connections_are_closed_without_a_word(quick: Gateway) -> None:
    with connect(quick) as sock:  # a keep-alive connection after its answer
        sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = read_answer(sock)
        assert status == 200
        started = time.monotonic()
        assert closed_by_server(sock)
        assert 0.8 < time.monotonic() - started < 3
    with connect(quick) as sock:  # a connection that never sends a byte
        started = time.monotonic()
        assert closed_by_server(sock)
        assert 0.5 < time.monotonic() - started < 3


def test_a_stalled_body_is_408_and_logged(quick: Gateway, upstream: FakeUpstream) -> None:
    model, _, key = quick.setup_model(upstream)
    request = chat_request(model, f"Authorization: Bearer {key['key']}\r\n")
    head, body = request.split(b"\r\n\r\n", 1)
    with connect(quick) as sock:
        sock.sendall(head + b"\r\n\r\n" + body[:10])  # and then nothing
        status, headers, answer = read_answer(sock)
        error = assert_openai_error(status, headers, answer, 408, "request_timeout")
        assert "body" in error["message"]
        assert headers["connection"] == "close"
        assert closed_by_server(sock)
    row = quick.wait_for_log(headers["x-request-id"])
    assert row["status"] == 408 and row["cost_micro_usd"] == 0
    with connect(quick) as sock:  # a slow body that keeps coming is not cut, however long it takes
        sock.sendall(head + b"\r\n\r\n")
        for i in range(0, len(body), max(1, len(body) // 6)):
            time.sleep(0.3)
            sock.sendall(body[i : i + max(1, len(body) // 6)])
        status, _, answer = read_answer(sock)
        assert status == 200, answer


def test_http_layer_errors_are_in_the_openai_shape(gateway: Gateway) -> None:
    head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    cases = [
        (f"{head}Content-Length: abc\r\n\r\n", 400, "Content-Length"),
        (f"{head}Content-Length: 1_0\r\n\r\n", 400, "Content-Length"),
        (f"{head}Content-Length: 2\r\nContent-Length: 3\r\n\r\n", 400, "Content-Length"),
        (f"{head}X-Long: {'a' * 70000}\r\n\r\n", 400, "header line"),
        (head + "X-A: b\r\n" * 101 + "\r\n", 400, "header lines"),
        (f"GET /v1/models?key={SECRET}&pad={'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n", 414, "URL"),
        (f"GET /v1/models?key={SECRET} HTTP/7.0\r\nHost: x\r\n\r\n", 400, "HTTP version"),
    ]
    for raw, expect, named in cases:
        [(status, headers, body)] = exchange(gateway, raw.encode())
        error = assert_openai_error(status, headers, body, expect, error_code(expect))
        assert named in error["message"], error
        assert SECRET not in error["message"]
    assert SECRET not in gateway.server_log()


def error_code(status: int) -> str:
    return {400: "invalid_request", 414: "url_too_long"}[status]


def test_the_preflight_answer_has_a_request_id(gateway: Gateway) -> None:
    preflight = b"OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: x\r\nOrigin: https://chat.example\r\n\r\n"
    [(status, headers, _)] = exchange(gateway, preflight)
    assert status == 204 and headers["x-request-id"].startswith("req_")


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway that takes three connections at once, with a JSON access log."""
    tmp = tmp_path_factory.mktemp("gw-capped")
    gw = start_gateway(tmp, f"sqlite:///{tmp / 'capped.db'}", MAX_CONNECTIONS="3", ACCESS_LOG="json")
    yield gw
    stop_gateway(gw)


def test_connections_beyond_the_cap_are_refused_or_displace_slow_ones(
    capped: Gateway, upstream: FakeUpstream
) -> None:
    model, _, key = capped.setup_model(upstream)
    auth = f"Authorization: Bearer {key['key']}\r\n"
    head, body = chat_request(model, auth).split(b"\r\n\r\n", 1)
    busy = [connect(capped) for _ in range(3)]
    for sock in busy:  # each is reading a body that does not come: busy, not idle
        sock.sendall(head + b"\r\n\r\n" + body[:5])
    time.sleep(0.3)
    with connect(capped) as sock:
        started = time.monotonic()
        status, headers, answer = read_answer(sock)
        assert_openai_error(status, headers, answer, 503, "too_many_connections")
        assert headers["retry-after"] == "1" and headers["connection"] == "close"
        assert time.monotonic() - started < 1
        assert closed_by_server(sock)
    for sock in busy:
        sock.close()
    time.sleep(0.5)
    idle = [connect(capped) for _ in range(3)]  # they send nothing: waiting for a head
    time.sleep(0.3)
    try:
        with connect(capped) as sock:
            sock.sendall(chat_request(model, auth))
            status, _, answer = read_answer(sock)
            assert status == 200, answer
        assert closed_by_server(idle[0])  # the longest wait gave its place up
    finally:
        for sock in idle:
            sock.close()


def access_lines(gateway: Gateway) -> list[str]:
    return [line for line in gateway.server_log().splitlines() if " req_" in line or '"request_id"' in line]


def wait_for_line(gateway: Gateway, request_id: str, timeout: float = 5) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in access_lines(gateway):
            if request_id in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no access line for {request_id}")


def test_the_access_log_has_a_line_per_request_and_no_secrets(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    model, user, key = gateway.setup_model(upstream)
    client = gateway.client(key)
    reply = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "one two three"}]
    )
    request_id = reply.headers["x-request-id"]
    line = wait_for_line(gateway, request_id)
    assert " POST /v1/chat/completions 200 " in line
    for field in (f"user={user['id']}", f"key={key['id']}", f"model={model}", "prompt_tokens=6"):
        assert field in line, line
    status = http("GET", gateway.url + f"/api/status?key={SECRET}")
    line = wait_for_line(gateway, status.headers["x-request-id"])
    assert " GET /api/status 200 " in line and "user=" not in line
    denied = http("GET", gateway.v1 + "/models", headers={"Authorization": f"Bearer {SECRET}"})
    line = wait_for_line(gateway, denied.headers["x-request-id"])
    assert " GET /v1/models 401 " in line
    log = gateway.server_log()
    assert SECRET not in log and key["key"] not in log


def test_the_access_log_as_json_and_off(capped: Gateway, quick: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = capped.setup_model(upstream)
    reply = capped.client(key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    line = json.loads(wait_for_line(capped, reply.headers["x-request-id"]))
    assert line["status"] == 200 and line["user_id"] == user["id"] and line["key_id"] == key["id"]
    assert line["model"] == model and line["path"] == "/v1/chat/completions" and line["latency_ms"] >= 0
    assert line["prompt_tokens"] == 4 and line["time"].endswith("Z")
    status = http("GET", quick.url + "/api/status")
    time.sleep(1)
    assert status.headers["x-request-id"] not in Path(quick.log_path).read_text()
