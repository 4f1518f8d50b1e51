"""Reading the usage logs: one filter (`LogFilter`) for the log table, its totals and its series over time,
shared by the console's usage page and `GET /api/logs`, so both select the same rows.

The newest rows of a user, a key or a model come from the indexes `(user_id, id)`, `(key_id, id)`,
`(model, id)` and `(user_id, model, id)` (migration 0006). Totals and series are sums over many rows, too
slow to compute from a million log rows on each view, so they come from `usage_rollups`: per hour and per
day, per user, key, model and outcome, the rows up to `usage_rollup_marks.last_log_id`. `refresh` folds in
the rows written since (one process at a time: moving the mark decides who), and a read adds the rows past
the mark from the log itself, in the same statement, so it sees each row exactly once. A filter the rollups
cannot answer (a channel, one exact status, a range not on whole hours) reads the log rows.

The mark follows ids. On PostgreSQL ids are handed out before commit, so a row with a lower id may still
be on its way when a higher one is visible: before it folds, `refresh` waits for the transactions that
were writing log rows when it read the newest id (the writer commits in short batches), and folds nothing
this time if they last too long.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Integer,
    Select,
    String,
    func,
    literal_column,
    text,
)
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Mapped, mapped_column

from gateway.domain.models import ApiKey, UsageLog, db

BUCKETS = ("hour", "day")
GROUPS = {"model": UsageLog.model, "key": UsageLog.key_id}


ROLLUP_CHUNK = 200_000  # log rows folded in per transaction
SETTLE_WAIT_S = 1.0  # how long a refresh waits for log writes in flight before it leaves the rows for later


class UsageRollup(db.Model):
    """Sums of the log rows of one hour or day, user, key, model and outcome (0: no user or no key)."""

    __tablename__ = "usage_rollups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(4))  # hour, day
    bucket: Mapped[dt.datetime] = mapped_column(DateTime)
    user_id: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(128))
    failed: Mapped[bool] = mapped_column(Boolean)
    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_micro_usd: Mapped[int] = mapped_column(BigInteger)


class RollupMark(db.Model):
    """One row: the last log id the rollups hold."""

    __tablename__ = "usage_rollup_marks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_log_id: Mapped[int] = mapped_column(BigInteger, default=0)


@dataclass(slots=True, frozen=True)
class LogFilter:
    user_id: int | None = None
    key_id: int | None = None
    channel_id: int | None = None
    status: int | None = None  # one HTTP status
    failed: bool | None = None  # True: status >= 400, False: below
    model: str | None = None
    since: dt.datetime | None = None  # naive UTC, inclusive
    until: dt.datetime | None = None  # naive UTC, exclusive


@dataclass(slots=True, frozen=True)
class Totals:
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_micro_usd: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True, frozen=True)
class Point:
    bucket: dt.datetime
    group: str | int | None
    requests: int
    tokens: int
    cost_micro_usd: int


def conditions(f: LogFilter) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    for value, column in (
        (f.user_id, UsageLog.user_id),
        (f.key_id, UsageLog.key_id),
        (f.channel_id, UsageLog.channel_id),
        (f.status, UsageLog.status),
        (f.model, UsageLog.model),
    ):
        if value is not None:
            found.append(column == value)
    if f.failed is not None:
        found.append(UsageLog.status >= 400 if f.failed else UsageLog.status < 400)
    if f.since is not None:
        found.append(UsageLog.created_at >= f.since)
    if f.until is not None:
        found.append(UsageLog.created_at < f.until)
    return found


def select_logs(f: LogFilter) -> Select[Any]:
    return db.select(UsageLog).where(*conditions(f))


def count(f: LogFilter) -> int:
    return db.session.scalar(db.select(func.count(UsageLog.id)).where(*conditions(f))) or 0


def page(f: LogFilter, limit: int, offset: int = 0) -> list[UsageLog]:
    """The newest rows first."""
    query = select_logs(f).order_by(UsageLog.id.desc()).limit(limit).offset(offset)
    return list(db.session.scalars(query))


def _bucket(bucket: str) -> ColumnElement[Any]:
    """The start of a row's hour or day, in SQL the database at hand speaks."""
    if db.session.get_bind().dialect.name == "postgresql":
        return func.date_trunc(literal_column(f"'{bucket}'"), UsageLog.created_at)
    pattern = "'%Y-%m-%d %H:00:00'" if bucket == "hour" else "'%Y-%m-%d 00:00:00'"
    return func.strftime(literal_column(pattern), UsageLog.created_at)


def _as_time(value: Any) -> dt.datetime:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


# -- rollups -------------------------------------------------------------------------------------------
def refresh() -> None:
    """Fold the log rows written since the mark into the rollups, a chunk per transaction."""
    while True:
        last = db.session.scalar(db.select(RollupMark.last_log_id).where(RollupMark.id == 1))
        if last is None:
            db.session.add(RollupMark(id=1, last_log_id=0))
            db.session.commit()
            continue
        newest = db.session.scalar(db.select(func.max(UsageLog.id))) or 0
        if newest <= last:
            return  # no commit or rollback: the rows the caller has loaded stay loaded
        if not _writes_settled():
            return  # the rows past the mark are read from the log until a later refresh
        top = min(newest, last + ROLLUP_CHUNK)
        if not _fold(last, top):
            return  # another process moved the mark first: it folds these rows
        if top == newest:
            return


_IN_FLIGHT = text(
    "SELECT DISTINCT virtualtransaction FROM pg_locks WHERE locktype = 'relation'"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND relation = CAST(:table AS regclass) AND mode = 'RowExclusiveLock'"
    " AND pid IS DISTINCT FROM pg_backend_pid()"
)
_STILL_IN_FLIGHT = text(
    "SELECT count(*) FROM pg_locks WHERE virtualtransaction = ANY(CAST(:vxids AS text[]))"
)


def _writes_settled() -> bool:
    """Whether every log row with an id below the newest one read so far is visible. PostgreSQL hands ids
    out at insert, before commit: each transaction that may hold such an id holds a row-exclusive lock on
    the log (taken before its insert draws the id), so once the holders seen now are gone, none is left.
    SQLite writes one transaction at a time: nothing is ever in flight there."""
    if db.session.get_bind().dialect.name != "postgresql":
        return True
    vxids = list(db.session.scalars(_IN_FLIGHT, {"table": UsageLog.__tablename__}))
    deadline = time.monotonic() + SETTLE_WAIT_S
    while vxids:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
        if not db.session.scalar(_STILL_IN_FLIGHT, {"vxids": vxids}):
            return True
    return True


def _fold(last: int, top: int) -> bool:
    # no bound parameters in grouped expressions: PostgreSQL matches GROUP BY to SELECT by their text
    hour, zero = _bucket("hour"), literal_column("0")
    user_id, key_id = func.coalesce(UsageLog.user_id, zero), func.coalesce(UsageLog.key_id, zero)
    failed = UsageLog.status >= literal_column("400")
    rows = db.session.execute(
        db.select(
            hour,
            user_id,
            key_id,
            UsageLog.model,
            failed,
            func.count(UsageLog.id),
            func.sum(UsageLog.prompt_tokens),
            func.sum(UsageLog.completion_tokens),
            func.sum(UsageLog.cost_micro_usd),
        )
        .where(UsageLog.id > last, UsageLog.id <= top)
        .group_by(hour, user_id, key_id, UsageLog.model, failed)
    ).all()
    # moving the mark first takes its row lock: a second process waits here, then finds it moved
    moved = db.session.execute(
        sql_update(RollupMark)
        .where(RollupMark.id == 1, RollupMark.last_log_id == last)
        .values(last_log_id=top)
    )
    if moved.rowcount != 1:
        db.session.rollback()
        return False
    sums: dict[tuple[Any, ...], list[int]] = {}
    for bucket, user_id, key_id, model, is_failed, *numbers in rows:
        start = _as_time(bucket)
        for period, at in (("hour", start), ("day", start.replace(hour=0))):
            total = sums.setdefault(
                (period, at, int(user_id), int(key_id), model, bool(is_failed)), [0, 0, 0, 0]
            )
            for i, number in enumerate(numbers):
                total[i] += int(number or 0)
    _merge(sums)
    db.session.commit()
    return True


def _merge(sums: dict[tuple[Any, ...], list[int]]) -> None:
    """Add `sums` to the rollup rows they belong to, making the missing ones."""
    columns = ("requests", "prompt_tokens", "completion_tokens", "cost_micro_usd")
    for period in BUCKETS:
        buckets = {key[1] for key in sums if key[0] == period}
        if not buckets:
            continue
        existing = {
            (r.period, r.bucket, r.user_id, r.key_id, r.model, r.failed): r
            for r in db.session.scalars(
                db.select(UsageRollup).where(UsageRollup.period == period, UsageRollup.bucket.in_(buckets))
            )
        }
        fresh = []
        for key in (k for k in sums if k[0] == period):
            row = existing.get(key)
            if row is None:
                fields = dict(
                    zip(("period", "bucket", "user_id", "key_id", "model", "failed"), key, strict=True)
                )
                fresh.append({**fields, **dict(zip(columns, sums[key], strict=True))})
            else:
                for name, number in zip(columns, sums[key], strict=True):
                    setattr(row, name, getattr(row, name) + number)
        if fresh:
            db.session.execute(db.insert(UsageRollup), fresh)


def _rollup_period(f: LogFilter, wanted: str) -> str | None:
    """The rollup period that answers `f` exactly, if one does."""
    if f.channel_id is not None or f.status is not None:
        return None
    for period in (wanted, "hour") if wanted == "day" else (wanted,):
        aligned = all(
            t is None
            or (t.minute, t.second, t.microsecond) == (0, 0, 0)
            and (period == "hour" or t.hour == 0)
            for t in (f.since, f.until)
        )
        if aligned:
            return period
    return None


def _rollup_conditions(f: LogFilter, period: str) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = [UsageRollup.period == period]
    for value, column in (
        (f.user_id, UsageRollup.user_id),
        (f.key_id, UsageRollup.key_id),
        (f.model, UsageRollup.model),
        (f.failed, UsageRollup.failed),
    ):
        if value is not None:
            found.append(column == value)
    if f.since is not None:
        found.append(UsageRollup.bucket >= f.since)
    if f.until is not None:
        found.append(UsageRollup.bucket < f.until)
    return found


def _mark_column() -> Any:
    return db.select(RollupMark.last_log_id).where(RollupMark.id == 1).scalar_subquery().label("mark")


def _rolled_and_past(rolled: Select[Any], logs: Select[Any]) -> list[Any]:
    """The rollups' rows and the log's rows past the mark, in one statement. The mark is given as a number
    so that the log rows past it come from the primary key (a subquery would hide it from the planner);
    each row also carries the mark the statement saw, and a refresh that moved it in between means again."""
    rows: list[Any] = []
    for _ in range(5):
        last = db.session.scalar(db.select(RollupMark.last_log_id).where(RollupMark.id == 1)) or 0
        query = rolled.add_columns(_mark_column()).union_all(
            logs.where(UsageLog.id > last).add_columns(_mark_column())
        )
        rows = db.session.execute(query).all()
        if all((r[-1] or 0) == last for r in rows):
            break
    return [r[:-1] for r in rows]


def totals(f: LogFilter) -> Totals:
    logs = [
        func.count(UsageLog.id),
        func.coalesce(func.sum(UsageLog.prompt_tokens), 0),
        func.coalesce(func.sum(UsageLog.completion_tokens), 0),
        func.coalesce(func.sum(UsageLog.cost_micro_usd), 0),
    ]
    period = _rollup_period(f, "day")
    if period is None:
        row = db.session.execute(db.select(*logs).where(*conditions(f))).one()
        return Totals(*(int(v) for v in row))
    refresh()
    rolled = db.select(
        *(
            func.coalesce(func.sum(c), 0)
            for c in (UsageRollup.requests, UsageRollup.prompt_tokens, UsageRollup.completion_tokens)
        ),
        func.coalesce(func.sum(UsageRollup.cost_micro_usd), 0),
    ).where(*_rollup_conditions(f, period))
    rows = _rolled_and_past(rolled, db.select(*logs).where(*conditions(f)))
    return Totals(*(sum(int(r[i]) for r in rows) for i in range(4)))


def series(f: LogFilter, by: str = "model", bucket: str = "day") -> list[Point]:
    """Requests, tokens and spend per hour or day and per model or key, in time order."""
    assert by in GROUPS and bucket in BUCKETS, (by, bucket)
    when, group = _bucket(bucket).label("bucket"), GROUPS[by].label("grp")
    logs = db.select(
        when,
        group,
        func.count(UsageLog.id),
        func.coalesce(func.sum(UsageLog.prompt_tokens + UsageLog.completion_tokens), 0),
        func.coalesce(func.sum(UsageLog.cost_micro_usd), 0),
    ).group_by(when, group)
    period = _rollup_period(f, bucket)
    query, rolled = logs.where(*conditions(f)), None
    if period == bucket:
        refresh()
        rolled_group = UsageRollup.model if by == "model" else UsageRollup.key_id
        rolled = (
            db.select(
                UsageRollup.bucket,
                rolled_group,
                func.sum(UsageRollup.requests),
                func.sum(UsageRollup.prompt_tokens + UsageRollup.completion_tokens),
                func.sum(UsageRollup.cost_micro_usd),
            )
            .where(*_rollup_conditions(f, period))
            .group_by(UsageRollup.bucket, rolled_group)
        )
    rows = (
        db.session.execute(query).all()
        if period != bucket
        else _rolled_and_past(rolled, logs.where(*conditions(f)))
    )
    merged: dict[tuple[dt.datetime, Any], list[int]] = {}
    for start, grp, requests, tokens, cost in rows:
        if by == "key" and grp == 0:
            grp = None  # rolled up without a key
        total = merged.setdefault((_as_time(start), grp), [0, 0, 0])
        for i, number in enumerate((requests, tokens, cost)):
            total[i] += int(number or 0)
    return [
        Point(at, grp, *numbers) for (at, grp), numbers in sorted(merged.items(), key=lambda kv: kv[0][0])
    ]


def key_names(key_ids: set[int]) -> dict[int, str]:
    """A key's name, or its prefix when it has none, for the keys that appear in a page or a chart."""
    if not key_ids:
        return {}
    rows = db.session.execute(db.select(ApiKey.id, ApiKey.name, ApiKey.prefix).where(ApiKey.id.in_(key_ids)))
    return {kid: name or f"{prefix}…" for kid, name, prefix in rows}
