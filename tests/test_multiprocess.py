"""Several gateway processes on one database and one Redis: one wallet, one set of limits, and every change
made through one process seen by the others within a second."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.conftest import (
    IN_CI,
    ROOT,
    Gateway,
    free_port,
    http,
    scratch_database,
    start_gateway,
    stop_gateway,
)
from tests.fake_upstream import FakeUpstream
from tests.test_redis_limits import redis_available

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def need_redis() -> None:
    if not redis_available():
        if IN_CI:
            pytest.fail("Redis is not reachable at 127.0.0.1:6379 (CI=true: a missing service is a failure)")
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")


def shared_env() -> dict[str, str]:
    """What processes on different machines must agree on: the secrets, given in the environment."""
    return {
        "REDIS_URL": REDIS_URL,
        "CHANNEL_KEY": Fernet.generate_key().decode(),
        "SECRET_KEY": secrets.token_urlsafe(32),
        "FLUSH_INTERVAL": "0.2",
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    """Two processes, each with an instance folder of its own, as on two machines."""
    need_redis()
    database = scratch_database(request.param, tmp_path, "relayhouse_multi")
    env = shared_env()
    first = start_gateway(tmp_path / "a", database, **env)
    second = None
    try:
        second = start_gateway(tmp_path / "b", database, **env)
        yield first, second
    finally:
        stop_gateway(first)
        if second is not None:
            stop_gateway(second)


def chat(gw: Gateway, secret: str, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return http("POST", gw.v1 + "/chat/completions", body, {"Authorization": f"Bearer {secret}"}).status


def within_a_second(check: Callable[[], bool]) -> float:
    """How long until `check()` holds; fails after one second."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < 1.0, "the other process did not see the change within 1 s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_two_processes_never_spend_more_than_the_wallet(
    pair: tuple[Gateway, Gateway], upstream: FakeUpstream
) -> None:
    first, second = pair
    model = "mp-" + secrets.token_hex(3)
    first.channel(upstream, [model])
    first.price(model, per_request_usd=0.01)
    user = first.user(1.0)  # enough for exactly 100 requests
    secret = first.key(user)["key"]
    statuses: list[int] = []
    lock = threading.Lock()
    turn = iter(range(1000))

    def worker() -> None:
        while True:
            with lock:
                i = next(turn, None)
            if i is None:
                return
            status = chat(first if i % 2 else second, secret, model)
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    served = statuses.count(200)
    assert len(statuses) == 1000
    assert set(statuses) <= {200, 402}, sorted(set(statuses))
    assert 90 <= served <= 100, served
    deadline = time.time() + 10
    while time.time() < deadline:
        rows, costs, charged_rows = first.query(
            "SELECT count(*), coalesce(sum(cost_micro_usd), 0), count(nullif(cost_micro_usd, 0))"
            " FROM usage_logs WHERE user_id = :u",
            u=user["id"],
        )[0]
        if rows == 1000:
            break
        time.sleep(0.1)
    assert (rows, costs, charged_rows) == (1000, served * 10_000, served)
    charges = first.query(
        "SELECT coalesce(sum(amount_micro_usd), 0) FROM ledger WHERE user_id = :u AND kind = 'charge'",
        u=user["id"],
    )[0][0]
    assert charges == -served * 10_000
    assert first.balance(user) == 1_000_000 - served * 10_000 >= 0


def test_a_change_through_one_process_reaches_the_other_within_a_second(
    pair: tuple[Gateway, Gateway], upstream: FakeUpstream
) -> None:
    first, second = pair
    model = "mp-" + secrets.token_hex(3)
    channel = first.channel(upstream, [model])
    first.price(model)
    user = first.user(0)
    key = first.key(user)
    secret = key["key"]

    # a top-up through the first process: the second serves at once
    assert chat(second, secret, model) == 402
    first.ok("POST", f"/users/{user['id']}/wallet", {"amount_usd": 5, "reason": "top-up"})
    within_a_second(lambda: chat(second, secret, model) == 200)

    # a disabled key, then a disabled user
    first.ok("PATCH", f"/keys/{key['id']}", {"status": "disabled"})
    within_a_second(lambda: chat(second, secret, model) == 401)
    first.ok("PATCH", f"/keys/{key['id']}", {"status": "active"})
    within_a_second(lambda: chat(second, secret, model) == 200)
    first.ok("PATCH", f"/users/{user['id']}", {"status": "disabled"})
    within_a_second(lambda: chat(second, secret, model) == 403)
    first.ok("PATCH", f"/users/{user['id']}", {"status": "active"})
    within_a_second(lambda: chat(second, secret, model) == 200)

    # a channel disabled, then a new model with its channel and price
    first.ok("PATCH", f"/channels/{channel['id']}", {"status": "disabled"})
    within_a_second(lambda: chat(second, secret, model) == 503)
    other = "mp-" + secrets.token_hex(3)
    first.channel(upstream, [other])
    first.price(other)
    within_a_second(lambda: chat(second, secret, other) == 200)

    # a deleted key
    first.ok("DELETE", f"/keys/{key['id']}")
    within_a_second(lambda: chat(second, secret, other) == 401)


def test_a_process_with_another_channel_key_says_so_in_one_line(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    need_redis()
    database = scratch_database("sqlite", tmp_path, "keys")
    env = shared_env()
    first = start_gateway(tmp_path / "a", database, **env)
    try:
        first.channel(upstream, ["mp-model"])
    finally:
        stop_gateway(first)
    env = {
        **os.environ,
        **env,
        "CHANNEL_KEY": Fernet.generate_key().decode(),
        "DATABASE_URL": database,
        "INSTANCE_DIR": str(tmp_path / "b"),
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "app.py")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "CHANNEL_KEY" in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_workers_share_one_port_and_a_dead_worker_is_replaced(tmp_path: Path, upstream: FakeUpstream) -> None:
    need_redis()
    gw = start_gateway(tmp_path, scratch_database("sqlite", tmp_path, "workers"), WORKERS="2", **shared_env())
    try:
        model, user, key = gw.setup_model(upstream)
        workers = _children(gw.process.pid)
        assert len(workers) == 2
        statuses = [chat(gw, key["key"], model) for _ in range(10)]
        assert statuses == [200] * 10
        os.kill(workers[0], 9)
        deadline = time.time() + 60
        while time.time() < deadline:  # until a new worker serves: it replays what the dead one left
            now = [pid for pid in _children(gw.process.pid) if pid not in workers]
            if now and f"(process {now[0]}," in gw.server_log():
                break
            time.sleep(0.1)
        assert len(_children(gw.process.pid)) == 2
        statuses = [chat(gw, key["key"], model) for _ in range(10)]
        assert statuses == [200] * 10
        gw.logs_of(user, 20)
    finally:
        stop_gateway(gw)
    assert gw.process.returncode == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers[1:])


def test_key_limits_hold_across_processes(
    pair: tuple[Gateway, Gateway], fresh_upstream: FakeUpstream
) -> None:
    """A key's spend limit, monthly token cap and concurrency limit count what both processes serve."""
    first, second = pair
    model = "mp-" + secrets.token_hex(3)
    first.channel(fresh_upstream, [model])
    first.price(model, per_request_usd=0.01)
    user = first.user(10)

    def parallel(secret: str, count: int) -> list[int]:
        results: list[int] = []
        threads = [
            threading.Thread(
                target=lambda i=i: results.append(chat(first if i % 2 else second, secret, model))
            )
            for i in range(count)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    spend = first.key(user, spend_limit_usd=0.1)["key"]  # ten requests' worth
    served = parallel(spend, 40)
    assert served.count(200) == 10 and served.count(402) == 30, sorted(served)

    capped = first.key(user, tokens_per_month=30)["key"]  # a "hi" costs 9 tokens: the 4th reaches the cap
    statuses = [chat(first if i % 2 else second, capped, model) for i in range(8)]
    assert statuses == [200] * 4 + [429] * 4

    fresh_upstream.behave(stall_s=1.5)
    narrow = first.key(user, max_concurrent=2)["key"]
    served = parallel(narrow, 6)
    assert served.count(200) == 2 and served.count(429) == 4, sorted(served)
    fresh_upstream.reset()
    assert chat(first, narrow, model) == 200 and chat(second, narrow, model) == 200  # the slots came back
