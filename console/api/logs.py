"""Usage logs: `GET /api/logs`. Users see their own rows; admins see all and may filter by user."""

from __future__ import annotations

import datetime as dt

from flask import jsonify, request
from sqlalchemy import func

from console.api import bp, current_user, is_admin, page_args, query_id, require
from gateway.domain import pricing, usage
from gateway.domain.models import DeadLetter, UsageLog, db
from gateway.neutral import bad_request


def log_json(row: UsageLog) -> dict:
    return {
        "id": row.id,
        "request_id": row.request_id,
        "created_at": row.created_at.isoformat() + "Z",
        "user_id": row.user_id,
        "key_id": row.key_id,
        "channel_id": row.channel_id,
        "endpoint": row.endpoint,
        "model": row.model,
        "upstream_model": row.upstream_model,
        "stream": row.stream,
        "status": row.status,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cached_tokens": row.cached_tokens,
        "cache_write_tokens": row.cache_write_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "protocol": row.protocol,
        "channel_type": row.channel_type,
        "cost_micro_usd": row.cost_micro_usd,
        "usage_source": row.usage_source,
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "attempts": row.attempts,
        "error": row.error or None,
    }


def _time(name: str) -> dt.datetime | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
    except (ValueError, OverflowError):  # OverflowError: 9999-12-31T23:00-05:00 is past the last year
        raise bad_request(f"{name} must be an ISO 8601 time from year 1 to 9999", name) from None


@bp.get("/logs")
@require()
def list_logs():  # noqa: ANN201
    """The rows `usage.LogFilter` selects, as the console's usage page reads them; a user's own only."""
    me = current_user()
    asked = query_id("user_id")
    ids = {name: query_id(name) for name in ("key_id", "channel_id", "status")}
    model = request.args.get("model")
    flt = usage.LogFilter(
        user_id=asked if is_admin(me) else me.id,
        model=pricing.model_name(model) if model else None,
        since=_time("since"),
        until=_time("until"),
        **ids,
    )
    page, per_page = page_args()
    if asked not in (None, flt.user_id):  # a user asking for another user's rows: none are theirs
        return jsonify(data=[], total=0, page=page, per_page=per_page)
    rows = usage.page(flt, per_page, (page - 1) * per_page)
    return jsonify(data=[log_json(r) for r in rows], total=usage.count(flt), page=page, per_page=per_page)


@bp.get("/dead-letters")
@require("admin")
def list_dead_letters():  # noqa: ANN201
    """Usage records the database refused even after their fields were cut to fit: kept whole, with the
    error, so an admin can see what was not logged or charged, and why."""
    page, per_page = page_args()
    total = db.session.scalar(db.select(func.count()).select_from(DeadLetter))
    rows = db.session.scalars(
        db.select(DeadLetter).order_by(DeadLetter.id.desc()).limit(per_page).offset((page - 1) * per_page)
    )
    data = [
        {
            "id": row.id,
            "request_id": row.request_id,
            "created_at": row.created_at.isoformat() + "Z",
            "error": row.error,
            "record": row.payload,
        }
        for row in rows
    ]
    return jsonify(data=data, total=total or 0, page=page, per_page=per_page)
