"""The writer: usage log rows and their charges, committed in batches by one background greenlet.

Every `FLUSH_INTERVAL` seconds it drains the queue and writes, in one transaction per batch of at most
BATCH_ROWS records: the log rows, one ledger entry per charged row, the wallet balances, each key's
spend and monthly tokens, and channel counters. The database work runs on a native thread, so that the
driver's I/O never stalls the requests in flight. Each ledger entry commits with its log row, so money and
logs cannot drift, and nothing counts twice (`request_id` is unique in both tables). With
`FLUSH_INTERVAL=0` the request writes through itself.

One record the database refuses must not stop the writer for everyone: a refused batch is split in
halves until the record is found; it is repaired (strings cut to their columns) and tried once more, and
if the database still refuses it, it is set aside in `dead_letters` with neither log row nor charge.
An outage (lost connection, locked database) is no record's fault: the batch stays queued, in order.

Records queued but not yet committed are also in the journal (`gateway.journal`), so a killed process
loses none of them: the next start replays them (`replay`), idempotently by request id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import orjson
from gevent.event import Event
from gevent.threadpool import ThreadPool
from sqlalchemy import String, Table, bindparam, case, select, update
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.billing import current_month
from gateway.domain.models import ApiKey, Channel, DeadLetter, LedgerEntry, UsageLog, User, db
from gateway.journal import Journal, read_lines

log = logging.getLogger("relayhouse.writer")
BATCH_ROWS = 1000
OnCommitted = Callable[[dict[int, int], dict[int, int], dict[int, int]], None]


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
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    protocol: str = "openai"
    channel_type: str = ""
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

    def to_json(self) -> bytes:
        """The record as one JSON object (journal lines, dead letters). A value JSON cannot hold is
        written as its text rather than failing the request that produced it."""
        return orjson.dumps(self, default=str)

    @classmethod
    def from_json(cls, data: bytes | str) -> Record:
        fields = orjson.loads(data)
        fields["created_at"] = dt.datetime.fromisoformat(fields["created_at"])
        fields["failed_channels"] = [tuple(pair) for pair in fields.get("failed_channels") or ()]
        return cls(**{name: value for name, value in fields.items() if name in RECORD_FIELDS})


RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(Record))
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
    "cache_write_tokens",
    "reasoning_tokens",
    "protocol",
    "channel_type",
    "cost_micro_usd",
    "usage_source",
    "latency_ms",
    "ttft_ms",
    "status",
    "error",
    "attempts",
)


def _string_limits() -> dict[str, int]:
    """The longest value each record field may hold, from the columns it lands in (log row and ledger)."""
    limits: dict[str, int] = {}
    for table in (UsageLog.__table__, LedgerEntry.__table__):
        for column in table.c:
            length = column.type.length if isinstance(column.type, String) else None
            if length and column.name in RECORD_FIELDS:
                limits[column.name] = min(length, limits.get(column.name, length))
    return limits


STRING_LIMITS = _string_limits()


@dataclass(slots=True)
class Outcome:
    """What writing some records did, per user: charges newly committed, charges found already committed
    (a retried batch whose first commit landed), charges set aside unwritten, and balances after."""

    written: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    landed: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    dropped: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    balances: dict[int, int] = field(default_factory=dict)
    count: int = 0  # records newly written

    def charged(self) -> dict[int, int]:
        total = dict(self.written)
        for user_id, amount in self.landed.items():
            total[user_id] = total.get(user_id, 0) + amount
        return total


class Writer:
    def __init__(
        self,
        app_context: Callable,
        interval_s: float,
        on_committed: OnCommitted = lambda charged, balances, dropped: None,
        journal: Journal | None = None,
    ) -> None:
        self._app_context = app_context
        self.interval_s = interval_s
        # (charged per user, their balances after the commit, charges per user set aside unwritten)
        self._on_committed = on_committed
        self._journal = journal if interval_s > 0 else None  # write-through has nothing to lose
        self._open_journal: Journal | None = None  # the journal, once `replay` has taken a slot in it
        self._journal_broken = False
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
        elif self._open_journal is not None:
            self._journal_line(self._open_journal, record)

    def _journal_line(self, journal: Journal, record: Record) -> None:
        try:
            journal.append(record.to_json() + b"\n")
            self._journal_broken = False
        except OSError:  # a full disk must not fail the request: it is answered, and still queued
            if not self._journal_broken:
                log.exception("journal write failed; records are kept in memory only until it works")
            self._journal_broken = True

    def replay(self) -> dict[int, int]:
        """Write the records dead processes left in the journal, before this process serves anything.

        Records already committed are recognised by their request id and not written again. Returns the
        charges per user newly written here; the wallets are not told (`on_committed`), since they have
        not read any balance yet and will read these charges with it.
        """
        if self._journal is None:
            return {}
        segments = self._journal.open()
        self._open_journal = self._journal
        records: dict[str, Record] = {}
        unreadable = 0
        for line in read_lines(segments):
            try:
                record = Record.from_json(line)
            except (ValueError, TypeError, KeyError):
                unreadable += 1
                continue
            records.setdefault(record.request_id, record)
        if unreadable:
            log.error("journal: %d unreadable lines skipped", unreadable)
        pending = list(records.values())
        written: dict[int, int] = defaultdict(int)
        count = 0
        for start in range(0, len(pending), BATCH_ROWS):
            outcome = self._write_once(pending[start : start + BATCH_ROWS])
            count += outcome.count
            for user_id, amount in outcome.written.items():
                written[user_id] += amount
        self._journal.replayed(segments)
        if pending:
            log.info("journal: replayed %d records, %d of them not yet written", len(pending), count)
        return dict(written)

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
        if self._open_journal is not None:
            self._open_journal.close()
            self._open_journal = None

    def flush(self, threads: ThreadPool | None = None) -> int:
        """Write what is queued now, in transactions of at most BATCH_ROWS records. Records that arrive
        meanwhile wait for the next flush, so a busy gateway writes a few large batches a second rather
        than a stream of small ones.

        With `threads`, the database work runs on a native thread: the driver's C code and the disk's
        fsync release the GIL, so requests keep moving meanwhile. The in-memory bookkeeping
        (`on_committed`) stays on this greenlet. Without, the greenlet yields between transactions.
        The journal segments that hold these records are deleted only once every one is written.
        """
        pending, self._queue = self._queue, []
        journal = self._open_journal
        if journal is not None:
            journal.rotate()
        sync = journal is not None
        written = 0
        try:
            while pending:
                batch = pending[:BATCH_ROWS]
                if threads is None:
                    outcome = self._write_once(batch, sync)
                else:
                    outcome = threads.apply(self._write_once, (batch, sync))
                sync = False
                del pending[: len(batch)]
                self._on_committed(outcome.charged(), outcome.balances, dict(outcome.dropped))
                written += outcome.count
                if pending and threads is None:
                    gevent.sleep(0)
        finally:
            self._queue[:0] = pending  # what was not written goes back, ahead of newer records
        if journal is not None:
            journal.committed()
        return written

    def _write_once(self, batch: list[Record], sync: bool = False) -> Outcome:
        if sync and self._journal is not None:
            self._journal.sync()  # once per flush, here on the native thread
        outcome = Outcome()
        with self._app_context():
            self._write_or_split(batch, outcome)
        return outcome

    def _write_or_split(self, batch: list[Record], outcome: Outcome) -> None:
        """Commit the batch; if the database refuses it, find the refused record by halving."""
        refusal = _refusal(batch, outcome)
        if refusal is None:
            return
        if len(batch) > 1:
            middle = len(batch) // 2
            self._write_or_split(batch[:middle], outcome)
            self._write_or_split(batch[middle:], outcome)
            return
        record = batch[0]
        fixed = repaired(record)
        if fixed is not None:
            again = _refusal([fixed], outcome)
            if again is None:
                log.warning("record %s: values cut to their columns to be written", fixed.request_id)
                return
            refusal = again
        _check_tables()  # a refusal every record would get (a broken schema) sets nothing aside
        _set_aside(record, refusal, outcome)


def _refusal(batch: list[Record], outcome: Outcome) -> Exception | None:
    """Commit the batch; None when it was written, else the database's refusal. An outage is no
    record's fault: it propagates, and the batch stays queued."""
    try:
        _commit(batch, outcome)
        return None
    except Exception as err:
        db.session.rollback()
        if _outage(err):
            raise
        return err


def _commit(batch: list[Record], outcome: Outcome) -> None:
    """One transaction. A commit whose answer was lost may have landed: on a duplicate request id, write
    only the rows not yet there, and count the landed ones as committed."""
    try:
        charged, balances = write_batch(batch)
        landed: list[Record] = []
    except IntegrityError:
        db.session.rollback()
        ids = [r.request_id for r in batch]
        done = set(db.session.scalars(select(UsageLog.request_id).where(UsageLog.request_id.in_(ids))))
        if not done:
            raise  # no retried commit: a record the database refuses
        landed = [r for r in batch if r.request_id in done]
        batch = [r for r in batch if r.request_id not in done]
        charged, balances = write_batch(batch) if batch else ({}, {})
    for user_id, amount in charged.items():
        outcome.written[user_id] += amount
    for user_id, amount in _charges_per_user(landed).items():
        outcome.landed[user_id] += amount
    outcome.balances.update(balances)
    outcome.count += len(batch)


def _outage(err: Exception) -> bool:
    """The database is unreachable or busy, rather than refusing a record: keep the batch and retry."""
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return True
    return isinstance(err, OperationalError | InterfaceError | DisconnectionError | PoolTimeout)


def repaired(record: Record) -> Record | None:
    """The record with every string cut to its column's length and without NUL characters (which
    PostgreSQL text cannot hold); None when nothing needed it."""
    changes: dict[str, Any] = {}
    for name in RECORD_FIELDS:
        value = getattr(record, name)
        if isinstance(value, str):
            fixed = value.replace("\x00", "")[: STRING_LIMITS.get(name)]
            if fixed != value:
                changes[name] = fixed
    failed = [
        (cid, e.replace("\x00", "")) if isinstance(e, str) else (cid, e) for cid, e in record.failed_channels
    ]
    if failed != record.failed_channels:
        changes["failed_channels"] = failed
    return dataclasses.replace(record, **changes) if changes else None


def _check_tables() -> None:
    """Read nothing from every table the writer writes to: raises if the database refuses them all."""
    for table in (UsageLog, LedgerEntry, User, ApiKey, Channel, DeadLetter):
        db.session.execute(select(table.__table__).limit(0)).all()
    db.session.rollback()


def _refusal_message(err: Exception) -> str:
    """The database's own words, without the statement or its parameters (which SQLAlchemy adds)."""
    cause = getattr(err, "orig", None) or err
    text = f"{type(cause).__name__}: {cause}".replace("\x00", "")
    return text[:2000]


def _set_aside(record: Record, err: Exception, outcome: Outcome) -> None:
    """Keep a record the database refuses in `dead_letters` for an admin; it writes no log row and no
    charge, so money and logs still agree, and its charge leaves the wallets' pending amounts."""
    message = _refusal_message(err)
    request_id = record.request_id[: DeadLetter.__table__.c.request_id.type.length]
    payload = record.to_json().decode()
    try:
        seen = db.session.scalar(select(DeadLetter.id).where(DeadLetter.request_id == request_id).limit(1))
        if seen is None:  # a flush retried after an outage meets it again
            db.session.add(DeadLetter(request_id=request_id, payload=payload, error=message))
            db.session.commit()
    except Exception as dead:
        db.session.rollback()
        if _outage(dead):
            raise
        log.error("record %s could not be set aside either (%s); it was: %s", request_id, dead, payload)
    log.error("record %s refused by the database and set aside in dead_letters: %s", request_id, message)
    if record.user_id is not None and record.cost_micro_usd:
        outcome.dropped[record.user_id] += record.cost_micro_usd


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
