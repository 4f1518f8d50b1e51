"""The server-rendered console: one blueprint per family of pages, Jinja templates in `templates/` (one base
layout, partials that htmx swaps in `templates/partials/`), CSS in `static/`, translations in `i18n/`.

`init_app` wires what every page shares: sign-in (Flask-Login, on the accounts the management API has, and
on the same session, so a console sign-in also opens `/api/`), CSRF tokens on every form (Flask-WTF; the
JSON API and the relay are exempt: they take no cookies from other sites, see console/api), translations
(Flask-Babel) and htmx's request headers (Flask-HTMX). Pages read and write through `gateway.domain`, never
around it.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, request, session
from flask_babel import Babel
from flask_babel import lazy_gettext as _
from flask_login import LoginManager, current_user

from console.web import admin, auth, docs, home, integrations, keys, locale, models, usage, wallet
from console.web.extensions import csrf, htmx
from gateway.domain import accounts
from gateway.domain.models import User, db

BLUEPRINTS = (auth.bp, home.bp, admin.bp, wallet.bp, keys.bp, models.bp, docs.bp, integrations.bp, usage.bp)


def init_app(app: Flask, exempt: tuple[Any, ...]) -> None:
    """Wire the console into `app`; `exempt` are the blueprints that take no forms (API, relay)."""
    login = LoginManager(app)
    login.login_view = "auth.login"
    login.login_message = ""
    login.user_loader(_load_user)
    csrf.init_app(app)
    for blueprint in exempt:
        csrf.exempt(blueprint)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(locale.compile_catalogs(app.instance_path))
    Babel(app, locale_selector=locale.select)
    htmx.init_app(app)
    app.jinja_env.globals.update(
        LANGUAGES=locale.LANGUAGES,
        current_language=locale.current,
        show_day=locale.show_day,
        example_day=locale.example_day,
    )
    app.jinja_env.filters.update(money=locale.money, when=locale.when, number=locale.number)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)

    @app.context_processor
    def console_context() -> dict[str, Any]:
        user = current_user if request.endpoint else None
        return {"me": user if user is not None and user.is_authenticated else None, "nav_links": nav_links}


def nav_links() -> list[tuple[str, str]]:
    """The main menu: (endpoint, label) of every page the current user may open."""
    return [(endpoint, label()) for endpoint, label, admin in NAV if not admin or _is_admin()]


def _is_admin() -> bool:
    return bool(current_user.is_authenticated and current_user.is_admin)


# the main menu: endpoint, label (translated when shown), admins only
NAV: list[tuple[str, Any, bool]] = [
    ("home.home", lambda: _("Home"), False),
    ("keys.keys_page", lambda: _("API keys"), False),
    ("models.models", lambda: _("Models"), False),
    ("integrations.integrations", lambda: _("Integrations"), False),
    ("docs.docs", lambda: _("Docs"), False),
    ("wallet.wallet", lambda: _("Wallet"), False),
    ("usage.usage_page", lambda: _("Usage"), False),
    ("admin.channels_page", lambda: _("Admin"), True),
]


def _load_user(user_id: str) -> Any:
    """The signed-in user, while the session is current: logging out or a new password (which moves the
    user's session epoch) ends every session, as it does for the API."""
    if not user_id.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.status != "active" or session.get("epoch") != user.session_epoch:
        return None
    g.user = user  # the API's view of the same session
    return ConsoleUser(user)


class ConsoleUser:
    """A `User` as Flask-Login wants it."""

    def __init__(self, user: User) -> None:
        self.row = user

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.row.id)

    @property
    def is_admin(self) -> bool:
        return accounts.is_admin(self.row)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.row, name)
