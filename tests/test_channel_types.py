"""Channel types and the routes every protocol shares: Azure's deployment URLs, the OpenAI-compatible
family's defaults, and the model lists in OpenAI's, Anthropic's and Google's shapes."""

from __future__ import annotations

import secrets

from gateway.domain.channels import CHANNEL_TYPES
from tests.conftest import Gateway, http
from tests.fake_upstream import FakeUpstream


def test_every_type_has_its_default_base_url(gateway: Gateway) -> None:
    for name, kind in CHANNEL_TYPES.items():
        body = {"name": f"t-{name}", "type": name, "keys": ["sk-x"], "models": ["m-" + secrets.token_hex(3)]}
        reply = gateway.api("POST", "/channels", body)
        if not kind.base_url:
            assert reply.status == 400 and reply.body["error"]["param"] == "base_url", name
            continue
        assert reply.status == 201, (name, reply.body)
        assert reply.body["base_url"] == kind.base_url.rstrip("/") and reply.body["type"] == name
        gateway.ok("DELETE", f"/channels/{reply.body['id']}")


def test_azure_channel_calls_deployment_urls_with_api_key(gateway: Gateway, upstream: FakeUpstream) -> None:
    model = "m-" + secrets.token_hex(4)
    gateway.channel(
        upstream,
        [model],
        type="azure",
        base_url=upstream.root_url,
        model_mapping={model: "my-deployment"},
        settings={"api_version": "2025-01-01-preview"},
        keys=["azure-key-" + secrets.token_hex(6)],
    )
    gateway.price(model)
    user = gateway.user()
    client = gateway.client(gateway.key(user))
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    sent = upstream.last_request
    assert sent.path == "/openai/deployments/my-deployment/chat/completions"
    assert sent.query == "api-version=2025-01-01-preview"
    assert sent.headers["api-key"].startswith("azure-key-") and "authorization" not in sent.headers
    row = gateway.logs_of(user, 1)[0]
    assert row["channel_type"] == "azure" and row["protocol"] == "openai" and row["status"] == 200


def test_openai_compatible_type_relays_natively(gateway: Gateway, upstream: FakeUpstream) -> None:
    model = "m-" + secrets.token_hex(4)
    gateway.channel(upstream, [model], type="deepseek")
    gateway.price(model)
    user = gateway.user()
    stream = gateway.client(gateway.key(user)).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert upstream.last_request.path == "/v1/chat/completions"
    assert upstream.last_request.headers["authorization"].startswith("Bearer ")
    assert gateway.logs_of(user, 1)[0]["channel_type"] == "deepseek"


def test_model_lists_in_each_protocols_shape(gateway: Gateway, upstream: FakeUpstream) -> None:
    models = sorted(f"m-{secrets.token_hex(3)}-{i}" for i in range(3))
    gateway.channel(upstream, models)
    for model in models:
        gateway.price(model)
    group = "g-" + secrets.token_hex(3)
    gateway.ok("PUT", f"/groups/{group}", {"multiplier": 1})
    gateway.ok("PATCH", f"/channels/{gateway.ok('GET', '/channels')['data'][-1]['id']}", {"groups": [group]})
    user = gateway.user(group=group)
    secret = gateway.key(user)["key"]

    openai_list = http("GET", gateway.v1 + "/models", headers={"Authorization": f"Bearer {secret}"})
    assert [m["id"] for m in openai_list.body["data"]] == models and openai_list.body["object"] == "list"

    anthropic = {"x-api-key": secret, "anthropic-version": "2023-06-01"}
    page = http("GET", gateway.v1 + "/models?limit=2", headers=anthropic).body
    assert [m["id"] for m in page["data"]] == models[:2] and page["has_more"] is True
    assert page["first_id"] == models[0] and page["last_id"] == models[1]
    assert page["data"][0]["type"] == "model" and page["data"][0]["created_at"].endswith("Z")
    rest = http("GET", gateway.v1 + f"/models?limit=2&after_id={models[1]}", headers=anthropic).body
    assert [m["id"] for m in rest["data"]] == models[2:] and rest["has_more"] is False
    one = http("GET", gateway.v1 + f"/models/{models[0]}", headers=anthropic).body
    assert one["type"] == "model" and one["id"] == models[0]

    google = http("GET", gateway.url + "/v1beta/models", headers={"x-goog-api-key": secret}).body
    assert [m["name"] for m in google["models"]] == [f"models/{m}" for m in models]
    assert "generateContent" in google["models"][0]["supportedGenerationMethods"]
    by_query = http("GET", gateway.url + f"/v1beta/models/{models[1]}?key={secret}")
    assert by_query.status == 200 and by_query.body["name"] == f"models/{models[1]}"
    compat = http("GET", gateway.url + "/v1beta/openai/models", headers={"Authorization": f"Bearer {secret}"})
    assert [m["id"] for m in compat.body["data"]] == models


def test_unknown_routes_and_bad_keys_answer_in_the_callers_shape(gateway: Gateway) -> None:
    anthropic = http("GET", gateway.v1 + "/models", headers={"x-api-key": "sk-bad", "anthropic-version": "1"})
    assert anthropic.status == 401 and anthropic.body["type"] == "error"
    assert anthropic.body["error"]["type"] == "authentication_error"
    google = http("GET", gateway.url + "/v1beta/models?key=sk-bad")
    assert google.status in (400, 401) and google.body["error"]["status"] in (
        "INVALID_ARGUMENT",
        "UNAUTHENTICATED",
    )
    openai_style = http("GET", gateway.v1 + "/models", headers={"Authorization": "Bearer sk-bad"})
    assert openai_style.status == 401 and openai_style.body["error"]["code"] == "invalid_api_key"


def test_converted_requests_respect_the_channels_output_ceiling(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    model = "m-" + secrets.token_hex(4)
    channel = gateway.channel(upstream, [model], type="deepseek", settings={"max_output_tokens": 100})
    gateway.price(model)
    secret = gateway.key(gateway.user(1000))["key"]
    body = {
        "model": model,
        "max_tokens": 64000,  # as Claude Code asks, far above what gpt-4o or DeepSeek take
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "messages": [{"role": "user", "content": "hi"}],
    }
    reply = http(
        "POST", gateway.v1 + "/messages", body, {"x-api-key": secret, "anthropic-version": "2023-06-01"}
    )
    assert reply.status == 200 and reply.body["type"] == "message"
    assert reply.headers["request-id"] == reply.headers["x-request-id"]
    sent = upstream.last_request.json
    assert sent["max_tokens"] == 100
    assert "reasoning_effort" not in sent  # a chat model refuses it; reasoning models get it
    bad = gateway.api("PATCH", f"/channels/{channel['id']}", {"settings": {"max_output_tokens": 0}})
    assert bad.status == 400 and bad.body["error"]["param"] == "settings"


def test_each_type_is_tested_in_its_own_protocol(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    cases = [
        ("anthropic", "claude-" + secrets.token_hex(3), "/v1/messages", "max_tokens"),
        ("gemini", "gemini-" + secrets.token_hex(3), ":generateContent", "contents"),
        ("gemini", "text-embedding-" + secrets.token_hex(3), ":batchEmbedContents", "requests"),
        ("azure", "gpt-4o-" + secrets.token_hex(3), "/chat/completions", "messages"),
    ]
    for kind, model, path, field in cases:
        channel = gateway.channel(fresh_upstream, [model], type=kind, base_url=fresh_upstream.root_url)
        result = gateway.ok("POST", f"/channels/{channel['id']}/test")
        assert result["ok"] is True, (kind, result)
        sent = fresh_upstream.last_request
        assert sent.path.endswith(path) and field in sent.json, (kind, sent.path, sent.json)
    fresh_upstream.behave(
        status=529,
        error_body={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    model = "claude-" + secrets.token_hex(3)
    channel = gateway.channel(fresh_upstream, [model], type="anthropic", base_url=fresh_upstream.root_url)
    result = gateway.ok("POST", f"/channels/{channel['id']}/test")
    assert result["ok"] is False and result["status"] == 529 and "Overloaded" in result["error"]


def test_a_base_url_without_v1_gets_a_404_that_says_so(gateway: Gateway) -> None:
    for method, path in (("POST", "/chat/completions"), ("GET", "/models"), ("POST", "/responses")):
        reply = http(
            method, gateway.url + path, {} if method == "POST" else None, {"Authorization": "Bearer sk-x"}
        )
        assert reply.status == 404 and reply.body["error"]["code"] == "missing_v1", path
        assert f"{gateway.url}/v1" in reply.body["error"]["message"]
        assert reply.headers["access-control-allow-origin"] == "*"
    claude = http("POST", gateway.url + "/messages", {}, {"x-api-key": "sk-x"})
    assert (
        claude.status == 404 and claude.body["type"] == "error" and "/v1" in claude.body["error"]["message"]
    )
