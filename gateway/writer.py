"""The writer: usage log rows and their charges, committed in batches by one background greenlet.

Every `FLUSH_INTERVAL` seconds it drains the queue and writes, in one transaction per batch of at most
BATCH_ROWS records: the log rows, one ledger entry per charged row, the wallet balances, each key's
spend and monthly tokens, and channel counters. The database work runs on a native thread, so that the
driver's I/O never stalls the requests in flight. Each ledger entry commits with its log row, so money and
logs cannot drift: a crash loses at most one interval and never counts twice (`request_id` is unique in
both tables). With `FLUSH_INTERVAL=0` the request writes through itself.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent
from gevent.event import Event
from gevent.threadpool import ThreadPool
from sqlalchemy import Table, bindparam, case, select, update
from sqlalchemy.exc import IntegrityError

from gateway.billing import current_month
from gateway.domain.models import ApiKey, Channel, LedgerEntry, UsageLog, User, db

log = logging.getLogger("relayhouse.writer")
BATCH_ROWS = 1000


@dataclass(slots=True)
class Record:
    request_id: str
    user_id: int | None
    key_id: int | None
    channel_id: int | None
    endpoint: str
    model: str
    upstream_model: str = ""
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_micro_usd: int = 0
    usage_source: str = "upstream"
    latency_ms: int = 0
    ttft_ms: int | None = None
    status: int = 200
    error: str = ""
    attempts: int = 1
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))
    # channels tried before the one that answered, with their errors, for channel health counters
    failed_channels: list[tuple[int, str]] = field(default_factory=list)
    channel_ok: bool = (
        False  # the final channel answered (the request may still fail later, e.g. a cut stream)
    )

    def row(self) -> tuple:
        return tuple(getattr(self, name) for name in LOG_COLUMNS)


LOG_COLUMNS = (
    "request_id",
    "created_at",
    "user_id",
    "key_id",
    "channel_id",
    "endpoint",
    "model",
    "upstream_model",
    "stream",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_micro_usd",
    "usage_source",
    "latency_ms",
    "ttft_ms",
    "status",
    "error",
    "attempts",
)


class Writer:
    def __init__(
        self,
        app_context: Callable,
        interval_s: float,
        on_committed: Callable[[dict[int, int], dict[int, int]], None] = lambda charged, balances: None,
    ) -> None:
        self._app_context = app_context
        self.interval_s = interval_s
        self._on_committed = on_committed  # (charged per user, their balances after the commit)
        self._queue: list[Record] = []
        self._wake = Event()
        self._stopping = False
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if self.interval_s > 0 and self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def record(self, record: Record) -> None:
        self._queue.append(record)
        if self.interval_s <= 0:
            self.flush()

    def _run(self) -> None:
        threads = gevent.get_hub().threadpool
        while not self._stopping:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self.flush(threads)
            except Exception:  # keep the batch for the next round; never lose or double it
                log.exception("flush failed; retrying in %ss", self.interval_s)

    def stop(self) -> None:
        """Flush everything that is queued (SIGTERM, shutdown, tests)."""
        self._stopping = True
        self._wake.set()
        if self._greenlet is not None:
            self._greenlet.join(timeout=10)
            self._greenlet = None
        while self._queue:
            self.flush()

    def flush(self, threads: ThreadPool | None = None) -> int:
        """Write what is queued now, in transactions of at most BATCH_ROWS records. Records that arrive
        meanwhile wait for the next flush, so a busy gateway writes a few large batches a second rather
        than a stream of small ones.

        With `threads`, the database work runs on a native thread: the driver's C code and the disk's
        fsync release the GIL, so requests keep moving meanwhile. The in-memory bookkeeping
        (`on_committed`) stays on this greenlet. Without, the greenlet yields between transactions.
        """
        pending, self._queue = self._queue, []
        written = 0
        try:
            while pending:
                batch = pending[:BATCH_ROWS]
                if threads is None:
                    charged, balances, count = self._write_once(batch)
                else:
                    charged, balances, count = threads.apply(self._write_once, (batch,))
                del pending[: len(batch)]
                self._on_committed(charged, balances)
                written += count
                if pending and threads is None:
                    gevent.sleep(0)
        finally:
            self._queue[:0] = pending  # what was not written goes back, ahead of newer records
        return written

    def _write_once(self, batch: list[Record]) -> tuple[dict[int, int], dict[int, int], int]:
        with self._app_context():
            try:
                charged, balances = write_batch(batch)
            except IntegrityError:
                # a commit whose answer was lost may have landed: write only the rows not yet there, and
                # count the landed ones as committed
                db.session.rollback()
                ids = [r.request_id for r in batch]
                done = set(
                    db.session.scalars(select(UsageLog.request_id).where(UsageLog.request_id.in_(ids)))
                )
                landed = [r for r in batch if r.request_id in done]
                batch = [r for r in batch if r.request_id not in done]
                charged, balances = write_batch(batch) if batch else ({}, {})
                for user_id, amount in _charges_per_user(landed).items():
                    charged[user_id] = charged.get(user_id, 0) + amount
        return charged, balances, len(batch)


def _charges_per_user(batch: list[Record]) -> dict[int, int]:
    per_user: dict[int, int] = defaultdict(int)
    for r in batch:
        if r.cost_micro_usd and r.user_id is not None:
            per_user[r.user_id] += r.cost_micro_usd
    return per_user


def _insert_many(table: Table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """One executemany straight to the driver: at a thousand rows a second, SQLAlchemy's per-row parameter
    handling would cost more than the database. Values still pass the columns' own bind processors, so
    they are stored exactly as the ORM stores them."""
    connection = db.session.connection()
    dialect = connection.dialect
    processors = [table.c[name].type.bind_processor(dialect) for name in columns]
    if any(processors):
        rows = [tuple(p(v) if p else v for p, v in zip(processors, row, strict=True)) for row in rows]
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    connection.exec_driver_sql(sql, rows)


LEDGER_COLUMNS = ("user_id", "kind", "amount_micro_usd", "reason", "request_id", "created_at")


def write_batch(batch: list[Record]) -> tuple[dict[int, int], dict[int, int]]:
    """Commit one batch; return the charges per user and those users' balances after them."""
    session = db.session
    month = current_month()
    _insert_many(UsageLog.__table__, LOG_COLUMNS, [r.row() for r in batch])
    per_user = _charges_per_user(batch)
    if per_user:
        _insert_many(
            LedgerEntry.__table__,
            LEDGER_COLUMNS,
            [
                (
                    r.user_id,
                    "charge",
                    -r.cost_micro_usd,
                    f"{r.endpoint} {r.model}",
                    r.request_id,
                    r.created_at,
                )
                for r in batch
                if r.cost_micro_usd and r.user_id is not None
            ],
        )
    balances: dict[int, int] = {}
    if per_user:
        users = User.__table__.c
        session.execute(
            update(User.__table__)
            .where(users.id == bindparam("uid"))
            .values(balance_micro_usd=users.balance_micro_usd - bindparam("spent")),
            [{"uid": uid, "spent": spent} for uid, spent in per_user.items()],
        )
        rows = session.execute(select(users.id, users.balance_micro_usd).where(users.id.in_(list(per_user))))
        balances = {user_id: balance for user_id, balance in rows}
    per_key: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    last_used: dict[int, dt.datetime] = {}
    for r in batch:
        if r.key_id is not None:
            per_key[r.key_id][0] += r.cost_micro_usd
            per_key[r.key_id][1] += r.prompt_tokens + r.completion_tokens
            last_used[r.key_id] = r.created_at
    if per_key:
        keys = ApiKey.__table__.c
        session.execute(
            update(ApiKey.__table__)
            .where(keys.id == bindparam("kid"))
            .values(
                spent_micro_usd=keys.spent_micro_usd + bindparam("spent"),
                month_tokens=case(
                    (keys.month == bindparam("month"), keys.month_tokens + bindparam("tokens")),
                    else_=bindparam("tokens"),
                ),
                month=bindparam("month"),
                last_used_at=bindparam("used"),
            ),
            [
                {"kid": kid, "spent": spent, "tokens": tokens, "month": month, "used": last_used[kid]}
                for kid, (spent, tokens) in per_key.items()
            ],
        )
    _channel_counters(batch)
    session.commit()
    return per_user, balances


def _channel_counters(batch: list[Record]) -> None:
    stats: dict[int, dict] = {}

    def bump(channel_id: int, failed: bool, error: str, latency_ms: int | None, at: dt.datetime) -> None:
        s = stats.setdefault(
            channel_id, {"cid": channel_id, "n": 0, "f": 0, "err": None, "lat": None, "at": at}
        )
        s["n"] += 1
        s["at"] = at
        if failed:
            s["f"] += 1
            s["err"] = error[:500]
        elif latency_ms is not None:
            s["lat"] = latency_ms

    for r in batch:
        for channel_id, error in r.failed_channels:
            bump(channel_id, True, error, None, r.created_at)
        if r.channel_id is not None and r.channel_ok:
            bump(r.channel_id, False, "", r.ttft_ms or r.latency_ms, r.created_at)
    for s in stats.values():
        values = {
            "total_requests": Channel.total_requests + s["n"],
            "total_failures": Channel.total_failures + s["f"],
            "last_used_at": s["at"],
        }
        if s["err"] is not None:
            values["last_error"] = s["err"]
        if s["lat"] is not None:
            values["last_latency_ms"] = s["lat"]
        db.session.execute(update(Channel).where(Channel.id == s["cid"]).values(**values))
