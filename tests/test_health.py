"""Channel health: an upstream 429 cools one key down instead of counting against the channel, a channel
is disabled on its failure rate over a sliding window, comes back through a half-open trial, is tested
with the endpoint its model serves, and no form of an upstream key ever reaches a client, a log row or
the channel's health fields."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
import urllib.parse
import urllib.request
from email.utils import format_datetime
from html import escape
from http.cookiejar import CookieJar
from pathlib import Path

import openai
import pytest

from console.web import locale
from tests.conftest import Gateway, database_url_for, http, start_gateway, stop_gateway
from tests.fake_upstream import FakeUpstream
from tests.test_pages import _Text

HI = [{"role": "user", "content": "hi"}]


def status_of(gateway: Gateway, channel: dict) -> dict:
    return gateway.ok("GET", f"/channels/{channel['id']}")


def wait_status(gateway: Gateway, channel: dict, status: str, timeout: float = 15.0) -> dict:
    deadline = time.time() + timeout
    current = status_of(gateway, channel)
    while time.time() < deadline and current["status"] != status:
        time.sleep(0.1)
        current = status_of(gateway, channel)
    assert current["status"] == status, current
    return current


def client_requests(upstream: FakeUpstream, model: str) -> int:
    """Requests the relay sent for clients (the probe's say `ping`)."""
    return sum(
        1
        for r in list(upstream.requests)
        if isinstance(r.json, dict) and r.json.get("model") == model and r.json.get("messages") == HI
    )


def one_channel(gateway: Gateway, upstream: FakeUpstream) -> tuple[str, dict, openai.OpenAI]:
    model = "hl-" + secrets.token_hex(4)
    channel = gateway.channel(upstream, [model])
    gateway.price(model)
    return model, channel, gateway.client(gateway.key(gateway.user(10)))


def two_channels(gateway: Gateway, first: FakeUpstream, second: FakeUpstream):
    model = "hl-" + secrets.token_hex(4)
    a = gateway.channel(first, [model], priority=10)
    b = gateway.channel(second, [model], priority=0)
    gateway.price(model)
    user = gateway.user(10)
    return model, a, b, gateway.client(gateway.key(user))


# -- 429: one key cools down, the channel stays up ------------------------------------------------------


def test_a_rate_limited_key_cools_down_and_the_channel_stays_enabled(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    model = "rl-" + secrets.token_hex(4)
    limited, spare = "sk-limited-" + secrets.token_hex(8), "sk-spare-" + secrets.token_hex(8)
    fresh_upstream.behave(status=429, fail_key=limited, retry_after="30")
    channel = gateway.channel(fresh_upstream, [model], keys=[limited, spare])
    gateway.price(model)
    client = gateway.client(gateway.key(gateway.user(10)))
    for _ in range(15):
        assert client.chat.completions.create(model=model, messages=HI).choices
    used = [r.headers.get("authorization") for r in fresh_upstream.requests]
    assert used.count(f"Bearer {limited}") == 1, "a cooling key is skipped, not asked again"
    assert used.count(f"Bearer {spare}") == 15
    assert status_of(gateway, channel)["status"] == "enabled"


def test_every_key_cooling_answers_429_with_the_upstreams_wait(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    model, channel, client = one_channel(gateway, fresh_upstream)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=40)
    fresh_upstream.behave(status=429, retry_after=format_datetime(later, usegmt=True))
    with pytest.raises(openai.RateLimitError) as first:
        client.chat.completions.create(model=model, messages=HI)
    assert 30 <= int(first.value.response.headers["retry-after"]) <= 41
    assert len(fresh_upstream.requests) == 1
    for _ in range(12):  # more than AUTO_DISABLE_AFTER: none of it reaches the upstream or counts
        with pytest.raises(openai.RateLimitError) as again:
            client.chat.completions.create(model=model, messages=HI)
        assert 1 <= int(again.value.response.headers["retry-after"]) <= 41
        assert again.value.body["code"] == "upstream_rate_limited"
        assert "rate limited" in again.value.body["message"]
    assert len(fresh_upstream.requests) == 1, "while every key cools down, the upstream is left alone"
    assert status_of(gateway, channel)["status"] == "enabled"


def test_a_429_without_retry_after_cools_down_for_a_few_seconds(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    model, channel, client = one_channel(gateway, fresh_upstream)
    fresh_upstream.behave(status=429, retry_after=None)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=model, messages=HI)
    assert caught.value.response.headers["retry-after"] == "5"
    fresh_upstream.behave(status=None)  # the upstream recovers, but the key still cools down
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=model, messages=HI)
    assert len(fresh_upstream.requests) == 1


# -- failure rate over a window, then half-open -----------------------------------------------------------


def test_failures_among_many_successes_do_not_disable_until_they_are_the_rate(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    model, a, b, client = two_channels(gateway, fresh_upstream, upstream2)
    for _ in range(20):
        client.chat.completions.create(model=model, messages=HI)
    fresh_upstream.behave(status=500, fail_times=12)  # one user's odd bodies: more than 10, but a minority
    for _ in range(12):
        assert client.chat.completions.create(model=model, messages=HI).choices  # served by b
    assert status_of(gateway, a)["status"] == "enabled"
    fresh_upstream.behave(status=500, fail_times=None)
    for _ in range(8):  # 20 failures of 40 requests: half of them, the rate
        assert client.chat.completions.create(model=model, messages=HI).choices
    channel = status_of(gateway, a)
    assert channel["status"] == "auto_disabled"
    assert "20 of 40 requests failed in 60 s" in channel["status_reason"]
    tried = len(fresh_upstream.requests)
    client.chat.completions.create(model=model, messages=HI)
    assert len(fresh_upstream.requests) == tried, "an auto-disabled channel gets no traffic"


def test_a_revived_channel_is_half_open_then_enabled_and_a_failure_disables_it_again(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    model, a, b, client = two_channels(gateway, fresh_upstream, upstream2)
    fresh_upstream.behave(status=500)
    for _ in range(10):  # 10 of 10: the channel goes
        client.chat.completions.create(model=model, messages=HI)
    assert status_of(gateway, a)["status"] == "auto_disabled"

    fresh_upstream.behave(status=None)  # the upstream answers again: the probe lets it try
    wait_status(gateway, a, "half_open")
    fresh_upstream.behave(status=500)  # ... and it fails again: back to auto_disabled
    for _ in range(3):
        client.chat.completions.create(model=model, messages=HI)
    assert "failed again while half-open" in wait_status(gateway, a, "auto_disabled")["status_reason"]

    fresh_upstream.behave(status=None)
    wait_status(gateway, a, "half_open")
    before = client_requests(fresh_upstream, model)
    for _ in range(8):  # a quick burst: at most one request a second goes through the half-open channel
        assert client.chat.completions.create(model=model, messages=HI).choices
    assert client_requests(fresh_upstream, model) - before <= 2
    channel = wait_status(gateway, a, "enabled")  # a few successes in a row (the probe's count too)
    assert channel["status_reason"] == ""
    before = client_requests(fresh_upstream, model)
    for _ in range(3):
        client.chat.completions.create(model=model, messages=HI)
    assert client_requests(fresh_upstream, model) - before == 3, "enabled: all traffic again"


def test_an_upstream_that_hangs_does_not_hold_back_the_probe_of_the_others(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    hanging = FakeUpstream("hanging").start()
    try:
        channels = []
        for fake in (hanging, fresh_upstream):
            model, channel, client = one_channel(gateway, fake)
            fake.behave(status=500)
            for _ in range(10):
                with pytest.raises(openai.InternalServerError):
                    client.chat.completions.create(model=model, messages=HI)
            channels.append(wait_status(gateway, channel, "auto_disabled"))
        hanging.behave(status=None, stall_s=25)  # its probe waits until the probe's own timeout
        fresh_upstream.behave(status=None)
        started = time.monotonic()
        wait_status(gateway, channels[1], "half_open", timeout=10)
        assert time.monotonic() - started < 10
    finally:
        hanging.stop()


def test_a_half_open_channel_passes_one_request_at_a_time(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream
) -> None:
    import threading

    model, a, b, client = two_channels(gateway, fresh_upstream, upstream2)
    fresh_upstream.behave(status=500)
    for _ in range(10):
        client.chat.completions.create(model=model, messages=HI)
    fresh_upstream.behave(status=None, stall_s=1.5)  # slow but answering
    wait_status(gateway, a, "half_open", timeout=20)
    before = client_requests(fresh_upstream, model)
    results: list[bool] = []

    def ask() -> None:
        results.append(bool(client.chat.completions.create(model=model, messages=HI).choices))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [True] * 6
    assert client_requests(fresh_upstream, model) - before <= 1, "one in flight through a half-open channel"


# -- the test and the probe use the endpoint the model serves ---------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "suffix", "path", "param"),
    [
        ("text-embedding-", "", "/v1/embeddings", "input"),
        ("omni-moderation-", "", "/v1/moderations", "input"),
        ("gpt-3.5-turbo-instruct-", "", "/v1/completions", "prompt"),
        ("o3-mini-", "", "/v1/chat/completions", "max_completion_tokens"),
        ("gpt-5-", "", "/v1/chat/completions", "max_completion_tokens"),
        ("gpt-4o-", "", "/v1/chat/completions", "max_tokens"),
    ],
)
def test_the_channel_test_uses_the_endpoint_its_model_serves(
    gateway: Gateway, fresh_upstream: FakeUpstream, prefix: str, suffix: str, path: str, param: str
) -> None:
    fresh_upstream.behave(strict_models=True)
    model = prefix + secrets.token_hex(3) + suffix
    channel = gateway.channel(fresh_upstream, [model])
    result = gateway.ok("POST", f"/channels/{channel['id']}/test")
    assert result["ok"] is True, result
    request = fresh_upstream.last_request
    assert request.path == path and param in request.json
    if param == "max_completion_tokens":
        assert "max_tokens" not in request.json


def test_a_channel_serving_only_embeddings_is_tested_with_embeddings(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    fresh_upstream.behave(strict_models=True)
    channel = gateway.channel(fresh_upstream, ["text-embedding-a", "text-embedding-b"], test_model="")
    assert gateway.ok("POST", f"/channels/{channel['id']}/test")["ok"] is True
    assert fresh_upstream.last_request.path == "/v1/embeddings"


@pytest.mark.parametrize("prefix", ["text-embedding-", "o1-"])
def test_embedding_and_reasoning_channels_come_back_through_the_probe(
    gateway: Gateway, fresh_upstream: FakeUpstream, prefix: str
) -> None:
    model = prefix + secrets.token_hex(4)
    fresh_upstream.behave(strict_models=True, status=500)
    channel = gateway.channel(fresh_upstream, [model])
    gateway.price(model)
    client = gateway.client(gateway.key(gateway.user(10)))
    for _ in range(10):
        with pytest.raises(openai.InternalServerError):
            if prefix.startswith("o1"):
                client.chat.completions.create(model=model, messages=HI, max_completion_tokens=5)
            else:
                client.embeddings.create(model=model, input="hello")
    assert status_of(gateway, channel)["status"] == "auto_disabled"
    fresh_upstream.behave(status=None)  # it answers again, to the right request
    wait_status(gateway, channel, "half_open")
    wait_status(gateway, channel, "enabled")
    deadline = time.time() + 5  # the status is written first, then the relay's catalog reloads it
    while True:
        try:
            if prefix.startswith("o1"):
                answer = client.chat.completions.create(model=model, messages=HI, max_completion_tokens=5)
                assert answer.choices
            else:
                assert client.embeddings.create(model=model, input="hello").data
            break
        except openai.InternalServerError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


# -- no form of an upstream key leaves the gateway --------------------------------------------------------


def key_forms(secret: str) -> list[str]:
    return [
        secret,
        secret.lower(),
        secret.upper(),
        secret[:7] + "*" * (len(secret) - 11) + secret[-4:],  # OpenAI's mask
        secret[:8] + "..." + secret[-4:],
        "sk-...." + secret[-4:].lower(),
    ]


def assert_no_key(text: str, secret: str) -> None:
    assert secret[-4:].lower() not in text.lower(), text  # the last four only appear in masked forms


@pytest.mark.parametrize("status", [500, 403, 400])
def test_no_form_of_the_upstream_key_reaches_anyone(
    gateway: Gateway, fresh_upstream: FakeUpstream, status: int
) -> None:
    secret = "sk-proj-" + secrets.token_hex(12) + "QzXw"  # q, z and x are no hex digit: never in an id
    model = "rd-" + secrets.token_hex(4)
    message = "Key trouble: " + ", ".join(key_forms(secret)) + "."
    fresh_upstream.behave(
        status=status, error_body={"error": {"message": message, "type": "server_error", "code": None}}
    )
    channel = gateway.channel(fresh_upstream, [model], keys=[secret])
    gateway.price(model)
    user = gateway.user(10)
    key = gateway.key(user)
    reply = http(
        "POST",
        gateway.v1 + "/chat/completions",
        {"model": model, "messages": HI},
        {"Authorization": f"Bearer {key['key']}"},
    )
    assert reply.status == (400 if status == 400 else 502)
    assert "Key trouble" in reply.body["error"]["message"] and "[redacted]" in reply.body["error"]["message"]
    assert_no_key(reply.raw.decode(), secret)
    row = gateway.wait_for_log(reply.headers["x-request-id"])
    assert_no_key(row["error"], secret)
    test = gateway.ok("POST", f"/channels/{channel['id']}/test")
    assert test["ok"] is False and "[redacted]" in test["error"]
    assert_no_key(test["error"], secret)
    if status != 400:  # the upstream's fault: it shows in the channel's health
        deadline = time.time() + 5
        while time.time() < deadline and not status_of(gateway, channel)["last_error"]:
            time.sleep(0.1)
        health = status_of(gateway, channel)
        assert "Key trouble" in health["last_error"]
        assert_no_key(health["last_error"] + health["status_reason"], secret)  # the key's hint is by design
    assert_no_key(gateway.server_log(), secret)


def test_an_error_event_in_the_middle_of_a_stream_quotes_no_key(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    secret = "sk-proj-" + secrets.token_hex(12) + "QzXw"
    model = "rd-" + secrets.token_hex(4)
    message = "Key trouble: " + ", ".join(key_forms(secret)) + "."
    fresh_upstream.behave(error_event={"error": {"message": message, "type": "server_error", "code": None}})
    gateway.channel(fresh_upstream, [model], keys=[secret])
    gateway.price(model)
    key = gateway.key(gateway.user(10))
    reply = http(
        "POST",
        gateway.v1 + "/chat/completions",
        {"model": model, "messages": HI, "stream": True},
        {"Authorization": f"Bearer {key['key']}"},
    )
    text = reply.raw.decode()
    assert reply.status == 200 and "Key trouble" in text and "[redacted]" in text and "[DONE]" in text
    assert_no_key(text, secret)


def test_the_health_card_counts_recent_requests_without_disturbing_the_window(
    tmp_path: Path, fresh_upstream: FakeUpstream
) -> None:
    own = start_gateway(tmp_path, database_url_for("sqlite", tmp_path))  # no other test's traffic
    try:
        model, user, key = own.setup_model(fresh_upstream)
        client = own.client(key)
        assert recent_requests(own) == 0
        for _ in range(3):
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        assert recent_requests(own) == 3
        assert recent_requests(own) == 3  # reading the card forgets nothing
    finally:
        stop_gateway(own)


def recent_requests(gateway: Gateway) -> int:
    card = http("GET", gateway.url + "/partials/health", headers={"Accept-Language": "en"}).raw.decode()
    return int(re.search(r'id="requests-recent">([\d,]+)<', card).group(1).replace(",", ""))


# -- the reasons, in the reader's language -------------------------------------------------------------


def console_page(gateway: Gateway, path: str, language: str) -> str:
    """A console page as a new admin who chose `language` sees it, signed in over HTTP."""
    password = "pw-" + secrets.token_hex(8)
    admin = gateway.user(0, password=password, role="admin")
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def post(path: str, form: dict[str, str]) -> None:
        page = browser.open(gateway.url + "/").read().decode()
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
        browser.open(gateway.url + path, urllib.parse.urlencode({**form, "csrf_token": token}).encode())

    post("/login", {"username": admin["username"], "password": password})
    post("/language", {"language": language})
    return browser.open(gateway.url + path).read().decode()


def row_text(page: str, channel: dict) -> tuple[str, str]:
    """A channel's row on the admin channels page: its HTML, and the text a reader sees outside quotes."""
    row = re.search(rf'<tr id="channel-{channel["id"]}">(.*?)</tr>', page, re.DOTALL).group(1)
    parser = _Text()
    parser.feed(row)
    return row, " ".join(" ".join(parser.parts).split())


def english_left(text: str, language: str) -> list[str]:
    """Source-language pieces of the catalog's messages in `text`: whole messages, and the longer literal
    pieces of messages with parameters (a reason is one of those)."""
    left = []
    for message in locale.read_catalog(language):
        if not message.id or not message.string or message.string == message.id:
            continue
        pieces = [p.strip() for p in re.split(r"%\(\w+\)s", message.id)]
        left += [p for p in pieces if len(p) >= 12 and p not in message.string and p in text]
    return left


REASONS_SHOWN = {  # language: (failure rate, the rejected key's channel, the key itself)
    "vi": (
        r"\d+ trên \d+ yêu cầu thất bại trong 60 giây\. Lần cuối: Upstream trả về mã 500:",
        "Mọi khóa đều đã bị tạm gác; khóa cuối: upstream trả về mã 401 (",
        "bị tạm gác: Upstream từ chối khóa này: trả về mã 401 (",
    ),
    "ja": (
        r"60 秒間に \d+ 件中 \d+ 件のリクエストが失敗しました。"
        r"最後の失敗:アップストリームが 500 を返しました:",
        "すべてのキーが保留されました。最後のキー:アップストリームが 401(",
        "は保留中: アップストリームがこのキーを拒否しました:401(",
    ),
}


@pytest.mark.parametrize("language", list(REASONS_SHOWN))
def test_the_reasons_the_relay_disabled_channels_for_read_in_the_admins_language(
    gateway: Gateway, fresh_upstream: FakeUpstream, upstream2: FakeUpstream, language: str
) -> None:
    model, failing, spare, client = two_channels(gateway, fresh_upstream, upstream2)
    words = "The server had an error <while> processing your request."
    fresh_upstream.behave(status=500, error_body={"error": {"message": words, "type": "server_error"}})
    for _ in range(10):  # AUTO_DISABLE_AFTER: the channel goes, served meanwhile by the spare
        assert client.chat.completions.create(model=model, messages=HI).choices
    wait_status(gateway, failing, "auto_disabled")
    rejecting = FakeUpstream("rejecting").start()
    try:
        rejecting.behave(require_key="sk-the-right-one")
        other = "hl-" + secrets.token_hex(4)
        rejected = gateway.channel(rejecting, [other], keys=["sk-a-wrong-key-" + secrets.token_hex(4)])
        gateway.price(other)
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model=other, messages=HI)
        assert "upstream answered 401" in wait_status(gateway, rejected, "auto_disabled")["status_reason"]
        page = console_page(gateway, "/admin/channels", language)
    finally:
        rejecting.stop()
    rate, every_key, key = REASONS_SHOWN[language]
    html, text = row_text(page, failing)
    assert re.search(rate, text), text
    assert f'<code class="quoted" translate="no">{escape(words)}</code>' in html  # its own words, quoted
    assert not english_left(text, language) and "requests failed" not in text
    html, text = row_text(page, rejected)
    assert every_key in text and key in text, text
    assert '<code class="quoted" translate="no">invalid_api_key</code>' in html
    assert not english_left(text, language) and "upstream answered" not in text.lower()
