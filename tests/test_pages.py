"""The console's pages and partials with Flask's test client on an in-process app: signed out and in, CSRF,
sign-in lockout, the language a page speaks, and the translation catalogs behind them."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from flask import Flask

from console.web import locale
from tests.conftest import CONSOLE_PASSWORD as PASSWORD
from tests.conftest import csrf, sign_in

ROOT = Path(__file__).resolve().parent.parent


def test_home_signed_out_shows_base_url_health_and_docs(app: Flask) -> None:
    page = app.test_client().get("/", base_url="http://gw.example:3000")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '<code id="base-url">http://gw.example:3000/v1</code>' in html
    assert 'data-copy="#base-url"' in html and "Authorization: Bearer $YOUR_API_KEY" in html
    assert 'hx-get="/partials/health" hx-trigger="every 5s"' in html  # the card refreshes itself
    assert '<dd id="channels-up">0</dd>' in html and "/api/openapi.json" in html
    assert "/static/vendor/htmx.org-2.0.11/htmx.min.js" in html
    assert app.test_client().get("/static/vendor/htmx.org-2.0.11/htmx.min.js").status_code == 200
    assert 'href="/login"' in html


def test_health_partial_is_the_card_alone(app: Flask) -> None:
    part = app.test_client().get("/partials/health", headers={"HX-Request": "true"})
    html = part.get_data(as_text=True)
    assert part.status_code == 200 and html.lstrip().startswith('<div id="health"') and "<html" not in html


def test_a_public_url_setting_is_the_base_url(app: Flask) -> None:
    with app.app_context():
        from gateway.domain.pricing import put_setting

        put_setting("public_url", "https://llm.example.com/")
        app.extensions["relayhouse"].catalog.reload()
    html = app.test_client().get("/").get_data(as_text=True)
    assert '<code id="base-url">https://llm.example.com/v1</code>' in html


def test_sign_in_needs_the_csrf_token_and_opens_the_api_too(app: Flask) -> None:
    client = app.test_client()
    refused = client.post("/login", data={"username": "root", "password": PASSWORD})
    assert refused.status_code == 400  # no CSRF token
    signed = sign_in(client)
    assert signed.status_code == 302 and signed.headers["Location"] == "/"
    cookie = signed.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "root" in client.get("/").get_data(as_text=True)
    assert client.get("/api/auth/me").get_json()["username"] == "root"
    out = client.post("/logout", data={"csrf_token": csrf(client, "/")})
    assert out.status_code == 302
    assert client.get("/api/auth/me").status_code == 401
    assert client.get("/account").status_code == 302  # back to the sign-in page


def test_failed_sign_ins_lock_out_like_the_api(app: Flask) -> None:
    client = app.test_client()
    for _ in range(5):
        assert sign_in(client, password="wrong-password").status_code == 401
    locked = sign_in(client)  # even the right password waits now
    assert locked.status_code == 429 and "Try again in" in locked.get_data(as_text=True)


def test_next_never_leaves_the_site(app: Flask) -> None:
    client = app.test_client()
    token = csrf(client)
    form = {"username": "root", "password": PASSWORD, "csrf_token": token}
    assert client.post("/login?next=//evil.example/", data=form).headers["Location"] == "/"


def test_password_change_ends_other_sessions(app: Flask) -> None:
    one, two = app.test_client(), app.test_client()
    sign_in(one), sign_in(two)
    form = {"current": PASSWORD, "password": "a-new-password-1", "confirm": "a-new-password-1"}
    wrong = one.post("/account", data={**form, "current": "nope", "csrf_token": csrf(one, "/account")})
    assert wrong.status_code == 400 and "current password is wrong" in wrong.get_data(as_text=True)
    changed = one.post("/account", data={**form, "csrf_token": csrf(one, "/account")})
    assert changed.status_code == 302
    assert one.get("/account").status_code == 200  # this session goes on
    assert two.get("/account").status_code == 302  # the other one ended


def test_registration_is_off_unless_an_admin_turns_it_on(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/register").status_code == 403
    with app.app_context():
        from gateway.domain.pricing import put_setting

        put_setting("registration", True)
    form = {"username": "newcomer", "password": "newcomer-pass", "confirm": "newcomer-pass"}
    made = client.post("/register", data={**form, "csrf_token": csrf(client, "/register")})
    assert made.status_code == 302 and client.get("/api/auth/me").get_json()["username"] == "newcomer"


@pytest.mark.parametrize(
    ("header", "language", "text"),
    [
        ("zh-CN,zh;q=0.9", "zh-Hans", "系统状态"),
        ("zh-TW", "zh-Hant", "系統狀態"),
        ("vi-VN,vi;q=0.9", "vi", "Tình trạng hệ thống"),
        ("ja", "ja", "システムの状態"),
        ("fr-FR", "en", "System health"),
    ],
)
def test_the_page_speaks_the_browsers_language(app: Flask, header: str, language: str, text: str) -> None:
    html = app.test_client().get("/", headers={"Accept-Language": header}).get_data(as_text=True)
    assert f'<html lang="{language}">' in html and text in html


def test_the_switcher_is_remembered_in_the_session_and_on_the_account(app: Flask) -> None:
    client = app.test_client()
    sign_in(client)
    moved = client.post(
        "/language", data={"language": "vi", "next": "/account", "csrf_token": csrf(client, "/")}
    )
    assert moved.headers["Location"] == "/account"
    assert '<html lang="vi">' in client.get("/", headers={"Accept-Language": "ja"}).get_data(as_text=True)
    fresh = app.test_client()  # a new browser: the account remembers
    sign_in(fresh)
    assert '<html lang="vi">' in fresh.get("/").get_data(as_text=True)


def test_money_and_numbers_are_formatted_for_the_language(app: Flask) -> None:
    with app.test_request_context(headers={"Accept-Language": "vi"}):
        assert locale.money(1_234_560_000) == "1.234,56\xa0US$"
        assert locale.number(1234567) == "1.234.567"
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert locale.money(1_500) == "$0.0015" and locale.money(2_000_000) == "$2.00"


# -- the catalogs ---------------------------------------------------------------------------------------
def used_messages() -> set[str]:
    """Every message the templates and the console's code translate."""
    found: set[str] = set()
    method_map = [("console/**.py", "python"), ("templates/**.html", "jinja2")]
    for _, _, message, _, _ in extract_from_dir(
        str(ROOT), method_map, keywords={"_": None, "gettext": None, "lazy_gettext": None}
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_catalog_translates_every_message() -> None:
    used = used_messages()
    assert len(used) > 40
    for language in locale.LANGUAGES:
        catalog = locale.read_catalog(language)
        missing = sorted(m for m in used if m not in catalog or not catalog[m].string)
        assert not missing, f"{language} lacks {missing[:10]}"


class _Text(HTMLParser):
    """The text a reader sees: element text and the values of visible attributes, confirmation prompts
    (`hx-confirm`) included."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "pre", "code"):
            self._skip += 1
        self.parts += [v for k, v in attrs if k in ("title", "placeholder", "aria-label", "hx-confirm") and v]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "pre", "code"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


PAGES = ["/", "/login", "/account", "/partials/health"]


@pytest.mark.parametrize("language", [code for code in locale.LANGUAGES if code != "en"])
def test_no_page_keeps_a_source_language_string(app: Flask, language: str) -> None:
    client = app.test_client()
    sign_in(client)
    client.post("/language", data={"language": language, "csrf_token": csrf(client, "/")})
    catalog = locale.read_catalog(language)
    sources = {m.id for m in catalog if m.id and m.string and m.string != m.id and len(m.id) > 3}
    for path in PAGES:
        parser = _Text()
        parser.feed(client.get(path).get_data(as_text=True))
        text = " ".join(" ".join(parser.parts).split())
        left = sorted(s for s in sources if "%(" not in s and s in text)
        assert not left, f"{path} in {language} still says {left}"


def test_a_refused_password_is_explained_in_the_page_language(app: Flask) -> None:
    client = app.test_client()
    sign_in(client)
    client.post("/language", data={"language": "ja", "csrf_token": csrf(client, "/")})
    form = {"current": "not-the-password", "password": "a-new-password-1", "confirm": "a-new-password-1"}
    wrong = client.post("/account", data={**form, "csrf_token": csrf(client, "/account")})
    assert wrong.status_code == 400 and "現在のパスワードが違います。" in wrong.get_data(as_text=True)
    short = {**form, "current": PASSWORD, "password": "short", "confirm": "short"}
    refused = client.post("/account", data={**short, "csrf_token": csrf(client, "/account")})
    assert "パスワードは 8〜1024 文字にしてください。" in refused.get_data(as_text=True)
