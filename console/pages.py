"""Server-rendered console pages. For now the home page: what this gateway is, its live status, and the
base URL and a first request to copy."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, render_template, request

from console.i18n import CATALOGS, pick_language, translator
from gateway import __version__

bp = Blueprint("pages", __name__)


@bp.get("/")
def home() -> str:
    rt = current_app.extensions["relayhouse"]
    language = pick_language(request.args.get("lang"), list(request.accept_languages.values()))
    channels = rt.catalog.snapshot.channels.values()
    return render_template(
        "index.html",
        t=translator(language),
        language=language,
        languages=sorted(CATALOGS),
        version=__version__,
        uptime_seconds=int(time.time() - rt.started_at),
        channels_enabled=sum(1 for c in channels if c.status == "enabled"),
        channels_auto_disabled=sum(1 for c in channels if c.status == "auto_disabled"),
        base_url=request.host_url.rstrip("/") + "/v1",
    )
