"""The in-memory snapshot the relay reads instead of the database: channels with their decrypted keys,
prices, group multipliers and settings (rebuilt whole on every change), and API keys (loaded on first
use, then cached until a change forgets them).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from gateway.domain.crypto import Vault, hash_secret
from gateway.domain.keys import KeyInfo, load_key_info
from gateway.domain.models import Channel, ChannelKey, Group, Price, Setting, db
from gateway.domain.pricing import PriceInfo, parse_multiplier

log = logging.getLogger("relayhouse.catalog")
NEGATIVE_TTL_S = 10.0


@dataclass(slots=True, frozen=True)
class UpstreamKey:
    id: int
    secret: str


@dataclass(slots=True, frozen=True)
class ChannelInfo:
    id: int
    name: str
    type: str
    base_url: str
    models: frozenset[str]
    model_mapping: dict[str, str]
    groups: frozenset[str]
    priority: int
    weight: int
    status: str
    timeout_s: float | None
    test_model: str
    keys: tuple[UpstreamKey, ...]  # the active ones
    set_aside_keys: tuple[UpstreamKey, ...] = ()
    created: int = 0  # epoch seconds, shown as the model's `created`
    settings: dict[str, Any] = field(default_factory=dict)  # per-type options (see domain.channels)

    def upstream_model(self, model: str) -> str:
        return self.model_mapping.get(model, model)


@dataclass(slots=True)
class Snapshot:
    channels: dict[int, ChannelInfo] = field(default_factory=dict)
    # (group, model) -> tiers of enabled and half-open channels, highest priority first
    routes: dict[tuple[str, str], list[list[ChannelInfo]]] = field(default_factory=dict)
    # (group, model) pairs served by some channel in any state: known models, for 404 versus 503
    known: set[tuple[str, str]] = field(default_factory=set)
    prices: dict[str, PriceInfo] = field(default_factory=dict)
    multipliers: dict[str, Fraction | None] = field(default_factory=dict)  # None: invalid, refused
    settings: dict[str, Any] = field(default_factory=dict)

    def models_for(self, group: str) -> list[str]:
        return sorted(m for g, m in self.known if g == group)


class Catalog:
    def __init__(self, vault: Vault, app_context: Callable[[], AbstractContextManager[Any]]) -> None:
        self.vault = vault
        self._app_context = app_context  # the relay runs outside Flask: key lookups open their own
        self.snapshot = Snapshot()
        self._generation = 0
        self._keys: dict[str, KeyInfo] = {}
        self._missing: dict[str, float] = {}

    # -- channels, prices, groups, settings --------------------------------------------------------
    def reload(self) -> None:
        """Rebuild the whole snapshot from the database (needs an app context)."""
        self._generation += 1
        generation = self._generation  # reloads can overlap (database reads yield): the last one begun wins
        snap = Snapshot()
        keys: dict[int, list[ChannelKey]] = {}
        flat: dict[tuple[str, str], list[ChannelInfo]] = {}
        for key in db.session.scalars(db.select(ChannelKey).order_by(ChannelKey.id)):
            keys.setdefault(key.channel_id, []).append(key)
        for row in db.session.scalars(db.select(Channel).order_by(Channel.id)):
            own = keys.get(row.id, [])
            info = ChannelInfo(
                id=row.id,
                name=row.name,
                type=row.type,
                base_url=row.base_url,
                models=frozenset(row.models or ()),
                model_mapping=dict(row.model_mapping or {}),
                groups=frozenset(row.groups or ("default",)),
                priority=row.priority,
                weight=max(1, row.weight),
                status=row.status,
                timeout_s=row.timeout_s,
                test_model=row.test_model,
                created=int(row.created_at.replace(tzinfo=dt.UTC).timestamp()),
                settings=dict(row.settings or {}),
                keys=tuple(
                    UpstreamKey(k.id, self.vault.decrypt(k.key_encrypted))
                    for k in own
                    if k.status == "active"
                ),
                set_aside_keys=tuple(
                    UpstreamKey(k.id, self.vault.decrypt(k.key_encrypted))
                    for k in own
                    if k.status != "active"
                ),
            )
            snap.channels[info.id] = info
            for group in info.groups:
                for model in info.models:
                    snap.known.add((group, model))
                    if info.status in ("enabled", "half_open"):
                        flat.setdefault((group, model), []).append(info)
        for route, infos in flat.items():
            priorities = sorted({info.priority for info in infos}, reverse=True)
            snap.routes[route] = [[info for info in infos if info.priority == p] for p in priorities]
        for price in db.session.scalars(db.select(Price)):
            snap.prices[price.model] = PriceInfo(
                price.model,
                price.input_micro_per_mtok,
                price.output_micro_per_mtok,
                price.cached_input_micro_per_mtok,
                price.per_request_micro,
                price.cache_write_micro_per_mtok,
            )
        for group in db.session.scalars(db.select(Group)):
            try:
                snap.multipliers[group.name] = parse_multiplier(group.multiplier)
            except ValueError as exc:  # stored before the API bounded it: refuse that group's requests
                log.error("%s; requests of group %r are refused until an admin fixes it", exc, group.name)
                snap.multipliers[group.name] = None
        for setting in db.session.scalars(db.select(Setting)):
            snap.settings[setting.key] = setting.value
        db.session.rollback()
        if generation == self._generation:
            self.snapshot = snap

    # -- API keys ----------------------------------------------------------------------------------
    def key(self, plain: str) -> KeyInfo | None:
        key_hash = hash_secret(plain)
        info = self._keys.get(key_hash)
        if info is not None:
            return info
        missed = self._missing.get(key_hash)
        if missed is not None and time.monotonic() - missed < NEGATIVE_TTL_S:
            return None
        with self._app_context():
            info = load_key_info(key_hash)
        if info is None:
            if len(self._missing) > 10_000:
                self._missing.clear()
            self._missing[key_hash] = time.monotonic()
            return None
        self._keys[key_hash] = info
        return info

    def forget_keys(self, key_id: int | None = None, user_id: int | None = None) -> None:
        """Drop cached keys after a change to a key or its user; the next request reloads them."""
        self._missing.clear()
        for key_hash, info in list(self._keys.items()):
            if key_id is None and user_id is None or info.id == key_id or info.user_id == user_id:
                del self._keys[key_hash]
