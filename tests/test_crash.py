"""A gateway killed with `kill -9` loses nothing it answered: the records it had not written yet are in
its journal, and the next start on the same instance folder writes each of them exactly once."""

from __future__ import annotations

import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import Gateway, http, scratch_database, start_gateway, stop_gateway
from tests.fake_upstream import FakeUpstream

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return scratch_database(request.param, tmp_path, "relayhouse_crash")


def answer(gateway: Gateway, key: dict, model: str, count: int) -> list[str]:
    """`count` answered requests, half of them streamed; their request ids."""
    client = gateway.client(key)

    def one(i: int) -> str:
        if i % 2:
            reply = client.chat.completions.with_raw_response.create(model=model, messages=HI, stream=True)
            chunks = list(reply.parse())
            assert chunks and reply.http_response.status_code == 200
        else:
            reply = client.chat.completions.with_raw_response.create(model=model, messages=HI)
            assert reply.parse().choices
        return reply.headers["x-request-id"]

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def kill(gateway: Gateway) -> None:
    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait(10)


def books(gateway: Gateway, user: dict) -> tuple[dict[str, int], dict[str, int], int]:
    """The user's log rows (request id -> cost), charges (request id -> amount) and balance, read from the
    database; a request id written twice would fail here."""
    logs = gateway.query("SELECT request_id, cost_micro_usd FROM usage_logs WHERE user_id = :u", u=user["id"])
    charges = gateway.query(
        "SELECT request_id, -amount_micro_usd FROM ledger WHERE user_id = :u AND kind = 'charge'",
        u=user["id"],
    )
    assert len({r for r, _ in logs}) == len(logs) and len({r for r, _ in charges}) == len(charges)
    balance = gateway.query("SELECT balance_micro_usd FROM users WHERE id = :u", u=user["id"])[0][0]
    return dict(logs), dict(charges), balance


def assert_each_once(gateway: Gateway, user: dict, answered: list[str]) -> int:
    logs, charges, balance = books(gateway, user)
    assert set(logs) == set(answered)
    assert charges == logs and all(cost > 0 for cost in logs.values())
    assert balance == 10_000_000 - sum(logs.values())
    key_spent = gateway.query("SELECT SUM(spent_micro_usd) FROM api_keys WHERE user_id = :u", u=user["id"])
    assert key_spent[0][0] == sum(logs.values())
    return balance


def shown_balance_usd(gateway: Gateway, key: dict) -> float:
    """The balance the relay itself works with (its wallets), as the legacy billing endpoint shows it."""
    reply = http(
        "GET",
        gateway.v1 + "/dashboard/billing/subscription",
        headers={"Authorization": f"Bearer {key['key']}"},
    )
    return reply.body["hard_limit_usd"]


def test_a_killed_gateway_loses_nothing_it_answered(
    database_url: str, tmp_path: Path, upstream: FakeUpstream
) -> None:
    gw = start_gateway(tmp_path, database_url, FLUSH_INTERVAL="30")
    try:
        model, user, key = gw.setup_model(upstream)
        answered = answer(gw, key, model, 36)
        assert books(gw, user)[0] == {}  # nothing written yet: only the journal has them
    finally:
        kill(gw)
    journal = gw.instance_dir / "journal"
    segments = sorted(journal.rglob("*.jsonl"))
    assert segments
    kept = tmp_path / "kept"
    shutil.copytree(journal, kept)

    gw = start_gateway(tmp_path, database_url, FLUSH_INTERVAL="30")
    try:
        balance = assert_each_once(gw, user, answered)  # written before the first request was served
        assert shown_balance_usd(gw, key) == balance / 1_000_000  # the wallets count none of it twice
        more = answer(gw, key, model, 4)
    finally:
        stop_gateway(gw)
    assert gw.process.returncode == 0
    assert not list(journal.rglob("*.jsonl"))  # a clean stop leaves no journal behind
    balance = assert_each_once(gw, user, answered + more)

    # a crash after a commit but before its segments were deleted: the same records come back
    shutil.copytree(kept, journal, dirs_exist_ok=True)
    gw = start_gateway(tmp_path, database_url, FLUSH_INTERVAL="30")
    try:
        assert assert_each_once(gw, user, answered + more) == balance
        assert shown_balance_usd(gw, key) == balance / 1_000_000
    finally:
        stop_gateway(gw)
    assert not list(journal.rglob("*.jsonl"))


def test_processes_sharing_an_instance_folder_each_keep_their_own_journal(
    database_url: str, tmp_path: Path, upstream: FakeUpstream
) -> None:
    """A second process takes the next slot and leaves the live first one's records alone; once both are
    killed, the next start replays what each of them left."""
    first = start_gateway(tmp_path, database_url, FLUSH_INTERVAL="30")
    second = None
    try:
        model, user, key = first.setup_model(upstream)
        answered = answer(first, key, model, 10)
        second = start_gateway(tmp_path, database_url, FLUSH_INTERVAL="30")
        assert books(first, user)[0] == {}  # the second start did not take the first's records
        answered += answer(second, key, model, 10)
        slots = {p.parent.name for p in (first.instance_dir / "journal").rglob("*.jsonl")}
        assert slots == {"0", "1"}
    finally:
        kill(first)
        if second is not None:
            kill(second)
    third = start_gateway(tmp_path, database_url, FLUSH_INTERVAL="30")
    try:
        assert_each_once(third, user, answered)
    finally:
        stop_gateway(third)
