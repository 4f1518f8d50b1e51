"""Logins and users: `/api/auth/*` and `/api/users`."""

from __future__ import annotations

from flask import g, jsonify, session

from console.api import body, bp, current_user, is_admin, not_found, require, runtime
from gateway.domain import accounts
from gateway.domain.models import User, db
from gateway.neutral import GatewayError


@bp.post("/auth/login")
def login():  # noqa: ANN201
    data = body()
    user = accounts.authenticate(str(data.get("username", "")), str(data.get("password", "")))
    if user is None:
        raise GatewayError(401, "Wrong username or password.", "invalid_request_error", "bad_credentials")
    session.clear()
    session["uid"] = user.id
    session["epoch"] = user.session_epoch
    session.permanent = True
    return jsonify(accounts.user_json(user))


@bp.post("/auth/logout")
def logout():  # noqa: ANN201
    """End the console session: this user's session cookies, wherever they are, stop working."""
    user = current_user()
    if user is not None and g.get("via_cookie"):
        accounts.end_sessions(user)
    session.clear()
    return jsonify(ok=True)


@bp.get("/auth/me")
@require()
def me():  # noqa: ANN201
    return jsonify(accounts.user_json(current_user()))


@bp.post("/auth/token")
@require()
def access_token():  # noqa: ANN201
    """A new access token for the caller, for `Authorization: Bearer` on /api/ (replaces the old one)."""
    return jsonify(token=accounts.issue_access_token(current_user()))


def _may_grant(role: str) -> None:
    if role == "root" and current_user().role != "root":
        raise GatewayError(
            403, "Only the root admin can grant the root role.", "permission_denied", "root_required"
        )


@bp.post("/users")
@require("admin")
def create_user():  # noqa: ANN201
    data = body()
    role = data.get("role", "user")
    _may_grant(role)
    user = accounts.create_user(
        data.get("username"), data.get("password"), role, data.get("group", "default")
    )
    return jsonify(accounts.user_json(user)), 201


@bp.get("/users")
@require("admin")
def list_users():  # noqa: ANN201
    users = db.session.scalars(db.select(User).order_by(User.id))
    return jsonify(data=[accounts.user_json(u) for u in users])


@bp.get("/users/<int:user_id>")
@require()
def get_user(user_id: int):  # noqa: ANN201
    me = current_user()
    if user_id != me.id and not is_admin(me):
        raise not_found("user")
    user = db.session.get(User, user_id)
    if user is None:
        raise not_found("user")
    return jsonify(accounts.user_json(user))


@bp.patch("/users/<int:user_id>")
@require("admin")
def update_user(user_id: int):  # noqa: ANN201
    user = db.session.get(User, user_id)
    if user is None:
        raise not_found("user")
    data = body()
    if user.role == "root" and current_user().role != "root":
        raise GatewayError(
            403, "Only the root admin can change the root admin.", "permission_denied", "root_required"
        )
    if "role" in data:
        _may_grant(data["role"])
    accounts.update_user(user, data)
    runtime().changed_keys(user_id=user.id)
    return jsonify(accounts.user_json(user))
