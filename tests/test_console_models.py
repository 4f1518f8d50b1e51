"""The models page and its snippets with Flask's test client on an in-process app: what a user's group can
call (as GET /v1/models decides), with providers, context, capabilities, prices and endpoints; search and
filters as htmx partials and plain GETs; a model tag's snippets; and every page of this part (keys,
models, snippets) in every language, with no source-language string left."""

from __future__ import annotations

import html as htmlib
import json
import re
import shlex

import pytest
from flask import Flask
from flask.testing import FlaskClient

from console.web import locale
from console.web.models import family_of
from tests.conftest import CONSOLE_PASSWORD as PASSWORD
from tests.conftest import csrf
from tests.conftest import sign_in as console_sign_in
from tests.test_pages import _Text

HX = {"HX-Request": "true", "HX-Target": "model-list"}
# /models without a key and without text/html is an SDK that forgot /v1 (gateway.frontends.v1): browsers
# and htmx (models.html sets it) send Accept: text/html
BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml"}


def sign_in(client: FlaskClient, username: str = "root", password: str = PASSWORD) -> FlaskClient:
    client.environ_base.update(BROWSER)
    assert console_sign_in(client, username, password).status_code == 302
    return client


@pytest.fixture
def catalog(app: Flask) -> FlaskClient:
    """Channels of four types and prices, set up through the management API; a user of group `default`
    signed in (returned), and a `vip` model the user's group cannot call."""
    root = sign_in(app.test_client())

    def ok(method: str, path: str, body: dict) -> None:
        reply = root.open(path, method=method, json=body)
        assert reply.status_code in (200, 201), reply.get_json()

    ok(
        "POST",
        "/api/channels",
        {
            "name": "oa",
            "type": "openai",
            "keys": ["sk-a"],
            "models": ["gpt-4o-mini", "text-embedding-3-small", "dall-e-3"],
        },
    )
    ok(
        "POST",
        "/api/channels",
        {"name": "an", "type": "anthropic", "keys": ["sk-b"], "models": ["claude-sonnet-4-5", "gpt-4o-mini"]},
    )
    ok(
        "POST",
        "/api/channels",
        {"name": "ge", "type": "gemini", "keys": ["k"], "models": ["gemini-2.5-pro", "imagen-4"]},
    )
    ok(
        "POST",
        "/api/channels",
        {"name": "vip", "type": "openai", "keys": ["sk-c"], "models": ["o3-secret"], "groups": ["vip"]},
    )
    ok(
        "POST",
        "/api/channels",
        {"name": "ds", "type": "deepseek", "keys": ["sk-d"], "models": ["unpriced-x"]},
    )
    ok(
        "PUT",
        "/api/prices/gpt-4o-mini",
        {"input_per_mtok_usd": 0.15, "output_per_mtok_usd": 0.6, "cached_input_per_mtok_usd": 0.075},
    )
    ok(
        "PUT",
        "/api/prices/claude-sonnet-4-5",
        {
            "input_per_mtok_usd": 3,
            "output_per_mtok_usd": 15,
            "cached_input_per_mtok_usd": 0.3,
            "cache_write_per_mtok_usd": 3.75,
        },
    )
    ok("PUT", "/api/prices/gemini-2.5-pro", {"input_per_mtok_usd": 1.25, "output_per_mtok_usd": 10})
    ok("PUT", "/api/prices/text-embedding-3-small", {"input_per_mtok_usd": 0.02})
    ok("PUT", "/api/prices/dall-e-3", {"per_request_usd": 0.04})
    ok("PUT", "/api/prices/o3-secret", {"input_per_mtok_usd": 2, "output_per_mtok_usd": 8})
    ok("POST", "/api/users", {"username": "alice", "password": "alice-password"})
    return sign_in(app.test_client(), "alice", "alice-password")  # fmt: skip


def model_names(html: str) -> list[str]:
    return re.findall(r'<a class="tag" href="[^"]*"\s+hx-get="[^"]*"[^>]*>([^<]+)</a>', html)


def snippet_texts(html: str) -> dict[str, str]:
    found = re.findall(r'<pre id="([^"]+)"[^>]*>(.*?)</pre>', html, re.S)
    return {name: htmlib.unescape(code) for name, code in found}


def test_signed_out_the_pages_ask_to_sign_in(app: Flask) -> None:
    client = app.test_client()
    client.environ_base.update(BROWSER)
    for path in ("/models", "/models?q=gpt", "/partials/snippets?model=gpt-4o-mini"):
        page = client.get(path, headers=HX)
        assert page.status_code == 302 and page.headers["Location"].startswith("/login")


def test_the_page_lists_what_the_group_can_call_with_prices_and_endpoints(catalog: FlaskClient) -> None:
    page = catalog.get("/models")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'href="/models" aria-current="page"' in html
    # as GET /v1/models decides: the vip model is another group's, the unpriced one is not billable
    names = ["claude-sonnet-4-5", "dall-e-3", "gemini-2.5-pro", "gpt-4o-mini", "text-embedding-3-small"]
    assert model_names(html) == names
    assert "o3-secret" not in html and "unpriced-x" not in html
    row = html[html.index(">claude-sonnet-4-5</a>") :].split("</tr>")[0]
    assert "Anthropic" in row and "200,000 tokens" in row and "reasoning" in row
    assert "$3.00" in row and "$15.00" in row and "$0.30" in row and "$3.75" in row
    # one column of labelled prices, the provider under the name: five columns fit 1280 px in any language
    assert "<dt>Input</dt><dd>$3.00</dd>" in row and "<dt>Cache write</dt><dd>$3.75</dd>" in row
    assert '<div class="provider" title="Provider">Anthropic</div>' in row
    assert html.split("<thead>")[1].split("</thead>")[0].count("<th>") == 5
    assert '<code>/v1/messages</code> <span class="muted">Anthropic · native' in row
    assert '<code>/v1/chat/completions</code> <span class="muted">OpenAI · converted' in row
    assert "/v1beta/models/claude-sonnet-4-5:generateContent" in row
    row = html[html.index(">gpt-4o-mini</a>") :].split("</tr>")[0]
    assert "Anthropic, OpenAI" in row and "128,000 tokens" in row and "vision" in row and "$0.075" in row
    assert '<code>/v1/responses</code> <span class="muted">OpenAI Responses · native' in row
    row = html[html.index(">text-embedding-3-small</a>") :].split("</tr>")[0]
    assert "/v1/embeddings" in row and "/v1/chat/completions" not in row and "$0.02" in row
    row = html[html.index(">dall-e-3</a>") :].split("</tr>")[0]
    assert "image generation" in row and "$0.04" in row and "$0.00" not in row
    assert "<dt>Per request</dt><dd>$0.04</dd>" in row and "<dt>Input</dt>" not in row
    assert "<code>/v1/images/generations</code>" in row and "Not relayed yet" not in row
    # the first model's snippets, with the real base URL and the key from the environment
    snippets = snippet_texts(html)
    assert 'curl "http://localhost/v1/chat/completions"' in snippets["snippet-chat-curl"]
    assert '"model": "claude-sonnet-4-5"' in snippets["snippet-chat-curl"]
    assert "$YOUR_API_KEY" in snippets["snippet-chat-curl"]
    assert 'data-copy="#snippet-stream-fetch-node-js-18"' in html


def test_a_group_multiplier_shows_in_the_prices(app: Flask, catalog: FlaskClient) -> None:
    root = sign_in(app.test_client())
    assert root.put("/api/groups/default", json={"multiplier": 2}).status_code == 200
    html = catalog.get("/models?q=gemini").get_data(as_text=True)
    assert "$2.50" in html and "$20.00" in html and "group multiplier of 2" in html


def test_search_and_filters_answer_a_partial_to_htmx_and_a_page_without(catalog: FlaskClient) -> None:
    part = catalog.get("/models?q=GPT", headers=HX).get_data(as_text=True)
    assert part.lstrip().startswith('<div id="model-list">') and "<html" not in part
    assert model_names(part) == ["gpt-4o-mini"] and "1 of 5 models" in part
    page = catalog.get("/models?q=gpt").get_data(as_text=True)
    assert "<html" in page and model_names(page) == ["gpt-4o-mini"] and 'value="gpt"' in page
    by_provider = catalog.get("/models?provider=anthropic", headers=HX).get_data(as_text=True)
    assert model_names(by_provider) == ["claude-sonnet-4-5", "gpt-4o-mini"]
    by_capability = catalog.get("/models?capability=embeddings", headers=HX).get_data(as_text=True)
    assert model_names(by_capability) == ["text-embedding-3-small"]
    restored = catalog.get("/models?q=gpt", headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in restored.get_data(as_text=True)  # back in history without htmx's cache: the page
    none = catalog.get("/models?q=nothing-like-it", headers=HX).get_data(as_text=True)
    assert "No model matches these filters." in none


def test_a_model_no_endpoint_serves_has_no_snippet(app: Flask, catalog: FlaskClient) -> None:
    root = sign_in(app.test_client())
    channel = {"name": "im", "type": "gemini", "keys": ["k2"], "models": ["imagen-4"]}
    assert root.post("/api/channels", json=channel).status_code == 201
    assert root.put("/api/prices/imagen-4", json={"per_request_usd": 0.04}).status_code == 200
    html = catalog.get("/models").get_data(as_text=True)
    row = html[html.index(">imagen-4</a>") :].split("</tr>")[0]
    assert "image generation" in row and "Not relayed yet" in row  # Imagen is Gemini's :predict
    imagen = catalog.get("/partials/snippets?model=imagen-4").get_data(as_text=True)
    assert "No snippet for this model" in imagen and "<pre" not in imagen


def test_a_model_tag_fills_that_model_into_every_snippet(catalog: FlaskClient) -> None:
    html = catalog.get("/models").get_data(as_text=True)
    tag = re.search(r'<a class="tag" href="([^"]+)"\s+hx-get="([^"]+)" hx-target="#snippets"', html)
    assert tag.group(1) == "/models?model=claude-sonnet-4-5#snippets"
    part = catalog.get("/partials/snippets?model=gemini-2.5-pro", headers=HX)
    text = part.get_data(as_text=True)
    assert part.status_code == 200 and text.lstrip().startswith('<div id="snippets"') and "<html" not in text
    snippets = snippet_texts(text)
    assert set(snippets) == {
        "snippet-chat-curl", "snippet-chat-python-openai", "snippet-chat-node-js-openai",
        "snippet-stream-curl", "snippet-stream-python-openai", "snippet-stream-node-js-openai",
        "snippet-stream-fetch-node-js-18", "snippet-messages-curl", "snippet-messages-python-anthropic",
        "snippet-gemini-curl", "snippet-gemini-python-google-genai",
    }  # fmt: skip
    for name, code in snippets.items():
        assert "gemini-2.5-pro" in code and f'data-copy="#{name}"' in text
        assert "sk-" not in code.replace("sk-...", "")  # never a real key
    assert "/v1beta/models/gemini-2.5-pro:generateContent" in snippets["snippet-gemini-curl"]
    embedding_part = catalog.get("/partials/snippets?model=text-embedding-3-small")
    embedding = snippet_texts(embedding_part.get_data(as_text=True))
    assert set(embedding) == {
        "snippet-embeddings-curl",
        "snippet-embeddings-python-openai",
        "snippet-embeddings-node-js-openai",
    }
    image = snippet_texts(catalog.get("/partials/snippets?model=dall-e-3").get_data(as_text=True))
    assert set(image) == {
        "snippet-images-curl",
        "snippet-images-python-openai",
        "snippet-images-node-js-openai",
    }
    assert '"model": "dall-e-3"' in image["snippet-images-curl"]
    full = catalog.get("/models?model=gpt-4o-mini").get_data(as_text=True)  # the tag without JavaScript
    assert '"model": "gpt-4o-mini"' in snippet_texts(full)["snippet-chat-curl"]
    assert catalog.get("/partials/snippets?model=o3-secret").status_code == 404  # another group's model
    assert catalog.get("/partials/snippets?model=nope").status_code == 404


def test_a_model_name_is_quoted_for_each_language() -> None:
    from console.web.snippets import SNIPPETS, fill

    odd = 'it\'s/a "model"'
    by_id = {s.id: fill(s, "http://h/v1", odd) for s in SNIPPETS}
    words = shlex.split(by_id["snippet-chat-curl"].code.replace("\\\n", " "))
    assert json.loads(words[words.index("-d") + 1])["model"] == odd  # as the shell hands it to curl
    assert "models/it%27s%2Fa%20%22model%22:generateContent" in by_id["snippet-gemini-curl"].code
    assert 'model="it\'s/a \\"model\\""' in by_id["snippet-chat-python-openai"].code


@pytest.mark.parametrize(
    ("model", "kind", "context"),
    [
        ("gpt-4o-2024-08-06", "chat", 128_000),
        ("text-embedding-3-large", "embeddings", 8192),
        ("anthropic/claude-3-5-haiku", "chat", 200_000),
        ("gemini-2.5-flash", "chat", 1_048_576),
        ("gpt-image-1", "image", None),
        ("my-local-llama", "chat", None),
    ],
)
def test_families(model: str, kind: str, context: int | None) -> None:
    assert family_of(model).kind == kind and family_of(model).context_tokens == context


# -- every page of this part in every language ------------------------------------------------------------
@pytest.mark.parametrize("language", [code for code in locale.LANGUAGES if code != "en"])
def test_no_page_of_this_part_keeps_a_source_language_string(catalog: FlaskClient, language: str) -> None:
    client = catalog
    client.post("/language", data={"language": language, "csrf_token": csrf(client, "/")})
    made = client.post(
        "/keys",
        data={"name": "k", "requests_per_minute": "5", "tokens_per_month": "9", "max_concurrent": "1",
              "requests_per_hour": "7", "tokens_per_minute": "8", "models": ["gpt-4o-mini"],
              "allowed_ips": "10.0.0.1", "expires_at": "2030-01-01", "spend_limit_usd": "1",
              "csrf_token": csrf(client, "/keys")},
        headers=HX,
    )  # fmt: skip
    key_id = re.search(r'<tr id="key-(\d+)"', made.get_data(as_text=True)).group(1)
    client.post("/keys", data={"name": "off", "csrf_token": csrf(client, "/keys")})
    off_id = re.findall(r'<tr id="key-(\d+)"', client.get("/keys").get_data(as_text=True))[0]
    client.post(f"/keys/{off_id}/status", data={"csrf_token": csrf(client, "/keys")})
    catalog_ = locale.read_catalog(language)
    sources = {m.id for m in catalog_ if m.id and m.string and m.string != m.id and len(m.id) > 3}
    pages = {
        "/keys": client.get("/keys").get_data(as_text=True),
        "created": made.get_data(as_text=True),
        "refused": client.post("/keys", data={"spend_limit_usd": "x", "csrf_token": csrf(client, "/keys")}),
        "edit row": client.get(f"/keys/{key_id}/edit", headers=HX).get_data(as_text=True),
        "edit page": client.get(f"/keys/{key_id}/edit").get_data(as_text=True),
        "/models": client.get("/models").get_data(as_text=True),
        "filtered": client.get("/models?q=zzz", headers=HX).get_data(as_text=True),
        "embeddings": client.get("/partials/snippets?model=text-embedding-3-small").get_data(as_text=True),
        "image": client.get("/partials/snippets?model=dall-e-3").get_data(as_text=True),
    }
    pages["refused"] = pages["refused"].get_data(as_text=True)
    assert f'lang="{locale.html_lang(language)}"' in pages["/models"]
    for name, html in pages.items():
        parser = _Text()
        parser.feed(html)
        text = " ".join(" ".join(parser.parts).split())
        left = sorted(s for s in sources if "%(" not in s and s in text)
        assert not left, f"{name} in {language} still says {left}"
        for english in ("requests/min", "tokens this month", "at once", "Not used yet", "This value"):
            assert english not in text, f"{name} in {language} still says {english!r}"
