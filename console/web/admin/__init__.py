"""The admin pages under `/admin/`: channels, users and wallets, prices, groups, redemption codes and
settings. Admins only: a signed-out visitor is sent to the sign-in page, a user gets 403, for every URL of
the blueprint (the check runs before each view, so no view can forget it).

Every write goes through the `gateway.domain` function the management API calls, followed by the same
runtime notice (`changed_catalog`, `changed_keys`, `credited`), so the relay and `/api/` see it at once.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from console.web import locale
from console.web.extensions import htmx
from gateway.neutral import GatewayError

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _admins_only() -> Response | None:
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
    if not current_user.is_admin:
        abort(403)
    return None


@bp.errorhandler(403)
def _forbidden(_err: Exception) -> tuple[str, int]:
    text = _("This page is for admins.")
    return render_template("message.html", title=_("Not allowed"), text=text), 403


@bp.errorhandler(404)
def _missing(_err: Exception) -> tuple[str, int]:
    text = _("It may have been deleted.")
    return render_template("message.html", title=_("Not found"), text=text), 404


@bp.get("/")
def index() -> Response:
    return redirect(url_for("admin.channels_page"))


def is_htmx() -> bool:
    """Whether htmx asks for a partial."""
    return bool(htmx)


def runtime() -> Any:
    return current_app.extensions["relayhouse"]


def refusal(err: GatewayError, labels: dict[str, str] | None = None) -> str:
    """A domain refusal for the page: its exact English text in English; elsewhere a translated sentence
    naming the field, so no page mixes languages."""
    if locale.current() == locale.DEFAULT:
        return err.message
    field = (labels or {}).get(err.param or "", "")
    if field:
        return _("This was not saved: check the field “%(field)s”.", field=field)
    return _("This was not saved: a value was refused.")


def done(message: str, endpoint: str, **values: Any) -> Response:
    """Redirect after a successful POST, with the message shown on the next page."""
    flash(message)
    return redirect(url_for(endpoint, **values))


def form_text(name: str) -> str:
    return request.form.get(name, "").strip()


def form_int(name: str, default: int | None = None) -> Any:
    """An integer from the form; a text that is not one goes on as text, for the domain to refuse by name."""
    value = form_text(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        return value


def form_list(name: str) -> list[str]:
    """Items separated by commas or new lines."""
    return [item.strip() for item in request.form.get(name, "").replace("\n", ",").split(",") if item.strip()]


from console.web.admin import channels, codes, prices, settings, users  # noqa: E402  (routes on bp)

__all__ = ["bp", "channels", "codes", "prices", "settings", "users"]
