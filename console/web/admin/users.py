"""Admin: users. List, create, edit role, group and status (the root rules `/api/users` applies too,
`accounts.may_grant` and `may_change`: only root grants root or changes a root), and adjust a wallet with a
reason, through `gateway.domain.accounts` and `gateway.domain.ledger`, with the API's runtime notices."""

from __future__ import annotations

from flask import abort, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from console.web.admin import bp, done, form_text, refusal, runtime
from console.web.locale import money
from gateway.domain import accounts, bounds, ledger, pricing
from gateway.domain.models import User, db
from gateway.neutral import GatewayError, bad_request

LEDGER_ROWS = 20
WALLET_KINDS = ("topup", "adjustment", "refund")


def labels() -> dict[str, str]:
    return {
        "username": _("Username"),
        "password": _("Password"),
        "role": _("Role"),
        "group": _("Group"),
        "status": _("Status"),
        "amount_usd": _("Amount (USD)"),
        "reason": _("Reason"),
        "kind": _("Kind"),
    }


def role_label(role: str) -> str:
    return {"user": _("User"), "admin": _("Admin"), "root": _("Root admin")}.get(role, role)


def status_label(status: str) -> str:
    return {"active": _("Active"), "disabled": _("Disabled")}.get(status, status)


def kind_label(kind: str) -> str:
    return {
        "topup": _("Top-up"),
        "redemption": _("Redemption"),
        "charge": _("Charge"),
        "refund": _("Refund"),
        "adjustment": _("Adjustment"),
    }.get(kind, kind)


def default_group() -> str:
    group = pricing.get_setting("default_group", "")
    return group if isinstance(group, str) and group else "default"


def _page_context() -> dict:
    return {
        "users": list(db.session.scalars(db.select(User).order_by(User.id))),
        "roles": accounts.ROLES,
        "role_label": role_label,
        "status_label": status_label,
        "default_group": default_group(),
    }


@bp.route("/users", methods=["GET", "POST"])
def users_page() -> tuple[str, int] | Response:
    error = None
    if request.method == "POST":
        role = form_text("role") or "user"
        try:
            accounts.may_grant(current_user.row, role)
            user = accounts.create_user(
                request.form.get("username", ""),
                request.form.get("password", ""),
                role,
                form_text("group") or default_group(),
            )
        except GatewayError as err:
            db.session.rollback()
            error = refusal(err, labels())
        else:
            return done(_("User “%(name)s” was created.", name=user.username), "admin.users_page")
    page = render_template("admin/users.html", error=error, form=request.form, **_page_context())
    return page, 400 if error else 200


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _user_page(user: User, error: str | None = None) -> tuple[str, int]:
    entries, total = ledger.entries(user.id, LEDGER_ROWS)
    page = render_template(
        "admin/user.html",
        user=user,
        entries=entries,
        total=total,
        error=error,
        roles=accounts.ROLES,
        kinds=WALLET_KINDS,
        role_label=role_label,
        status_label=status_label,
        kind_label=kind_label,
    )
    return page, 400 if error else 200


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
def edit_user(user_id: int) -> tuple[str, int] | Response:
    user = _user(user_id)
    if request.method == "GET":
        return _user_page(user)
    changes = {"role": form_text("role"), "group": form_text("group"), "status": form_text("status")}
    if request.form.get("password"):
        changes["password"] = request.form["password"]
    try:
        accounts.may_change(current_user.row, user, changes["role"])
        accounts.update_user(user, changes, actor=current_user.row)
    except GatewayError as err:
        db.session.rollback()
        return _user_page(_user(user_id), refusal(err, labels()))
    runtime().changed_keys(user_id=user.id)
    return done(_("User “%(name)s” was saved.", name=user.username), "admin.edit_user", user_id=user.id)


@bp.post("/users/<int:user_id>/wallet")
def adjust_wallet(user_id: int) -> tuple[str, int] | Response:
    user = _user(user_id)
    try:
        amount = pricing.usd_to_micro(form_text("amount_usd"), "amount_usd")
        if amount == 0:
            raise bad_request("amount_usd must not be zero", "amount_usd")
        reason = bounds.text(form_text("reason"), "reason", ledger.REASON_MAX)
        kind = form_text("kind") or ("topup" if amount > 0 else "adjustment")
        if kind not in WALLET_KINDS:
            raise bad_request("kind must be topup, adjustment or refund", "kind")
        ledger.post(user.id, kind, amount, reason)
    except GatewayError as err:
        db.session.rollback()
        return _user_page(_user(user_id), refusal(err, labels()))
    runtime().credited(user.id)
    db.session.refresh(user)
    return done(
        _(
            "The wallet of “%(name)s” now holds %(balance)s.",
            name=user.username,
            balance=money(user.balance_micro_usd),
        ),
        "admin.edit_user",
        user_id=user.id,
    )
