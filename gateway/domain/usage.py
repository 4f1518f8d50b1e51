"""Reading the usage logs: one filter (`LogFilter`) for the log table, its totals and its series over time,
shared by the console's usage page and `GET /api/logs`, so both select the same rows.

Every query here is bounded by an index on large tables (see migration 0006): the newest rows of a user, a
key or a model come from `(user_id, id)`, `(key_id, id)` and `(model, id)`; a time range from
`created_at`, or `(user_id, created_at)` for one user.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, func

from gateway.domain.models import ApiKey, UsageLog, db

BUCKETS = ("hour", "day")
GROUPS = {"model": UsageLog.model, "key": UsageLog.key_id}


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


def totals(f: LogFilter) -> Totals:
    row = db.session.execute(
        db.select(
            func.count(UsageLog.id),
            func.coalesce(func.sum(UsageLog.prompt_tokens), 0),
            func.coalesce(func.sum(UsageLog.completion_tokens), 0),
            func.coalesce(func.sum(UsageLog.cost_micro_usd), 0),
        ).where(*conditions(f))
    ).one()
    return Totals(*(int(v) for v in row))


def _bucket(bucket: str) -> ColumnElement[Any]:
    """The start of a row's hour or day, in SQL the database at hand speaks."""
    if db.session.get_bind().dialect.name == "postgresql":
        return func.date_trunc(bucket, UsageLog.created_at)
    return func.strftime(
        "%Y-%m-%d %H:00:00" if bucket == "hour" else "%Y-%m-%d 00:00:00", UsageLog.created_at
    )


def series(f: LogFilter, by: str = "model", bucket: str = "day") -> list[Point]:
    """Requests, tokens and spend per hour or day and per model or key, in time order."""
    assert by in GROUPS and bucket in BUCKETS, (by, bucket)
    when, group = _bucket(bucket).label("bucket"), GROUPS[by].label("grp")
    query = (
        db.select(
            when,
            group,
            func.count(UsageLog.id),
            func.coalesce(func.sum(UsageLog.prompt_tokens + UsageLog.completion_tokens), 0),
            func.coalesce(func.sum(UsageLog.cost_micro_usd), 0),
        )
        .where(*conditions(f))
        .group_by(when, group)
        .order_by(when)
    )
    points = []
    for start, grp, requests, tokens, cost in db.session.execute(query):
        if isinstance(start, str):
            start = dt.datetime.fromisoformat(start)
        points.append(Point(start, grp, int(requests), int(tokens), int(cost)))
    return points


def key_names(key_ids: set[int]) -> dict[int, str]:
    """A key's name, or its prefix when it has none, for the keys that appear in a page or a chart."""
    if not key_ids:
        return {}
    rows = db.session.execute(db.select(ApiKey.id, ApiKey.name, ApiKey.prefix).where(ApiKey.id.in_(key_ids)))
    return {kid: name or f"{prefix}…" for kid, name, prefix in rows}
