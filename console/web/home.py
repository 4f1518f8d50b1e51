"""The home page: the base URL to copy, the header a request needs, a three-step start, and the live
health card (`/partials/health`, which htmx refreshes every few seconds). Signed out, it still shows the
base URL, the health and the docs."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, current_app, render_template, request
from sqlalchemy import text

from gateway import __version__
from gateway.domain.models import Channel, db

bp = Blueprint("home", __name__)
HEALTH_REFRESH_S = 5


def base_url() -> str:
    """Where clients point their SDK: the configured public URL, else this request's host, with `/v1`."""
    rt = current_app.extensions["relayhouse"]
    public = rt.catalog.snapshot.settings.get("public_url")
    root = public if isinstance(public, str) and public else request.host_url
    return root.rstrip("/") + "/v1"


def health() -> dict[str, Any]:
    """The gateway's state and its upstreams': channels by status, and over the health window the
    requests, the share that failed and the last latency each channel measured."""
    rt = current_app.extensions["relayhouse"]
    try:
        db.session.execute(text("SELECT 1"))
        database = True
    except Exception:
        db.session.rollback()
        database = False
    channels = list(rt.catalog.snapshot.channels.values())
    latencies = dict(db.session.execute(db.select(Channel.id, Channel.last_latency_ms)).all())
    requests = failures = 0
    for channel in channels:
        window = rt.router.window(channel.id)
        requests, failures = requests + window.requests, failures + window.failures
    recent = [latencies[c.id] for c in channels if latencies.get(c.id) is not None]
    return {
        "ok": database,
        "version": __version__,
        "uptime_s": int(time.time() - rt.started_at),
        "channels_up": sum(1 for c in channels if c.status in ("enabled", "half_open")),
        "channels_down": sum(1 for c in channels if c.status == "disabled"),
        "channels_auto_disabled": sum(1 for c in channels if c.status == "auto_disabled"),
        "requests": requests,
        "error_rate": failures / requests if requests else 0.0,
        "latency_ms": int(sum(recent) / len(recent)) if recent else None,
        "window_s": rt.settings.health_window_s,
        "refresh_s": HEALTH_REFRESH_S,
    }


@bp.get("/")
def home() -> str:
    return render_template("home.html", base_url=base_url(), health=health())


@bp.get("/partials/health")
def health_card() -> str:
    return render_template("partials/health.html", health=health())
