"""Signing in and out, registering (when an admin allows it), the account page (password and language),
and the language switcher. Failed sign-ins lock out as `/api/auth/login` does: the same guard and counts."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from console.api import signin
from console.web import locale
from gateway.domain import accounts
from gateway.neutral import GatewayError

bp = Blueprint("auth", __name__)


def _refusal(err: GatewayError) -> str:
    """A refused account field in the page's language (the domain speaks English)."""
    if locale.current() == locale.DEFAULT:
        return err.message
    if err.status == 409:
        return _("This username is taken.")
    return {
        "username": _("This username cannot be used: it must be 1 to 64 characters."),
        "password": _("The password must be 8 to 1024 characters."),
        "current": _("The current password is wrong."),
    }.get(err.param or "", _("This was not saved: a value was refused."))


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return url_for("home.home")
    return target


def _start_session(user: accounts.User) -> None:
    from console.web import ConsoleUser

    session.clear()
    session["uid"] = user.id  # the API's own key for the same session
    session["epoch"] = user.session_epoch
    session.permanent = True
    login_user(ConsoleUser(user))


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    error, status = None, 200
    if request.method == "POST":
        username = request.form.get("username", "")[: accounts.USERNAME_MAX + 1]
        password = request.form.get("password", "")[: accounts.PASSWORD_MAX + 1]
        guard, scopes = signin.guard(), signin.scopes(username)
        if (wait := guard.retry_after(scopes)) is not None:
            error, status = (
                _("Too many failed sign-ins. Try again in %(seconds)s seconds.", seconds=wait),
                429,
            )
        elif (user := accounts.authenticate(username, password)) is None:
            guard.failed(scopes)
            error, status = _("Wrong username or password."), 401
        else:
            guard.succeeded(scopes[0])
            _start_session(user)
            return redirect(_safe_next(request.args.get("next")))
    page = render_template("login.html", error=error, registration=accounts.registration_open())
    return page, status  # type: ignore[return-value]


@bp.post("/logout")
def logout() -> Response:
    if current_user.is_authenticated:
        accounts.end_sessions(current_user.row)
    logout_user()
    session.clear()
    return redirect(url_for("home.home"))


@bp.route("/register", methods=["GET", "POST"])
def register() -> str | Response:
    if not accounts.registration_open():
        return render_template(
            "message.html", title=_("Registration is closed"), text=_("Ask an admin for an account.")
        ), 403  # type: ignore[return-value]
    error = None
    if request.method == "POST":
        if request.form.get("password") != request.form.get("confirm"):
            error = _("The passwords differ.")
        else:
            try:
                user = accounts.create_user(request.form.get("username"), request.form.get("password"))
            except GatewayError as err:
                error = _refusal(err)
            else:
                _start_session(user)
                return redirect(url_for("home.home"))
    return render_template("register.html", error=error), (400 if error else 200)  # type: ignore[return-value]


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> str | Response:
    error = None
    if request.method == "POST":
        if request.form.get("password") != request.form.get("confirm"):
            error = _("The passwords differ.")
        else:
            try:
                accounts.change_password(
                    current_user.row, request.form.get("current"), request.form.get("password")
                )
            except GatewayError as err:
                error = _refusal(err)
            else:
                _start_session(current_user.row)  # the new epoch ended the other sessions, not this one
                flash(_("Your password was changed. Other sessions were signed out."))
                return redirect(url_for("auth.account"))
    return render_template("account.html", error=error), (400 if error else 200)  # type: ignore[return-value]


@bp.post("/language")
def language() -> Response:
    """The switcher: remembered in the session, and on the account when signed in."""
    chosen = request.form.get("language", "")
    if chosen in locale.LANGUAGES:
        session["lang"] = chosen
        if current_user.is_authenticated:
            accounts.set_language(current_user.row, chosen)
    return redirect(_safe_next(request.form.get("next")))
