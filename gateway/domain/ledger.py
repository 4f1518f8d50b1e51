"""The ledger: a wallet's balance changes only through entries written here, each in the same
transaction as the balance update it explains.

Kinds: topup, redemption, charge (written by `gateway.writer` with its usage log row), refund, adjustment.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import update

from gateway.domain import bounds
from gateway.domain.crypto import hash_secret
from gateway.domain.models import LedgerEntry, Redemption, User, db, utcnow
from gateway.neutral import GatewayError, bad_request

KINDS = ("topup", "redemption", "charge", "refund", "adjustment")
CODE_MAX = 128  # codes are "rh-" and 24 characters; anything far longer is not one
REASON_MAX = 1000  # a TEXT column: bounded all the same


def entry_json(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount_micro_usd": entry.amount_micro_usd,
        "reason": entry.reason,
        "request_id": entry.request_id,
        "created_at": entry.created_at.isoformat() + "Z",
    }


def add_entry(
    user_id: int, kind: str, amount_micro_usd: int, reason: str = "", request_id: str | None = None
):
    """Stage one entry and its balance change in the current transaction (the caller commits)."""
    assert kind in KINDS, kind
    db.session.add(
        LedgerEntry(
            user_id=user_id,
            kind=kind,
            amount_micro_usd=amount_micro_usd,
            reason=reason,
            request_id=request_id,
        )
    )
    db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(balance_micro_usd=User.balance_micro_usd + amount_micro_usd)
    )


def post(user_id: int, kind: str, amount_micro_usd: int, reason: str = "") -> int:
    """Write one entry now; returns the new balance."""
    add_entry(user_id, kind, amount_micro_usd, reason)
    db.session.commit()
    return db.session.scalar(db.select(User.balance_micro_usd).where(User.id == user_id))


def entries(user_id: int, limit: int = 50, offset: int = 0) -> tuple[list[LedgerEntry], int]:
    query = db.select(LedgerEntry).where(LedgerEntry.user_id == user_id)
    total = db.session.scalar(db.select(db.func.count()).select_from(query.subquery()))
    rows = db.session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), total or 0


def create_redemptions(amount_micro_usd: int, count: int, created_by: int | None) -> list[str]:
    if amount_micro_usd <= 0:
        raise bad_request("amount_usd must be positive", "amount_usd")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 1000:
        raise bad_request("count must be an integer from 1 to 1000", "count")
    codes = ["rh-" + secrets.token_urlsafe(18) for _ in range(count)]
    for code in codes:
        db.session.add(
            Redemption(code_hash=hash_secret(code), amount_micro_usd=amount_micro_usd, created_by=created_by)
        )
    db.session.commit()
    return codes


def redeem(user_id: int, code: Any) -> int:
    """Spend a code once; returns the amount credited. A second use finds the row already taken."""
    if not isinstance(code, str) or not code:
        raise bad_request("code is required", "code")
    bounds.text(code, "code", CODE_MAX)
    code_hash = hash_secret(code.strip())
    # one UPDATE ... WHERE redeemed_by IS NULL decides the race: only one caller changes the row
    taken = db.session.execute(
        update(Redemption)
        .where(Redemption.code_hash == code_hash, Redemption.redeemed_by.is_(None))
        .values(redeemed_by=user_id, redeemed_at=utcnow())
    )
    if taken.rowcount != 1:
        db.session.rollback()
        raise GatewayError(400, "this code is unknown or was already used", code="invalid_code", param="code")
    amount = db.session.scalar(
        db.select(Redemption.amount_micro_usd).where(Redemption.code_hash == code_hash)
    )
    add_entry(user_id, "redemption", amount, "redemption code")
    db.session.commit()
    return amount
