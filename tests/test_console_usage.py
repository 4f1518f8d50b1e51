"""The usage page with Flask's test client: the log table, its filters and paging (htmx partials and plain
GETs), the totals, the SVG charts by model and by key, and who sees whose rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func

from app import create_app
from console.web import locale
from gateway.domain.models import UsageLog, db, utcnow
from tests.conftest import CONSOLE_PASSWORD as PASSWORD
from tests.conftest import csrf, sign_in
from tests.test_pages import _Text

HX = {"HX-Request": "true", "HX-Target": "usage-results"}


@pytest.fixture
def admin(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(client)
    return client


def make_user(admin: FlaskClient, app: Flask, name: str) -> tuple[FlaskClient, int, int]:
    """A signed-in user with one key: (client, user id, key id)."""
    user = admin.post("/api/users", json={"username": name, "password": f"{name}-password"}).get_json()
    key = admin.post("/api/keys", json={"name": f"{name}-laptop", "user_id": user["id"]}).get_json()
    client = app.test_client()
    assert sign_in(client, name, f"{name}-password").status_code == 302
    return client, user["id"], key["id"]


def log(app: Flask, user_id: int, key_id: int, model: str, n: int = 1, **fields: object) -> None:
    with app.app_context():
        now = fields.pop("created_at", utcnow())
        for i in range(n):
            db.session.add(
                UsageLog(
                    request_id=f"req-{user_id}-{model}-{i}-{now.timestamp()}-{fields.get('status', 200)}",
                    created_at=now - dt.timedelta(seconds=i),
                    user_id=user_id,
                    key_id=key_id,
                    model=model,
                    prompt_tokens=10,
                    completion_tokens=5,
                    cost_micro_usd=1500,
                    latency_ms=321,
                    **fields,
                )
            )
        db.session.commit()


@pytest.fixture
def two_users(app: Flask, admin: FlaskClient) -> dict[str, tuple[FlaskClient, int, int]]:
    alice, bob = make_user(admin, app, "alice"), make_user(admin, app, "bob")
    log(app, alice[1], alice[2], "gpt-4o-mini", 3)
    log(app, alice[1], alice[2], "claude-haiku", 2, status=429, error="slow down")
    log(app, alice[1], alice[2], "gpt-4o-mini", 4, created_at=utcnow() - dt.timedelta(days=20))
    log(app, bob[1], bob[2], "gemini-flash", 6)
    return {"alice": alice, "bob": bob}


def text_of(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_signed_out_usage_asks_to_sign_in(app: Flask) -> None:
    page = app.test_client().get("/usage")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")


def test_a_user_sees_their_own_rows_totals_and_charts(two_users: dict) -> None:
    alice = two_users["alice"][0]
    page = alice.get("/usage")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'href="/usage" aria-current="page"' in html
    assert '<dd id="total-requests">5</dd>' in html  # the last 7 days: 3 + 2, not the older 4
    assert '<dd id="total-tokens">75</dd>' in html and '<dd id="total-spend">$0.0075</dd>' in html
    assert html.count("<tr class=") == 5 and "gemini-flash" not in html  # not bob's
    assert '<tr class="failed">' in html and "alice-laptop" in html
    assert html.count('<svg class="chart"') == 3 and "<rect" in html and "gpt-4o-mini: 3" in html
    assert 'name="user"' not in html  # no user filter for a user
    shown = alice.get("/usage?user=3").get_data(as_text=True)  # bob's id: ignored
    assert "gemini-flash" not in shown and '<dd id="total-requests">5</dd>' in shown


def test_filters_narrow_the_rows_and_the_totals(two_users: dict) -> None:
    alice, _, key_id = two_users["alice"]
    assert '<dd id="total-requests">3</dd>' in alice.get("/usage?model=gpt-4o-mini").get_data(as_text=True)
    failed = alice.get("/usage?status=error").get_data(as_text=True)
    assert '<dd id="total-requests">2</dd>' in failed and "429" in failed
    assert '<dd id="total-requests">3</dd>' in alice.get("/usage?status=ok").get_data(as_text=True)
    assert '<dd id="total-requests">2</dd>' in alice.get("/usage?status=429").get_data(as_text=True)
    since = (utcnow() - dt.timedelta(days=30)).date().isoformat()
    everything = alice.get(f"/usage?since={since}").get_data(as_text=True)
    assert '<dd id="total-requests">9</dd>' in everything
    until = (utcnow() - dt.timedelta(days=10)).date().isoformat()
    older = alice.get(f"/usage?since={since}&until={until}").get_data(as_text=True)
    assert '<dd id="total-requests">4</dd>' in older
    assert '<dd id="total-requests">5</dd>' in alice.get(f"/usage?key={key_id}").get_data(as_text=True)
    assert '<dd id="total-requests">0</dd>' in alice.get("/usage?key=99").get_data(as_text=True)
    nothing = alice.get("/usage?model=nope").get_data(as_text=True)
    assert "No requests match these filters." in nothing and "No requests in this range." in nothing
    junk = alice.get("/usage?since=yesterday&until=x&status=maybe&page=-4&by=colour", follow_redirects=True)
    assert junk.status_code == 200 and "since=yesterday" not in junk.request.url  # dropped, not an error


def test_the_filters_swap_only_the_results_with_htmx(two_users: dict) -> None:
    alice = two_users["alice"][0]
    part = alice.get("/usage?model=claude-haiku", headers=HX)
    html = part.get_data(as_text=True)
    assert part.status_code == 200 and html.lstrip().startswith('<div id="usage-results"')
    assert "<html" not in html and '<dd id="total-requests">2</dd>' in html
    form = alice.get("/usage").get_data(as_text=True)
    assert 'hx-get="/usage" hx-target="#usage-results"' in form and 'hx-push-url="true"' in form


def test_the_table_pages_and_keeps_the_filters(app: Flask, admin: FlaskClient) -> None:
    alice, user_id, key_id = make_user(admin, app, "alice")
    log(app, user_id, key_id, "gpt-4o-mini", 120)
    first = alice.get("/usage?model=gpt-4o-mini").get_data(as_text=True)
    assert first.count('<tr class="ok">') == 50 and "Page 1 of 3" in first
    link = re.search(r'href="(/usage\?[^"]*page=2[^"]*)"', first).group(1).replace("&amp;", "&")
    assert "model=gpt-4o-mini" in link
    second = alice.get(link, headers=HX).get_data(as_text=True)
    assert second.lstrip().startswith('<div id="usage-results"') and "Page 2 of 3" in second
    last = alice.get(link.replace("page=2", "page=3")).get_data(as_text=True)  # plain GET: the page
    assert last.count('<tr class="ok">') == 20 and "<html" in last
    assert "Page 3 of 3" in alice.get("/usage?model=gpt-4o-mini&page=99").get_data(as_text=True)


def test_admins_see_everyone_and_filter_by_user(two_users: dict, admin: FlaskClient) -> None:
    html = admin.get("/usage").get_data(as_text=True)
    assert '<dd id="total-requests">11</dd>' in html and 'name="user"' in html
    assert "gemini-flash" in html and "<td>bob</td>" in html and "<td>alice</td>" in html
    bob_id = two_users["bob"][1]
    only_bob = admin.get(f"/usage?user={bob_id}").get_data(as_text=True)
    assert '<dd id="total-requests">6</dd>' in only_bob and "claude-haiku" not in only_bob
    assert "bob-laptop" in only_bob and "alice-laptop" not in only_bob  # the key list follows the user


def test_charts_by_key_and_by_hour(two_users: dict) -> None:
    alice = two_users["alice"][0]
    by_key = alice.get("/usage?by=key").get_data(as_text=True)
    assert "alice-laptop: 5" in by_key and '<ul class="legend">' in by_key
    today = utcnow().date().isoformat()
    hourly = alice.get(f"/usage?since={today}&until={today}").get_data(as_text=True)
    assert hourly.count("<rect") >= 2  # hour buckets: 24 of them, the busy one drawn
    assert re.search(r"<title>[^<]*\d{1,2}[^<]*gpt-4o-mini: 3</title>", hourly)


def test_the_api_and_the_page_count_the_same_rows(two_users: dict, admin: FlaskClient) -> None:
    alice = two_users["alice"][0]
    assert alice.get("/api/logs").get_json()["total"] == 9
    assert admin.get("/api/logs?model=gpt-4o-mini").get_json()["total"] == 7
    since = (utcnow() - dt.timedelta(days=30)).date().isoformat()
    page = alice.get(f"/usage?since={since}").get_data(as_text=True)
    assert '<dd id="total-requests">9</dd>' in page


@pytest.mark.parametrize(
    ("language", "shown"),
    [
        ("en", "{d.month}/{d.day}/{d.year}"),
        ("vi", "{d.day}/{d.month}/{d.year}"),
        ("ja", "{d.year}/{d.month:02}/{d.day:02}"),
        ("zh_Hans", "{d.year}/{d.month}/{d.day}"),
    ],
)
def test_the_date_filters_speak_the_page_language(two_users: dict, language: str, shown: str) -> None:
    alice = two_users["alice"][0]
    alice.post("/language", data={"language": language, "csrf_token": csrf(alice, "/")})
    since = (utcnow() - dt.timedelta(days=30)).date()
    until = (utcnow() - dt.timedelta(days=10)).date()
    page = alice.get(f"/usage?since={since.isoformat()}").get_data(as_text=True)  # a link's ISO dates
    assert f'name="since" value="{shown.format(d=since)}"' in page and 'name="until" value=""' in page
    assert 'type="date"' not in page  # a date field would speak the browser's language, not the page's
    example = shown.format(d=dt.date(utcnow().year, 12, 31))
    assert re.search(rf'placeholder="[^"]*{re.escape(example)}"', page)
    typed = alice.get("/usage", query_string={"since": shown.format(d=since)})  # as the form sends it
    assert typed.status_code == 302  # to the same filters in ISO dates: a shared link reads the same anywhere
    assert f"since={since.isoformat()}" in typed.headers["Location"]
    assert '<dd id="total-requests">9</dd>' in alice.get(typed.headers["Location"]).get_data(as_text=True)
    both = {"since": shown.format(d=since), "until": shown.format(d=until)}
    older = alice.get("/usage", query_string=both, follow_redirects=True).get_data(as_text=True)
    assert '<dd id="total-requests">4</dd>' in older and f'value="{shown.format(d=until)}"' in older
    swapped = alice.get("/usage", query_string=both, headers=HX)  # htmx: the partial, and an ISO address
    assert swapped.status_code == 200 and '<dd id="total-requests">4</dd>' in swapped.get_data(as_text=True)
    pushed = swapped.headers["HX-Push-Url"]
    assert f"since={since.isoformat()}" in pushed and f"until={until.isoformat()}" in pushed


def own_sources(language: str) -> set[str]:
    sources = set()
    for part in ("console", "wallet"):
        with (locale.CATALOGS / language / "LC_MESSAGES" / f"{part}.po").open("rb") as po:
            sources |= {m.id for m in read_po(po) if m.id and m.string and m.string != m.id and len(m.id) > 3}
    return sources


@pytest.mark.parametrize("language", [code for code in locale.LANGUAGES if code != "en"])
def test_usage_keeps_no_source_language_string(two_users: dict, admin: FlaskClient, language: str) -> None:
    sources = own_sources(language)
    for client in (two_users["alice"][0], admin):
        client.post("/language", data={"language": language, "csrf_token": csrf(client, "/")})
        for path, headers in (("/usage", {}), ("/usage?by=key", HX), ("/usage?model=nope", {})):
            text = text_of(client.get(path, headers=headers).get_data(as_text=True))
            left = sorted(s for s in sources if "%(" not in s and s in text)
            assert not left, f"{path} in {language} still says {left}"


# -- rollups --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rollups_sum_every_row_once_as_rows_keep_coming(backend: str, tmp_path: Path) -> None:
    from gateway.domain import usage
    from tests.conftest import scratch_database

    url = scratch_database(backend, tmp_path, "h5")
    app = create_app({"instance_dir": str(tmp_path), "database_url": url, "admin_password": PASSWORD})
    try:
        start = dt.datetime.combine(utcnow().date() - dt.timedelta(days=3), dt.time())
        week = usage.LogFilter(since=start, until=start + dt.timedelta(days=5))

        def raw(f: usage.LogFilter) -> usage.Totals:  # the log rows themselves, not the rollups
            return usage.totals(dataclasses.replace(f, until=f.until - dt.timedelta(microseconds=1)))

        with app.app_context():
            for n, (user_id, key_id, status) in enumerate(
                [(1, 1, 200), (1, None, 200), (2, 2, 500), (None, 3, 429)]
            ):
                for hours in range(0, 72, 7):
                    db.session.add(
                        UsageLog(
                            request_id=f"r-{n}-{hours}",
                            created_at=start + dt.timedelta(hours=hours, minutes=n),
                            user_id=user_id,
                            key_id=key_id,
                            model=f"m{n % 2}",
                            status=status,
                            prompt_tokens=n + 1,
                            completion_tokens=hours,
                            cost_micro_usd=100 * n + hours,
                        )
                    )
                db.session.commit()
                if n == 1:
                    assert usage.totals(week).requests == 22  # rolls the first half up
            for f in (
                week,
                dataclasses.replace(week, user_id=1),
                dataclasses.replace(week, key_id=2),
                dataclasses.replace(week, model="m1", failed=True),
                dataclasses.replace(week, failed=False),
            ):
                assert usage.totals(f) == raw(f), f
            assert usage.totals(week).requests == 44
            usage.refresh()
            usage.refresh()  # nothing new: nothing added twice
            assert usage.totals(week) == raw(week)
            by_day = usage.series(week, "key", "day")
            assert sum(p.requests for p in by_day) == 44 and {p.group for p in by_day} == {1, 2, 3, None}
            by_hour = usage.series(
                dataclasses.replace(week, until=start + dt.timedelta(days=1)), "model", "hour"
            )
            assert [(p.bucket.hour, p.group, p.requests) for p in by_hour][:3] == [
                (0, "m0", 2),
                (0, "m1", 2),
                (7, "m0", 2),
            ]
            first_hour = dataclasses.replace(week, until=start + dt.timedelta(hours=1))
            hourly = usage.series(week, "model", "hour")
            assert sum(p.tokens for p in hourly if p.bucket == start) == raw(first_hour).tokens == 10
    finally:
        app.extensions["relayhouse"].stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_rolls_up_the_logs_already_written(backend: str, tmp_path: Path) -> None:
    from flask_migrate import downgrade, upgrade

    from app import MIGRATIONS
    from gateway.domain import usage
    from tests.conftest import scratch_database

    url = scratch_database(backend, tmp_path, "h5")
    app = create_app({"instance_dir": str(tmp_path), "database_url": url, "admin_password": PASSWORD})
    try:
        with app.app_context():
            downgrade(directory=MIGRATIONS, revision="0005")
            start = dt.datetime.combine(utcnow().date(), dt.time()) - dt.timedelta(days=1)
            for n in range(30):
                db.session.add(
                    UsageLog(
                        request_id=f"old-{n}",
                        created_at=start + dt.timedelta(minutes=97 * n, microseconds=n),
                        user_id=n % 3 or None,
                        key_id=n % 4,
                        model=f"m{n % 2}",
                        status=500 if n % 5 == 0 else 200,
                        prompt_tokens=n,
                        completion_tokens=2 * n,
                        cost_micro_usd=10 * n,
                    )
                )
            db.session.commit()
            upgrade(directory=MIGRATIONS)
            assert db.session.scalar(db.select(usage.RollupMark.last_log_id)) == 30  # nothing left to fold
            day = usage.LogFilter(since=start, until=start + dt.timedelta(days=2))
            hours = usage.LogFilter(since=start + dt.timedelta(hours=5), until=start + dt.timedelta(hours=20))
            for f in (
                day,
                hours,
                dataclasses.replace(day, user_id=1, failed=False),
                dataclasses.replace(day, key_id=0),
            ):
                exact = usage.totals(dataclasses.replace(f, until=f.until - dt.timedelta(microseconds=1)))
                assert usage.totals(f) == exact and exact.requests > 0, f
            assert sum(p.requests for p in usage.series(hours, "key", "hour")) == usage.totals(hours).requests
    finally:
        app.extensions["relayhouse"].stop()


def test_a_log_row_committed_after_a_later_one_is_still_summed(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """PostgreSQL hands ids out before commit: a row whose id was drawn first but that commits last must
    not fall behind the rollups' mark. A refresh waits for it, or leaves the rows for a later refresh."""
    import threading

    from sqlalchemy import create_engine

    from gateway.domain import usage
    from tests.conftest import scratch_database

    url = scratch_database("postgresql", tmp_path, "rollup_in_flight")
    app = create_app({"instance_dir": str(tmp_path), "database_url": url, "admin_password": PASSWORD})
    other = create_engine(url)
    monkeypatch.setattr(usage, "SETTLE_WAIT_S", 0.3)
    start = dt.datetime.combine(utcnow().date(), dt.time())
    day = usage.LogFilter(since=start, until=start + dt.timedelta(days=1))

    def row(name: str) -> UsageLog:
        return UsageLog(request_id=name, created_at=start, model="m", prompt_tokens=7, cost_micro_usd=100)

    def mark() -> int:
        return db.session.scalar(db.select(usage.RollupMark.last_log_id)) or 0

    try:
        with app.app_context():
            for slow_commit in (None, 0.1):  # never during the refresh; 0.1 s into its wait
                conn = other.connect()
                early = conn.execute(
                    UsageLog.__table__.insert()
                    .values(
                        request_id=f"early-{slow_commit}",
                        created_at=start,
                        model="m",
                        prompt_tokens=7,
                        cost_micro_usd=100,
                    )
                    .returning(UsageLog.id)
                ).scalar_one()  # its id is drawn, its row not yet committed
                db.session.add(row(f"late-{slow_commit}"))
                db.session.commit()
                late = db.session.scalar(db.select(func.max(UsageLog.id)))
                assert late > early
                if slow_commit is None:
                    usage.refresh()  # gives up after SETTLE_WAIT_S: the rows stay past the mark
                    assert mark() < early
                    assert usage.totals(day).requests == 1
                    conn.commit()
                else:
                    threading.Timer(slow_commit, conn.commit).start()
                    usage.refresh()  # waits for the early row, then folds both
                    assert mark() == late
                conn.close()
                usage.refresh()
                assert mark() == late
                expected = 2 if slow_commit is None else 4
                assert usage.totals(day) == usage.Totals(expected, 7 * expected, 0, 100 * expected)
    finally:
        other.dispose()
        app.extensions["relayhouse"].stop()
