"""Admin: prices per model (input, output, cached input and cache write per 1M tokens, or per request)
and group multipliers, through `gateway.domain.pricing` with the catalog notice, as `/api/prices` and
`/api/groups` do."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import render_template, request
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from console.web.admin import bp, done, form_text, is_htmx, refusal, runtime
from gateway.domain import pricing
from gateway.domain.models import Group, Price, User, db
from gateway.neutral import GatewayError

PRICE_FORM = tuple(pricing.PRICE_FIELDS)  # the form's inputs carry the API's field names


def price_labels() -> dict[str, str]:
    return {
        "model": _("Model"),
        "input_per_mtok_usd": _("Input"),
        "output_per_mtok_usd": _("Output"),
        "cached_input_per_mtok_usd": _("Cached input"),
        "cache_write_per_mtok_usd": _("Cache write"),
        "per_request_usd": _("Per request"),
    }


def _price_form(price: Price) -> dict[str, str]:
    """A stored price as the form shows it, in US dollars, so that editing one starts from its values."""
    shown = {"model": price.model}
    for name, value in pricing.price_json(price).items():
        if name in pricing.PRICE_FIELDS and value is not None:
            shown[name] = format(Decimal(value).quantize(Decimal("0.000001")).normalize(), "f")
    return shown


def _prices() -> list[Price]:
    return list(db.session.scalars(db.select(Price).order_by(Price.model)))


def _prices_page(error: str | None = None, form: Any = None) -> tuple[str, int]:
    page = render_template(
        "admin/prices.html", prices=_prices(), error=error, form=form or {}, labels=price_labels()
    )
    return page, 400 if error else 200


@bp.route("/prices", methods=["GET", "POST"])
def prices_page() -> tuple[str, int] | Response:
    if request.method == "GET":
        price = db.session.get(Price, request.args.get("model", ""))
        return _prices_page(form=_price_form(price) if price is not None else None)
    fields = {name: form_text(name) for name in PRICE_FORM if form_text(name)}
    try:
        price = pricing.put_price(form_text("model"), fields)
    except GatewayError as err:
        db.session.rollback()
        return _prices_page(refusal(err, price_labels()), request.form)
    runtime().changed_catalog()
    return done(_("The price of %(model)s was saved.", model=price.model), "admin.prices_page")


@bp.post("/prices/delete")
def delete_price() -> str | Response:
    model = form_text("model")
    try:
        deleted = pricing.delete_price(model)
    except GatewayError:
        deleted = False
    if deleted:
        runtime().changed_catalog()
    if is_htmx():
        return render_template("partials/admin_prices.html", prices=_prices())
    message = _("The price of %(model)s was deleted.", model=model) if deleted else _("No such price.")
    return done(message, "admin.prices_page")


def _groups_page(error: str | None = None, form: Any = None) -> tuple[str, int]:
    groups = list(db.session.scalars(db.select(Group).order_by(Group.name)))
    members = dict(db.session.execute(db.select(User.group, db.func.count()).group_by(User.group)).all())
    page = render_template("admin/groups.html", groups=groups, members=members, error=error, form=form or {})
    return page, 400 if error else 200


@bp.route("/groups", methods=["GET", "POST"])
def groups_page() -> tuple[str, int] | Response:
    if request.method == "GET":
        return _groups_page()
    try:
        group = pricing.put_group(form_text("name"), form_text("multiplier") or "1")
    except GatewayError as err:
        db.session.rollback()
        labels = {"name": _("Group"), "multiplier": _("Multiplier")}
        return _groups_page(refusal(err, labels), request.form)
    runtime().changed_catalog()
    message = _(
        "Group %(name)s pays %(multiplier)s× the price.", name=group.name, multiplier=group.multiplier
    )
    return done(message, "admin.groups_page")
