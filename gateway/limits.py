"""Per-key request, token and concurrency limits.

Request and token windows use the `limits` library (sliding window counters) on a storage chosen by URI:
`memory://` for one process, `redis://...` when `REDIS_URL` is set, so several processes share counts.
Concurrency counts requests in flight: in this process, or with Redis across every process (each
process writes its own count; a dead process's count lapses with its heartbeat).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from gateway.billing import LocalWallets, seconds_to_next_month
from gateway.domain.keys import KeyInfo
from gateway.neutral import GatewayError


@dataclass(slots=True)
class Admission:
    key: KeyInfo
    released: bool = False


def _too_many(message: str, retry_after: float, code: str = "rate_limit_exceeded") -> GatewayError:
    return GatewayError(429, message, "requests", code, retry_after=max(1, math.ceil(retry_after)))


class Limiter:
    def __init__(self, wallets: LocalWallets, storage_uri: str = "memory://", shared: Any = None) -> None:
        self._wallets = wallets
        self._limiter = SlidingWindowCounterRateLimiter(storage_from_string(storage_uri))
        self._inflight: dict[int, int] = {}
        self._shared = shared
        if shared is not None:
            from gateway.shared import LUA_SUM

            self._admit_shared = shared.script(LUA_SUM + _LUA_ADMIT)
            shared.on_lapse(self._push_all)

    def _push_all(self) -> None:
        for key_id, count in self._inflight.items():
            self._shared.redis.hset(self._shared.key("c", key_id), f"c:{self._shared.proc}", count)

    def _retry_after(self, item: RateLimitItem, key_id: str) -> float:
        reset = self._limiter.get_window_stats(item, "key", key_id).reset_time
        return reset - time.time()

    def _hit(self, item: RateLimitItem, key_id: str, what: str) -> None:
        if not self._limiter.hit(item, "key", key_id):
            raise _too_many(f"Rate limit reached for this API key: {what}.", self._retry_after(item, key_id))

    def admit(self, key: KeyInfo) -> Admission:
        """Count one request against the key's limits, or raise 429."""
        if key.tokens_per_month is not None and self._wallets.month_tokens(key) >= key.tokens_per_month:
            raise GatewayError(
                429,
                "This API key has used its monthly token allowance.",
                "tokens",
                "token_cap_reached",
                retry_after=seconds_to_next_month(),
            )
        if key.tokens_per_minute is not None:
            item = RateLimitItemPerMinute(key.tokens_per_minute)
            if not self._limiter.test(item, "tpm", key.counter_id):
                reset = self._limiter.get_window_stats(item, "tpm", key.counter_id).reset_time
                raise _too_many(
                    f"Token rate limit reached for this API key: {key.tokens_per_minute} tokens per minute.",
                    reset - time.time(),
                )
        if key.requests_per_minute is not None:
            self._hit(
                RateLimitItemPerMinute(key.requests_per_minute),
                key.counter_id,
                f"{key.requests_per_minute} per minute",
            )
        if key.requests_per_hour is not None:
            self._hit(
                RateLimitItemPerHour(key.requests_per_hour),
                key.counter_id,
                f"{key.requests_per_hour} per hour",
            )
        if key.max_concurrent is not None:
            inflight = self._inflight.get(key.id, 0)
            if self._shared is None:
                full = inflight >= key.max_concurrent
            else:
                shared = self._shared
                full = not self._admit_shared(
                    [shared.key("c", key.id)],
                    [shared.alive_prefix, shared.proc, key.max_concurrent],
                )
                inflight = self._inflight.get(key.id, 0)  # the script yielded: read it again
            if full:
                raise _too_many(
                    f"Too many requests in flight for this API key (at most {key.max_concurrent}).", 1
                )
            self._inflight[key.id] = inflight + 1
        return Admission(key)

    def release(self, admission: Admission, tokens: int) -> None:
        """The request is over: free its concurrency slot and count the tokens it used."""
        if admission.released:
            return
        admission.released = True
        key = admission.key
        if key.max_concurrent is not None:
            self._inflight[key.id] = max(0, self._inflight.get(key.id, 1) - 1)
            if self._shared is not None:
                self._shared.redis.hincrby(self._shared.key("c", key.id), f"c:{self._shared.proc}", -1)
        if tokens:
            self._wallets.add_tokens(key, tokens)
            if key.tokens_per_minute is not None:
                item = RateLimitItemPerMinute(key.tokens_per_minute)
                # a hit larger than what is left is refused whole: fill the window instead, so that the
                # next request waits for it to slide
                if not self._limiter.hit(item, "tpm", key.counter_id, cost=tokens):
                    remaining = self._limiter.get_window_stats(item, "tpm", key.counter_id).remaining
                    if remaining > 0:
                        self._limiter.hit(item, "tpm", key.counter_id, cost=remaining)


# KEYS: the key's concurrency hash. ARGV: alive prefix, proc, the limit. Counts move by increments.
_LUA_ADMIT = """
if alive_sum(KEYS[1], ARGV[1], {['c:'] = true}) >= tonumber(ARGV[3]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'c:' .. ARGV[2], 1)
return 1
"""
