"""The HTTP layer over raw sockets: request heads as clients really send them (folded, pipelined,
malformed, chunked), the relay's answers to the wrong method, and request ids."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

from gateway.neutral import new_request_id
from tests.conftest import Gateway, oversized_chat
from tests.fake_upstream import FakeUpstream


def exchange(gateway: Gateway, data: bytes, responses: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    """Send raw bytes, read `responses` answers framed by Content-Length (or up to the connection's end)."""
    parts = urlsplit(gateway.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(data)
        buffer = b""
        answers = []
        while len(answers) < responses:
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    return answers
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
            }
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
            answers.append((status, headers, buffer[:length]))
            buffer = buffer[length:]
        return answers


def chat_request(model: str, auth_lines: str, body: bytes | None = None, chunked: bool = False) -> bytes:
    body = body or json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth_lines}"
    if chunked:
        data = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000]) for i in range(0, len(body), 1000)
        )
        return head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + data + b"0\r\n\r\n"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def test_pipelined_requests_on_one_connection(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, _, key = gateway.setup_model(upstream)
    one = chat_request(model, f"Authorization: Bearer {key['key']}\r\n")
    answers = exchange(gateway, one * 3, responses=3)
    assert [a[0] for a in answers] == [200, 200, 200]
    ids = {a[1]["x-request-id"] for a in answers}
    assert len(ids) == 3
    assert all(json.loads(a[2])["object"] == "chat.completion" for a in answers)


def test_folded_header_and_header_case(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, _, key = gateway.setup_model(upstream)
    folded = chat_request(model, f"authorization: Bearer\r\n {key['key']}\r\n")
    [(status, headers, body)] = exchange(gateway, folded)
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    [(status, _, body)] = exchange(gateway, chat_request(model, f"X-Api-Key: {key['key']}\r\n"))
    assert status == 200, body


def test_malformed_heads_are_400(gateway: Gateway) -> None:
    for head in (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 101 + b"\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\n continued\r\n\r\n",
    ):
        answers = exchange(gateway, head)
        assert answers and answers[0][0] == 400, answers


def test_chunked_request_body(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream)
    auth = f"Authorization: Bearer {key['key']}\r\n"
    [(status, _, body)] = exchange(gateway, chat_request(model, auth, chunked=True))
    assert status == 200, body
    big = oversized_chat(model)
    [(status, headers, body)] = exchange(gateway, chat_request(model, auth, big, chunked=True))
    error = json.loads(body)["error"]
    assert status == 413 and error["code"] == "request_too_large", body
    row = gateway.wait_for_log(headers["x-request-id"])
    assert row["status"] == 413 and row["cost_micro_usd"] == 0


def test_wrong_method_on_a_relay_route(gateway: Gateway) -> None:
    [(status, headers, body)] = exchange(gateway, b"GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 405 and headers["allow"] == "POST"
    assert json.loads(body)["error"]["code"] == "method_not_allowed"
    assert headers["x-request-id"].startswith("req_")
    parts = urlsplit(gateway.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=2) as sock:
        sock.sendall(
            b"HEAD /v1/embeddings HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/embeddings HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        received = b""
        while received.count(b"HTTP/1.1 405") < 2 or not received.endswith(b"}"):
            received += sock.recv(65536)
    first_head, rest = received.split(b"\r\n\r\n", 1)
    assert b"content-length" in first_head.lower() and rest.startswith(b"HTTP/1.1 405")  # HEAD: no body


def test_request_ids_are_unique_and_in_time_order() -> None:
    ids = [new_request_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 30 and i.startswith("req_") for i in ids)
    assert sorted(ids) == ids


def test_browser_front_ends_may_call_the_api(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, _, key = gateway.setup_model(upstream)
    for path in ("/v1/chat/completions", "/v1/models"):
        preflight = (
            f"OPTIONS {path} HTTP/1.1\r\nHost: x\r\nOrigin: https://chat.example\r\n"
            "Access-Control-Request-Method: POST\r\n"
            "Access-Control-Request-Headers: authorization, content-type, x-stainless-os\r\n\r\n"
        ).encode()
        [(status, headers, _)] = exchange(gateway, preflight)
        assert status == 204 and headers["access-control-allow-origin"] == "*"
        assert headers["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"
        assert "POST" in headers["access-control-allow-methods"]
    auth = f"Authorization: Bearer {key['key']}\r\nOrigin: https://chat.example\r\n"
    [(status, headers, _)] = exchange(gateway, chat_request(model, auth))
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    assert "X-Request-Id" in headers["access-control-expose-headers"]
    [(status, headers, _)] = exchange(gateway, f"GET /v1/models HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    [(status, headers, _)] = exchange(gateway, b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and "access-control-allow-origin" not in headers  # the console stays same-origin


def test_broken_chunked_body_is_400_and_ends_the_connection(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key['key']}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    follow = chat_request(model, f"Authorization: Bearer {key['key']}\r\n")
    answers = exchange(gateway, head.encode() + b"zz\r\n{}\r\n0\r\n\r\n" + follow, responses=2)
    assert len(answers) == 1, answers  # the request after it was not read as one
    status, headers, body = answers[0]
    assert status == 400 and json.loads(body)["error"]["code"] == "unreadable_body"
    assert headers["connection"] == "close"
    row = gateway.wait_for_log(headers["x-request-id"])
    assert row["status"] == 400 and row["cost_micro_usd"] == 0
