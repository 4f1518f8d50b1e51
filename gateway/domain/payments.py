"""Card top-ups through Stripe Checkout: the `payments` table, the Checkout Session a top-up opens, and the
signed webhook that credits the wallet exactly once.

A top-up is a `payments` row (pending) first, then a Checkout Session (mode `payment`, one line item priced
in USD cents) whose `client_reference_id` and metadata carry the user and the row, so the webhook can find
it even when the process died before it stored the session id. Stripe sends each event at least once and
may send it again (https://docs.stripe.com/webhooks#handle-duplicate-events): the credit is one conditional
UPDATE of the row from `pending` to `paid` plus its ledger entry, in one transaction, so a replayed event
finds nothing to change and credits nothing. Events are verified with `stripe.Webhook.construct_event`
(the `Stripe-Signature` header: `t=<unix time>,v1=<HMAC-SHA256 of "t.payload">`); a forged, stale or
unsigned one is refused before anything is read from it.

Configuration comes from the app config or the environment: `STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET`,
and `STRIPE_API_BASE` (another address for Stripe's API, such as a local fake in tests).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, or_, update
from sqlalchemy.orm import Mapped, mapped_column

from gateway.domain import ledger
from gateway.domain.models import db, utcnow
from gateway.neutral import GatewayError, bad_request

log = logging.getLogger("relayhouse.payments")
MICROS_PER_CENT = 10_000
TOPUP_MIN_MICRO = 1_000_000  # Stripe's own floor for a USD charge is $0.50
TOPUP_MAX_MICRO = 10_000_000_000  # $10,000
PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


class Payment(db.Model):
    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount_micro_usd: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, paid
    session_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    paid_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


@dataclass(slots=True, frozen=True)
class StripeSettings:
    secret_key: str
    webhook_secret: str
    api_base: str | None = None


def stripe_settings(config: Mapping[str, Any]) -> StripeSettings | None:
    """Stripe's keys from the app config, else the environment; None when top-ups are not configured."""

    def get(name: str) -> str:
        return str(config.get(name) or os.environ.get(name) or "")

    secret_key, webhook_secret = get("STRIPE_SECRET_KEY"), get("STRIPE_WEBHOOK_SECRET")
    if not secret_key or not webhook_secret:
        return None
    return StripeSettings(secret_key, webhook_secret, get("STRIPE_API_BASE") or None)


def parse_amount(value: Any) -> int:
    """A top-up amount in USD (whole cents, within the bounds) as micro-USD."""
    from gateway.domain import pricing

    amount = pricing.usd_to_micro(value, "amount_usd")
    if amount % MICROS_PER_CENT:
        raise bad_request("amount_usd must be whole cents", "amount_usd")
    if not TOPUP_MIN_MICRO <= amount <= TOPUP_MAX_MICRO:
        raise bad_request("amount_usd must be from 1 to 10000", "amount_usd")
    return amount


def start_checkout(
    settings: StripeSettings, user_id: int, amount_micro_usd: int, success_url: str, cancel_url: str
) -> str:
    """A pending payment and its Checkout Session; returns the session's URL to send the user to."""
    payment = Payment(user_id=user_id, amount_micro_usd=amount_micro_usd, status="pending")
    db.session.add(payment)
    db.session.commit()
    client = stripe.StripeClient(
        settings.secret_key,
        base_addresses={"api": settings.api_base} if settings.api_base else None,
        max_network_retries=2,  # retried with an idempotency key the library adds
    )
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": "usd",
                    "unit_amount": amount_micro_usd // MICROS_PER_CENT,
                    "product_data": {"name": "Relayhouse wallet top-up"},
                },
            }
        ],
        "client_reference_id": str(user_id),
        "metadata": {"user_id": str(user_id), "payment_id": str(payment.id)},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    try:
        session = client.v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        log.warning("Stripe refused a Checkout Session: %s", exc)
        raise GatewayError(
            502, "The payment provider is not answering; try again later.", "api_error", "payment_unavailable"
        ) from None
    payment.session_id = session.id
    db.session.commit()
    return str(session.url)


def handle_webhook(settings: StripeSettings, payload: bytes, signature: str | None) -> int | None:
    """Verify one event and act on it; returns the id of the user whose wallet it credited, if any."""
    try:
        event = stripe.Webhook.construct_event(payload, signature, settings.webhook_secret)
    except (ValueError, stripe.SignatureVerificationError):
        raise GatewayError(400, "invalid Stripe signature or payload", code="invalid_signature") from None
    if event.type not in PAID_EVENTS:
        return None  # acknowledged: Stripe stops sending what we answer 2xx to
    return credit(event.data.object.to_dict())


def credit(session: Mapping[str, Any]) -> int | None:
    """Credit a paid Checkout Session's payment once: the row moves from pending to paid in the same
    transaction as its ledger entry, so only one of any number of deliveries changes it."""
    if session.get("payment_status") != "paid":
        return None  # e.g. a bank transfer still on its way: async_payment_succeeded follows
    metadata = session.get("metadata") or {}
    session_id = session.get("id")
    try:
        payment_id, user_id = int(metadata.get("payment_id")), int(metadata.get("user_id"))
    except (TypeError, ValueError):
        log.warning("a paid Checkout Session %s carries no payment of ours", session_id)
        return None
    payment = db.session.get(Payment, payment_id)
    cents = session.get("amount_total")
    if payment is None or payment.user_id != user_id or cents != payment.amount_micro_usd // MICROS_PER_CENT:
        log.warning("a paid Checkout Session %s does not match payment %s", session_id, payment_id)
        return None
    moved = db.session.execute(
        update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.status == "pending",
            or_(Payment.session_id.is_(None), Payment.session_id == session_id),
        )
        .values(status="paid", session_id=session_id, paid_at=utcnow())
    )
    if moved.rowcount != 1:
        db.session.rollback()
        return None  # already credited: a replay
    ledger.add_entry(user_id, "topup", payment.amount_micro_usd, f"Stripe Checkout {session_id}")
    db.session.commit()
    return user_id


def recent(user_id: int, limit: int = 10) -> list[Payment]:
    query = db.select(Payment).where(Payment.user_id == user_id).order_by(Payment.id.desc()).limit(limit)
    return list(db.session.scalars(query))
