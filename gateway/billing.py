"""Balances, reservations and per-key spend, kept in this process behind one small interface.

`reserve` holds an estimated cost before the upstream is called (402 when the wallet or the key's spend
limit cannot cover it); `settle` replaces the hold by the exact cost; `release` drops a hold that cost
nothing. A user's spendable balance is the balance last read from the database, minus the charges
settled here that the writer has not committed yet, minus the holds of requests in flight. The writer
hands back the committed balances (`committed`); a top-up elsewhere makes the next request read the
balance again (`forget`). So the relay reads the database once per user, not per request, and no amount
can be counted twice. The multi-process form of this interface will keep the same calls on a shared
store.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.domain.keys import KeyInfo
from gateway.neutral import GatewayError

_month: list = ["", 0.0]  # the current month's label, and when it ends (epoch seconds)


def current_month() -> str:
    """`YYYY-MM` in UTC; formatted once a month, not on every request."""
    now = time.time()
    if now >= _month[1] or now < _month[1] - 32 * 86400:
        t = time.gmtime(now)
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        _month[0] = f"{t.tm_year:04d}-{t.tm_mon:02d}"
        _month[1] = float(calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0)))
    return _month[0]


def seconds_to_next_month() -> int:
    current_month()
    return max(1, int(_month[1] - time.time()))


@dataclass(slots=True)
class Hold:
    user_id: int
    key_id: int
    amount_micro_usd: int
    settled: bool = False


class LocalWallets:
    def __init__(self, load_balance: Callable[[int], int]) -> None:
        self._load_balance = load_balance
        self._stored: dict[int, int] = {}  # balance as last read from the database
        self._pending: dict[int, int] = {}  # settled here, not yet committed by the writer
        self._held: dict[int, int] = {}
        self._key_spent: dict[int, int] = {}
        self._key_held: dict[int, int] = {}
        self._key_month: dict[int, tuple[str, int]] = {}

    def balance(self, user_id: int) -> int:
        stored = self._stored.get(user_id)
        if stored is None:
            stored = self._stored[user_id] = self._load_balance(user_id)
        return stored - self._pending.get(user_id, 0)

    def reserve(self, key: KeyInfo, amount_micro_usd: int) -> Hold:
        spent = self._key_spent.setdefault(key.id, key.spent_micro_usd)
        key_held = self._key_held.get(key.id, 0)
        if key.spend_limit_micro_usd is not None and spent + key_held >= key.spend_limit_micro_usd:
            raise GatewayError(
                402,
                "This API key has reached its spend limit.",
                "insufficient_quota",
                "key_spend_limit_reached",
            )
        if amount_micro_usd > 0:
            available = self.balance(key.user_id) - self._held.get(key.user_id, 0)
            if available < amount_micro_usd:
                raise GatewayError(
                    402,
                    "Your wallet balance is too low for this request. Top up or redeem a code to continue.",
                    "insufficient_quota",
                    "insufficient_quota",
                )
            self._held[key.user_id] = self._held.get(key.user_id, 0) + amount_micro_usd
            self._key_held[key.id] = key_held + amount_micro_usd
        return Hold(key.user_id, key.id, amount_micro_usd)

    def _drop(self, hold: Hold) -> None:
        if hold.amount_micro_usd:
            self._held[hold.user_id] -= hold.amount_micro_usd
            self._key_held[hold.key_id] -= hold.amount_micro_usd
        hold.settled = True

    def settle(self, hold: Hold, cost_micro_usd: int) -> None:
        if hold.settled:
            return
        self._drop(hold)
        if cost_micro_usd:
            self._pending[hold.user_id] = self._pending.get(hold.user_id, 0) + cost_micro_usd
            self._key_spent[hold.key_id] = self._key_spent.get(hold.key_id, 0) + cost_micro_usd

    def release(self, hold: Hold) -> None:
        if not hold.settled:
            self._drop(hold)

    def forget(self, user_id: int) -> None:
        """The balance changed outside the relay (a top-up, a redemption, an adjustment): read it again."""
        self._stored.pop(user_id, None)

    def committed(
        self, charged: dict[int, int], balances: dict[int, int], dropped: dict[int, int] | None = None
    ) -> None:
        """The writer committed these charges; `balances` are the users' balances read in that transaction.
        `dropped` charges were set aside unwritten: they leave the pending sum too."""
        for user_id, amount in charged.items():
            self._pending[user_id] = self._pending.get(user_id, 0) - amount
        for user_id, amount in (dropped or {}).items():
            self._pending[user_id] = self._pending.get(user_id, 0) - amount
        self._stored.update(balances)

    # monthly token counts per key, for `tokens_per_month`
    def month_tokens(self, key: KeyInfo) -> int:
        month = current_month()
        seen = self._key_month.get(key.id)
        if seen is None:
            seen = (key.month, key.month_tokens) if key.month == month else (month, 0)
        elif seen[0] != month:
            seen = (month, 0)
        self._key_month[key.id] = seen
        return seen[1]

    def add_tokens(self, key: KeyInfo, tokens: int) -> None:
        used = self.month_tokens(key)
        self._key_month[key.id] = (current_month(), used + tokens)
