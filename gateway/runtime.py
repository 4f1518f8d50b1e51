"""The runtime: the long-lived objects of one gateway process, built once in `create_app` and kept in
`app.extensions["relayhouse"]`. Management calls go through its `changed_*` methods so the relay's
in-memory state follows every change.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from flask import Flask

from gateway.billing import LocalWallets
from gateway.catalog import Catalog
from gateway.config import Settings
from gateway.domain import channels as channel_store
from gateway.domain.crypto import Vault
from gateway.domain.models import User, db
from gateway.journal import Journal
from gateway.limits import Limiter
from gateway.routing import Router
from gateway.upstream import Pools
from gateway.writer import Writer

log = logging.getLogger("relayhouse")


class Runtime:
    def __init__(self, app: Flask, settings: Settings, vault: Vault) -> None:
        self.app = app
        self.settings = settings
        self.started_at = time.time()
        self.catalog = Catalog(vault, app.app_context)
        self.wallets = LocalWallets(self._load_balance)
        storage = settings.redis_url or "memory://"
        self.limiter = Limiter(self.wallets, storage)
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
        self.probe: Any = None

    def _load_balance(self, user_id: int) -> int:
        with self.app.app_context():
            balance = db.session.scalar(db.select(User.balance_micro_usd).where(User.id == user_id))
            db.session.rollback()
        return balance or 0

    def _set_status(self, what: str, ident: int, status: str, reason: str) -> None:
        with self.app.app_context():
            if what == "channel":
                channel_store.set_status(ident, status, reason)
            else:
                channel_store.set_key_status(ident, status, reason)
            self.catalog.reload()

    # -- called after a management change is committed ---------------------------------------------
    def changed_catalog(self) -> None:
        self.catalog.reload()

    def changed_keys(self, key_id: int | None = None, user_id: int | None = None) -> None:
        self.catalog.forget_keys(key_id=key_id, user_id=user_id)

    def credited(self, user_id: int) -> None:
        self.wallets.forget(user_id)

    def stop(self) -> None:
        if self.probe is not None:
            self.probe.kill()
        self.writer.stop()
        self.pools.close()
