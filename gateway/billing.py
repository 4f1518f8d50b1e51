"""Balances, reservations and per-key spend, kept in this process behind one small interface.

`reserve` holds an estimated cost before the upstream is called (402 when the wallet or the key's spend
limit cannot cover it); `settle` replaces the hold by the exact cost; `release` drops a hold that cost
nothing.

`LocalWallets` (one process): a user's spendable balance is the balance last read from the database,
minus the charges settled here that the writer has not committed yet, minus the holds of requests in
flight. When the writer commits charges (`committed`), they leave the pending sum and the cached balance
alike, as deltas: a top-up committed meanwhile is never overwritten by an older reading. A top-up made
through the API makes the next request read the balance again (`forget`). So the relay reads the
database once per user, not per request, and no amount is counted twice.

`SharedWallets` (several processes, with Redis): the same calls on shared counters, each step one atomic
Lua script. See its docstring.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.domain.keys import KeyInfo
from gateway.neutral import GatewayError

log = logging.getLogger("relayhouse.billing")
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
    key_tracked: bool = False  # (shared wallets) the key's spend limit holds this amount too


def _add(table: dict[int, int], ident: int, amount: int) -> None:
    value = table.get(ident, 0) + amount
    if value:
        table[ident] = value
    else:
        table.pop(ident, None)


class LocalWallets:
    def __init__(self, load_balance: Callable[[int], int]) -> None:
        self._load_balance = load_balance
        self._stored: dict[int, int] = {}  # balance as last read from the database
        self._loaded_in: dict[int, int] = {}  # the commit round in which each balance was read
        self._commits = 0  # rounds of `committed`
        self._pending: dict[int, int] = {}  # settled here, not yet committed by the writer
        self._held: dict[int, int] = {}
        self._key_spent: dict[int, int] = {}
        self._key_held: dict[int, int] = {}
        self._key_month: dict[int, tuple[str, int]] = {}

    def balance(self, user_id: int) -> int:
        stored = self._stored.get(user_id)
        if stored is None:
            for _ in range(5):  # a reading across a commit round may or may not include its charges
                round_ = self._commits
                stored = self._load_balance(user_id)
                if round_ == self._commits:
                    break
            if user_id in self._stored:  # another reading landed meanwhile
                stored = self._stored[user_id]
            elif round_ == self._commits:
                self._stored[user_id] = stored
                self._loaded_in[user_id] = round_
        return stored - self._pending.get(user_id, 0)

    def reserve(self, key: KeyInfo, amount_micro_usd: int) -> Hold:
        spent = self._key_spent.setdefault(key.id, key.spent_micro_usd)
        key_held = self._key_held.get(key.id, 0)
        if key.spend_limit_micro_usd is not None and spent + key_held >= key.spend_limit_micro_usd:
            raise key_limit_reached()
        if amount_micro_usd > 0:
            available = self.balance(key.user_id) - self._held.get(key.user_id, 0)
            if available < amount_micro_usd:
                raise wallet_too_low()
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
        self,
        charged: dict[int, int],
        balances: dict[int, int] | None = None,
        dropped: dict[int, int] | None = None,
    ) -> None:
        """The writer committed `charged` (per user) and gave up on `dropped` (set aside, never charged).

        Both leave the pending sum. A committed charge also leaves the cached balance, as a delta; a balance
        read during this round may or may not include it already, so it is read again instead. (`balances`,
        the values read in the writer's transaction, are not used: a top-up committed after that reading
        would be hidden by them.)"""
        round_ = self._commits
        for user_id, amount in charged.items():
            self._pending[user_id] = self._pending.get(user_id, 0) - amount
            if user_id in self._stored:
                if self._loaded_in.get(user_id, -1) >= round_:
                    del self._stored[user_id]
                else:
                    self._stored[user_id] -= amount
        for user_id, amount in (dropped or {}).items():
            self._pending[user_id] = self._pending.get(user_id, 0) - amount
        self._commits += 1

    def replayed(self, charged: dict[int, int]) -> None:
        """Charges of an earlier process, written at start from its journal: read those balances again."""
        for user_id in charged:
            self._stored.pop(user_id, None)

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


def key_limit_reached() -> GatewayError:
    return GatewayError(
        402, "This API key has reached its spend limit.", "insufficient_quota", "key_spend_limit_reached"
    )


def wallet_too_low() -> GatewayError:
    return GatewayError(
        402,
        "Your wallet balance is too low for this request. Top up or redeem a code to continue.",
        "insufficient_quota",
        "insufficient_quota",
    )


class SharedWallets:
    """Wallets and key spend shared by several processes through Redis.

    A user's hash `<ns>:u:<id>` holds `bal`, the balance less every charge settled by any process (a live
    counter: `settle` takes the cost off at once), `gen`, a count of commits, and per process `h:<proc>`
    (holds of requests in flight) and `p:<proc>` (charges settled but not yet committed to the database).
    Spendable = `bal` - the live processes' holds. `bal` is (re)built from the database as its balance
    less the live processes' pending charges, only when no commit moved `gen` meanwhile: at first use, and
    after every top-up, so a top-up counts exactly once and the counter heals itself.

    A key with a spend limit has `<ns>:k:<id>` with `spent` (live: from the database at first use, plus
    every settled cost) and `h:<proc>`. It expires when unused, and is then read again.

    Every step is one Lua script, so no two processes can both spend the last dollar: a wallet is never
    overspent by more than the requests in flight were reserved for.
    """

    KEY_TTL_S = 600

    def __init__(
        self,
        shared: Any,
        load_balance: Callable[[int], int],
        load_key_spent: Callable[[int], int],
        load_month_tokens: Callable[[int, str], int],
    ) -> None:
        from gateway.shared import LUA_SUM

        self._shared = shared
        self._load_balance = load_balance
        self._load_key_spent = load_key_spent
        self._load_month_tokens = load_month_tokens
        self._held: dict[int, int] = {}  # this process's own share, written whole again if it lapses
        self._pending: dict[int, int] = {}
        self._key_held: dict[int, int] = {}
        self._reserve = shared.script(LUA_SUM + _LUA_RESERVE)
        self._settle = shared.script(_LUA_SETTLE)
        self._commit = shared.script(_LUA_COMMIT)
        self._rebuild = shared.script(LUA_SUM + _LUA_REBUILD)
        shared.on_lapse(self._push_all)

    def _ukey(self, user_id: int) -> str:
        return self._shared.key("u", user_id)

    def _kkey(self, key_id: int) -> str:
        return self._shared.key("k", key_id)

    def _push_all(self) -> None:
        """The heartbeat had lapsed and the others dropped this process's amounts: write them again."""
        me = self._shared.proc
        pipe = self._shared.redis.pipeline(transaction=False)
        for user_id in set(self._held) | set(self._pending):
            pipe.hset(
                self._ukey(user_id),
                mapping={f"h:{me}": self._held.get(user_id, 0), f"p:{me}": self._pending.get(user_id, 0)},
            )
        for key_id, held in self._key_held.items():
            pipe.hset(self._kkey(key_id), f"h:{me}", held)
        pipe.execute()

    def rebuild(self, user_id: int) -> None:
        """Set `bal` from the database, unless a commit lands in between (then try again)."""
        ukey = self._ukey(user_id)
        for _ in range(10):
            gen = self._shared.redis.hget(ukey, "gen") or b"0"
            stored = self._load_balance(user_id)
            if self._rebuild([ukey], [self._shared.alive_prefix, gen, stored]):
                return
        log.warning("the balance of user %s kept moving while it was read; it is read again later", user_id)

    def balance(self, user_id: int) -> int:
        value = self._shared.redis.hget(self._ukey(user_id), "bal")
        if value is None:
            self.rebuild(user_id)
            value = self._shared.redis.hget(self._ukey(user_id), "bal")
        return int(value or 0)

    def reserve(self, key: KeyInfo, amount_micro_usd: int) -> Hold:
        limit = key.spend_limit_micro_usd
        keys = [self._ukey(key.user_id), self._kkey(key.id)]
        args = [
            self._shared.alive_prefix,
            self._shared.proc,
            amount_micro_usd,
            -1 if limit is None else limit,
            self.KEY_TTL_S,
        ]
        for _ in range(3):
            verdict = self._reserve(keys, args)
            if verdict == -1:
                self.rebuild(key.user_id)
            elif verdict == -2:
                self._shared.redis.hsetnx(keys[1], "spent", self._load_key_spent(key.id))
                self._shared.redis.expire(keys[1], self.KEY_TTL_S)
            else:
                break
        if verdict == 2:
            raise key_limit_reached()
        if verdict != 0:
            raise wallet_too_low()
        hold = Hold(key.user_id, key.id, amount_micro_usd)
        if amount_micro_usd > 0:  # this process's own share, kept to be written again if it lapses
            _add(self._held, key.user_id, amount_micro_usd)
            if limit is not None:
                _add(self._key_held, key.id, amount_micro_usd)
                hold.key_tracked = True
        return hold

    def _finish(self, hold: Hold, cost: int) -> None:
        hold.settled = True
        amount = hold.amount_micro_usd
        if amount:
            _add(self._held, hold.user_id, -amount)
            if hold.key_tracked:
                _add(self._key_held, hold.key_id, -amount)
        if cost:
            _add(self._pending, hold.user_id, cost)
        if amount or cost:
            self._settle(
                [self._ukey(hold.user_id), self._kkey(hold.key_id)],
                [self._shared.proc, cost, amount, 1 if hold.key_tracked else 0],
            )

    def settle(self, hold: Hold, cost_micro_usd: int) -> None:
        if not hold.settled:
            self._finish(hold, cost_micro_usd)

    def release(self, hold: Hold) -> None:
        if not hold.settled:
            self._finish(hold, 0)

    def forget(self, user_id: int) -> None:
        """A top-up or an adjustment was committed: rebuild the shared balance from the database."""
        self.rebuild(user_id)

    def committed(
        self,
        charged: dict[int, int],
        balances: dict[int, int] | None = None,
        dropped: dict[int, int] | None = None,
    ) -> None:
        """The writer committed `charged` and set `dropped` aside: they leave this process's pending sum;
        a dropped charge, never written, goes back to `bal`."""
        dropped = dropped or {}
        users = set(charged) | set(dropped)
        if not users:
            return
        keys, args = [], [self._shared.proc]
        for user_id in users:
            left = charged.get(user_id, 0) + dropped.get(user_id, 0)
            _add(self._pending, user_id, -left)
            keys.append(self._ukey(user_id))
            args += [left, dropped.get(user_id, 0)]
        self._commit(keys, args)

    def replayed(self, charged: dict[int, int]) -> None:
        """Charges of an earlier process, written at start from its journal: `bal` took them off when they
        were settled, so only a rebuilt balance needs them, and a rebuild reads them from the database."""

    # monthly token counts per key, for `tokens_per_month`: one counter per key and month
    def _month_key(self, key: KeyInfo) -> str:
        return self._shared.key("t", key.id, current_month())

    def month_tokens(self, key: KeyInfo) -> int:
        name = self._month_key(key)
        value = self._shared.redis.get(name)
        if value is None:
            self._shared.redis.set(name, self._load_month_tokens(key.id, current_month()), nx=True, ex=3600)
            value = self._shared.redis.get(name)
        return int(value or 0)

    def add_tokens(self, key: KeyInfo, tokens: int) -> None:
        if key.tokens_per_month is None:
            return  # counted only where a cap needs it; the database keeps every key's count
        self.month_tokens(key)
        name = self._month_key(key)
        pipe = self._shared.redis.pipeline(transaction=False)
        pipe.incrby(name, tokens)
        pipe.expire(name, 3600)
        pipe.execute()


# Own amounts move by increments (HINCRBY), which commute: a process's concurrent scripts may arrive in
# any order. KEYS: user hash, key hash. ARGV: alive prefix, proc, amount, key limit (-1: none), key TTL.
# Returns 0 (held), 1 (wallet too low), 2 (key limit reached), -1/-2 (read the user/key first).
_LUA_RESERVE = """
local bal = redis.call('HGET', KEYS[1], 'bal')
if not bal then return -1 end
local limit = tonumber(ARGV[4])
local kinds = {['h:'] = true}
if limit >= 0 then
  local spent = redis.call('HGET', KEYS[2], 'spent')
  if not spent then return -2 end
  if tonumber(spent) + alive_sum(KEYS[2], ARGV[1], kinds) >= limit then return 2 end
end
local amount = tonumber(ARGV[3])
if amount > 0 then
  if tonumber(bal) - alive_sum(KEYS[1], ARGV[1], kinds) < amount then return 1 end
  redis.call('HINCRBY', KEYS[1], 'h:' .. ARGV[2], amount)
  if limit >= 0 then
    redis.call('HINCRBY', KEYS[2], 'h:' .. ARGV[2], amount)
    redis.call('EXPIRE', KEYS[2], ARGV[5])
  end
end
return 0
"""

# KEYS: user hash, key hash. ARGV: proc, cost, amount held, key tracked (0/1).
_LUA_SETTLE = """
local cost = tonumber(ARGV[2])
local held = tonumber(ARGV[3])
if cost ~= 0 and redis.call('HEXISTS', KEYS[1], 'bal') == 1 then
  redis.call('HINCRBY', KEYS[1], 'bal', -cost)
end
if held ~= 0 then redis.call('HINCRBY', KEYS[1], 'h:' .. ARGV[1], -held) end
if cost ~= 0 then redis.call('HINCRBY', KEYS[1], 'p:' .. ARGV[1], cost) end
if ARGV[4] == '1' then
  if cost ~= 0 and redis.call('HEXISTS', KEYS[2], 'spent') == 1 then
    redis.call('HINCRBY', KEYS[2], 'spent', cost)
  end
  if held ~= 0 then redis.call('HINCRBY', KEYS[2], 'h:' .. ARGV[1], -held) end
end
return 0
"""

# KEYS: user hashes. ARGV: proc, then per user: the amount leaving pending, the part of it dropped
# (never written: back to bal).
_LUA_COMMIT = """
for i, key in ipairs(KEYS) do
  local dropped = tonumber(ARGV[2 * i + 1])
  if dropped ~= 0 and redis.call('HEXISTS', key, 'bal') == 1 then
    redis.call('HINCRBY', key, 'bal', dropped)
  end
  redis.call('HINCRBY', key, 'p:' .. ARGV[1], -tonumber(ARGV[2 * i]))
  redis.call('HINCRBY', key, 'gen', 1)
end
return 0
"""

# KEYS: user hash. ARGV: alive prefix, gen seen before reading the database, the database's balance.
_LUA_REBUILD = """
local gen = redis.call('HGET', KEYS[1], 'gen') or '0'
if gen ~= ARGV[2] then return 0 end
local pending = alive_sum(KEYS[1], ARGV[1], {['p:'] = true})
redis.call('HSET', KEYS[1], 'bal', tonumber(ARGV[3]) - pending)
return 1
"""
