"""With `REDIS_URL`, request-rate counters live in Redis: two gateway processes on one database share them."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import openai
import pytest

from tests.conftest import IN_CI, start_gateway, stop_gateway
from tests.fake_upstream import FakeUpstream

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_two_processes_share_one_rate_limit(tmp_path: Path, upstream: FakeUpstream) -> None:
    if not redis_available():
        if IN_CI:
            pytest.fail("Redis is not reachable at 127.0.0.1:6379 (CI=true: a missing service is a failure)")
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    first = start_gateway(tmp_path, database, REDIS_URL=REDIS_URL)  # one instance/ folder: same secrets
    second = None
    try:
        model = "redis-" + secrets.token_hex(3)
        first.channel(upstream, [model])
        first.price(model)
        user = first.user(5)
        key = first.key(user, requests_per_minute=3)
        hi = [{"role": "user", "content": "hi"}]
        first.client(key).chat.completions.create(model=model, messages=hi)
        second = start_gateway(tmp_path, database, REDIS_URL=REDIS_URL)
        second.client(key).chat.completions.create(model=model, messages=hi)
        first.client(key).chat.completions.create(model=model, messages=hi)
        with pytest.raises(openai.RateLimitError):
            second.client(key).chat.completions.create(model=model, messages=hi)
        with pytest.raises(openai.RateLimitError):
            first.client(key).chat.completions.create(model=model, messages=hi)
    finally:
        stop_gateway(first)
        if second is not None:
            stop_gateway(second)
