"""The usage page: the log table with filters (model, key, status, dates; admins also pick a user) and
paging, the totals of what the filters select, and charts of requests, tokens and spend over time by model
or by key. Reads through `gateway.domain.usage`, the same filter `GET /api/logs` answers from.
The dates are text fields in the page language's short date (see `console.web.locale.show_day`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from babel.core import Locale
from babel.dates import format_skeleton
from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.datastructures import MultiDict

from console.web import charts, locale
from console.web.extensions import htmx
from gateway.domain import usage
from gateway.domain.models import ApiKey, Price, User, db, utcnow

bp = Blueprint("usage", __name__)
PER_PAGE = 50
DEFAULT_DAYS = 7
TOP_GROUPS = 6  # series drawn on their own; the rest are summed as "other"
PICK_MAX = 500  # users and keys offered in the filters' lists


def _int(value: str | None, high: int = 2**31 - 1) -> int | None:
    return int(value) if value and value.isdigit() and 0 < int(value) <= high else None


def _form(args: MultiDict[str, str]) -> dict[str, Any]:
    """The filters as the form shows them, each checked and put back in range."""
    today = utcnow().date()
    since = locale.parse_day(args.get("since")) or today - dt.timedelta(days=DEFAULT_DAYS - 1)
    until = locale.parse_day(args.get("until"))
    if until is not None and until < since:
        until = since
    status = args.get("status", "")
    return {
        "user": _int(args.get("user")) if current_user.is_admin else None,
        "key": _int(args.get("key")),
        "model": args.get("model", "").strip()[:128],
        "status": status if status in ("ok", "error") or (status.isdigit() and len(status) == 3) else "",
        "since": since,
        "until": until,
        "by": args.get("by") if args.get("by") in usage.GROUPS else "model",
        "page": _int(args.get("page"), 10**6) or 1,
    }


def _filter(form: dict[str, Any]) -> usage.LogFilter:
    status = form["status"]
    return usage.LogFilter(
        user_id=form["user"] if current_user.is_admin else current_user.row.id,
        key_id=form["key"],
        model=form["model"] or None,
        status=int(status) if status.isdigit() else None,
        failed={"ok": False, "error": True}.get(status),
        since=dt.datetime.combine(form["since"], dt.time()),
        until=dt.datetime.combine(form["until"] + dt.timedelta(days=1), dt.time()) if form["until"] else None,
    )


def _query(form: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The filters as query arguments, for links that keep them (paging)."""
    merged = {**form, **changes}
    merged["since"] = merged["since"].isoformat()
    merged["until"] = merged["until"].isoformat() if merged["until"] else ""
    return {k: v for k, v in merged.items() if v not in ("", None)}


def _buckets(form: dict[str, Any]) -> tuple[str, list[dt.datetime]]:
    """Hours for a range of two days or less, else days; every one of them, so quiet ones show as gaps."""
    start = dt.datetime.combine(form["since"], dt.time())
    end = dt.datetime.combine((form["until"] or utcnow().date()) + dt.timedelta(days=1), dt.time())
    size = "hour" if end - start <= dt.timedelta(days=2) else "day"
    step = dt.timedelta(hours=1) if size == "hour" else dt.timedelta(days=1)
    count = min(int((end - start) / step), 400)
    return size, [start + i * step for i in range(count)]


def _charts(flt: usage.LogFilter, form: dict[str, Any]) -> dict[str, Any]:
    size, buckets = _buckets(form)
    points = usage.series(flt, form["by"], size)
    weight: dict[Any, int] = {}
    for p in points:
        weight[p.group] = weight.get(p.group, 0) + p.requests
    top = sorted(weight, key=lambda g: -weight[g])[:TOP_GROUPS]
    other = len(weight) > len(top)
    names = usage.key_names({g for g in top if isinstance(g, int)}) if form["by"] == "key" else {}
    index = {b: i for i, b in enumerate(buckets)}
    slots = [*top, "__other__"] if other else top
    values = {metric: {g: [0.0] * len(buckets) for g in slots} for metric in ("requests", "tokens", "cost")}
    for p in points:
        i = index.get(p.bucket)
        if i is None:
            continue
        g = p.group if p.group in top else "__other__"
        values["requests"][g][i] += p.requests
        values["tokens"][g][i] += p.tokens
        values["cost"][g][i] += p.cost_micro_usd

    def label(g: Any) -> str:
        if g == "__other__":
            return _("Other")
        if form["by"] == "key":
            return names.get(g, _("No key") if g is None else f"#{g}")
        return g or _("Unknown model")

    language = Locale.parse(locale.current())
    xs = [format_skeleton("MMMd", b, locale=language) for b in buckets]
    if size == "hour":
        xs = [f"{x} {format_skeleton('Hm', b, locale=language)}" for x, b in zip(xs, buckets, strict=True)]
    kinds = (
        ("requests", _("Requests"), locale.number),
        ("tokens", _("Tokens"), locale.number),
        ("cost", _("Spend"), lambda v: locale.money(int(v))),
    )
    drawn = {}
    for metric, title, fmt in kinds:
        series = [charts.Series(label(g), values[metric][g]) for g in slots]
        drawn[metric] = charts.stacked_bars(title, xs, series, fmt, _("No requests in this range."))
    return {"charts": drawn, "legend": charts.legend([charts.Series(label(g), []) for g in slots])}


@bp.get("/usage")
@login_required
def usage_page() -> Any:
    form = _form(request.args)
    typed = _typed_dates(request.args)
    canonical = url_for("usage.usage_page", **_query(form, page=form["page"] if form["page"] > 1 else None))
    if typed and not htmx:
        return redirect(canonical)  # a shared link reads the same in every language
    flt = _filter(form)
    usage.refresh()  # first: a refresh that commits would unload the rows read before it
    totals = usage.totals(flt)
    pages = max(1, -(-totals.requests // PER_PAGE))
    form["page"] = min(form["page"], pages)
    rows = usage.page(flt, PER_PAGE, (form["page"] - 1) * PER_PAGE)
    context = {
        "form": form,
        "totals": totals,
        "rows": rows,
        "pages": pages,
        "query": lambda **changes: _query(form, **changes),
        "key_names": usage.key_names({r.key_id for r in rows if r.key_id is not None}),
        "usernames": _usernames({r.user_id for r in rows if r.user_id is not None}),
        **_charts(flt, form),
    }
    if htmx and request.headers.get("HX-Target") == "usage-results":
        partial = make_response(render_template("partials/usage_results.html", **context))
        if typed:
            partial.headers["HX-Push-Url"] = canonical  # the address bar gets ISO dates, not the typed ones
        return partial
    return render_template("usage.html", **context, **_choices(form))


def _typed_dates(args: MultiDict[str, str]) -> bool:
    """Whether a date came as the reader typed it (the page language's form, or nonsense), not as ISO."""
    for name in ("since", "until"):
        value = (args.get(name) or "").strip()
        if value:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                return True
    return False


def _usernames(user_ids: set[int]) -> dict[int, str]:
    if not current_user.is_admin or not user_ids:
        return {}
    return dict(db.session.execute(db.select(User.id, User.username).where(User.id.in_(user_ids))).all())


def _choices(form: dict[str, Any]) -> dict[str, Any]:
    """What the filters offer: users (admins), keys (of the chosen user, or one's own), priced models."""
    owner = form["user"] if current_user.is_admin else current_user.row.id
    keys = db.select(ApiKey.id, ApiKey.name, ApiKey.prefix).order_by(ApiKey.id).limit(PICK_MAX)
    if owner is not None:
        keys = keys.where(ApiKey.user_id == owner)
    users = []
    if current_user.is_admin:
        users = db.session.execute(
            db.select(User.id, User.username).order_by(User.username).limit(PICK_MAX)
        ).all()
    return {
        "users": users,
        "keys": [(kid, name or f"{prefix}…") for kid, name, prefix in db.session.execute(keys)],
        "models": list(db.session.scalars(db.select(Price.model).order_by(Price.model).limit(PICK_MAX))),
    }
