"""Logins and users: `/api/auth/*` and `/api/users`."""

from __future__ import annotations

from flask import Response, g, jsonify, request, session

from console.api import body, bp, current_user, is_admin, not_found, require, runtime, signin
from gateway.domain import accounts, bounds
from gateway.domain.models import User, db
from gateway.neutral import GatewayError, bad_request


def _json_only() -> None:
    """Login and logout take JSON only: a cross-site form can post `text/plain` or a form type, and would
    otherwise sign a victim's browser into the attacker's account (login CSRF)."""
    if not request.is_json:
        raise GatewayError(
            415,
            "Send a JSON body (Content-Type: application/json).",
            "invalid_request_error",
            "json_required",
        )


def _locked(retry_after: int) -> Response:
    error = {
        "message": f"Too many failed logins; try again in {retry_after} seconds.",
        "type": "invalid_request_error",
        "param": None,
        "code": "too_many_attempts",
    }
    response = jsonify(error=error)
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response


@bp.post("/auth/login")
def login():  # noqa: ANN201
    _json_only()
    data = body()
    bounds.only(data, ("username", "password"), "login")
    username, password = data.get("username"), data.get("password")
    for name, value in (("username", username), ("password", password)):
        if not isinstance(value, str):
            raise bad_request(f"{name} must be a string", name)
    guard, scopes = signin.guard(), signin.scopes(username)
    if (wait := guard.retry_after(scopes)) is not None:
        return _locked(wait)
    user = accounts.authenticate(username, password)
    if user is None:
        guard.failed(scopes)
        raise GatewayError(401, "Wrong username or password.", "invalid_request_error", "bad_credentials")
    guard.succeeded(scopes[0])
    session.clear()
    session["uid"] = user.id
    session["epoch"] = user.session_epoch
    session.permanent = True
    return jsonify(accounts.user_json(user))


@bp.post("/auth/logout")
def logout():  # noqa: ANN201
    """End the console session: this user's session cookies, wherever they are, and access token stop
    working. With `RELAYHOUSE_ADMIN_TOKEN` there is nothing to end: that token lives in the environment."""
    _json_only()
    user = current_user()
    if user is not None and not g.get("via_admin_token"):
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
    user = current_user()
    token = accounts.issue_access_token(user, runtime().settings.token_ttl_days)
    return jsonify(token=token, expires_at=user.access_token_expires_at.isoformat() + "Z")


@bp.post("/users")
@require("admin")
def create_user():  # noqa: ANN201
    data = body()
    bounds.only(data, accounts.CREATE_FIELDS, "user")
    role = data.get("role", "user")
    accounts.may_grant(current_user(), role)
    user = accounts.create_user(data.get("username"), data.get("password"), role, data.get("group"))
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
    accounts.may_change(current_user(), user, data.get("role"))
    accounts.update_user(user, data, actor=current_user())
    runtime().changed_keys(user_id=user.id)
    return jsonify(accounts.user_json(user))
