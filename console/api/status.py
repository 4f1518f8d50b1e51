"""`GET /api/status`: public liveness, version and channel counts."""

from __future__ import annotations

import time

from flask import jsonify
from sqlalchemy import text

from console.api import bp, runtime
from gateway import __version__
from gateway.domain.models import db


@bp.get("/status")
def status():  # noqa: ANN201
    rt = runtime()
    try:
        db.session.execute(text("SELECT 1"))
        database = "ok"
    except Exception:
        db.session.rollback()
        database = "error"
    channels = rt.catalog.snapshot.channels.values()
    return jsonify(
        status="ok" if database == "ok" else "degraded",
        version=__version__,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rt.started_at)),
        uptime_seconds=int(time.time() - rt.started_at),
        database=database,
        channels={
            "total": len(channels),
            "enabled": sum(1 for c in channels if c.status == "enabled"),
            "half_open": sum(1 for c in channels if c.status == "half_open"),
            "auto_disabled": sum(1 for c in channels if c.status == "auto_disabled"),
        },
    )
