"""The wallet page with Flask's test client: the balance, the paged ledger, redeeming a code (htmx and plain
POST), and card top-ups through Stripe Checkout against a local fake of Stripe's API with the official
`stripe` package as the client, credited exactly once by the signed webhook."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient

from console.web import locale
from gateway.domain.models import LedgerEntry, db
from gateway.domain.payments import Payment
from tests.conftest import csrf, sign_in
from tests.fake_stripe import FakeStripe, event, sign
from tests.test_pages import _Text

WEBHOOK_SECRET = "whsec_test_secret"
HX = {"HX-Request": "true"}


@pytest.fixture
def stripe_fake(app: Flask) -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        app.config.update(
            STRIPE_SECRET_KEY=fake.secret_key,
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            STRIPE_API_BASE=fake.api_base,
        )
        yield fake


@pytest.fixture
def admin(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(client)
    return client


def make_user(admin: FlaskClient, app: Flask, name: str = "alice") -> FlaskClient:
    made = admin.post("/api/users", json={"username": name, "password": f"{name}-password"})
    assert made.status_code == 201, made.get_json()
    client = app.test_client()
    assert sign_in(client, name, f"{name}-password").status_code == 302
    return client


def balance(client: FlaskClient) -> int:
    return client.get("/api/wallet").get_json()["balance_micro_usd"]


def test_signed_out_the_wallet_asks_to_sign_in(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/wallet")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    token = csrf(client)
    assert client.post("/wallet/redeem", data={"code": "x", "csrf_token": token}).status_code == 302
    assert client.post("/wallet/redeem", data={"code": "x"}).status_code == 400  # no CSRF token


def test_a_user_sees_their_balance_and_an_empty_ledger(app: Flask, admin: FlaskClient) -> None:
    alice = make_user(admin, app)
    html = alice.get("/wallet").get_data(as_text=True)
    assert '<p class="amount" id="balance">$0.00</p>' in html
    assert "No entries yet." in html and 'action="/wallet/redeem"' in html
    assert "Top up with a card" not in html  # Stripe is not configured
    assert 'href="/wallet" aria-current="page"' in html  # the menu entry


def test_redeeming_a_code_with_htmx_swaps_the_card_and_credits_once(app: Flask, admin: FlaskClient) -> None:
    code = admin.post("/api/redemptions", json={"amount_usd": 5}).get_json()["codes"][0]
    alice = make_user(admin, app)
    token = csrf(alice, "/wallet")
    part = alice.post("/wallet/redeem", data={"code": code, "csrf_token": token}, headers=HX)
    html = part.get_data(as_text=True)
    assert part.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<div id="wallet-main"')
    assert '<p class="amount" id="balance">$5.00</p>' in html and "$5.00 was added to your wallet." in html
    assert balance(alice) == 5_000_000
    assert alice.get("/api/wallet").get_json()["ledger"][0]["kind"] == "redemption"
    again = alice.post("/wallet/redeem", data={"code": code, "csrf_token": token}, headers=HX)
    assert "This code is unknown or was already used." in again.get_data(as_text=True)
    assert balance(alice) == 5_000_000


def test_redeeming_works_as_a_plain_post(app: Flask, admin: FlaskClient) -> None:
    code = admin.post("/api/redemptions", json={"amount_usd": 2.5}).get_json()["codes"][0]
    alice = make_user(admin, app)
    token = csrf(alice, "/wallet")
    done = alice.post("/wallet/redeem", data={"code": code, "csrf_token": token})
    assert done.status_code == 303 and done.headers["Location"] == "/wallet"
    html = alice.get("/wallet").get_data(as_text=True)
    assert "$2.50 was added to your wallet." in html and "Redeemed code" in html
    wrong = alice.post("/wallet/redeem", data={"code": "rh-nothing", "csrf_token": token})
    assert wrong.status_code == 400 and "unknown or was already used" in wrong.get_data(as_text=True)


def test_the_ledger_pages_with_htmx_and_plain_links(app: Flask, admin: FlaskClient) -> None:
    alice = make_user(admin, app)
    for n in range(25):
        admin.post("/api/users/2/wallet", json={"amount_usd": n + 1, "reason": f"gift number {n + 1}"})
    first = alice.get("/wallet").get_data(as_text=True)
    assert first.count('<tr class="kind-topup">') == 20 and "gift number 25<" in first
    assert "Page 1 of 2" in first and 'href="/wallet?page=2"' in first
    part = alice.get("/wallet?page=2", headers=HX)
    html = part.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="ledger"') and "<html" not in html
    assert html.count('<tr class="kind-topup">') == 5 and "gift number 1<" in html and "Page 2 of 2" in html
    assert "Page 2 of 2" in alice.get("/wallet?page=2").get_data(as_text=True)  # plain GET, whole page


def test_a_user_sees_only_their_own_wallet(app: Flask, admin: FlaskClient) -> None:
    admin.post("/api/users/1/wallet", json={"amount_usd": 100, "reason": "root's own money"})
    alice = make_user(admin, app)
    html = alice.get("/wallet?user_id=1").get_data(as_text=True)
    assert "root&#39;s own money" not in html and "root's own money" not in html and "$0.00" in html
    assert alice.get("/api/users/1/wallet").status_code == 403


# -- Stripe ---------------------------------------------------------------------------------------------
def checkout(client: FlaskClient, amount: str = "12.50") -> str:
    made = client.post("/wallet/topup", data={"amount_usd": amount, "csrf_token": csrf(client, "/wallet")})
    assert made.status_code == 303, made.get_data(as_text=True)
    return made.headers["Location"]


def post_event(client: FlaskClient, payload: bytes, signature: str | None) -> object:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post("/stripe/webhook", data=payload, headers=headers)


def test_a_top_up_opens_a_checkout_session_at_stripe(
    app: Flask, admin: FlaskClient, stripe_fake: FakeStripe
) -> None:
    alice = make_user(admin, app)
    assert "Top up with a card" in alice.get("/wallet").get_data(as_text=True)
    url = checkout(alice)
    [session] = stripe_fake.sessions.values()
    assert url == session["url"] and url.startswith("https://checkout.stripe.com/")
    [sent] = stripe_fake.requests
    params = sent["params"]
    assert params["mode"] == "payment" and params["client_reference_id"] == "2"
    assert params["line_items"][0]["price_data"] == {
        "currency": "usd",
        "unit_amount": "1250",
        "product_data": {"name": "Relayhouse wallet top-up"},
    }
    assert params["success_url"] == "http://localhost/wallet?checkout=success"
    assert params["cancel_url"] == "http://localhost/wallet?checkout=cancel"
    with app.app_context():
        payment = db.session.scalar(db.select(Payment))
        assert (payment.user_id, payment.amount_micro_usd, payment.status) == (2, 12_500_000, "pending")
        assert payment.session_id == session["id"] and params["metadata"]["payment_id"] == str(payment.id)
    html = alice.get("/wallet?checkout=success").get_data(as_text=True)
    assert "as soon as Stripe confirms the payment" in html and "Pending" in html
    assert "nothing was charged" in alice.get("/wallet?checkout=cancel").get_data(as_text=True)


def test_the_signed_webhook_credits_exactly_once(
    app: Flask, admin: FlaskClient, stripe_fake: FakeStripe
) -> None:
    alice = make_user(admin, app)
    checkout(alice)
    [session_id] = stripe_fake.sessions
    payload = stripe_fake.completed(session_id)
    hook = app.test_client()  # Stripe has no session and no CSRF token
    answered = post_event(hook, payload, sign(payload, WEBHOOK_SECRET))
    assert answered.status_code == 200 and answered.get_json() == {"received": True}
    assert balance(alice) == 12_500_000
    for _ in range(2):  # Stripe delivers again: nothing more is credited
        assert post_event(hook, payload, sign(payload, WEBHOOK_SECRET)).status_code == 200
    again = stripe_fake.completed(session_id)  # a new event id for the same session
    assert post_event(hook, again, sign(again, WEBHOOK_SECRET)).status_code == 200
    assert balance(alice) == 12_500_000
    with app.app_context():
        entries = db.session.scalars(db.select(LedgerEntry).where(LedgerEntry.user_id == 2)).all()
        assert [(e.kind, e.amount_micro_usd) for e in entries] == [("topup", 12_500_000)]
        assert db.session.scalar(db.select(Payment.status)) == "paid"
    html = alice.get("/wallet").get_data(as_text=True)
    assert '<p class="amount" id="balance">$12.50</p>' in html and "Paid" in html and "Top-up" in html


def test_a_forged_stale_or_unsigned_webhook_is_refused(
    app: Flask, admin: FlaskClient, stripe_fake: FakeStripe
) -> None:
    alice = make_user(admin, app)
    checkout(alice)
    [session_id] = stripe_fake.sessions
    payload = stripe_fake.completed(session_id)
    hook = app.test_client()
    refused = [
        post_event(hook, payload, None),
        post_event(hook, payload, sign(payload, "whsec_someone_else")),
        post_event(hook, payload, sign(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)),
        post_event(
            hook,
            payload.replace(b'"amount_total": 1250', b'"amount_total": 999999'),
            sign(payload, WEBHOOK_SECRET),
        ),
        post_event(hook, b"not json", sign(b"not json", WEBHOOK_SECRET)),
    ]
    assert [r.status_code for r in refused] == [400] * 5
    assert balance(alice) == 0


def test_only_a_paid_session_of_ours_with_its_amount_credits(
    app: Flask, admin: FlaskClient, stripe_fake: FakeStripe
) -> None:
    alice = make_user(admin, app)
    checkout(alice)
    [session_id] = stripe_fake.sessions
    hook = app.test_client()
    for payload in (
        stripe_fake.completed(session_id, payment_status="unpaid"),
        stripe_fake.completed(session_id, amount_total=1),
        stripe_fake.completed(session_id, metadata={"user_id": "1", "payment_id": "1"}),
        event("checkout.session.expired", stripe_fake.sessions[session_id]),
    ):
        assert post_event(hook, payload, sign(payload, WEBHOOK_SECRET)).status_code == 200
    assert balance(alice) == 0 and balance(admin) == 0
    later = json.loads(stripe_fake.completed(session_id))
    later["type"] = "checkout.session.async_payment_succeeded"  # a bank debit cleared later
    payload = json.dumps(later).encode()
    assert post_event(hook, payload, sign(payload, WEBHOOK_SECRET)).status_code == 200
    assert balance(alice) == 12_500_000


def test_top_up_amounts_are_checked_and_need_stripe(app: Flask, admin: FlaskClient) -> None:
    alice = make_user(admin, app)
    token = csrf(alice, "/wallet")
    assert alice.post("/wallet/topup", data={"amount_usd": "10", "csrf_token": token}).status_code == 404
    payload = b"{}"
    assert post_event(app.test_client(), payload, sign(payload, WEBHOOK_SECRET)).status_code == 404
    app.config.update(STRIPE_SECRET_KEY="sk_test_fake", STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    for amount in ("0.5", "10.001", "20000", "ten", ""):
        bad = alice.post("/wallet/topup", data={"amount_usd": amount, "csrf_token": token})
        assert bad.status_code == 400 and "Enter an amount from" in bad.get_data(as_text=True)


def test_stripe_down_is_a_message_not_a_crash(app: Flask, admin: FlaskClient) -> None:
    app.config.update(
        STRIPE_SECRET_KEY="sk_test_fake",
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE="http://127.0.0.1:9",
    )
    alice = make_user(admin, app)
    down = alice.post("/wallet/topup", data={"amount_usd": "10", "csrf_token": csrf(alice, "/wallet")})
    assert down.status_code == 502 and "not answering" in down.get_data(as_text=True)


# -- languages -----------------------------------------------------------------------------------------
def own_sources(language: str) -> set[str]:
    """The English of the foundation's and this part's messages that `language` words differently."""
    sources = set()
    for part in ("console", "wallet"):
        with (locale.CATALOGS / language / "LC_MESSAGES" / f"{part}.po").open("rb") as po:
            sources |= {m.id for m in read_po(po) if m.id and m.string and m.string != m.id and len(m.id) > 3}
    return sources


@pytest.mark.parametrize("language", [code for code in locale.LANGUAGES if code != "en"])
def test_the_wallet_keeps_no_source_language_string(
    app: Flask, admin: FlaskClient, stripe_fake: FakeStripe, language: str
) -> None:
    alice = make_user(admin, app)
    admin.post("/api/users/2/wallet", json={"amount_usd": 3, "reason": "x"})
    checkout(alice)
    alice.post("/language", data={"language": language, "csrf_token": csrf(alice, "/")})
    sources = own_sources(language)
    token = csrf(alice, "/wallet")
    pages = [
        alice.get("/wallet?checkout=success"),
        alice.get("/wallet?checkout=cancel"),
        alice.get("/wallet", headers=HX),
        alice.post("/wallet/redeem", data={"code": "rh-nothing", "csrf_token": token}, headers=HX),
        alice.post("/wallet/topup", data={"amount_usd": "0", "csrf_token": token}),
    ]
    for page in pages:
        parser = _Text()
        parser.feed(page.get_data(as_text=True))
        text = " ".join(" ".join(parser.parts).split())
        left = sorted(s for s in sources if "%(" not in s and s in text)
        assert not left, f"{page.request.path} in {language} still says {left}"
