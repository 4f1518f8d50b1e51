"""A record the database refuses costs only itself: everyone else's log rows and charges are still
written, a repairable record is repaired, and one the database still refuses is set aside in
`dead_letters` with neither log row nor charge. An outage keeps everything queued, in order."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import Gateway, http
from tests.fake_upstream import FakeUpstream, error_object

HI = [{"role": "user", "content": "hi"}]


def charges_of(gateway: Gateway, user: dict) -> dict[str, int]:
    rows = gateway.query(
        "SELECT request_id, -amount_micro_usd FROM ledger WHERE user_id = :u AND kind = 'charge'",
        u=user["id"],
    )
    return {request_id: amount for request_id, amount in rows}


def on_postgres(gateway: Gateway) -> bool:
    return gateway.database_url.startswith("postgresql")


def rows_of(gateway: Gateway, user: dict, request_ids: list[str], timeout: float = 5.0) -> dict[str, dict]:
    """The user's log rows, once every one of `request_ids` is among them."""
    deadline = time.time() + timeout
    while True:
        found = gateway.ok("GET", f"/logs?user_id={user['id']}&per_page=500")["data"]
        rows = {r["request_id"]: r for r in found}
        if set(request_ids) <= set(rows):
            return rows
        if time.time() > deadline:
            raise AssertionError(f"log rows missing: {set(request_ids) - set(rows)}")
        time.sleep(0.05)


def assert_billed_exactly(gateway: Gateway, user: dict, request_ids: list[str]) -> None:
    """Every charged request has its log row and its charge, and the wallet moved by exactly their sum."""
    rows = rows_of(gateway, user, request_ids)
    charged = {rid: row["cost_micro_usd"] for rid, row in rows.items() if row["cost_micro_usd"]}
    assert set(request_ids) <= set(charged)
    assert charges_of(gateway, user) == charged
    assert gateway.balance(user) == 10_000_000 - sum(charged.values())


def others_are_served(gateway: Gateway, upstream: FakeUpstream, users: int = 3) -> list[tuple[dict, list]]:
    """Users of a healthy model send a few requests each, in the same flush window as the refused one."""
    model = gateway.setup_model(upstream)[0]
    served = []
    for _ in range(users):
        user = gateway.user(10)
        client = gateway.client(gateway.key(user))
        ids = [
            client.chat.completions.with_raw_response.create(model=model, messages=HI).headers["x-request-id"]
            for _ in range(2)
        ]
        served.append((user, ids))
    return served


def test_a_model_name_longer_than_its_column_is_a_400_naming_model(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    model, user, key = gateway.setup_model(upstream)
    auth = {"Authorization": f"Bearer {key['key']}"}
    for bad in ("m" * 129, 42, ["gpt-4o"]):
        reply = http("POST", gateway.v1 + "/chat/completions", {"model": bad, "messages": HI}, auth)
        assert reply.status == 400, reply.body
        assert reply.body["error"]["param"] == "model"
        assert "model" in reply.body["error"]["message"]
    refused = http("POST", gateway.v1 + "/chat/completions", {"model": "m" * 129, "messages": HI}, auth)
    assert "128" in refused.body["error"]["message"]
    row = gateway.wait_for_log(refused.headers["x-request-id"])
    assert row["status"] == 400 and row["model"] == ""
    # the longest allowed name passes the bound (it is simply unknown), and its row is written too
    unknown = http("POST", gateway.v1 + "/chat/completions", {"model": "m" * 128, "messages": HI}, auth)
    assert unknown.status == 404
    assert gateway.wait_for_log(unknown.headers["x-request-id"])["model"] == "m" * 128
    ok = gateway.client(key).chat.completions.with_raw_response.create(model=model, messages=HI)
    assert_billed_exactly(gateway, user, [ok.headers["x-request-id"]])


def test_a_refused_record_is_repaired_and_everyone_else_is_still_written(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream: FakeUpstream
) -> None:
    """An upstream error message with a NUL character reaches the log row and the channel's last error;
    PostgreSQL refuses NUL in text. The record is repaired (NUL removed) and written, and no other
    user's row or charge waits for it."""
    model, user, key = gateway.setup_model(fresh_upstream)
    fresh_upstream.behave(status=400, error_body=error_object("bad\u0000input", "invalid_request_error"))
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client(key).chat.completions.create(model=model, messages=HI)
    refused_id = caught.value.response.headers["x-request-id"]
    fresh_upstream.reset()
    fresh_upstream.behave(status=500, error_body=error_object("down\u0000again", "server_error"))
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.client(key).chat.completions.create(model=model, messages=HI)
    failed_over_id = caught.value.response.headers["x-request-id"]
    fresh_upstream.reset()
    served = others_are_served(gateway, upstream)
    for other, ids in served:
        assert_billed_exactly(gateway, other, ids)
    rows = {r["request_id"]: r for r in gateway.logs_of(user, 2)}
    assert rows[refused_id]["status"] == 400 and "bad" in rows[refused_id]["error"]
    assert rows[failed_over_id]["status"] == 502 and "down" in rows[failed_over_id]["error"]
    assert charges_of(gateway, user) == {}
    assert gateway.query("SELECT COUNT(*) FROM dead_letters WHERE request_id = :r", r=refused_id)[0][0] == 0
    if on_postgres(gateway):
        assert "\x00" not in rows[refused_id]["error"]


def test_a_record_refused_even_after_repair_is_set_aside(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream: FakeUpstream
) -> None:
    """An upstream that reports more cached tokens than a PostgreSQL INTEGER holds: no repair of strings
    helps. The record goes to `dead_letters`, writes no log row and no charge, leaves the wallet's pending
    sum (the key's balance shows the stored one), and everyone else is written."""
    model, user, key = gateway.setup_model(fresh_upstream)
    fresh_upstream.behave(cached_tokens=3_000_000_000)
    client = gateway.client(key)
    reply = client.chat.completions.with_raw_response.create(model=model, messages=HI)
    request_id = reply.headers["x-request-id"]
    fresh_upstream.reset()
    served = others_are_served(gateway, upstream)
    for other, ids in served:
        assert_billed_exactly(gateway, other, ids)
    if not on_postgres(gateway):  # SQLite integers hold it: an ordinary row
        assert_billed_exactly(gateway, user, [request_id])
        return
    deadline = time.time() + 5
    dead: list = []
    while not dead and time.time() < deadline:
        dead = gateway.query("SELECT payload, error FROM dead_letters WHERE request_id = :r", r=request_id)
        time.sleep(0.05)
    assert len(dead) == 1
    payload, error = dead[0]
    record = json.loads(payload)
    assert record["request_id"] == request_id and record["cached_tokens"] == 3_000_000_000
    assert record["cost_micro_usd"] > 0 and record["user_id"] == user["id"]
    assert "out of range" in error and "INSERT" not in error  # the database's words, not the statement
    listed = gateway.ok("GET", "/dead-letters")["data"]  # and an admin sees it
    assert [d["error"] for d in listed if d["request_id"] == request_id] == [error]
    assert gateway.query("SELECT COUNT(*) FROM usage_logs WHERE request_id = :r", r=request_id)[0][0] == 0
    assert charges_of(gateway, user) == {}
    assert gateway.balance(user) == 10_000_000
    auth = {"Authorization": f"Bearer {key['key']}"}
    shown = http("GET", gateway.v1 + "/dashboard/billing/subscription", headers=auth)
    assert shown.body["hard_limit_usd"] == 10  # the set-aside charge no longer counts as pending
    again = client.chat.completions.with_raw_response.create(model=model, messages=HI)
    assert_billed_exactly(gateway, user, [again.headers["x-request-id"]])


def test_an_outage_keeps_every_record_queued_in_order(tmp_path: Path) -> None:
    """A database that refuses everything (here: a table gone) is not any record's fault: nothing is set
    aside, and once it is back every record is written once."""
    import sqlite3

    from app import create_app
    from gateway.domain import accounts, ledger
    from gateway.writer import Record

    path = tmp_path / "outage.db"
    app = create_app({"instance_dir": str(tmp_path), "database_url": f"sqlite:///{path}"})
    rt = app.extensions["relayhouse"]
    with app.app_context():
        user_id = accounts.create_user("outage", "password123").id
        ledger.post(user_id, "topup", 1000)
    for i in range(1, 5):
        rt.writer.record(Record(f"req_out_{i}", user_id, None, None, "chat", "m", cost_micro_usd=i))
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE ledger RENAME TO ledger_away")
    with pytest.raises(Exception, match="ledger"):
        rt.writer.flush()
    assert [r.request_id for r in rt.writer._queue] == [f"req_out_{i}" for i in range(1, 5)]
    journal = tmp_path / "journal"
    assert len(b"".join(p.read_bytes() for p in journal.rglob("*.jsonl")).splitlines()) == 4  # kept
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE ledger_away RENAME TO ledger")
    assert rt.writer.flush() == 4
    assert not list(journal.rglob("*.jsonl"))  # written: the journal lets go of them
    with app.app_context():
        from gateway.domain.models import DeadLetter, UsageLog, User, db

        assert db.session.scalar(db.select(db.func.count()).select_from(DeadLetter)) == 0
        logged = db.session.scalars(db.select(UsageLog.request_id).order_by(UsageLog.id))
        assert list(logged) == [f"req_out_{i}" for i in range(1, 5)]
        assert db.session.get(User, user_id).balance_micro_usd == 1000 - 10
    rt.stop()
