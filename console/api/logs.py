"""Usage logs: `GET /api/logs`. Users see their own rows; admins see all and may filter by user."""

from __future__ import annotations

import datetime as dt

from flask import jsonify, request
from sqlalchemy import func

from console.api import bp, current_user, is_admin, page_args, query_id, require
from gateway.domain import pricing
from gateway.domain.models import DeadLetter, UsageLog, db
from gateway.neutral import bad_request

FILTERS = {
    "user_id": UsageLog.user_id,
    "key_id": UsageLog.key_id,
    "channel_id": UsageLog.channel_id,
    "status": UsageLog.status,
}


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
    me = current_user()
    query = db.select(UsageLog)
    for name, column in FILTERS.items():
        value = query_id(name)
        if value is not None:
            query = query.where(column == value)
    if not is_admin(me):
        query = query.where(UsageLog.user_id == me.id)
    if request.args.get("model"):
        query = query.where(UsageLog.model == pricing.model_name(request.args["model"]))
    if since := _time("since"):
        query = query.where(UsageLog.created_at >= since)
    if until := _time("until"):
        query = query.where(UsageLog.created_at < until)
    page, per_page = page_args()
    total = db.session.scalar(db.select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(UsageLog.id.desc()).limit(per_page).offset((page - 1) * per_page)
    )
    return jsonify(data=[log_json(r) for r in rows], total=total or 0, page=page, per_page=per_page)


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
