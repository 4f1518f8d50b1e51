"""Admin: the gateway's settings, kept in the `settings` table through `gateway.domain.pricing` with the
catalog notice (the relay and the home page read them from the catalog): the public URL (the home page's
base URL), self-registration, the default group of new users, the retry attempts across channels and
whether models without a price may be called."""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from console.web.admin import bp, done, form_int, form_text, refusal, runtime
from gateway.domain import accounts, bounds, pricing, settings
from gateway.neutral import GatewayError

URL_MAX = settings.URL_MAX
RETRIES_MAX = settings.RETRIES_MAX


def labels() -> dict[str, str]:
    return {
        "public_url": _("Public URL"),
        "registration": _("Registration"),
        "default_group": _("Default group for new users"),
        "retry_attempts": _("Retry attempts"),
        "allow_free_models": _("Models without a price"),
    }


def current() -> dict[str, Any]:
    return {
        "public_url": pricing.get_setting("public_url", "") or "",
        "registration": bool(pricing.get_setting("registration", False)),
        "default_group": pricing.get_setting("default_group", "") or "",
        "retry_attempts": pricing.get_setting("retry_attempts", None),
        "allow_free_models": bool(pricing.get_setting("allow_free_models", False)),
    }


def _public_url(value: str) -> str:
    return settings.public_url(value)


def _form() -> dict[str, Any]:
    group = form_text("default_group")
    retries = form_int("retry_attempts")
    return {
        "public_url": _public_url(form_text("public_url")),
        "registration": request.form.get("registration") == "on",
        "default_group": bounds.text(group, "default_group", accounts.GROUP_MAX) if group else "",
        "retry_attempts": None
        if retries is None
        else bounds.integer(retries, "retry_attempts", 1, RETRIES_MAX),
        "allow_free_models": request.form.get("allow_free_models") == "on",
    }


@bp.route("/settings", methods=["GET", "POST"])
def settings_page() -> tuple[str, int] | Response:
    error, values = None, current()
    if request.method == "POST":
        try:
            changes = _form()
        except GatewayError as err:
            error = refusal(err, labels())
            values = {**values, **{k: request.form.get(k, "") for k in values}}
        else:
            for name, value in changes.items():
                pricing.put_setting(name, value)
            runtime().changed_catalog()
            return done(_("The settings were saved."), "admin.settings_page")
    page = render_template(
        "admin/settings.html",
        values=values,
        error=error,
        labels=labels(),
        env_retries=runtime().settings.retry_attempts,
        retries_max=RETRIES_MAX,
    )
    return page, 400 if error else 200
