"""The runtime: the long-lived objects of one gateway process, built once in `create_app` and kept in
`app.extensions["relayhouse"]`. Management calls go through its `changed_*` methods so the relay's
in-memory state follows every change.

With `REDIS_URL`, several processes share wallets, key limits and channel health: each change made
through one process is published, and every other process applies it at once (`apply_notice`). Each
process also reloads its catalog and forgets its cached keys every `RELOAD_S` seconds, the safety net
for a notice that was missed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import gevent
from flask import Flask

from gateway.billing import LocalWallets, SharedWallets
from gateway.catalog import Catalog
from gateway.config import Settings
from gateway.domain import channels as channel_store
from gateway.domain.crypto import Vault
from gateway.domain.models import ApiKey, User, db
from gateway.journal import Journal
from gateway.limits import Limiter
from gateway.routing import Router
from gateway.upstream import Pools
from gateway.writer import Writer

log = logging.getLogger("relayhouse")
RELOAD_S = 30.0


class Runtime:
    def __init__(self, app: Flask, settings: Settings, vault: Vault) -> None:
        self.app = app
        self.settings = settings
        self.started_at = time.time()
        self.catalog = Catalog(vault, app.app_context)
        self.shared: Any = None
        if settings.redis_url:
            from gateway.shared import Shared

            self.shared = Shared(settings.redis_url, "pending")  # named at start, from the database
            self.wallets: Any = SharedWallets(
                self.shared, self._load_balance, self._load_key_spent, self._load_month_tokens
            )
        else:
            self.wallets = LocalWallets(self._load_balance)
        storage = settings.redis_url or "memory://"
        self.limiter = Limiter(self.wallets, storage, self.shared)
        self.router = Router(
            self.catalog,
            settings.retry_attempts,
            settings.auto_disable_after,
            self._set_status,
            auto_disable_rate=settings.auto_disable_rate,
            health_window_s=settings.health_window_s,
        )
        self.pools = Pools()
        journal = Journal(Path(settings.instance_dir) / "journal")
        self.writer = Writer(app.app_context, settings.flush_interval_s, self.wallets.committed, journal)

    def _load_balance(self, user_id: int) -> int:
        with self.app.app_context():
            balance = db.session.scalar(db.select(User.balance_micro_usd).where(User.id == user_id))
            db.session.rollback()
        return balance or 0

    def _load_key_spent(self, key_id: int) -> int:
        with self.app.app_context():
            spent = db.session.scalar(db.select(ApiKey.spent_micro_usd).where(ApiKey.id == key_id))
            db.session.rollback()
        return spent or 0

    def _load_month_tokens(self, key_id: int, month: str) -> int:
        with self.app.app_context():
            row = db.session.execute(
                db.select(ApiKey.month, ApiKey.month_tokens).where(ApiKey.id == key_id)
            ).first()
            db.session.rollback()
        return row[1] if row is not None and row[0] == month else 0

    def start(self, deployment_id: str) -> None:
        """Start the background work: the writer, the probe, and with Redis the shared notices."""
        if self.shared is not None:
            self.shared.ns = "rh:" + deployment_id
        self.writer.start()
        if self.shared is not None:
            self.shared.start(self.apply_notice)
            self.apply_notice("all")  # what changed between the first load and the subscription
        self._background = [
            gevent.spawn(self._reload_forever),
            gevent.spawn(self._probe_forever),
        ]

    def _reload_forever(self) -> None:
        while True:
            gevent.sleep(RELOAD_S)
            try:
                self.apply_notice("all")
            except Exception:
                log.exception("periodic reload failed")

    def _probe_forever(self) -> None:
        from gateway import probe

        interval = self.settings.probe_interval_s
        while True:
            gevent.sleep(interval)
            if self.shared is not None and not self.shared.lead("probe", interval * 3):
                continue  # another process probes this round
            try:
                probe.probe_once(self)
            except Exception:
                log.exception("probe round failed")

    def apply_notice(self, message: str) -> None:
        """A change another process made and published."""
        what, _, arg = message.partition(":")
        if what == "catalog":
            with self.app.app_context():
                self.catalog.reload()
        elif what == "key":
            self.catalog.forget_keys(key_id=int(arg))
        elif what == "user":
            self.catalog.forget_keys(user_id=int(arg))
        elif what == "keys":
            self.catalog.forget_keys()
        elif what == "all":
            with self.app.app_context():
                self.catalog.reload()
            self.catalog.forget_keys()

    def _publish(self, message: str) -> None:
        if self.shared is not None:
            self.shared.publish(message)

    def _set_status(self, what: str, ident: int, status: str, reason: str) -> None:
        with self.app.app_context():
            if what == "channel":
                channel_store.set_status(ident, status, reason)
            else:
                channel_store.set_key_status(ident, status, reason)
            self.catalog.reload()
        self._publish("catalog")

    # -- called after a management change is committed ---------------------------------------------
    def changed_catalog(self) -> None:
        self.catalog.reload()
        self._publish("catalog")

    def changed_keys(self, key_id: int | None = None, user_id: int | None = None) -> None:
        self.catalog.forget_keys(key_id=key_id, user_id=user_id)
        if key_id is not None:
            self._publish(f"key:{key_id}")
        elif user_id is not None:
            self._publish(f"user:{user_id}")
        else:
            self._publish("keys")

    def credited(self, user_id: int) -> None:
        """A top-up, redemption or adjustment was committed. With Redis the shared balance is rebuilt at
        once, which every process reads; without, this process reads it again."""
        self.wallets.forget(user_id)

    def stop(self) -> None:
        gevent.killall(getattr(self, "_background", []), block=False)
        self.writer.stop()
        if self.shared is not None:
            self.shared.stop()
        self.pools.close()
