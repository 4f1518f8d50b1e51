"""Billing as docs/billing.md promises: exact costs, cached tokens, group multipliers, estimated usage, cut
streams, and money that always equals the logs."""

from __future__ import annotations

import secrets
from pathlib import Path

import openai
import pytest

from tests.conftest import Gateway, start_gateway, stop_gateway
from tests.fake_upstream import FakeUpstream, chat_prompt_tokens, count_words

HI = [{"role": "user", "content": "hi"}]
CONTENT = "Hello from the fake upstream."


def ledger_charges(gateway: Gateway, user: dict) -> int:
    rows = gateway.query(
        "SELECT COALESCE(SUM(amount_micro_usd), 0) FROM ledger WHERE user_id = :uid AND kind = 'charge'",
        uid=user["id"],
    )
    return -int(rows[0][0])


def test_cached_tokens_are_billed_at_the_cached_price(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(
        fresh_upstream, input_per_mtok_usd=2.5, output_per_mtok_usd=10, cached_input_per_mtok_usd=1.25
    )
    messages = [{"role": "user", "content": "one two three four five six seven"}]
    fresh_upstream.behave(cached_tokens=4)
    gateway.client(key).chat.completions.create(model=model, messages=messages)
    prompt = chat_prompt_tokens(messages)
    completion = count_words(CONTENT)
    # micro-USD: (prompt - cached) * 2.5 + cached * 1.25 + completion * 10, rounded half up once
    exact = (prompt - 4) * 2.5 + 4 * 1.25 + completion * 10
    row = gateway.logs_of(user, 1)[0]
    assert row["cached_tokens"] == 4
    assert row["cost_micro_usd"] == int(exact + 0.5)


def test_rounding_happens_once(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream, input_per_mtok_usd=0.15, output_per_mtok_usd=0.6)
    client = gateway.client(key)
    for _ in range(3):
        client.chat.completions.create(model=model, messages=HI)
    rows = gateway.logs_of(user, 3)
    prompt, completion = rows[0]["prompt_tokens"], rows[0]["completion_tokens"]
    exact = prompt * 0.15 + completion * 0.6  # a fraction of a micro-USD per request
    assert all(r["cost_micro_usd"] == int(exact + 0.5) for r in rows)


def test_group_multiplier(gateway: Gateway, upstream: FakeUpstream) -> None:
    model = "vip-" + secrets.token_hex(3)
    group = "vip-" + secrets.token_hex(3)
    gateway.channel(upstream, [model], groups=[group])
    gateway.price(model, input_per_mtok_usd=1000, output_per_mtok_usd=1000)
    gateway.ok("PUT", f"/groups/{group}", {"multiplier": "1.5"})
    vip = gateway.user(5, group=group)
    completion = gateway.client(gateway.key(vip)).chat.completions.create(model=model, messages=HI)
    row = gateway.logs_of(vip, 1)[0]
    assert row["cost_micro_usd"] == int(completion.usage.total_tokens * 1000 * 1.5)
    outsider = gateway.user(5)  # group "default" is not served by that channel
    with pytest.raises(openai.NotFoundError):
        gateway.client(gateway.key(outsider)).chat.completions.create(model=model, messages=HI)


def test_usage_is_estimated_when_upstream_reports_none(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    model, user, key = gateway.setup_model(fresh_upstream)
    fresh_upstream.behave(no_usage=True)
    client = gateway.client(key)
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell me a story"}])
    list(client.chat.completions.create(model=model, messages=HI, stream=True))
    rows = gateway.logs_of(user, 2)
    assert all(r["usage_source"] == "estimated" for r in rows)
    assert all(
        r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 and r["cost_micro_usd"] > 0 for r in rows
    )


def test_stream_cut_by_client_bills_only_what_was_delivered(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    model, user, key = gateway.setup_model(fresh_upstream)
    long_text = " ".join(f"word{i}" for i in range(200))
    fresh_upstream.behave(content=long_text, chunks=40, chunk_delay_s=0.05)
    stream = gateway.client(key).chat.completions.create(model=model, messages=HI, stream=True)
    received = []
    for chunk in stream:
        received.extend(c.delta.content or "" for c in chunk.choices)
        if len(received) >= 4:
            break
    stream.close()
    assert fresh_upstream.wait_for_stream_cut(1, timeout=5), "the gateway kept the upstream request running"
    row = gateway.logs_of(user, 1)[0]
    assert row["status"] == 499 and row["usage_source"] == "estimated"
    assert 0 < row["completion_tokens"] < 200
    assert row["cost_micro_usd"] > 0
    assert ledger_charges(gateway, user) == row["cost_micro_usd"]


def test_failed_request_costs_nothing(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(fresh_upstream)
    fresh_upstream.behave(status=500)
    with pytest.raises(openai.InternalServerError):
        gateway.client(key).chat.completions.create(model=model, messages=HI)
    row = gateway.logs_of(user, 1)[0]
    assert row["cost_micro_usd"] == 0 and row["status"] == 502
    assert ledger_charges(gateway, user) == 0
    assert gateway.balance(user) == 10_000_000


def test_money_equals_logs_over_a_mixed_run(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    model = "mix-" + secrets.token_hex(3)
    gateway.channel(fresh_upstream, [model], priority=5)
    gateway.channel(upstream2, [model], priority=0)
    gateway.price(model, input_per_mtok_usd=3.3, output_per_mtok_usd=7.7, cached_input_per_mtok_usd=1.1)
    user = gateway.user(10)
    key = gateway.key(user)
    client = gateway.client(key)
    calls = 0
    for round_ in range(3):
        fresh_upstream.reset()
        fresh_upstream.behave(chunks=10, chunk_delay_s=0.01, cached_tokens=round_)
        client.chat.completions.create(model=model, messages=HI)
        list(
            client.chat.completions.create(
                model=model, messages=HI, stream=True, stream_options={"include_usage": True}
            )
        )
        stream = client.chat.completions.create(model=model, messages=HI, stream=True)
        next(iter(stream))
        stream.close()  # cut by the client
        client.embeddings.create(model=model, input="some words here")
        fresh_upstream.behave(cut_after_chunks=3)
        with pytest.raises(openai.APIError):
            list(client.chat.completions.create(model=model, messages=HI, stream=True))  # cut upstream
        fresh_upstream.reset()
        fresh_upstream.behave(status=500)  # fails over to the second upstream
        client.completions.create(model=model, prompt="go")
        calls += 6
    fresh_upstream.reset()
    rows = gateway.logs_of(user, calls)
    total_logged = sum(r["cost_micro_usd"] for r in rows)
    assert total_logged > 0
    assert ledger_charges(gateway, user) == total_logged
    assert gateway.balance(user) == 10_000_000 - total_logged
    assert gateway.ok("GET", f"/keys/{key['id']}")["spent_micro_usd"] == total_logged
    assert {r["status"] for r in rows} == {200, 499, 502}


def test_concurrent_requests_never_lose_money(gateway: Gateway, upstream: FakeUpstream) -> None:
    from concurrent.futures import ThreadPoolExecutor

    model, user, key = gateway.setup_model(upstream, input_per_mtok_usd=1.7, output_per_mtok_usd=2.9)
    client = gateway.client(key)

    def one(i: int) -> None:
        if i % 2:
            list(client.chat.completions.create(model=model, messages=HI, stream=True))
        else:
            client.chat.completions.create(model=model, messages=HI)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(64)))
    rows = gateway.logs_of(user, 64)
    total = sum(r["cost_micro_usd"] for r in rows)
    assert ledger_charges(gateway, user) == total
    assert gateway.balance(user) == 10_000_000 - total


def test_reservation_refuses_what_the_balance_cannot_cover(gateway: Gateway, upstream: FakeUpstream) -> None:
    # $0.01 buys the prompt but not 1,000 output tokens at $100 per million
    model, user, key = gateway.setup_model(
        upstream, balance_usd=0.01, input_per_mtok_usd=1, output_per_mtok_usd=100
    )
    client = gateway.client(key)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=model, messages=HI, max_tokens=1000)
    assert caught.value.status_code == 402
    assert client.chat.completions.create(model=model, messages=HI, max_tokens=10).choices


@pytest.mark.parametrize("interval", ["0", "30"])
def test_write_through_and_sigterm_flush(interval: str, tmp_path: Path, upstream: FakeUpstream) -> None:
    """FLUSH_INTERVAL=0 writes before answering; with a long interval, SIGTERM still writes everything."""
    gw = start_gateway(tmp_path, f"sqlite:///{tmp_path / 'flush.db'}", FLUSH_INTERVAL=interval)
    try:
        model, user, key = gw.setup_model(upstream)
        reply = gw.client(key).chat.completions.with_raw_response.create(model=model, messages=HI)
        request_id = reply.headers["x-request-id"]
        if interval == "0":
            rows = gw.query("SELECT cost_micro_usd FROM usage_logs WHERE request_id = :r", r=request_id)
            assert len(rows) == 1 and rows[0][0] > 0
    finally:
        stop_gateway(gw)
    assert gw.process.returncode == 0
    rows = gw.query("SELECT cost_micro_usd FROM usage_logs WHERE request_id = :r", r=request_id)
    assert len(rows) == 1
    charged = gw.query("SELECT -amount_micro_usd FROM ledger WHERE request_id = :r", r=request_id)
    assert charged[0][0] == rows[0][0] > 0
    balance = gw.query("SELECT balance_micro_usd FROM users WHERE id = :u", u=user["id"])[0][0]
    assert balance == 10_000_000 - rows[0][0]


def test_a_batch_written_twice_counts_once(tmp_path: Path) -> None:
    """If a commit's answer is lost and the writer retries, the rows already there are not counted again."""
    from app import create_app
    from gateway.domain import accounts, ledger
    from gateway.writer import Record

    app = create_app({"instance_dir": str(tmp_path), "database_url": f"sqlite:///{tmp_path / 'w.db'}"})
    rt = app.extensions["relayhouse"]
    with app.app_context():
        user_id = accounts.create_user("twice", "password123").id
        ledger.post(user_id, "topup", 1000)
    first = Record("req_twice_1", user_id, None, None, "chat", "m", cost_micro_usd=7)
    rt.writer.record(first)
    assert rt.writer.flush() == 1
    second = Record("req_twice_2", user_id, None, None, "chat", "m", cost_micro_usd=5)
    rt.writer.record(first)  # the retried batch holds the landed row again, beside a new one
    rt.writer.record(second)
    assert rt.writer.flush() == 1
    with app.app_context():
        from gateway.domain.models import LedgerEntry, UsageLog, User, db

        assert db.session.scalar(db.select(db.func.count()).select_from(UsageLog)) == 2
        charges = db.session.scalars(
            db.select(LedgerEntry.amount_micro_usd).where(LedgerEntry.kind == "charge")
        )
        assert sorted(charges) == [-7, -5]
        assert db.session.get(User, user_id).balance_micro_usd == 1000 - 12
    rt.stop()


def test_a_record_the_driver_cannot_bind_is_set_aside_and_the_rest_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record the database refuses is set aside in dead_letters, without log row or charge; the batches
    before and after it are committed once. (An outage keeps everything queued: test_writer_faults.)"""
    from app import create_app
    from gateway import writer
    from gateway.domain import accounts, ledger
    from gateway.writer import Record

    monkeypatch.setattr(writer, "BATCH_ROWS", 2)
    app = create_app({"instance_dir": str(tmp_path), "database_url": f"sqlite:///{tmp_path / 'f.db'}"})
    rt = app.extensions["relayhouse"]
    with app.app_context():
        user_id = accounts.create_user("flaky", "password123").id
        ledger.post(user_id, "topup", 1000)
    records = [
        Record(f"req_flaky_{i}", user_id, None, None, "chat", "m", cost_micro_usd=i) for i in range(1, 6)
    ]
    records[2].prompt_tokens = object()  # type: ignore[assignment]  # the driver cannot bind it
    for record in records:
        rt.writer.record(record)
    assert rt.writer.flush() == 4
    assert rt.writer._queue == []
    with app.app_context():
        from gateway.domain.models import DeadLetter, LedgerEntry, UsageLog, User, db

        logged = db.session.scalars(db.select(UsageLog.request_id).order_by(UsageLog.id))
        assert list(logged) == [f"req_flaky_{i}" for i in (1, 2, 4, 5)]
        charges = db.session.scalars(
            db.select(LedgerEntry.amount_micro_usd).where(LedgerEntry.kind == "charge")
        )
        assert sorted(charges) == [-5, -4, -2, -1]
        assert db.session.get(User, user_id).balance_micro_usd == 1000 - 12
        dead = db.session.scalars(db.select(DeadLetter.request_id)).all()
        assert dead == ["req_flaky_3"]
    rt.stop()


def test_free_models_need_the_admins_consent(tmp_path: Path, upstream: FakeUpstream) -> None:
    gw = start_gateway(tmp_path, f"sqlite:///{tmp_path / 'free.db'}")
    try:
        assert gw.query("PRAGMA journal_mode")[0][0] == "wal"
        model = "free-" + secrets.token_hex(3)
        gw.channel(upstream, [model])
        user = gw.user(0)
        client = gw.client(gw.key(user))
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model=model, messages=HI)
        assert model not in [m.id for m in client.models.list()]
        gw.ok("PATCH", "/settings", {"allow_free_models": True})
        assert model in [m.id for m in client.models.list()]
        assert client.chat.completions.create(model=model, messages=HI).choices  # an empty wallet is fine
        rows = gw.logs_of(user, 2)
        assert [r["status"] for r in rows] == [200, 403] and all(r["cost_micro_usd"] == 0 for r in rows)
    finally:
        stop_gateway(gw)
