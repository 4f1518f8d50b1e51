"""The management API: JSON under `/api/`, for the console and for automation.

Authentication: the console's session cookie (HttpOnly, SameSite=Lax), or `Authorization: Bearer` with an
admin access token or `RELAYHOUSE_ADMIN_TOKEN` (acting as the root admin). A cookie-authenticated request
that changes state must send a JSON body: a cross-site form cannot, so no CSRF token is needed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, current_app, g, request, session

from gateway.domain import bounds
from gateway.domain.accounts import is_admin, user_by_access_token
from gateway.domain.models import User, db
from gateway.neutral import GatewayError, bad_request

bp = Blueprint("api", __name__, url_prefix="/api")
MAX_PAGE, MAX_PER_PAGE = 10**6, 500


def runtime() -> Any:
    return current_app.extensions["relayhouse"]


def current_user() -> User | None:
    if "user" in g:
        return g.user
    user = None
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
        admin_token = runtime().settings.admin_token
        if admin_token and hmac.compare_digest(token.encode(errors="replace"), admin_token.encode()):
            # the first active root: another root may have disabled the first one
            user = db.session.scalar(
                db.select(User).where(User.role == "root", User.status == "active").order_by(User.id)
            )
            g.via_admin_token = True
        elif token:
            user = user_by_access_token(token)
        g.via_cookie = False
    elif "uid" in session:
        user = db.session.get(User, session["uid"])
        if user is not None and session.get("epoch") != user.session_epoch:
            user = None  # the user logged out or changed password since this session began
        g.via_cookie = True
    if user is not None and user.status != "active":
        user = None
    g.user = user
    return user


def require(role: str = "user") -> Callable:
    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                raise GatewayError(
                    401, "Log in or send an admin access token.", "invalid_request_error", "unauthenticated"
                )
            if role == "admin" and not is_admin(user):
                raise GatewayError(403, "This needs an admin.", "permission_denied", "admin_required")
            if g.get("via_cookie") and request.method in ("POST", "PUT", "PATCH") and not request.is_json:
                raise GatewayError(
                    415,
                    "Send a JSON body (Content-Type: application/json).",
                    "invalid_request_error",
                    "json_required",
                )
            return view(*args, **kwargs)

        return wrapped

    return decorate


def body() -> dict[str, Any]:
    # the raw bytes whatever the Content-Type: `request.data` is empty for a form type, which would drop
    # the JSON that `curl -d` sends (as application/x-www-form-urlencoded) without a word
    if not request.get_data(cache=True):
        return {}
    try:
        data = request.get_json(force=True, silent=True)
    except RecursionError:  # nesting deeper than the parser's stack
        raise bad_request("The body is nested too deeply.") from None
    if not isinstance(data, dict):
        raise bad_request("The body must be a JSON object.")
    return data


@bp.url_value_preprocessor
def _bounded_ids(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Ids in paths are INTEGER columns: a larger number names nothing, and must not reach the database."""
    for name, value in (values or {}).items():
        if isinstance(value, int):
            bounds.query_integer(str(value), name)


def not_found(what: str) -> GatewayError:
    return GatewayError(404, f"No such {what}.", "invalid_request_error", "not_found")


def page_args() -> tuple[int, int]:
    page = bounds.query_integer(request.args.get("page", "1"), "page", 1, MAX_PAGE)
    per_page = bounds.query_integer(request.args.get("per_page", "50"), "per_page", 1, MAX_PER_PAGE)
    return page, per_page


def query_id(name: str) -> int | None:
    """An optional integer filter of the query string, within an INTEGER column's range."""
    value = request.args.get(name)
    return None if value in (None, "") else bounds.query_integer(value, name)


from console.api import (  # noqa: E402  (the modules register their routes on bp)
    accounts,
    channels,
    keys,
    logs,
    money,
    openapi,
    signin,
    status,
)

__all__ = ["bp", "accounts", "channels", "keys", "logs", "money", "openapi", "signin", "status"]
