"""The API keys page with Flask's test client on an in-process app: signed out and in, as a user and as an
admin; creating a key (shown once), editing its limits, disabling, enabling and deleting it, with htmx and
as plain POSTs, each change read back through the management API; another user's key is a 404."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import CONSOLE_PASSWORD as PASSWORD
from tests.conftest import csrf
from tests.conftest import sign_in as console_sign_in

HX = {"HX-Request": "true"}


def sign_in(client: FlaskClient, username: str = "root", password: str = PASSWORD) -> None:
    signed = console_sign_in(client, username, password)
    assert signed.status_code == 302, signed.get_data(as_text=True)


def admin(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(client)
    return client


def new_user(app: Flask, name: str = "alice") -> FlaskClient:
    """A user with a channel-served, priced model, signed in on a client of their own."""
    root = admin(app)
    made = root.post("/api/users", json={"username": name, "password": f"{name}-password"})
    assert made.status_code == 201, made.get_json()
    channel = {"name": "ch", "type": "openai", "keys": ["sk-up"], "models": ["gpt-4o-mini", "gpt-4o"]}
    if root.get("/api/channels").get_json()["data"] == []:
        assert root.post("/api/channels", json=channel).status_code == 201
        root.put("/api/prices/gpt-4o-mini", json={"input_per_mtok_usd": 0.15, "output_per_mtok_usd": 0.6})
        root.put("/api/prices/gpt-4o", json={"input_per_mtok_usd": 2.5, "output_per_mtok_usd": 10})
    client = app.test_client()
    sign_in(client, name, f"{name}-password")
    return client


def api_keys(client: FlaskClient) -> list[dict]:
    return client.get("/api/keys").get_json()["data"]


def form(client: FlaskClient, **fields: object) -> dict:
    return {"csrf_token": csrf(client, "/keys"), **fields}


def test_signed_out_the_page_asks_to_sign_in(app: Flask) -> None:
    client = app.test_client()
    for path in ("/keys", "/keys/1", "/keys/1/edit"):
        page = client.get(path)
        assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    assert client.post("/keys", data={"name": "x"}).status_code == 400  # no CSRF token, no key


def test_the_page_lists_nothing_at_first_and_is_in_the_menu(app: Flask) -> None:
    client = new_user(app)
    page = client.get("/keys")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<h1>API keys</h1>" in html
    assert 'id="no-keys"' in html and 'href="/keys" aria-current="page"' in html
    assert '<option value="gpt-4o-mini">gpt-4o-mini</option>' in html  # models a key may be limited to


def test_htmx_create_shows_the_key_once_with_a_copy_button(app: Flask) -> None:
    client = new_user(app)
    made = client.post("/keys", data=form(client, name="laptop", spend_limit_usd="2.5"), headers=HX)
    html = made.get_data(as_text=True)
    assert made.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<div id="keys-area">')
    plain = re.search(r'<code id="new-key">(sk-[^<]+)</code>', html).group(1)
    assert 'data-copy="#new-key"' in html and "shown only this once" in html
    (key,) = api_keys(client)
    assert key["name"] == "laptop" and key["spend_limit_usd"] == 2.5
    head, _, tail = key["prefix"].partition("...")
    assert plain.startswith(head) and plain.endswith(tail)
    assert f'id="key-{key["id"]}"' in html and "$0.00 / $2.50" in html
    again = client.get("/keys").get_data(as_text=True)
    assert plain not in again and key["prefix"] in again  # never shown again
    # the relay knows it at once
    reply = client.get("/v1/models", headers={"Authorization": f"Bearer {plain}"})
    assert reply.status_code == 200
    assert {m["id"] for m in reply.get_json()["data"]} == {"gpt-4o", "gpt-4o-mini"}


def test_plain_post_creates_with_limits_expiry_and_models(app: Flask) -> None:
    client = new_user(app)
    fields = form(
        client,
        name="ci",
        expires_at="2031-05-06",
        models=["gpt-4o-mini"],
        requests_per_minute="60",
        tokens_per_month="100000",
        max_concurrent="2",
        allowed_ips="10.0.0.0/8, 192.168.1.7",
    )
    made = client.post("/keys", data=fields)
    html = made.get_data(as_text=True)
    assert made.status_code == 201 and '<code id="new-key">sk-' in html and "<html" in html
    (key,) = api_keys(client)
    assert key["expires_at"] == "2031-05-06T00:00:00Z" and key["models"] == ["gpt-4o-mini"]
    assert key["requests_per_minute"] == 60 and key["tokens_per_month"] == 100000
    assert key["max_concurrent"] == 2
    assert key["allowed_ips"] == ["10.0.0.0/8", "192.168.1.7"] and key["spend_limit_usd"] is None
    assert "60 requests/min" in html and "0 of 100,000 tokens this month" in html and "2 at once" in html
    assert "models: gpt-4o-mini" in html and "May 6, 2031" in html and "Not used yet" in html


@pytest.mark.parametrize(
    ("language", "typed"), [("vi", "6/5/2031"), ("ja", "2031/05/06"), ("en", "5/6/2031")]
)
def test_the_expiry_is_typed_and_shown_in_the_page_language(app: Flask, language: str, typed: str) -> None:
    client = new_user(app)
    client.post("/language", data={"language": language, "csrf_token": csrf(client, "/")})
    page = client.get("/keys").get_data(as_text=True)
    assert 'type="date"' not in page  # a date field would speak the browser's language, not the page's
    made = client.post("/keys", data=form(client, name="ci", expires_at=typed))
    assert made.status_code == 201, made.get_data(as_text=True)
    (key,) = api_keys(client)
    assert key["expires_at"] == "2031-05-06T00:00:00Z"
    edit = client.get(f"/keys/{key['id']}/edit").get_data(as_text=True)
    assert f'name="expires_at" value="{typed}"' in edit


@pytest.mark.parametrize(
    ("field", "value", "label"),
    [
        ("spend_limit_usd", "lots", "Spend limit (USD)"),
        ("requests_per_minute", "0", "Requests per minute"),
        ("allowed_ips", "not-an-ip", "Allowed IP addresses"),
        ("name", "x" * 200, "Name"),
        ("expires_at", "someday", "Expires on"),
    ],
)
def test_a_refused_field_is_named_and_nothing_is_made(app: Flask, field: str, value: str, label: str) -> None:
    client = new_user(app)
    plain = client.post("/keys", data=form(client, **{field: value}))
    assert plain.status_code == 400
    assert f"This value is not accepted: {label}." in plain.get_data(as_text=True)
    htmx = client.post("/keys", data=form(client, **{field: value}), headers=HX)
    assert htmx.status_code == 200 and "This value is not accepted" in htmx.get_data(as_text=True)
    assert api_keys(client) == []


def test_edit_limits_in_place_and_as_a_page(app: Flask) -> None:
    client = new_user(app)
    client.post("/keys", data=form(client, name="one"))
    (key,) = api_keys(client)
    editor = client.get(f"/keys/{key['id']}/edit", headers=HX).get_data(as_text=True)
    assert editor.lstrip().startswith(f'<tr id="key-{key["id"]}"') and 'value="one"' in editor
    saved = client.post(
        f"/keys/{key['id']}/edit",
        data=form(client, name="renamed", spend_limit_usd="0.000001", requests_per_hour="100"),
        headers=HX,
    )
    row = saved.get_data(as_text=True)
    assert saved.status_code == 200 and row.lstrip().startswith("<tr") and "renamed" in row
    assert "100 requests/h" in row
    (stored,) = api_keys(client)
    assert stored["name"] == "renamed" and stored["spend_limit_usd"] == 0.000001
    assert stored["requests_per_hour"] == 100
    page = client.get(f"/keys/{key['id']}/edit").get_data(as_text=True)  # without JavaScript: a page
    assert "<html" in page and 'value="0.000001"' in page and 'value="100"' in page
    cleared = client.post(f"/keys/{key['id']}/edit", data=form(client, name="renamed"))
    assert cleared.status_code == 302 and cleared.headers["Location"] == "/keys"
    (stored,) = api_keys(client)
    assert stored["spend_limit_usd"] is None and stored["requests_per_hour"] is None
    refused = client.post(f"/keys/{key['id']}/edit", data=form(client, name="r", max_concurrent="-3"))
    assert refused.status_code == 400 and "Concurrent requests" in refused.get_data(as_text=True)
    assert api_keys(client)[0]["name"] == "renamed"  # a refused change changes nothing
    cancel = client.get(f"/keys/{key['id']}", headers=HX).get_data(as_text=True)
    assert cancel.lstrip().startswith(f'<tr id="key-{key["id"]}" class="key-row active">')


def test_disable_enable_and_delete_reach_the_relay_at_once(app: Flask) -> None:
    client = new_user(app)
    html = client.post("/keys", data=form(client, name="k"), headers=HX).get_data(as_text=True)
    plain = re.search(r'<code id="new-key">(sk-[^<]+)</code>', html).group(1)
    (key,) = api_keys(client)
    auth = {"Authorization": f"Bearer {plain}"}
    assert client.get("/v1/models", headers=auth).status_code == 200
    off = client.post(f"/keys/{key['id']}/status", data=form(client), headers=HX)
    assert "Disabled" in off.get_data(as_text=True) and ">Enable<" in off.get_data(as_text=True)
    assert api_keys(client)[0]["status"] == "disabled"
    assert client.get("/v1/models", headers=auth).status_code == 401
    on = client.post(f"/keys/{key['id']}/status", data=form(client))  # plain POST: back to the page
    assert on.status_code == 302 and api_keys(client)[0]["status"] == "active"
    assert client.get("/v1/models", headers=auth).status_code == 200
    gone = client.post(f"/keys/{key['id']}/delete", data=form(client), headers=HX)
    assert gone.status_code == 200 and gone.get_data(as_text=True) == ""  # htmx removes the row
    assert api_keys(client) == [] and client.get("/v1/models", headers=auth).status_code == 401
    client.post("/keys", data=form(client, name="second"))
    (second,) = api_keys(client)
    assert client.post(f"/keys/{second['id']}/delete", data=form(client)).status_code == 302
    assert api_keys(client) == []


def test_another_users_key_is_not_found_even_for_an_admin(app: Flask) -> None:
    alice = new_user(app, "alice")
    alice.post("/keys", data=form(alice, name="alice-key"))
    (key,) = api_keys(alice)
    bob = new_user(app, "bob")
    root = admin(app)
    for client in (bob, root):
        assert client.get(f"/keys/{key['id']}", headers=HX).status_code == 404
        assert client.get(f"/keys/{key['id']}/edit").status_code == 404
        assert client.post(f"/keys/{key['id']}/edit", data=form(client, name="stolen")).status_code == 404
        assert client.post(f"/keys/{key['id']}/status", data=form(client)).status_code == 404
        assert client.post(f"/keys/{key['id']}/delete", data=form(client)).status_code == 404
        assert "alice-key" not in client.get("/keys").get_data(as_text=True)
    assert client.get("/keys/99999999999").status_code == 404
    (still,) = api_keys(alice)
    assert still["name"] == "alice-key" and still["status"] == "active"


def test_an_admin_has_a_keys_page_of_their_own(app: Flask) -> None:
    root = admin(app)
    made = root.post("/keys", data=form(root, name="root-key"), headers=HX)
    assert made.status_code == 200 and "root-key" in made.get_data(as_text=True)
    assert [k["name"] for k in api_keys(root)] == ["root-key"]


def test_an_admin_deletes_another_users_key_through_the_api_not_the_page(app: Flask) -> None:
    alice = new_user(app, "alice")
    alice.post("/keys", data=form(alice, name="alice-key"))
    (key,) = api_keys(alice)
    root = admin(app)
    assert root.post(f"/keys/{key['id']}/delete", data=form(root)).status_code == 404
    assert [k["name"] for k in api_keys(alice)] == ["alice-key"]
    assert root.delete(f"/api/keys/{key['id']}").get_json() == {"id": key["id"], "deleted": True}
    assert api_keys(alice) == []
    assert root.post(f"/keys/{key['id']}/delete", data=form(root)).status_code == 404  # gone for all
    root.post("/keys", data=form(root, name="root-key"))
    (own,) = api_keys(root)
    assert root.post(f"/keys/{own['id']}/delete", data=form(root)).status_code == 302
    assert api_keys(root) == []
