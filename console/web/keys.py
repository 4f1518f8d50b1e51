"""The API keys page (`/keys`): the signed-in user's own keys. Create one (the full key is shown once, with
a copy button), list them with prefix, name, status, spend, limits, expiry and last use, edit a key's
limits, disable or enable it, delete it. htmx swaps one row (or the created key and the table) in place;
every form also works as a plain POST.

Keys are written through `gateway.domain.keys`, as `/api/keys` writes them, and a change is announced to
the relay (`changed_keys`) as the API does, so it takes effect at once. Another user's key is a 404, for
admins too: they manage other users' keys through the API.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from console.web import locale
from console.web.extensions import htmx
from console.web.models import model_rows
from gateway.domain import keys
from gateway.domain.models import ApiKey, db
from gateway.neutral import GatewayError

bp = Blueprint("keys", __name__)


def _labels() -> dict[str, str]:
    """The form's fields as the page names them, to say which one the domain refused."""
    return {
        "name": _("Name"),
        "spend_limit_usd": _("Spend limit (USD)"),
        "expires_at": _("Expires on"),
        "models": _("Allowed models"),
        "allowed_ips": _("Allowed IP addresses"),
        "requests_per_minute": _("Requests per minute"),
        "requests_per_hour": _("Requests per hour"),
        "tokens_per_minute": _("Tokens per minute"),
        "tokens_per_month": _("Tokens per month"),
        "max_concurrent": _("Concurrent requests"),
    }


def _refused(err: GatewayError) -> str:
    field = _labels().get(err.param or "", "")
    if field:
        return _("This value is not accepted: %(field)s.", field=field)
    return _("The key could not be saved.")


def _fields(form: MultiDict[str, str]) -> dict[str, Any]:
    """The form as the domain takes a key's fields: empty means no limit."""
    fields: dict[str, Any] = {"name": form.get("name", "").strip()}
    fields["spend_limit_usd"] = form.get("spend_limit_usd", "").strip() or None
    typed = form.get("expires_at", "").strip()
    day = locale.parse_day(typed)
    fields["expires_at"] = day.isoformat() if day else typed or None  # not a date: the domain refuses it
    fields["models"] = [m for m in form.getlist("models") if m] or None
    fields["allowed_ips"] = form.get("allowed_ips", "").replace(",", " ").split() or None
    for name in keys.LIMIT_FIELDS:
        raw = form.get(name, "").strip()
        fields[name] = int(raw) if raw.lstrip("-").isdigit() else (raw or None)  # a word: the domain refuses
    return fields


def _own_key(key_id: int) -> ApiKey:
    key = keys.manageable_key(current_user.row, key_id, own_only=True)
    if key is None:
        abort(404)
    return key


def _callable_models() -> list[str]:
    return [row.name for row in model_rows(current_user.row)[0]]


def _my_keys() -> list[ApiKey]:
    query = db.select(ApiKey).where(ApiKey.user_id == current_user.row.id).order_by(ApiKey.id.desc())
    return list(db.session.scalars(query))


def _changed(key_id: int) -> None:
    current_app.extensions["relayhouse"].changed_keys(key_id=key_id)


def _is_htmx() -> bool:
    return bool(htmx)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)  # as the columns store it


def _page(**context: Any) -> str:
    return render_template("keys.html", keys=_my_keys(), models=_callable_models(), now=_now(), **context)


def _area(**context: Any) -> str:
    return render_template("partials/keys_area.html", keys=_my_keys(), now=_now(), **context)


def _row(key: ApiKey) -> str:
    return render_template("partials/keys_row.html", key=key, now=_now())


@bp.get("/keys")
@login_required
def keys_page() -> str:
    return _page()


@bp.post("/keys")
@login_required
def create() -> str | tuple[str, int]:
    """The full key goes into this one answer and nowhere else: not the session, not a redirect."""
    try:
        key, plain = keys.create_key(current_user.row.id, _fields(request.form))
    except GatewayError as err:
        db.session.rollback()
        if _is_htmx():
            return _area(error=_refused(err))  # htmx swaps only a 2xx answer
        return _page(error=_refused(err), form=request.form), 400
    if _is_htmx():
        return _area(created=plain, created_key=key)
    return _page(created=plain, created_key=key), 201


@bp.get("/keys/<int:key_id>")
@login_required
def row(key_id: int) -> str:
    return _row(_own_key(key_id))


@bp.route("/keys/<int:key_id>/edit", methods=["GET", "POST"])
@login_required
def edit(key_id: int) -> str | Response | tuple[str, int]:
    key = _own_key(key_id)
    error = None
    if request.method == "POST":
        try:
            keys.update_key(key, _fields(request.form))
        except GatewayError as err:
            db.session.rollback()
            error = _refused(err)
        else:
            _changed(key.id)
            return _row(key) if _is_htmx() else redirect(url_for("keys.keys_page"))
    key = _own_key(key_id)  # as stored, after a refused change
    template = "partials/keys_edit_row.html" if _is_htmx() else "keys_edit.html"
    page = render_template(template, key=key, models=_callable_models(), error=error, form=request.form)
    return (page, 400) if error and not _is_htmx() else page


@bp.post("/keys/<int:key_id>/status")
@login_required
def set_status(key_id: int) -> str | Response:
    key = _own_key(key_id)
    keys.update_key(key, {"status": "disabled" if key.status == "active" else "active"})
    _changed(key.id)
    return _row(key) if _is_htmx() else redirect(url_for("keys.keys_page"))


@bp.post("/keys/<int:key_id>/delete")
@login_required
def delete(key_id: int) -> str | Response:
    if not keys.delete_key(current_user.row, key_id, own_only=True):
        abort(404)
    _changed(key_id)
    return "" if _is_htmx() else redirect(url_for("keys.keys_page"))
