"""Channel choice and channel health.

Candidates: the enabled channels serving the model for the user's group, highest priority tier first,
weighted random order inside a tier, at most `RETRY_ATTEMPTS` in all. Upstream keys rotate round-robin.
Health: consecutive failures per channel; at `AUTO_DISABLE_AFTER` the channel is disabled automatically
with the reason, and at once when its last key is set aside (401 or exhausted quota). `gateway.probe`
brings channels and keys back when they answer again.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable

from gateway.catalog import Catalog, ChannelInfo, UpstreamKey
from gateway.neutral import GatewayError

log = logging.getLogger("relayhouse.routing")


def weighted_order(channels: list[ChannelInfo], rng: random.Random) -> list[ChannelInfo]:
    """Weighted random order without replacement (Efraimidis-Spirakis keys)."""
    if len(channels) == 1:
        return channels
    return sorted(channels, key=lambda c: rng.random() ** (1.0 / c.weight), reverse=True)


class Router:
    def __init__(
        self,
        catalog: Catalog,
        retry_attempts: int,
        auto_disable_after: int,
        set_status: Callable[[str, int, str, str], None],
    ) -> None:
        self._catalog = catalog
        self._attempts = retry_attempts
        self._auto_disable_after = auto_disable_after
        self._set_status = (
            set_status  # (what: "channel" | "key", id, status, reason), runs in its own greenlet
        )
        self._failures: dict[int, int] = {}
        self._turns: dict[int, itertools.count] = {}
        self._rng = random.Random()

    def candidates(self, group: str, model: str) -> list[ChannelInfo]:
        tiers = self._catalog.snapshot.routes.get((group, model), ())
        chosen: list[ChannelInfo] = []
        for tier in tiers:
            chosen.extend(c for c in weighted_order(tier, self._rng) if c.keys)
            if len(chosen) >= self._attempts:
                break
        return chosen[: self._attempts]

    def pick_key(
        self, channel: ChannelInfo, exclude: frozenset[int] | set[int] = frozenset()
    ) -> UpstreamKey | None:
        keys = [k for k in channel.keys if k.id not in exclude] if exclude else channel.keys
        if not keys:
            return None
        turn = self._turns.setdefault(channel.id, itertools.count())
        return keys[next(turn) % len(keys)]

    def succeeded(self, channel: ChannelInfo) -> None:
        if self._failures.get(channel.id):
            self._failures[channel.id] = 0

    def failed(self, channel: ChannelInfo, key: UpstreamKey, error: GatewayError) -> None:
        """Count a failure that was the upstream's fault (not a client's 4xx)."""
        if error.disables_key:
            current = self._catalog.snapshot.channels.get(channel.id, channel)
            remaining = [k for k in current.keys if k.id != key.id]
            reason = f"upstream answered {error.upstream_status} ({error.code or error.type})"
            self._change("key", key.id, "set_aside", reason)
            if not remaining:
                self._change("channel", channel.id, "auto_disabled", f"every key set aside; last: {reason}")
            return
        count = self._failures.get(channel.id, 0) + 1
        self._failures[channel.id] = count
        if count == self._auto_disable_after:
            self._change(
                "channel", channel.id, "auto_disabled", f"{count} consecutive failures; last: {error.message}"
            )

    def _change(self, what: str, ident: int, status: str, reason: str) -> None:
        log.warning("%s %s -> %s: %s", what, ident, status, reason)
        if what == "channel":
            self._failures.pop(ident, None)
        try:
            self._set_status(what, ident, status, reason)
        except Exception:
            log.exception("could not record that %s %s is %s", what, ident, status)
