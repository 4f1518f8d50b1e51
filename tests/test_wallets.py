"""The relay's wallet cache on its own: the order in which a top-up, a reading of the balance and the
writer's commit land must never hide money or count it twice. The balance store here is a plain dict that
plays the database's part, moved exactly as the writer and the ledger move it."""

from __future__ import annotations

import pytest

from gateway.billing import LocalWallets
from gateway.domain.keys import KeyInfo
from gateway.neutral import GatewayError


def key_of(user_id: int) -> KeyInfo:
    return KeyInfo(
        id=user_id * 10,
        user_id=user_id,
        status="active",
        user_status="active",
        group="default",
        expires_at=None,
        spend_limit_micro_usd=None,
        spent_micro_usd=0,
        month="",
        month_tokens=0,
        models=None,
        networks=None,
        requests_per_minute=None,
        requests_per_hour=None,
        tokens_per_minute=None,
        tokens_per_month=None,
        max_concurrent=None,
    )


def test_a_top_up_committed_while_the_writer_commits_is_not_hidden() -> None:
    stored = {1: 1_000}
    wallets = LocalWallets(lambda user_id: stored[user_id])
    key = key_of(1)
    hold = wallets.reserve(key, 100)
    wallets.settle(hold, 100)  # pending 100
    assert wallets.balance(1) == 900

    # the writer's transaction charges 100 and reads the balance back: 900
    stored[1] -= 100
    read_in_transaction = {1: stored[1]}
    # before its callback runs, an admin tops up 5,000; the relay forgets, and a request reads it again
    stored[1] += 5_000
    wallets.forget(1)
    assert wallets.balance(1) == 5_900 - 100  # the reading includes the charge; pending still counts it
    wallets.committed({1: 100}, read_in_transaction, {})
    assert wallets.balance(1) == 5_900  # not 900: the top-up stays visible
    wallets.reserve(key, 5_000)  # and spendable


def test_a_charge_committed_before_a_cached_reading_counts_once() -> None:
    stored = {1: 1_000}
    wallets = LocalWallets(lambda user_id: stored[user_id])
    key = key_of(1)
    assert wallets.balance(1) == 1_000  # read before the writer's next round
    hold = wallets.reserve(key, 300)
    wallets.settle(hold, 300)
    stored[1] -= 300  # the writer commits it
    wallets.committed({1: 300}, {1: stored[1]}, {})
    assert wallets.balance(1) == 700
    # a dropped (set-aside) charge leaves pending without touching the balance
    hold = wallets.reserve(key, 50)
    wallets.settle(hold, 50)
    assert wallets.balance(1) == 650
    wallets.committed({}, {}, {1: 50})
    assert wallets.balance(1) == 700
    with pytest.raises(GatewayError) as refused:
        wallets.reserve(key, 701)
    assert refused.value.status == 402
