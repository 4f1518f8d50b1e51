"""The Docs pages (`/docs`, `/docs/api`) and the Integrations page with Flask's test client: signed out and
in, as a user and as an admin; the endpoint reference against the route tables it is generated from, the
error table against the statuses the gateway raises, the snippets as their tools read them, and every page
in every language with no English left."""

from __future__ import annotations

import html
import json
import re
import tomllib
from pathlib import Path
from typing import NamedTuple

import pytest
from flask import Flask
from flask.testing import FlaskClient

from console.api import openapi
from console.web import docs, integrations, locale
from gateway.domain import keys
from gateway.domain.keys import LIMIT_FIELDS
from gateway.frontends import v1
from tests.conftest import CONSOLE_PASSWORD as PASSWORD
from tests.conftest import csrf, sign_in
from tests.test_pages import _Text

ROOT = Path(__file__).resolve().parent.parent
HOST = "http://localhost"  # the test client's host, where sign_in leaves its cookie


def as_user(app: Flask) -> FlaskClient:
    with app.app_context():
        from gateway.domain import accounts

        accounts.create_user("reader", "reader-password")
    client = app.test_client()
    assert sign_in(client, "reader", "reader-password").status_code == 302
    return client


def as_admin(app: Flask) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, "root", PASSWORD).status_code == 302
    return client


def page(client: FlaskClient, path: str, **kwargs: object) -> str:
    reply = client.get(path, **kwargs)
    assert reply.status_code == 200 and reply.mimetype == "text/html", (path, reply.status_code)
    return html.unescape(reply.get_data(as_text=True))


# -- /docs ----------------------------------------------------------------------------------------------
def test_docs_list_every_route_of_both_tables_signed_out(app: Flask) -> None:
    text = page(app.test_client(), "/docs")
    for route in v1.ROUTES:
        assert f"<code>{route.path}</code>" in text, route.path
        assert route.summary in text
    for route in openapi.ROUTES:
        assert f"<code>/api{route.path}</code>" in text, route.path
    assert text.count('<code class="method">') == len(v1.ROUTES) + len(openapi.ROUTES)
    assert f'<code id="docs-base-url">{HOST}/v1</code>' in text and 'data-copy="#docs-base-url"' in text
    assert 'href="/docs/api"' in text and 'href="/login"' in text


@pytest.mark.parametrize("who", ["user", "admin"])
def test_docs_signed_in_show_the_same_reference_and_the_menu_entries(app: Flask, who: str) -> None:
    client = as_user(app) if who == "user" else as_admin(app)
    text = page(client, "/docs")
    assert (
        'href="/docs" aria-current="page">Docs</a>' in text
        and 'href="/integrations">Integrations</a>' in text
    )
    assert "<code>/api/dead-letters</code>" in text and "<code>/v1/messages</code>" in text
    assert ">Sign out<" in text
    assert page(client, "/docs/api").count('class="docs-op"') == sum(map(len, openapi.SPEC["paths"].values()))


def test_the_access_column_follows_the_route_tables(app: Flask) -> None:
    text = page(app.test_client(), "/docs")
    rows = dict(re.findall(r"<td><code>(/api/[^<]+)</code></td><td>([^<]+)</td>", text))
    assert rows["/api/status"] == "Public" and rows["/api/channels"] == "Admin"
    assert rows["/api/keys"] == "Signed-in user"
    relay = re.findall(
        r"<td><code>(/v1[^<]*|/dashboard[^<]*)</code></td><td>[^<]+</td><td>([^<]+)</td>", text
    )
    assert len(relay) == len(v1.ROUTES) and {access for _, access in relay} == {"API key"}


def test_the_protocol_filter_swaps_the_table_and_works_without_javascript(app: Flask) -> None:
    client = app.test_client()
    part = client.get("/docs?protocol=anthropic", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert part.lstrip().startswith('<table id="relay-endpoints"') and "<html" not in part
    assert "<code>/v1/messages</code>" in part and "<code>/v1/chat/completions</code>" not in part
    full = page(client, "/docs?protocol=gemini")
    assert '<option value="gemini" selected>' in full and "<noscript><button" in full
    assert "<code>/v1beta/models/{model}:generateContent</code>" in full
    assert "<code>/v1/messages</code>" not in full and "<code>/api/keys</code>" in full
    assert 'hx-get="/docs" hx-target="#relay-endpoints"' in full
    unknown = page(client, "/docs?protocol=nonsense")  # every protocol, as with none
    assert unknown.count('<code class="method">') == len(v1.ROUTES) + len(openapi.ROUTES)


def _raised_statuses() -> set[int]:
    """The statuses the relay and its HTTP server answer with: `GatewayError(<status>` and `_refuse(` calls
    outside the management API's domain layer."""
    found: set[int] = set()
    for source in (ROOT / "gateway").rglob("*.py"):
        if "domain" in source.parts:
            continue
        text = source.read_text()
        found |= {int(s) for s in re.findall(r"(?:GatewayError|_refuse)\(\s*(\d{3})", text)}
    return found


def test_the_error_table_covers_every_status_the_gateway_answers_with(app: Flask) -> None:
    documented = {row.status for row in docs.ERRORS}
    assert {400, 401, 402, 403, 404, 413, 429, 499, 500, 502, 503, 504} <= documented
    assert _raised_statuses() <= documented, _raised_statuses() - documented
    sources = "\n".join(p.read_text() for p in (ROOT / "gateway").rglob("*.py"))
    for row in docs.ERRORS:
        for code in row.codes:  # a code the gateway really sends
            assert f'"{code}"' in sources, code
    text = page(app.test_client(), "/docs")
    for row in docs.ERRORS:
        assert f'<tr id="error-{row.status}"><td><strong>{row.status}</strong></td>' in text
        assert str(row.meaning) in text and str(row.fix) in text


def test_rate_limits_name_every_key_limit_and_troubleshooting_fills_in_the_url(app: Flask) -> None:
    assert tuple(docs.LIMITS) == LIMIT_FIELDS
    text = page(app.test_client(), "/docs")
    for name in LIMIT_FIELDS:
        assert f'<tr id="limit-{name}"><td><code>{name}</code></td>' in text
    assert "spend_limit_usd" in text and "Retry-After" in text
    assert f"Set it to {HOST}/v1;" in text  # forgot /v1
    assert f"the base URL {HOST} (without /v1)" in text  # Anthropic's and Google's SDKs
    assert "402 Payment Required" in text and "404 model_not_found" in text
    assert f"GET {HOST}/v1/models lists the models" in text


# -- /docs/api ------------------------------------------------------------------------------------------
def test_the_openapi_page_renders_every_operation_grouped_by_tag(app: Flask) -> None:
    text = page(app.test_client(), "/docs/api")
    spec = openapi.SPEC
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            assert f'<article class="docs-op" id="{op["operationId"]}">' in text
            assert f'<code class="method">{method.upper()}</code> <code>{path}</code>' in text
    tags = {op["tags"][0] for ops in spec["paths"].values() for op in ops.values()}
    for tag in tags:
        assert f'<section id="tag-{tag}">' in text
    logs = text.split('id="getLogs"')[1].split("</article>")[0]
    for parameter in openapi.LOG_FILTERS:
        assert f"<td><code>{parameter['name']}</code>" in logs
    assert "<code>LogPage</code>" in logs and "Signed-in user" in logs
    create_key = text.split('id="postKeys"')[1].split("</article>")[0]
    assert (
        "<code>ApiKeyCreate</code>" in create_key
        and "<strong>201</strong> <code>ApiKeyCreated</code>" in create_key
    )
    channel = text.split('id="getChannelsChannelId"')[1].split("</article>")[0]
    assert (
        '<td><code>channel_id</code> <span class="required">required</span>' in channel and "Admin" in channel
    )
    relay = text.split('id="postV1Messages"')[1].split("</article>")[0]
    assert openapi.RELAY_REFERENCES["anthropic"] in relay and "API key" in relay
    assert "<code>/</code>" in text  # the servers entry


FIELD_ROW = re.compile(
    r'<tr class="depth-(\d)"><td><code>([^<]+)</code>(.*?)</td>\s*<td><code>([^<]*)</code></td>'
    r'<td>(.*?)</td><td lang="en">(.*?)</td></tr>',
    re.S,
)


class Row(NamedTuple):
    depth: int
    badge: str  # required, optional or nothing
    kind: str
    rules: str  # as the page shows them, values in <code>
    description: str


def article(text: str, operation_id: str) -> str:
    return text.split(f'id="{operation_id}">')[1].split("</article>")[0]


def field_rows(part: str) -> dict[str, Row]:
    """The rows of the field tables in a part of the page, by their dotted path."""
    return {
        path: Row(
            int(depth),
            re.sub(r"<[^>]+>", "", badge).strip(),
            kind,
            re.sub(r"</?span[^>]*>", "", rules),
            description,
        )
        for depth, path, badge, kind, rules, description in FIELD_ROW.findall(part)
    }


def request_part(op: str) -> str:
    return op.split("<h4>")[1 + ("<h4>Parameters</h4>" in op or "<h4>パラメーター</h4>" in op)]


def test_the_openapi_page_shows_the_fields_of_request_bodies(app: Flask) -> None:
    text = page(app.test_client(), "/docs/api")
    create = article(text, "postKeys")
    body = field_rows(request_part(create))
    assert list(body) == list(openapi.SCHEMAS["ApiKeyCreate"]["properties"])
    assert body["name"] == Row(
        0,
        "",
        "string",
        f"Length <code>≤ {keys.NAME_MAX}</code> Pattern <code>^[^\\u0000]*$</code>",
        "A label.",
    )
    assert body["user_id"].rules == "<code>1–2147483647</code>"
    assert body["status"].kind == "string" and "One of <code>active, disabled</code>" in body["status"].rules
    assert body["expires_at"].kind == "string | number | null"
    assert (
        "<code>string:</code>" in body["expires_at"].rules
        and "Format <code>date-time</code>" in body["expires_at"].rules
    )
    assert body["models"].kind == "string[] | null" and "Each item:" in body["models"].rules
    assert "from 1970 to 9999" in body["expires_at"].description
    channel = field_rows(request_part(article(text, "postChannels")))
    assert [p for p, row in channel.items() if row.badge == "required"] == ["name", "keys", "models"]
    assert "Items <code>≥ 1</code>" in channel["keys"].rules
    assert channel["settings.responses"].depth == 1
    assert "One of <code>native, convert</code>" in channel["settings.responses"].rules
    assert 'Default <code>"openai"</code>' in channel["type"].rules
    logs = article(text, "getLogs")
    assert (
        "<td><code>per_page</code></td>" in logs
        and "<code>1–500</code>" in logs
        and "Default <code>50</code>" in logs
    )
    relay = article(text, "postV1Messages")
    assert "JSON, as in the provider's reference" in relay and not field_rows(relay)


def test_the_openapi_page_shows_the_fields_of_answers_nested_and_the_error_body_once(app: Flask) -> None:
    text = page(app.test_client(), "/docs/api")
    logs = field_rows(article(text, "getLogs").split("<h4>Answers</h4>")[1])
    assert list(logs)[:2] == ["data", "data[].id"] and logs["data"].kind == "UsageLog[]"
    assert [p for p in logs if p.startswith("data[].")] == [
        f"data[].{name}" for name in openapi.SCHEMAS["UsageLog"]["properties"]
    ]
    assert logs["data[].protocol"].depth == 1
    assert "One of <code>openai, responses, anthropic, gemini</code>" in logs["data[].protocol"].rules
    assert logs["total"] == Row(0, "", "integer", "", "Rows matching the filters.")
    channels = field_rows(article(text, "getChannels"))
    assert channels["data[].keys"].kind == "ChannelKey[]" and channels["data[].keys[].hint"].depth == 2
    status = field_rows(article(text, "getStatus"))
    assert status["channels.enabled"].depth == 1 and status["channels"].description == "Channel counts."
    created = article(text, "postKeys").split("<h4>Answers</h4>")[1]
    assert "<strong>201</strong> <code>ApiKeyCreated</code>" in created
    assert field_rows(created)["key"].rules == "Length <code>51</code> Pattern <code>^sk-</code>"
    one_key = article(text, "getKeysKeyId")
    assert '<li><strong>404</strong> <a href="#schema-Error"><code>Error</code></a>' in one_key
    assert "No such object, or it belongs to another user." in one_key
    assert "Retry-After" in article(text, "postAuthLogin") and "Set-Cookie" in article(text, "postAuthLogin")
    assert text.count('id="schema-Error"') == 1
    errors = field_rows(text.split('<section id="errors">')[1])
    assert list(errors) == ["error", "error.message", "error.type", "error.param", "error.code"]
    assert errors["error.param"].kind == "string | null"


def test_the_fields_of_a_schema_that_contains_itself_end(app: Flask) -> None:
    node = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 8},
            "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
            "parent": {"anyOf": [{"$ref": "#/components/schemas/Node"}, {"type": "null"}]},
            "grid": {"$ref": "#/components/schemas/Grid"},
        },
        "required": ["name"],
    }
    deep: dict = {"type": "string"}
    for _ in range(docs.MAX_DEPTH + 3):
        deep = {"type": "object", "properties": {"x": deep}}
    grid = {"type": "array", "items": {"$ref": "#/components/schemas/Grid"}}  # an array of itself
    spec = {"components": {"schemas": {"Node": node, "Deep": deep, "Grid": grid}}}
    with app.test_request_context():
        found = docs.fields(spec, {"$ref": "#/components/schemas/Node"})
        assert [(f.path, f.kind, f.required) for f in found] == [
            ("name", "string", True),
            ("children", "Node[]", False),
            ("parent", "Node | null", False),
            ("grid", "Grid", False),
        ]
        nested = docs.fields(spec, {"$ref": "#/components/schemas/Deep"})
    assert [f.path for f in nested][-1] == ".".join(["x"] * (docs.MAX_DEPTH + 1))


def test_the_openapi_page_in_another_language_keeps_the_fields_and_their_english(app: Flask) -> None:
    text = page(app.test_client(), "/docs/api", headers={"Accept-Language": "ja"})
    assert '<html lang="ja">' in text
    create = article(text, "postKeys")
    assert (
        "<h4>リクエスト本文</h4>" in create and "<th>フィールド</th>" in create and "<th>制約</th>" in create
    )
    body = field_rows(create.split("<h4>")[1])
    assert (
        f"長さ <code>≤ {keys.NAME_MAX}</code>" in body["name"].rules
        and body["name"].description == "A label."
    )
    assert "いずれか <code>active, disabled</code>" in body["status"].rules
    channel = field_rows(article(text, "postChannels").split("<h4>")[1])
    assert channel["name"].badge == "必須"
    assert "<h2>エラー応答</h2>" in text


# -- /integrations --------------------------------------------------------------------------------------
def snippets(text: str) -> dict[str, str]:
    return dict(re.findall(r'<pre id="([\w-]+)">(.*?)</pre>', text, re.S))


@pytest.mark.parametrize("who", ["anonymous", "user", "admin"])
def test_integrations_fill_in_this_gateway_for_every_tool(app: Flask, who: str) -> None:
    client = {"anonymous": app.test_client, "user": lambda: as_user(app), "admin": lambda: as_admin(app)}[
        who
    ]()
    text = page(client, "/integrations")
    for anchor, name in integrations.TOOLS:
        assert f'<section id="{anchor}" class="integration">' in text and name in text
    found = snippets(text)
    assert len(found) >= 12
    for snippet_id in found:
        assert f'data-copy="#{snippet_id}"' in text  # a copy button on each
    root, base = HOST, f"{HOST}/v1"
    assert f"export ANTHROPIC_BASE_URL={root}\n" in found["claude-code-env"]
    assert "ANTHROPIC_AUTH_TOKEN" in text
    codex = tomllib.loads(found["codex-config"])
    assert codex["model_provider"] == "relayhouse"
    assert codex["model_providers"]["relayhouse"] == {
        "name": "Relayhouse",
        "base_url": base,
        "env_key": "RELAYHOUSE_API_KEY",
        "wire_api": "responses",
    }
    assert "export RELAYHOUSE_API_KEY=" in found["codex-env"]
    settings = json.loads(found["gemini-settings"])
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert (
        f"export GOOGLE_GEMINI_BASE_URL={root}\n" in found["gemini-env"]
        and "GEMINI_API_KEY=" in found["gemini-env"]
    )
    assert (
        found["cursor-base-url"] == base
        and found["cline-base-url"] == base
        and found["dify-endpoint"] == base
    )
    assert (
        f'cline auth -p openai-compatible -k "$YOUR_API_KEY" -m gpt-4o-mini -b {base}\n' in found["cline-cli"]
    )
    assert f"-e BASE_URL={root} " in found["nextchat-docker"]
    assert f"-e OPENAI_PROXY_URL={base} " in found["lobechat-docker"]
    assert (
        f'ChatOpenAI(model="gpt-4o-mini", base_url="{base}", api_key="sk-...")' in found["langchain-python"]
    )
    compile(found["langchain-python"], "langchain", "exec")
    assert f"export OPENAI_BASE_URL={base}\nexport OPENAI_API_BASE={base}\n" in found["openai-env"]


def test_integrations_follow_the_public_url_setting(app: Flask) -> None:
    with app.app_context():
        from gateway.domain.pricing import put_setting

        put_setting("public_url", "https://llm.example.com/")
        app.extensions["relayhouse"].catalog.reload()
    found = snippets(page(app.test_client(), "/integrations"))
    assert found["cursor-base-url"] == "https://llm.example.com/v1"
    assert "export ANTHROPIC_BASE_URL=https://llm.example.com\n" in found["claude-code-env"]


# -- languages ------------------------------------------------------------------------------------------
def test_every_route_summary_and_parameter_is_translated() -> None:
    """The reference's data (route summaries, parameter descriptions) is translated through docs.po: a new
    route without its translations fails here."""
    texts = {route.summary for route in v1.ROUTES} | {route.summary for route in openapi.ROUTES}
    for operations in openapi.SPEC["paths"].values():
        for op in operations.values():
            texts |= {p["description"] for p in op.get("parameters", []) if p.get("description")}
    for language in locale.LANGUAGES:
        catalog = locale.read_catalog(language)
        missing = sorted(t for t in texts if t not in catalog or not catalog[t].string)
        assert not missing, f"{language} lacks {missing[:5]}"


class _Visible(_Text):
    """The page's text less `<kbd>` (labels of another program's interface, quoted as it shows them) and
    less the elements marked `lang="en"` inside the page: the OpenAPI document's own English, quoted. What
    they hold is kept in `english`, for the test to check it is nothing but the document's text."""

    def __init__(self) -> None:
        super().__init__()
        self.english: list[str] = []
        self._english = 0  # open elements inside the one marked lang="en"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag == "kbd"
        if self._english or (tag != "html" and ("lang", "en") in attrs):
            self._english += 1
            if self._english == 1:
                self.english.append("")
        super().handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag == "kbd"
        self._english -= bool(self._english)
        super().handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self._english:
            self.english[-1] += data
        else:
            super().handle_data(data)


def _document_texts() -> set[str]:
    """Every description in the OpenAPI document, as the page shows it (backticks become code)."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("description"), str):
                found.add(" ".join(node["description"].replace("`", "").split()))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(openapi.SPEC)
    return found


# product and protocol names stay as they are in every language
NAMES = [name for _, name in integrations.TOOLS] + list(docs.PROTOCOLS.values())


@pytest.mark.parametrize("language", [code for code in locale.LANGUAGES if code != "en"])
def test_no_docs_page_keeps_a_source_language_string(app: Flask, language: str) -> None:
    client = as_admin(app)
    client.post("/language", data={"language": language, "csrf_token": csrf(client, "/")})
    catalog = locale.read_catalog(language)
    sources = {m.id for m in catalog if m.id and m.string and m.string != m.id and len(m.id) > 3}
    sources = {s for s in sources if "%(" not in s}
    for path, headers in [
        ("/docs", {}),
        ("/docs/api", {}),
        ("/integrations", {}),
        ("/docs?protocol=responses", {"HX-Request": "true"}),
    ]:
        reply = client.get(path, headers=headers)
        assert reply.status_code == 200
        parser = _Visible()
        parser.feed(reply.get_data(as_text=True))
        quoted = {" ".join(part.split()) for part in parser.english} - {""}
        assert quoted <= _document_texts(), f"{path}: {sorted(quoted - _document_texts())[:3]}"
        assert (
            bool(quoted) == (path == "/docs/api") and not quoted & sources
        )  # nothing the catalog translates
        text = " ".join(" ".join(parser.parts).split())
        for name in sorted(NAMES, key=len, reverse=True):
            text = text.replace(name, " ")
        left = sorted(s for s in sources if re.search(rf"(?<!\w){re.escape(s)}(?!\w)", text))
        assert not left, f"{path} in {language} still says {left}"
