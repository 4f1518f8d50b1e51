"""Prices, group multipliers, settings, wallets and redemption codes."""

from __future__ import annotations

from flask import jsonify, request

from console.api import body, bp, current_user, not_found, page_args, require, runtime
from gateway.domain import bounds, ledger, pricing, settings
from gateway.domain.models import Group, Price, User, db
from gateway.neutral import bad_request


@bp.get("/prices")
@require()
def list_prices():  # noqa: ANN201
    rows = db.session.scalars(db.select(Price).order_by(Price.model))
    return jsonify(data=[pricing.price_json(p) for p in rows])


@bp.put("/prices/<path:model>")
@require("admin")
def put_price(model: str):  # noqa: ANN201
    price = pricing.put_price(model, body())
    runtime().changed_catalog()
    return jsonify(pricing.price_json(price))


@bp.delete("/prices/<path:model>")
@require("admin")
def delete_price(model: str):  # noqa: ANN201
    if not pricing.delete_price(model):
        raise not_found("price")
    runtime().changed_catalog()
    return jsonify(model=model, deleted=True)


@bp.get("/groups")
@require("admin")
def list_groups():  # noqa: ANN201
    rows = db.session.scalars(db.select(Group).order_by(Group.name))
    return jsonify(data=[{"name": g.name, "multiplier": g.multiplier} for g in rows])


@bp.put("/groups/<name>")
@require("admin")
def put_group(name: str):  # noqa: ANN201
    data = body()
    bounds.only(data, ("multiplier",), "group")
    group = pricing.put_group(name, data.get("multiplier", "1"))
    runtime().changed_catalog()
    return jsonify(name=group.name, multiplier=group.multiplier)


@bp.get("/settings")
@require("admin")
def get_settings():  # noqa: ANN201
    return jsonify(_settings())


def _settings() -> dict:
    return {name: pricing.get_setting(name, default) for name, default in settings.DEFAULTS.items()}


@bp.patch("/settings")
@require("admin")
def patch_settings():  # noqa: ANN201
    for name, value in settings.checked(body()).items():
        pricing.put_setting(name, value)
    runtime().changed_catalog()
    return jsonify(_settings())


@bp.post("/redemptions")
@require("admin")
def create_redemptions():  # noqa: ANN201
    data = body()
    bounds.only(data, ("amount_usd", "count"), "redemption")
    amount = pricing.usd_to_micro(data.get("amount_usd"), "amount_usd")
    codes = ledger.create_redemptions(amount, data.get("count", 1), current_user().id)
    return jsonify(codes=codes, amount_usd=pricing.micro_to_usd(amount)), 201


@bp.post("/wallet/redeem")
@require()
def redeem():  # noqa: ANN201
    me = current_user()
    data = body()
    bounds.only(data, ("code",), "redemption")
    amount = ledger.redeem(me.id, data.get("code"))
    runtime().credited(me.id)
    db.session.refresh(me)
    return jsonify(amount_micro_usd=amount, balance_micro_usd=me.balance_micro_usd)


def _wallet(user: User):  # noqa: ANN202
    page, per_page = page_args()
    rows, total = ledger.entries(user.id, per_page, (page - 1) * per_page)
    return jsonify(
        user_id=user.id,
        balance_micro_usd=user.balance_micro_usd,
        balance_usd=pricing.micro_to_usd(user.balance_micro_usd),
        ledger=[ledger.entry_json(e) for e in rows],
        total=total,
    )


@bp.get("/wallet")
@require()
def wallet():  # noqa: ANN201
    return _wallet(current_user())


@bp.get("/users/<int:user_id>/wallet")
@require("admin")
def user_wallet(user_id: int):  # noqa: ANN201
    user = db.session.get(User, user_id)
    if user is None:
        raise not_found("user")
    return _wallet(user)


@bp.post("/users/<int:user_id>/wallet")
@require("admin")
def adjust_wallet(user_id: int):  # noqa: ANN201
    if db.session.get(User, user_id) is None:
        raise not_found("user")
    data = body()
    bounds.only(data, ("amount_usd", "reason", "kind"), "wallet")
    amount = pricing.usd_to_micro(data.get("amount_usd"), "amount_usd")
    if amount == 0:
        raise bad_request("amount_usd must not be zero", "amount_usd")
    reason = bounds.text(data.get("reason") or "", "reason", ledger.REASON_MAX)
    kind = request.args.get("kind") or data.get("kind") or ("topup" if amount > 0 else "adjustment")
    if kind not in ("topup", "adjustment", "refund"):
        raise bad_request("kind must be topup, adjustment or refund", "kind")
    balance = ledger.post(user_id, kind, amount, reason)
    runtime().credited(user_id)
    return jsonify(user_id=user_id, amount_micro_usd=amount, balance_micro_usd=balance), 201
