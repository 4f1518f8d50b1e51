"""The console in a real browser: Debian's headless Chromium driven by Playwright for Python, against the real
gateway (`python app.py`) on SQLite and a fake upstream. A person signs in through the form, watches the
health card turn red when a channel fails (htmx polling, no reload), switches to Vietnamese and finds no
English left, and each main page is photographed in each language under `test-artifacts/screenshots/`.

Playwright's own browser download cannot be reached here, so the browser is Debian's `chromium` package
(`/usr/bin/chromium`, or `CHROMIUM`), which test.sh installs when missing. Without it or without Playwright
these tests skip, except with `CI=true`, where that is a failure.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import openai
import pytest
from babel.messages.extract import extract_from_dir

from console.web import locale
from tests.conftest import IN_CI, ROOT, Gateway, start_gateway, stop_gateway
from tests.fake_upstream import FakeUpstream
from tests.test_console_docs import _document_texts as document_texts

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
WAIT_MS = 15_000
HI = [{"role": "user", "content": "hi"}]


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install '.[test]', or ./test.sh)"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or ./test.sh as root)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing_browser()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: a missing browser is a failure)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def expect(target: Any) -> Any:
    """Playwright's waiting assertions (imported late: without Playwright the tests skip, not error)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def _gateway(tmp: Path, **env: str) -> Gateway:
    return start_gateway(tmp, f"sqlite:///{tmp / 'browser.db'}", **env)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = _gateway(tmp_path_factory.mktemp("browser"))
    yield gateway
    stop_gateway(gateway)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("browser").start()
    yield fake
    fake.stop()


def new_page(browser: Any, gateway: Gateway) -> Any:
    """A fresh browser profile (no cookies) that speaks English unless told otherwise."""
    context = browser.new_context(base_url=gateway.url, viewport=VIEWPORT, locale="en-US")
    context.set_default_timeout(WAIT_MS)
    return context.new_page()


def root_password(gateway: Gateway) -> str:
    return gateway.env["RELAYHOUSE_ADMIN_PASSWORD"]


def a_user(gateway: Gateway, balance_usd: float = 10) -> tuple[dict, str]:
    password = "pw-" + secrets.token_hex(8)
    return gateway.user(balance_usd, username="u-" + secrets.token_hex(4), password=password), password


def sign_in(page: Any, username: str, password: str) -> Any:
    page.goto("/login")
    form = page.locator("main form")
    form.locator("input[name=username]").fill(username)
    form.locator("input[name=password]").fill(password)
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    return page


def switch_language(page: Any, language: str) -> None:
    """The switcher in the header: choosing a language submits its form and reloads the page."""
    with page.expect_navigation():
        page.select_option("#language-switch", language)
    assert page.locator("html").get_attribute("lang") == locale.html_lang(language)


# Code, and the labels on other programs' screens (`<kbd>`, as the integrations page quotes them), stay as
# they are written in every language.
NOT_PROSE = ("script", "style", "pre", "code", "kbd")


class _Text(HTMLParser):
    """The text a reader sees, piece by piece: each text node, and the values of visible attributes. Text
    inside an element marked `lang="en"` (the API reference quoting the OpenAPI document) is kept apart, in
    `quoted`, for the test to check that it is nothing but that document's own text."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.quoted: list[str] = []
        self._skip = 0
        self._english = 0  # open elements inside the one marked lang="en"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in NOT_PROSE:
            self._skip += 1
        if self._english or (tag != "html" and ("lang", "en") in attrs):
            self._english += 1
            if self._english == 1:
                self.quoted.append("")
        self.parts += [v.strip() for k, v in attrs if k in ("title", "placeholder", "aria-label") and v]

    def handle_endtag(self, tag: str) -> None:
        if tag in NOT_PROSE:
            self._skip -= 1
        self._english -= bool(self._english)

    def handle_data(self, data: str) -> None:
        if self._english:
            self.quoted[-1] += data
        elif not self._skip and data.strip():
            self.parts.append(" ".join(data.split()))


def visible_text(html: str) -> list[str]:
    """The page's prose; what it quotes in English must be the OpenAPI document's own descriptions."""
    parser = _Text()
    parser.feed(html)
    quoted = {" ".join(part.split()) for part in parser.quoted} - {""}
    assert quoted <= document_texts(), sorted(quoted - document_texts())[:3]
    return parser.parts


@functools.cache
def used_messages() -> frozenset[str]:
    """Every message the templates and the console's code mark for translation."""
    method_map = [("console/**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "lazy_gettext": None}
    found = extract_from_dir(str(ROOT), method_map, keywords=keywords)
    return frozenset(m if isinstance(m, str) else m[0] for _, _, m, _, _ in found)


def english_left(language: str, parts: list[str]) -> list[str]:
    """The English messages on a page in `language`: those its catalog translates to something else, and
    those it lacks (a message a language keeps as it is, such as a product name, is not English left).
    A one-word message counts where it is a whole piece of text (a label, a heading, a button), not where
    it is part of a name ("Code" in "Claude Code")."""
    catalog = locale.read_catalog(language)
    sources = used_messages() | {m.id for m in locale.read_catalog("en") if m.id}
    english = {
        s for s in sources if len(s) > 3 and "%(" not in s and (s not in catalog or catalog[s].string != s)
    }
    pieces, text = set(parts), " ".join(parts)
    return sorted(
        s
        for s in english
        if (s in pieces if " " not in s else re.search(rf"(?<!\w){re.escape(s)}(?!\w)", text))
    )


def menu(page: Any) -> list[str]:
    """The paths of the main menu, as the signed-in user sees it."""
    return page.locator("nav.main a").evaluate_all("els => els.map(a => a.pathname)")


def every_page(page: Any) -> list[str]:
    """The main menu's pages, the tabs those pages have (the admin's), and the account page."""
    paths = menu(page)
    for path in list(paths):
        page.goto(path)
        tabs = page.locator("main nav a").evaluate_all("els => els.map(a => a.pathname)")
        paths += [tab for tab in tabs if tab not in paths]
    return [*paths, "/account"]


# -- signing in -----------------------------------------------------------------------------------------


def test_signing_in_through_the_form(browser: Any, gw: Gateway) -> None:
    user, password = a_user(gw)
    page = new_page(browser, gw)
    sign_in(page, user["username"], "not-the-password")
    assert page.locator("[role=alert]").inner_text() == "Wrong username or password."
    sign_in(page, user["username"], password)
    assert page.url == gw.url + "/"
    assert page.locator("header .who a").first.inner_text() == user["username"]
    assert page.get_by_role("button", name="Sign out").is_visible()
    page.goto("/account")  # a signed-in page opens
    assert page.url == gw.url + "/account"
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    assert page.locator("header .who").get_by_role("link", name="Sign in").is_visible()
    page.goto("/account")
    assert page.url.startswith(gw.url + "/login")  # signed out: back to the form
    page.context.close()


def test_a_user_menu_has_no_admin_pages_and_admin_pages_refuse_the_user(browser: Any, gw: Gateway) -> None:
    user, password = a_user(gw)
    admin = sign_in(new_page(browser, gw), "root", root_password(gw))
    mine = sign_in(new_page(browser, gw), user["username"], password)
    admin_only = set(every_page(admin)) - set(every_page(mine))
    assert len(admin_only) >= 6  # the admin's tabs
    for path in sorted(admin_only):
        answer = mine.goto(path)
        assert answer.status in (403, 404), (path, answer.status)
    admin.context.close(), mine.context.close()


def test_an_admin_opens_registration_and_a_visitor_registers(browser: Any, gw: Gateway) -> None:
    visitor = new_page(browser, gw)
    visitor.goto("/login")
    assert visitor.get_by_role("link", name="Create an account").count() == 0
    assert visitor.goto("/register").status == 403

    admin = sign_in(new_page(browser, gw), "root", root_password(gw))
    admin.goto("/admin/settings")
    admin.get_by_label("Anyone may create an account from the sign-in page").check()
    with admin.expect_navigation():
        admin.get_by_role("button", name="Save").click()
    assert admin.get_by_role("status").inner_text() == "The settings were saved."
    try:
        visitor.goto("/login")
        with visitor.expect_navigation():
            visitor.get_by_role("link", name="Create an account").click()
        name, password = "v-" + secrets.token_hex(4), "pw-" + secrets.token_hex(8)
        form = visitor.locator("main form")
        form.locator("input[name=username]").fill(name)
        form.locator("input[name=password]").fill(password)
        form.locator("input[name=confirm]").fill(password)
        with visitor.expect_navigation():
            form.get_by_role("button", name="Create an account").click()
        assert visitor.locator("header .who a").first.inner_text() == name
        users = gw.ok("GET", "/users?per_page=500")["data"]
        assert [u["role"] for u in users if u["username"] == name] == ["user"]
    finally:
        admin.goto("/admin/settings")
        admin.get_by_label("Anyone may create an account from the sign-in page").uncheck()
        with admin.expect_navigation():
            admin.get_by_role("button", name="Save").click()
    assert visitor.goto("/register").status == 403
    admin.context.close(), visitor.context.close()


# -- keys, models, wallet --------------------------------------------------------------------------------


def test_a_new_key_is_shown_once_and_works_at_once(browser: Any, gw: Gateway, upstream: FakeUpstream) -> None:
    model = "bk-" + secrets.token_hex(4)
    gw.channel(upstream, [model])
    gw.price(model)
    user, password = a_user(gw)
    page = sign_in(new_page(browser, gw), user["username"], password)
    page.goto("/keys")
    page.evaluate("window.stillThisPage = true")
    form = page.locator("#create-key")
    form.locator("input[name=name]").fill("laptop")
    form.get_by_role("button", name="Create the key").click()
    shown = page.locator("#new-key")
    shown.wait_for()
    secret = shown.inner_text().strip()
    assert secret.startswith("sk-") and page.evaluate("window.stillThisPage") is True  # swapped in by htmx
    assert page.get_by_text("it is shown only this once").is_visible()
    assert page.locator("#key-rows .key-name").all_inner_texts() == ["laptop"]

    answer = gw.client(secret).chat.completions.create(model=model, messages=HI)  # the relay knows it now
    assert answer.choices[0].message.content

    page.reload()
    assert page.locator("#new-key").count() == 0 and secret not in page.content()  # never again
    assert page.locator("#key-rows .key-name").all_inner_texts() == ["laptop"]
    page.context.close()


def test_clicking_a_model_tag_fills_it_into_every_snippet(
    browser: Any, gw: Gateway, upstream: FakeUpstream
) -> None:
    first, second = "bm-a-" + secrets.token_hex(3), "bm-b-" + secrets.token_hex(3)
    for model in (first, second):
        gw.channel(upstream, [model])
        gw.price(model)
    user, password = a_user(gw)
    page = sign_in(new_page(browser, gw), user["username"], password)
    page.goto(f"/models?model={first}")
    page.evaluate("window.stillThisPage = true")
    snippets = page.locator("#snippets pre")
    assert page.locator(".chosen-model").inner_text() == first
    assert snippets.count() > 0 and all(first in code for code in snippets.all_inner_texts())

    page.locator("a.tag", has_text=second).click()
    expect(page.locator(".chosen-model")).to_have_text(second)
    codes = page.locator("#snippets pre").all_inner_texts()
    assert codes and all(second in code and first not in code for code in codes)
    assert all(gw.v1 in code or gw.url in code for code in codes)  # the real base URL
    assert page.evaluate("window.stillThisPage") is True
    page.context.close()


def test_redeeming_a_code_changes_the_balance(browser: Any, gw: Gateway) -> None:
    user, password = a_user(gw, balance_usd=10)
    code = gw.ok("POST", "/redemptions", {"amount_usd": 5})["codes"][0]
    page = sign_in(new_page(browser, gw), user["username"], password)
    page.goto("/wallet")
    assert page.locator("#balance").inner_text() == "$10.00"
    page.evaluate("window.stillThisPage = true")
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator("#balance")).to_have_text("$15.00")
    assert page.evaluate("window.stillThisPage") is True
    assert gw.balance(user) == 15_000_000
    page.get_by_label("Code").fill(code)  # a code is good once
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator("#wallet-main [role=alert]")).to_be_visible()
    assert page.locator("#balance").inner_text() == "$15.00" and gw.balance(user) == 15_000_000
    page.context.close()


def test_paging_through_the_usage_table(browser: Any, gw: Gateway, upstream: FakeUpstream) -> None:
    model = "bu-" + secrets.token_hex(4)
    gw.channel(upstream, [model])
    gw.price(model)
    user, password = a_user(gw)
    client = gw.client(gw.key(user))
    for _ in range(60):  # more than a page of 50
        client.chat.completions.create(model=model, messages=HI)
    gw.logs_of(user, 60)
    page = sign_in(new_page(browser, gw), user["username"], password)
    page.goto("/usage")
    page.evaluate("window.stillThisPage = true")
    rows, pager = page.locator("table.usage-logs tbody tr"), page.locator("nav.pager")
    assert page.locator("#total-requests").inner_text() == "60"
    assert rows.count() == 50 and pager.get_by_text("Page 1 of 2").is_visible()

    pager.locator("a[rel=next]").click()
    expect(pager.get_by_text("Page 2 of 2")).to_be_visible()
    assert rows.count() == 10 and pager.locator("a[rel=next]").count() == 0
    assert "page=2" in page.url  # the address follows, so the page can be reloaded or shared
    pager.locator("a[rel=prev]").click()
    expect(pager.get_by_text("Page 1 of 2")).to_be_visible()
    assert rows.count() == 50 and page.evaluate("window.stillThisPage") is True
    assert set(rows.locator("td:nth-child(3)").all_inner_texts()) == {model}

    page.locator("select[name=status]").select_option("error")  # a filter: none of them failed
    expect(page.get_by_text("No requests match these filters.")).to_be_visible()
    assert page.locator("#total-requests").inner_text() == "0"
    page.context.close()


# -- the live health card -------------------------------------------------------------------------------


def test_the_health_card_turns_red_when_a_channel_fails_without_a_reload(
    browser: Any, tmp_path: Path
) -> None:
    gateway = _gateway(tmp_path, AUTO_DISABLE_AFTER="3", RETRY_ATTEMPTS="1")
    failing = FakeUpstream("failing").start()
    try:
        model = "hb-" + secrets.token_hex(4)
        channel = gateway.channel(failing, [model])
        gateway.price(model)
        user, _ = a_user(gateway)
        client = gateway.client(gateway.key(user))
        page = new_page(browser, gateway)
        page.goto("/")
        card = page.locator("#health")
        assert "ok" in card.get_attribute("class").split()
        assert page.locator("#channels-up").inner_text() == "1"
        page.evaluate("window.stillThisPage = true")  # gone if the page reloads

        failing.behave(status=500)  # the probe keeps failing too: the channel stays down
        deadline = time.time() + 10
        while gateway.ok("GET", f"/channels/{channel['id']}")["status"] != "auto_disabled":
            assert time.time() < deadline, "the channel was never auto-disabled"
            with pytest.raises(openai.APIError):
                client.chat.completions.create(model=model, messages=HI)

        expect(card).to_have_class(re.compile(r"\bbad\b"), timeout=WAIT_MS)  # htmx polls every 5 s
        assert page.evaluate("window.stillThisPage") is True
        assert page.locator("#channels-auto-disabled").inner_text() == "1"
        assert page.locator("#channels-up").inner_text() == "0"
        assert card.locator(".state").inner_text() == "Some upstream channels are failing."
        page.screenshot(path=str(_shot("en", "home-channel-failing")))
        page.context.close()
    finally:
        failing.stop()
        stop_gateway(gateway)


# -- languages ------------------------------------------------------------------------------------------


def test_switching_to_vietnamese_leaves_no_english_on_any_page(browser: Any, gw: Gateway) -> None:
    page = sign_in(new_page(browser, gw), "root", root_password(gw))
    assert page.locator("html").get_attribute("lang") == "en"
    switch_language(page, "vi")
    assert page.locator("#health .state").inner_text() != "All systems working."
    for path in every_page(page):
        page.goto(path)
        assert page.locator("html").get_attribute("lang") == "vi", path
        left = english_left("vi", visible_text(page.content()))
        assert not left, f"{path} in Vietnamese still says {left}"
    page.context.close()


def _shot(language: str, name: str) -> Path:
    folder = SCREENSHOTS / language
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.png"


def _page_name(path: str) -> str:
    return path.strip("/").replace("/", "-") or "home"


@pytest.mark.parametrize("language", list(locale.LANGUAGES))
def test_screenshots_of_each_main_page_in_each_language(browser: Any, gw: Gateway, language: str) -> None:
    signed_out = new_page(browser, gw)
    signed_out.goto("/login")
    switch_language(signed_out, language)
    signed_out.screenshot(path=str(_shot(language, "login")), full_page=True)
    signed_out.context.close()

    page = sign_in(new_page(browser, gw), "root", root_password(gw))
    switch_language(page, language)
    for path in every_page(page):
        answer = page.goto(path)
        assert answer.status == 200, (path, answer.status)
        assert page.locator("html").get_attribute("lang") == locale.html_lang(language)
        page.screenshot(path=str(_shot(language, _page_name(path))), full_page=True)
    page.context.close()
