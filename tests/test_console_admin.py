"""The admin pages with Flask's test client on an in-process app: every page and action as an admin, every
admin URL refused for a plain user (403) and a signed-out visitor (the sign-in page), and what the pages
write read back through the management API."""

from __future__ import annotations

import csv
import io
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from console.web import locale
from tests.conftest import CONSOLE_PASSWORD as PASSWORD
from tests.conftest import csrf, sign_in
from tests.fake_upstream import FakeUpstream
from tests.test_pages import _Text

ADMIN_GET = [
    "/admin/",
    "/admin/channels",
    "/admin/channels/new",
    "/admin/channels/type?type=azure",
    "/admin/channels/1",
    "/admin/users",
    "/admin/users/1",
    "/admin/prices",
    "/admin/groups",
    "/admin/codes",
    "/admin/codes.csv",
    "/admin/settings",
]
ADMIN_POST = [
    "/admin/channels/new",
    "/admin/channels/1",
    "/admin/channels/1/status",
    "/admin/channels/1/test",
    "/admin/channels/1/delete",
    "/admin/users",
    "/admin/users/1",
    "/admin/users/1/wallet",
    "/admin/prices",
    "/admin/prices/delete",
    "/admin/groups",
    "/admin/codes",
    "/admin/settings",
]


@pytest.fixture
def admin(app: Flask) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, "root", PASSWORD).status_code == 302
    return client


def post(client: FlaskClient, path: str, data: dict | None = None, **kwargs: object):  # noqa: ANN201
    return client.post(path, data={**(data or {}), "csrf_token": csrf(client, "/")}, **kwargs)


def make_channel(admin: FlaskClient, **fields: str) -> object:
    form = {
        "name": "main",
        "type": "openai",
        "base_url": "",
        "keys": "sk-upstream-secret-1234",
        "models": "gpt-4o-mini, gpt-4o",
        "model_mapping": "gpt-4o = gpt-4o-2024-08-06",
        "groups": "default, vip",
        "priority": "5",
        "weight": "2",
        "timeout_s": "30",
        "test_model": "gpt-4o-mini",
        "responses": "convert",
        **fields,
    }
    return post(admin, "/admin/channels/new", form)


def make_user(admin: FlaskClient, username: str = "alice", role: str = "user") -> int:
    made = post(admin, "/admin/users", {"username": username, "password": "alice-password", "role": role})
    assert made.status_code == 302
    users = admin.get("/api/users").get_json()["data"]
    return next(u["id"] for u in users if u["username"] == username)


# -- who may come in ---------------------------------------------------------------------------------------
def test_signed_out_visitors_get_the_sign_in_page(app: Flask) -> None:
    client = app.test_client()
    for path in ADMIN_GET:
        answer = client.get(path)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login"), path
    token = csrf(client)
    for path in ADMIN_POST:
        answer = client.post(path, data={"csrf_token": token})
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login"), path


def test_plain_users_are_refused_every_admin_url(app: Flask, admin: FlaskClient) -> None:
    make_channel(admin)
    make_user(admin)
    user = app.test_client()
    sign_in(user, "alice", "alice-password")
    assert 'href="/admin/channels"' not in user.get("/").get_data(as_text=True)  # not in the menu
    for path in ADMIN_GET:
        answer = user.get(path)
        assert answer.status_code == 403 and "This page is for admins." in answer.get_data(as_text=True), path
    for path in ADMIN_POST:
        assert post(user, path, {"name": "x", "amount_usd": "5", "model": "m"}).status_code == 403, path
    assert admin.get("/api/channels").get_json()["data"][0]["name"] == "main"  # nothing changed
    assert admin.get("/api/users/1").get_json()["balance_micro_usd"] == 0


def test_admins_see_the_menu_entry(admin: FlaskClient) -> None:
    html = admin.get("/").get_data(as_text=True)
    assert 'href="/admin/channels"' in html
    assert admin.get("/admin/").headers["Location"] == "/admin/channels"
    page = admin.get("/admin/channels").get_data(as_text=True)
    for path in ("/admin/users", "/admin/prices", "/admin/groups", "/admin/codes", "/admin/settings"):
        assert f'href="{path}"' in page


# -- channels ----------------------------------------------------------------------------------------------
def test_a_channel_created_in_the_console_is_listed_by_the_api(app: Flask, admin: FlaskClient) -> None:
    made = make_channel(admin)
    assert made.status_code == 302 and made.headers["Location"] == "/admin/channels"
    [channel] = admin.get("/api/channels").get_json()["data"]
    assert channel["name"] == "main" and channel["type"] == "openai"
    assert channel["base_url"] == "https://api.openai.com/v1"  # the type's default
    assert channel["models"] == ["gpt-4o-mini", "gpt-4o"] and channel["groups"] == ["default", "vip"]
    assert channel["model_mapping"] == {"gpt-4o": "gpt-4o-2024-08-06"}
    assert (channel["priority"], channel["weight"], channel["timeout_s"]) == (5, 2, 30.0)
    assert channel["test_model"] == "gpt-4o-mini" and channel["settings"] == {"responses": "convert"}
    assert [k["hint"] for k in channel["keys"]] == ["...1234"]
    assert channel["id"] in app.extensions["relayhouse"].catalog.snapshot.channels  # the relay knows it
    page = admin.get("/admin/channels").get_data(as_text=True)
    assert "Channel “main” was created." in page and "gpt-4o-mini, gpt-4o" in page
    assert "sk-upstream-secret" not in page


def test_the_type_picker_fills_the_types_defaults(admin: FlaskClient) -> None:
    form = admin.get("/admin/channels/new").get_data(as_text=True)
    assert '<option value="anthropic">Anthropic</option>' in form and 'hx-get="/admin/channels/type"' in form
    assert "https://api.openai.com/v1" in form
    part = admin.get("/admin/channels/type?type=anthropic", headers={"HX-Request": "true"})
    html = part.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="channel-type-defaults"') and "https://api.anthropic.com" in html
    azure = admin.get("/admin/channels/type?type=azure").get_data(as_text=True)
    assert "This type has no default address" in azure and "API version" in azure
    chosen = admin.get("/admin/channels/new?type=gemini").get_data(as_text=True)
    assert "https://generativelanguage.googleapis.com" in chosen


def test_a_refused_channel_names_the_field_and_keeps_the_form(admin: FlaskClient) -> None:
    refused = make_channel(admin, name="bad", priority="high")
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "priority must be an integer" in html and 'value="bad"' in html
    azure = make_channel(admin, name="az", type="azure")  # azure has no default address
    assert azure.status_code == 400 and "base_url" in azure.get_data(as_text=True)
    mapping = make_channel(admin, model_mapping="no equals sign")
    assert mapping.status_code == 400
    assert admin.get("/api/channels").get_json()["data"] == []
    switched = post(admin, "/language", {"language": "vi"})
    assert switched.status_code == 302
    translated = make_channel(admin, name="bad", weight="0").get_data(as_text=True)
    assert "Trọng số" in translated and "weight must be" not in translated


def test_edit_a_channel_keeps_its_keys_unless_new_ones_are_given(admin: FlaskClient) -> None:
    make_channel(admin)
    form = admin.get("/admin/channels/1").get_data(as_text=True)
    assert 'value="main"' in form and "gpt-4o = gpt-4o-2024-08-06" in form and "sk-upstream" not in form
    saved = post(
        admin,
        "/admin/channels/1",
        {
            "name": "renamed",
            "type": "openai",
            "models": "gpt-4o-mini",
            "groups": "default",
            "priority": "9",
            "weight": "1",
        },
    )
    assert saved.status_code == 302
    channel = admin.get("/api/channels/1").get_json()
    assert (channel["name"], channel["priority"], channel["models"]) == ("renamed", 9, ["gpt-4o-mini"])
    assert [k["hint"] for k in channel["keys"]] == ["...1234"] and channel["settings"] == {}
    moved = post(
        admin,
        "/admin/channels/1",
        {"name": "renamed", "type": "openai", "models": "m", "base_url": "https://other.example/v1"},
    )
    assert moved.status_code == 400  # another host needs its own keys
    rekeyed = post(
        admin,
        "/admin/channels/1",
        {
            "name": "renamed",
            "type": "openai",
            "models": "m",
            "base_url": "https://other.example/v1",
            "keys": "sk-new-5678",
        },
    )
    assert rekeyed.status_code == 302
    assert [k["hint"] for k in admin.get("/api/channels/1").get_json()["keys"]] == ["...5678"]
    assert admin.get("/admin/channels/99").status_code == 404


def test_disable_and_enable_a_channel(app: Flask, admin: FlaskClient) -> None:
    make_channel(admin)
    off = post(admin, "/admin/channels/1/status", {"status": "disabled"})
    assert off.status_code == 302
    assert admin.get("/api/channels/1").get_json()["status"] == "disabled"
    assert app.extensions["relayhouse"].catalog.snapshot.channels[1].status == "disabled"
    page = admin.get("/admin/channels").get_data(as_text=True)
    assert ">Enable</button>" in page and "disabled by an admin" not in page  # no reason needed
    part = post(admin, "/admin/channels/1/status", {"status": "enabled"}, headers={"HX-Request": "true"})
    html = part.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="admin-channels"') and "<html" not in html
    assert admin.get("/api/channels/1").get_json()["status"] == "enabled"


def test_an_auto_disabled_channel_shows_its_reason(app: Flask, admin: FlaskClient) -> None:
    make_channel(admin)
    with app.app_context():
        from gateway.domain import channels

        channels.set_status(1, "auto_disabled", "5 of 6 requests failed in 60 s")
    html = admin.get("/admin/channels").get_data(as_text=True)
    assert "Auto-disabled" in html and "5 of 6 requests failed in 60 s" in html


def test_a_channel_test_measures_latency(admin: FlaskClient) -> None:
    make_channel(admin, base_url="http://127.0.0.1:9/v1", timeout_s="2")  # nothing listens there
    part = post(admin, "/admin/channels/1/test", {"model": "gpt-4o-mini"}, headers={"HX-Request": "true"})
    html = part.get_data(as_text=True)
    assert part.status_code == 200 and "Failed" in html and "<html" not in html
    plain = post(admin, "/admin/channels/1/test")
    assert plain.status_code == 302 and "failed its test" in admin.get("/admin/channels").get_data(
        as_text=True
    )


def test_a_channel_test_against_a_live_upstream(admin: FlaskClient, fresh_upstream: FakeUpstream) -> None:
    make_channel(admin, base_url=fresh_upstream.base_url, keys="sk-fake-upstream")
    part = post(admin, "/admin/channels/1/test", headers={"HX-Request": "true"})
    html = part.get_data(as_text=True)
    assert "status-enabled" in html and re.search(r"\d+ ms", html)


def test_a_failed_channel_test_is_explained_in_the_page_language(
    admin: FlaskClient, fresh_upstream: FakeUpstream
) -> None:
    make_channel(admin, base_url=fresh_upstream.base_url, keys="sk-a-wrong-key-0001")
    fresh_upstream.behave(require_key="sk-the-right-key-0002")
    post(admin, "/language", {"language": "ja"})
    part = post(admin, "/admin/channels/1/test", headers={"HX-Request": "true"})
    html = part.get_data(as_text=True)
    parser = _Text()
    parser.feed(html)
    text = " ".join(" ".join(parser.parts).split())
    assert "失敗" in text and "アップストリームがチャネルのキーを拒否しました(401)。" in text, text
    assert "Incorrect API key" not in html and "1" + "0001" not in html  # its words quote the key
    words = "The engine is <overloaded> right now."
    fresh_upstream.reset()
    fresh_upstream.behave(status=503, error_body={"error": {"message": words, "type": "server_error"}})
    html = post(admin, "/admin/channels/1/test", headers={"HX-Request": "true"}).get_data(as_text=True)
    parser = _Text()
    parser.feed(html)
    text = " ".join(" ".join(parser.parts).split())
    assert "アップストリームが 503 を返しました:" in text and "overloaded" not in text, text
    # the upstream's own words, as it sent them, set apart from the page's
    assert '<code class="quoted" translate="no">The engine is &lt;overloaded&gt; right now.</code>' in html
    assert "The upstream answered" not in html


def test_a_channel_that_cannot_be_reached_is_explained_in_the_page_language(admin: FlaskClient) -> None:
    make_channel(admin, base_url="http://127.0.0.1:9/v1", timeout_s="2")  # nothing listens there
    post(admin, "/language", {"language": "vi"})
    part = post(admin, "/admin/channels/1/test", headers={"HX-Request": "true"})
    assert "Không kết nối được tới upstream." in part.get_data(as_text=True)
    assert "Could not reach" not in part.get_data(as_text=True)
    assert post(admin, "/admin/channels/1/test").status_code == 302
    page = admin.get("/admin/channels").get_data(as_text=True)
    assert "Kênh “main” kiểm tra thất bại: Không kết nối được tới upstream." in page


def test_a_reason_stored_before_reasons_had_codes_is_still_shown(app: Flask, admin: FlaskClient) -> None:
    make_channel(admin)
    with app.app_context():
        from gateway.domain import channels

        channels.set_status(1, "half_open", "answered a test; taking a little traffic <b>")
    post(admin, "/language", {"language": "zh_Hans"})
    page = admin.get("/admin/channels").get_data(as_text=True)
    assert "试运行中" in page and "answered a test; taking a little traffic &lt;b&gt;" in page
    api = admin.get("/api/channels/1").get_json()
    assert api["status_reason"] == "answered a test; taking a little traffic <b>"


def test_delete_a_channel(admin: FlaskClient) -> None:
    make_channel(admin)
    assert post(admin, "/admin/channels/1/delete").status_code == 302
    assert admin.get("/api/channels").get_json()["data"] == []


# -- users and wallets -------------------------------------------------------------------------------------
def test_create_a_user_and_edit_role_group_and_status(app: Flask, admin: FlaskClient) -> None:
    user_id = make_user(admin)
    assert "alice" in admin.get("/admin/users").get_data(as_text=True)
    taken = post(admin, "/admin/users", {"username": "alice", "password": "alice-password", "role": "user"})
    assert taken.status_code == 400 and "is taken" in taken.get_data(as_text=True)
    saved = post(admin, f"/admin/users/{user_id}", {"role": "admin", "group": "vip", "status": "disabled"})
    assert saved.status_code == 302
    row = admin.get(f"/api/users/{user_id}").get_json()
    assert (row["role"], row["group"], row["status"]) == ("admin", "vip", "disabled")
    locked_out = app.test_client()
    assert sign_in(locked_out, "alice", "alice-password").status_code == 401
    assert admin.get("/admin/users/999").status_code == 404


def test_the_root_rules_hold_in_the_console(app: Flask, admin: FlaskClient) -> None:
    make_user(admin, "boss", "admin")
    boss = app.test_client()
    sign_in(boss, "boss", "alice-password")
    grant = post(boss, "/admin/users", {"username": "eve", "password": "eve-password", "role": "root"})
    assert grant.status_code == 400 and "Only the root admin" in grant.get_data(as_text=True)
    demote = post(boss, "/admin/users/1", {"role": "user", "group": "default", "status": "active"})
    assert demote.status_code == 400 and admin.get("/api/users/1").get_json()["role"] == "root"
    itself = post(admin, "/admin/users/1", {"role": "user", "group": "default", "status": "active"})
    assert itself.status_code == 400 and "cannot demote or disable itself" in itself.get_data(as_text=True)


def test_adjust_a_wallet_with_a_reason(app: Flask, admin: FlaskClient) -> None:
    user_id = make_user(admin)
    added = post(admin, f"/admin/users/{user_id}/wallet", {"amount_usd": "12.5", "reason": "welcome"})
    assert added.status_code == 302
    taken = post(admin, f"/admin/users/{user_id}/wallet", {"amount_usd": "-2.25", "reason": "correction"})
    assert taken.status_code == 302
    wallet = admin.get(f"/api/users/{user_id}/wallet").get_json()
    assert wallet["balance_micro_usd"] == 10_250_000
    assert [(e["kind"], e["amount_micro_usd"], e["reason"]) for e in wallet["ledger"]] == [
        ("adjustment", -2_250_000, "correction"),
        ("topup", 12_500_000, "welcome"),
    ]
    page = admin.get(f"/admin/users/{user_id}").get_data(as_text=True)
    assert "$10.25" in page and "welcome" in page and "Top-up" in page
    zero = post(admin, f"/admin/users/{user_id}/wallet", {"amount_usd": "0", "reason": "x"})
    assert zero.status_code == 400
    fraction = post(admin, f"/admin/users/{user_id}/wallet", {"amount_usd": "0.0000001", "reason": "x"})
    assert fraction.status_code == 400 and "decimal places" in fraction.get_data(as_text=True)


# -- prices and groups -------------------------------------------------------------------------------------
def test_a_price_set_in_the_console_shows_in_the_api(app: Flask, admin: FlaskClient) -> None:
    form = {
        "model": "gpt-4o-mini",
        "input_per_mtok_usd": "0.15",
        "output_per_mtok_usd": "0.6",
        "cached_input_per_mtok_usd": "0.075",
        "cache_write_per_mtok_usd": "0.2",
    }
    assert post(admin, "/admin/prices", form).status_code == 302
    [price] = admin.get("/api/prices").get_json()["data"]
    assert price["model"] == "gpt-4o-mini" and price["input_per_mtok_usd"] == 0.15
    assert price["output_per_mtok_usd"] == 0.6 and price["cached_input_per_mtok_usd"] == 0.075
    assert price["cache_write_per_mtok_usd"] == 0.2 and price["per_request_usd"] is None
    assert "gpt-4o-mini" in app.extensions["relayhouse"].catalog.snapshot.prices
    page = admin.get("/admin/prices").get_data(as_text=True)
    assert "$0.15" in page and "$0.075" in page
    editing = admin.get("/admin/prices?model=gpt-4o-mini").get_data(as_text=True)  # the row's link
    assert 'name="cached_input_per_mtok_usd" value="0.075"' in editing and 'value="0.6"' in editing
    per_request = post(admin, "/admin/prices", {"model": "dall-e-3", "per_request_usd": "0.04"})
    assert per_request.status_code == 302
    assert admin.get("/api/prices").get_json()["data"][0]["per_request_usd"] == 0.04
    bad = post(admin, "/admin/prices", {"model": "x", "input_per_mtok_usd": "-1"})
    assert bad.status_code == 400 and "input_per_mtok_usd" in bad.get_data(as_text=True)


def test_delete_a_price(admin: FlaskClient) -> None:
    post(admin, "/admin/prices", {"model": "a", "input_per_mtok_usd": "1"})
    post(admin, "/admin/prices", {"model": "b", "input_per_mtok_usd": "1"})
    part = post(admin, "/admin/prices/delete", {"model": "a"}, headers={"HX-Request": "true"})
    html = part.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="admin-prices"') and "<html" not in html
    assert post(admin, "/admin/prices/delete", {"model": "b"}).status_code == 302
    assert admin.get("/api/prices").get_json()["data"] == []


def test_groups_and_multipliers(admin: FlaskClient) -> None:
    assert post(admin, "/admin/groups", {"name": "vip", "multiplier": "0.8"}).status_code == 302
    assert admin.get("/api/groups").get_json()["data"] == [{"name": "vip", "multiplier": "0.8"}]
    assert "0.8×" in admin.get("/admin/groups").get_data(as_text=True)
    bad = post(admin, "/admin/groups", {"name": "vip", "multiplier": "lots"})
    assert bad.status_code == 400 and "multiplier" in bad.get_data(as_text=True)


# -- redemption codes --------------------------------------------------------------------------------------
def test_generate_codes_list_them_and_export_csv(app: Flask, admin: FlaskClient) -> None:
    made = post(admin, "/admin/codes", {"amount_usd": "5", "count": "3"})
    html = made.get_data(as_text=True)
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    codes = re.search(r'<pre id="new-codes">([^<]*)</pre>', html).group(1).split("\n")
    assert len(codes) == 3 and all(c.startswith("rh-") for c in codes)
    user_id = make_user(admin)
    user = app.test_client()
    sign_in(user, "alice", "alice-password")
    redeemed = user.post("/api/wallet/redeem", json={"code": codes[0]})
    assert redeemed.status_code == 200 and redeemed.get_json()["balance_micro_usd"] == 5_000_000
    listing = admin.get("/admin/codes").get_data(as_text=True)
    assert listing.count("$5.00") >= 3 and "alice" in listing and codes[1] not in listing
    exported = admin.get("/admin/codes.csv")
    assert exported.mimetype == "text/csv" and "attachment" in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert len(rows) == 3 and {r["amount_usd"] for r in rows} == {"5.000000"}
    assert [r["redeemed_by"] for r in rows].count("alice") == 1 and rows[0]["created_by"] == "root"
    assert user_id


def test_generate_codes_straight_to_csv(admin: FlaskClient) -> None:
    made = post(admin, "/admin/codes", {"amount_usd": "0.5", "count": "2", "format": "csv"})
    assert made.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(made.get_data(as_text=True))))
    assert len(rows) == 2 and rows[0]["amount_usd"] == "0.5" and rows[0]["code"].startswith("rh-")
    bad = post(admin, "/admin/codes", {"amount_usd": "5", "count": "5000"})
    assert bad.status_code == 400 and "count must be" in bad.get_data(as_text=True)


# -- settings ----------------------------------------------------------------------------------------------
def test_settings_reach_the_home_page_and_registration(app: Flask, admin: FlaskClient) -> None:
    form = {
        "public_url": "https://llm.example.com/",
        "registration": "on",
        "default_group": "starter",
        "retry_attempts": "4",
    }
    assert post(admin, "/admin/settings", form).status_code == 302
    visitor = app.test_client()
    assert '<code id="base-url">https://llm.example.com/v1</code>' in visitor.get("/").get_data(as_text=True)
    assert visitor.get("/register").status_code == 200
    page = admin.get("/admin/settings").get_data(as_text=True)
    assert 'value="https://llm.example.com"' in page and 'value="starter"' in page and 'value="4"' in page
    assert 'name="default_group"' in page and 'value="starter"' in admin.get("/admin/users").get_data(
        as_text=True
    )
    snapshot = app.extensions["relayhouse"].catalog.snapshot.settings
    assert snapshot["default_group"] == "starter" and snapshot["retry_attempts"] == 4
    off = post(admin, "/admin/settings", {"public_url": ""})  # unchecked boxes turn things off
    assert off.status_code == 302 and visitor.get("/register").status_code == 403
    bad = post(admin, "/admin/settings", {"public_url": "ftp://x", "retry_attempts": "0"})
    assert bad.status_code == 400 and "public_url" in bad.get_data(as_text=True)
    assert post(admin, "/admin/settings", {"retry_attempts": "99"}).status_code == 400


# -- languages ---------------------------------------------------------------------------------------------
def _seed(app: Flask, admin: FlaskClient) -> None:
    make_channel(admin)
    post(admin, "/admin/channels/1/status", {"status": "disabled"})
    make_channel(admin, name="tripped", keys="sk-upstream-secret-1234\nsk-upstream-secret-5678")
    with app.app_context():  # as the relay leaves them (tests/test_health.py drives the relay itself)
        from gateway.domain import channels

        last = {"status": 500, "code": None, "last": "The server had an error."}
        channels.set_status(
            2, "auto_disabled", channels.reason("failure_rate", failures=9, requests=10, window_s=60, **last)
        )
        key = channels.channel_keys(2)[0].id
        channels.set_key_status(
            key, "set_aside", channels.reason("key_rejected", status=401, code="invalid_api_key")
        )
    make_user(admin)
    post(admin, "/admin/users/2/wallet", {"amount_usd": "3", "reason": "seed"})
    post(admin, "/admin/prices", {"model": "gpt-4o-mini", "input_per_mtok_usd": "1", "per_request_usd": "1"})
    post(admin, "/admin/groups", {"name": "vip", "multiplier": "2"})
    post(admin, "/admin/codes", {"amount_usd": "1", "count": "1"})


def pieces(source: str, translation: str) -> list[str]:
    """The words between a message's parameters that a translation should have replaced."""
    found = (p.strip() for p in re.split(r"%\(\w+\)s", source))
    return [p for p in found if len(p) >= 12 and p not in translation]


@pytest.mark.parametrize("language", [code for code in locale.LANGUAGES if code != "en"])
def test_admin_pages_keep_no_source_language_string(app: Flask, admin: FlaskClient, language: str) -> None:
    _seed(app, admin)
    post(admin, "/language", {"language": language})
    catalog = locale.read_catalog(language)
    sources = {m.id for m in catalog if m.id and m.string and m.string != m.id and len(m.id) > 3}
    answers = [admin.get(p) for p in ADMIN_GET if not p.endswith(".csv")]
    answers += [
        make_channel(admin, priority="x"),
        post(admin, "/admin/codes", {"amount_usd": "1", "count": "2"}),
        post(admin, "/admin/channels/1/test", headers={"HX-Request": "true"}),
    ]
    for answer in answers:
        html = answer.get_data(as_text=True)
        parser = _Text()  # the page's own part: the menu around it is every page's (tests/test_pages.py)
        parser.feed(html.partition("<main>")[2].partition("</main>")[0] if "<main>" in html else html)
        text = " ".join(" ".join(parser.parts).split())
        left = sorted(s for s in sources if "%(" not in s and s in text)
        # and the longer literal pieces of messages with parameters (a status reason is one of those)
        left += sorted(p for s in sources for p in pieces(s, catalog[s].string) if p in text)
        assert not left, f"{answer.request.path} in {language} still says {left}"
    menu = admin.get("/").get_data(as_text=True)
    label = re.search(r'<a href="/admin/channels"[^>]*>([^<]+)</a>', menu).group(1)
    assert label == catalog["Admin"].string != "Admin"
