"""Channel choice and channel health.

Candidates: the enabled and half-open channels serving the model for the user's group, highest priority
tier first, weighted random order inside a tier, at most `RETRY_ATTEMPTS` in all. Upstream keys rotate
round-robin.

Health is judged so that one user cannot take a shared channel offline:
- An upstream 429 is about one key's rate limit, not the channel's health: that key cools down for the
  upstream's `Retry-After` (capped) and is skipped meanwhile; it never counts toward disabling.
- A channel is disabled automatically when, within the last `HEALTH_WINDOW` seconds, at least
  `AUTO_DISABLE_AFTER` of its requests failed and they were at least `AUTO_DISABLE_RATE` of them, so a
  few odd requests among many good ones do not trip it. It is disabled at once when its last key is set
  aside (401 or exhausted quota).
- When `gateway.probe` (or an admin's test) gets an answer from an auto-disabled channel it becomes
  `half_open`: one request at a time and at most one a second go through it. `HALF_OPEN_SUCCESSES` in a
  row enable it again; one failure sends it back to `auto_disabled`.

All of it is in-process memory, O(1) per request and without database reads; status changes go through
the runtime's `set_status`, which persists them and reloads the catalog.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.catalog import Catalog, ChannelInfo, Snapshot, UpstreamKey
from gateway.domain.channels import reason
from gateway.neutral import GatewayError

log = logging.getLogger("relayhouse.routing")

COOL_DOWN_DEFAULT_S = 5  # a 429 without Retry-After
COOL_DOWN_MAX_S = 600  # a Retry-After of hours would park a key for good: the probe does not revive those
HALF_OPEN_SUCCESSES = 3
HALF_OPEN_SPACING_S = 1.0


def weighted_order(channels: list[ChannelInfo], rng: random.Random) -> list[ChannelInfo]:
    """Weighted random order without replacement (Efraimidis-Spirakis keys)."""
    if len(channels) == 1:
        return channels
    return sorted(channels, key=lambda c: rng.random() ** (1.0 / c.weight), reverse=True)


class Window:
    """Requests and failures of one channel over the last `size` seconds, in per-second buckets of a
    ring. Running totals are kept as buckets expire, so adding and reading cost O(1) amortized."""

    __slots__ = ("size", "requests", "failures", "_requests", "_failures", "_second")

    def __init__(self, size_s: int) -> None:
        self.size = size_s
        self.requests = 0
        self.failures = 0
        self._requests = [0] * size_s
        self._failures = [0] * size_s
        self._second = 0

    def _advance(self, second: int) -> None:
        gap = second - self._second
        if gap <= 0:
            return
        if gap >= self.size:
            self._requests = [0] * self.size
            self._failures = [0] * self.size
            self.requests = self.failures = 0
        else:
            for s in range(self._second + 1, second + 1):
                i = s % self.size
                self.requests -= self._requests[i]
                self.failures -= self._failures[i]
                self._requests[i] = self._failures[i] = 0
        self._second = second

    def advance(self, now: float) -> None:
        """Forget what fell out of the window by `now`."""
        self._advance(int(now))

    def add(self, failed: bool, now: float) -> None:
        second = int(now)
        self._advance(second)
        i = second % self.size
        self._requests[i] += 1
        self.requests += 1
        if failed:
            self._failures[i] += 1
            self.failures += 1


@dataclass(slots=True)
class Trial:
    """A half-open channel's allowance: one request in flight, one a second, and its run of successes."""

    in_flight: int = 0
    last_start: float = -math.inf
    successes: int = 0
    # set once the trial's outcome was sent to `set_status`; until the catalog changes, nothing more is
    snapshot: Snapshot | None = None


SET_ASIDE_HOLD_S = 60.0  # a rejected key rests in memory this long, whatever the catalog still says


class Router:
    def __init__(
        self,
        catalog: Catalog,
        retry_attempts: int,
        auto_disable_after: int,
        set_status: Callable[[str, int, str, str], None],
        auto_disable_rate: float = 0.5,
        health_window_s: float = 60.0,
    ) -> None:
        self._catalog = catalog
        self._attempts = retry_attempts
        self._auto_disable_after = auto_disable_after
        self._auto_disable_rate = auto_disable_rate
        self._window_s = max(1, round(health_window_s))
        self._set_status = set_status  # (what: "channel" | "key", id, status, reason)
        self._windows: dict[int, Window] = {}
        self._trials: dict[int, Trial] = {}
        self._cool_until: dict[int, float] = {}  # upstream key id -> monotonic time it may serve again
        self._prune_at = 0.0  # when expired cool-downs are next dropped
        self._turns: dict[int, itertools.count] = {}
        self._rng = random.Random()

    # -- choosing ------------------------------------------------------------------------------------
    def candidates(self, group: str, model: str) -> list[ChannelInfo]:
        tiers = self._catalog.snapshot.routes.get((group, model), ())
        now = time.monotonic()
        chosen: list[ChannelInfo] = []
        for tier in tiers:
            chosen.extend(c for c in weighted_order(tier, self._rng) if self._usable(c, now))
            if len(chosen) >= self._attempts:
                break
        return chosen[: self._attempts]

    def _usable(self, channel: ChannelInfo, now: float) -> bool:
        if not channel.keys:
            return False
        if self._cool_until and not any(self._key_ready(k.id, now) for k in channel.keys):
            return False
        return channel.status != "half_open" or self._trial_open(channel, now)

    def _key_ready(self, key_id: int, now: float) -> bool:
        until = self._cool_until.get(key_id)
        if until is None:
            return True
        if until > now:
            return False
        del self._cool_until[key_id]
        return True

    def _trial(self, channel: ChannelInfo) -> Trial:
        trial = self._trials.get(channel.id)
        if trial is None:
            trial = self._trials[channel.id] = Trial()
        elif trial.snapshot is not None and trial.snapshot is not self._catalog.snapshot:
            trial.snapshot = None  # the catalog changed since the outcome was sent: a new trial
            trial.successes = 0
        return trial

    def _trial_open(self, channel: ChannelInfo, now: float) -> bool:
        trial = self._trial(channel)
        return (
            trial.snapshot is None and trial.in_flight == 0 and now - trial.last_start >= HALF_OPEN_SPACING_S
        )

    def pick_key(
        self, channel: ChannelInfo, exclude: frozenset[int] | set[int] = frozenset()
    ) -> UpstreamKey | None:
        keys = channel.keys
        if exclude or self._cool_until:
            now = time.monotonic()
            keys = tuple(k for k in keys if k.id not in exclude and self._key_ready(k.id, now))
            if now >= self._prune_at:  # a key gone from the catalog is never asked about again
                self._cool_until = {k: until for k, until in self._cool_until.items() if until > now}
                self._prune_at = now + 1.0
        if not keys:
            return None
        turn = self._turns.setdefault(channel.id, itertools.count())
        return keys[next(turn) % len(keys)]

    def begin(self, channel: ChannelInfo) -> bool:
        """Claim a request's passage through the channel; False when a half-open channel is busy. Each
        True is followed by exactly one `end`."""
        if channel.status != "half_open":
            return True
        now = time.monotonic()
        if not self._trial_open(channel, now):
            return False
        trial = self._trial(channel)
        trial.in_flight += 1
        trial.last_start = now
        return True

    def end(self, channel: ChannelInfo) -> None:
        if channel.status == "half_open":
            trial = self._trials.get(channel.id)
            if trial is not None and trial.in_flight:
                trial.in_flight -= 1

    def unavailable(self, group: str, model: str) -> GatewayError:
        """Why no candidate is left (the cold path): every key cooling down after the upstream's 429 is a
        429 with the wait; a half-open channel that is busy, a 503 worth retrying in a second."""
        now = time.monotonic()
        cooling: list[float] = []
        half_open = False
        for tier in self._catalog.snapshot.routes.get((group, model), ()):
            for channel in tier:
                if not channel.keys:
                    continue
                waits = [self._cool_until.get(k.id, now) - now for k in channel.keys]
                if min(waits) > 0:
                    cooling.append(min(waits))
                elif channel.status == "half_open":
                    half_open = True
        if cooling and not half_open:
            wait_s = max(1, math.ceil(min(cooling)))
            return GatewayError(
                429,
                f"Every channel for the model `{model}` is rate limited upstream; retry in {wait_s} s.",
                "requests",
                "upstream_rate_limited",
                retry_after=wait_s,
            )
        return GatewayError(
            503,
            f"No channel is available for the model `{model}` right now.",
            "server_error",
            "no_channel_available",
            retry_after=1 if half_open or cooling else None,
        )

    # -- outcomes ------------------------------------------------------------------------------------
    def succeeded(self, channel: ChannelInfo) -> None:
        """The channel answered (a success, or a client's own mistake as the upstream judged it)."""
        if channel.status == "half_open":
            trial = self._trial(channel)
            if trial.snapshot is not None:
                return
            trial.successes += 1
            if trial.successes >= HALF_OPEN_SUCCESSES:
                trial.snapshot = self._catalog.snapshot
                self._windows.pop(channel.id, None)
                self._change("channel", channel.id, "enabled", "")
            return
        self._window(channel.id).add(False, time.monotonic())

    def failed(self, channel: ChannelInfo, key: UpstreamKey, error: GatewayError) -> None:
        """Count a failure that was the upstream's fault (not a client's 4xx)."""
        if error.disables_key:
            current = self._catalog.snapshot.channels.get(channel.id, channel)
            remaining = [k for k in current.keys if k.id != key.id]
            answer = {"status": error.upstream_status, "code": error.code or error.type}
            # skipped here at once: the catalog drops the key only when the change is written and reloaded
            self._cool_until[key.id] = time.monotonic() + SET_ASIDE_HOLD_S
            self._change("key", key.id, "set_aside", reason("key_rejected", **answer))
            if not remaining:
                self._change("channel", channel.id, "auto_disabled", reason("keys_set_aside", **answer))
            return
        if error.upstream_status == 429:
            error.retry_after = self.cool_down(key, error.retry_after)  # what the client is told, too
            return
        if channel.status == "half_open":
            trial = self._trial(channel)
            if trial.snapshot is None:
                trial.snapshot = self._catalog.snapshot
                self._change(
                    "channel", channel.id, "auto_disabled", reason("failed_on_trial", **_last(error))
                )
            return
        window = self._window(channel.id)
        window.add(True, time.monotonic())
        if (
            window.failures >= self._auto_disable_after
            and window.failures >= self._auto_disable_rate * window.requests
        ):
            why = reason(
                "failure_rate",
                failures=window.failures,
                requests=window.requests,
                window_s=self._window_s,
                **_last(error),
            )
            self._windows.pop(channel.id, None)
            self._change("channel", channel.id, "auto_disabled", why)

    def cool_down(self, key: UpstreamKey, retry_after_s: int | None) -> int:
        """Skip `key` for the upstream's Retry-After (a default when it sent none), at least a second and
        at most COOL_DOWN_MAX_S; return the seconds chosen."""
        wait_s = min(max(1, COOL_DOWN_DEFAULT_S if retry_after_s is None else retry_after_s), COOL_DOWN_MAX_S)
        self._cool_until[key.id] = time.monotonic() + wait_s
        return wait_s

    def revived(self, channel: ChannelInfo) -> None:
        """The probe or an admin's test got an answer: an auto-disabled channel goes half-open, and a
        half-open one counts a success."""
        if channel.status == "auto_disabled":
            self._trials.pop(channel.id, None)
            self._change("channel", channel.id, "half_open", reason("answered_test"))
        elif channel.status == "half_open":
            self.succeeded(channel)

    def key_revived(self, key: UpstreamKey) -> None:
        """A set-aside key answered a test: back to work."""
        self._cool_until.pop(key.id, None)
        self._change("key", key.id, "active", "")

    def _window(self, channel_id: int) -> Window:
        window = self._windows.get(channel_id)
        if window is None:
            window = self._windows[channel_id] = Window(self._window_s)
        return window

    def window(self, channel_id: int) -> Window:
        """The channel's requests and failures over the health window, as of now (for the console)."""
        window = self._window(channel_id)
        window.advance(time.monotonic())
        return window

    def _change(self, what: str, ident: int, status: str, why: str) -> None:
        log.warning("%s %s -> %s: %s", what, ident, status, why)
        try:
            self._set_status(what, ident, status, why)
        except Exception:
            log.exception("could not record that %s %s is %s", what, ident, status)


def _last(error: GatewayError) -> dict[str, str | int | None]:
    """The last failure, as a status reason keeps it: the upstream's status, the error's code and message."""
    return {"status": error.upstream_status, "code": error.code, "last": error.message}
