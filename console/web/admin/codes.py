"""Admin: redemption codes. Generate N codes of an amount (shown once, on the answer to the POST, or
downloaded at once as CSV: only their hashes are stored), list every code's amount and state, and export
that list as CSV; through `gateway.domain.ledger`, as `POST /api/redemptions` does."""

from __future__ import annotations

import csv
import io

from flask import Response, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy.orm import aliased

from console.web.admin import bp, form_int, form_text, refusal
from gateway.domain import ledger, pricing
from gateway.domain.models import Redemption, User, db, utcnow
from gateway.neutral import GatewayError

LIST_ROWS = 200


def _listing(limit: int | None) -> list[tuple[Redemption, str | None, str | None]]:
    """Codes, newest first, with who made and who redeemed each."""
    maker, redeemer = aliased(User), aliased(User)
    query = (
        db.select(Redemption, maker.username, redeemer.username)
        .outerjoin(maker, maker.id == Redemption.created_by)
        .outerjoin(redeemer, redeemer.id == Redemption.redeemed_by)
        .order_by(Redemption.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return [tuple(row) for row in db.session.execute(query).all()]  # type: ignore[misc]


def _page(codes: list[str] | None = None, amount: int = 0, error: str | None = None) -> tuple[str, int]:
    total = db.session.scalar(db.select(db.func.count()).select_from(Redemption)) or 0
    page = render_template(
        "admin/codes.html",
        rows=_listing(LIST_ROWS),
        total=total,
        codes=codes,
        amount=amount,
        error=error,
        form=request.form,
    )
    return page, 400 if error else 200


def _csv(rows: list[list[str]], name: str) -> Response:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


@bp.route("/codes", methods=["GET", "POST"])
def codes_page() -> tuple[str, int] | Response:
    if request.method == "GET":
        return _page()
    try:
        amount = pricing.usd_to_micro(form_text("amount_usd"), "amount_usd")
        codes = ledger.create_redemptions(amount, form_int("count", 1), current_user.row.id)
    except GatewayError as err:
        db.session.rollback()
        return _page(error=refusal(err, {"amount_usd": _("Amount (USD)"), "count": _("How many")}))
    if request.form.get("format") == "csv":
        usd = f"{pricing.micro_to_usd(amount):.6f}".rstrip("0").rstrip(".")
        return _csv([["code", "amount_usd"], *([code, usd] for code in codes)], "redemption-codes")
    # the codes exist only in this answer: it is the page itself, not a redirect, and is never cached
    page, status = _page(codes, amount)
    return Response(page, status, headers={"Cache-Control": "no-store"})


@bp.get("/codes.csv")
def codes_csv() -> Response:
    """Every code's record (the codes themselves are stored only as hashes)."""
    rows = [["id", "amount_usd", "created_at", "created_by", "redeemed_by", "redeemed_at"]]
    for code, maker, redeemer in _listing(None):
        rows.append(
            [
                str(code.id),
                f"{pricing.micro_to_usd(code.amount_micro_usd):.6f}",
                code.created_at.isoformat() + "Z",
                maker or "",
                redeemer or "",
                code.redeemed_at.isoformat() + "Z" if code.redeemed_at else "",
            ]
        )
    return _csv(rows, "redemptions")
