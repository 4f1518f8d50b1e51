"""The wallet page: the balance, the ledger (paged), redeeming a code, and card top-ups through Stripe
Checkout when Stripe is configured (`gateway.domain.payments`), with the webhook Stripe calls when a
payment is made (`POST /stripe/webhook`, exempt from CSRF: Stripe signs it instead)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from console.web import locale
from console.web.extensions import csrf, htmx
from gateway.domain import ledger, payments
from gateway.domain.models import db
from gateway.neutral import GatewayError

bp = Blueprint("wallet", __name__)
PER_PAGE = 20
KINDS = {
    "topup": lazy_gettext("Top-up"),
    "redemption": lazy_gettext("Redeemed code"),
    "charge": lazy_gettext("Usage charge"),
    "refund": lazy_gettext("Refund"),
    "adjustment": lazy_gettext("Adjustment"),
}
PAYMENT_STATES = {"pending": lazy_gettext("Pending"), "paid": lazy_gettext("Paid")}


@bp.record_once
def _exempt_webhook(_state: Any) -> None:
    csrf.exempt(stripe_webhook)


def _page() -> int:
    value = request.args.get("page", "1")
    return min(int(value), 10**6) if value.isdigit() and int(value) > 0 else 1


def _context(**extra: Any) -> dict[str, Any]:
    user = current_user.row
    db.session.refresh(user)
    page = _page()
    rows, total = ledger.entries(user.id, PER_PAGE, (page - 1) * PER_PAGE)
    return {
        "balance_micro_usd": user.balance_micro_usd,
        "entries": rows,
        "kinds": KINDS,
        "page": page,
        "pages": max(1, -(-total // PER_PAGE)),
        "total": total,
        "stripe": payments.stripe_settings(current_app.config) is not None,
        "payments": payments.recent(user.id),
        "payment_states": PAYMENT_STATES,
        "checkout": request.args.get("checkout"),
        **extra,
    }


@bp.get("/wallet")
@login_required
def wallet() -> str:
    if htmx:
        return render_template("partials/wallet_ledger.html", **_context())
    return render_template("wallet.html", **_context())


@bp.post("/wallet/redeem")
@login_required
def redeem() -> str | Response | tuple[str, int]:
    code = request.form.get("code", "")
    try:
        amount = ledger.redeem(current_user.row.id, code)
    except GatewayError:
        error = _("This code is unknown or was already used.")
        if htmx:  # htmx swaps only 2xx answers by default: the message is part of the card
            return render_template("partials/wallet_main.html", **_context(redeem_error=error))
        return render_template("wallet.html", **_context(redeem_error=error)), 400
    current_app.extensions["relayhouse"].credited(current_user.row.id)
    message = _("%(amount)s was added to your wallet.", amount=locale.money(amount))
    if htmx:
        return render_template("partials/wallet_main.html", **_context(redeemed=message))
    flash(message)
    return redirect(url_for("wallet.wallet"), 303)


@bp.post("/wallet/topup")
@login_required
def topup() -> str | Response | tuple[str, int]:
    settings = payments.stripe_settings(current_app.config)
    if settings is None:
        return render_template("wallet.html", **_context()), 404
    try:
        amount = payments.parse_amount(request.form.get("amount_usd", "").strip())
    except GatewayError:
        error = _("Enter an amount from $1 to $10,000, in whole cents.")
        return render_template("wallet.html", **_context(topup_error=error)), 400
    back = url_for("wallet.wallet", _external=True)
    try:
        url = payments.start_checkout(
            settings,
            current_user.row.id,
            amount,
            success_url=back + "?checkout=success",
            cancel_url=back + "?checkout=cancel",
        )
    except GatewayError:
        error = _("The payment provider is not answering; try again later.")
        return render_template("wallet.html", **_context(topup_error=error)), 502
    if htmx:
        return Response(status=204, headers={"HX-Redirect": url})
    return redirect(url, 303)


@bp.post("/stripe/webhook")
def stripe_webhook() -> Response | tuple[Response, int]:
    settings = payments.stripe_settings(current_app.config)
    if settings is None:
        return jsonify(error="Stripe is not configured"), 404
    try:
        user_id = payments.handle_webhook(
            settings, request.get_data(), request.headers.get("Stripe-Signature")
        )
    except GatewayError as err:
        return jsonify(error=err.message), err.status
    if user_id is not None:
        current_app.extensions["relayhouse"].credited(user_id)
    return jsonify(received=True)
