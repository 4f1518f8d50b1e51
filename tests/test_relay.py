"""The OpenAI relay through the official `openai` SDK: every endpoint, streaming, billing of each call."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import Gateway, http
from tests.fake_upstream import FakeUpstream, chat_prompt_tokens, count_words

CONTENT = "Hello from the fake upstream."


def expected_cost(prompt: int, completion: int, input_per_mtok: float = 1, output_per_mtok: float = 2) -> int:
    # micro-USD, rounded half up once; prices in USD per 1M tokens
    exact = prompt * input_per_mtok + completion * output_per_mtok  # micro-USD * 1M / 1M
    return int(exact + 0.5)


def test_chat_completion_is_relayed_billed_and_logged(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream, input_per_mtok_usd=1000, output_per_mtok_usd=3000)
    client = gateway.client(key)
    messages = [{"role": "user", "content": "Say hello to the gateway"}]
    response = client.chat.completions.with_raw_response.create(model=model, messages=messages)
    completion = response.parse()
    assert completion.choices[0].message.content == CONTENT
    prompt_tokens = chat_prompt_tokens(messages)
    assert completion.usage.prompt_tokens == prompt_tokens
    assert completion.usage.completion_tokens == count_words(CONTENT)
    request_id = response.headers["x-request-id"]
    row = gateway.wait_for_log(request_id)
    cost = prompt_tokens * 1000 + count_words(CONTENT) * 3000
    assert row["cost_micro_usd"] == cost
    assert row["usage_source"] == "upstream"
    assert row["status"] == 200 and row["model"] == model and row["error"] is None
    assert row["prompt_tokens"] == prompt_tokens and row["ttft_ms"] is not None
    assert gateway.balance(user) == 10_000_000 - cost
    assert upstream.last_request.json["model"] == model
    assert upstream.last_request.headers["authorization"].startswith("Bearer sk-upstream-")


def test_chat_stream_forwards_every_chunk_and_hides_usage_unless_asked(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    model, user, key = gateway.setup_model(upstream)
    client = gateway.client(key)
    chunks = list(
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == CONTENT
    assert all(c.usage is None for c in chunks), "usage chunk leaked to a client that did not ask for it"
    assert all(c.choices for c in chunks)
    # the gateway asked upstream for usage anyway, and billed from it
    assert upstream.last_request.json["stream_options"] == {"include_usage": True}
    row = gateway.logs_of(user, 1)[0]
    assert row["usage_source"] == "upstream" and row["stream"] is True
    assert row["completion_tokens"] == count_words(CONTENT)


def test_chat_stream_passes_usage_to_clients_that_ask(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream)
    client = gateway.client(key)
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == count_words(CONTENT)
    row = gateway.logs_of(user, 1)[0]
    assert row["cost_micro_usd"] == expected_cost(
        chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens
    )


def test_legacy_completions_stream_and_not(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream)
    client = gateway.client(key)
    result = client.completions.create(model=model, prompt="Once upon a time")
    assert result.object == "text_completion" and result.choices[0].text == CONTENT
    pieces = list(client.completions.create(model=model, prompt="Once upon a time", stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices) == CONTENT
    rows = gateway.logs_of(user, 2)
    assert {r["endpoint"] for r in rows} == {"completions"}
    assert all(r["cost_micro_usd"] > 0 and r["usage_source"] == "upstream" for r in rows)


def test_embeddings_with_sdk_default_base64(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream)
    client = gateway.client(key)
    result = client.embeddings.create(model=model, input=["first text", "second longer text"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    assert isinstance(result.data[0].embedding[0], float)
    assert result.usage.prompt_tokens == 5
    row = gateway.logs_of(user, 1)[0]
    assert row["prompt_tokens"] == 5 and row["cost_micro_usd"] == 5


def test_moderations(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream, per_request_usd=0.0002)
    client = gateway.client(key)
    result = client.moderations.create(model=model, input="I will kill the process")
    assert result.results[0].flagged is True
    row = gateway.logs_of(user, 1)[0]
    assert row["cost_micro_usd"] == 200  # fixed price per request


def test_models_list_and_retrieve(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream)
    client = gateway.client(key)
    ids = [m.id for m in client.models.list()]
    assert model in ids
    assert client.models.retrieve(model).id == model
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert "GET /v1/models" in caught.value.message
    limited = gateway.key(user, models=[model])
    assert [m.id for m in gateway.client(limited).models.list()] == [model]


def test_key_in_x_api_key_and_bare_authorization(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream)
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    assert http("POST", gateway.v1 + "/chat/completions", body, {"x-api-key": key["key"]}).status == 200
    assert http("POST", gateway.v1 + "/chat/completions", body, {"Authorization": key["key"]}).status == 200


def test_model_mapping_sends_upstream_name(gateway: Gateway, upstream: FakeUpstream) -> None:
    model = "public-" + gateway.user(0)["username"]
    gateway.channel(upstream, [model], model_mapping={model: "real-upstream-model"})
    gateway.price(model)
    user = gateway.user(5)
    client = gateway.client(gateway.key(user))
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert upstream.last_request.json["model"] == "real-upstream-model"
    row = gateway.logs_of(user, 1)[0]
    assert row["model"] == model and row["upstream_model"] == "real-upstream-model"


def test_legacy_billing_endpoints(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = gateway.setup_model(upstream, input_per_mtok_usd=10000, output_per_mtok_usd=10000)
    headers = {"Authorization": f"Bearer {key['key']}"}
    sub = http("GET", gateway.url + "/dashboard/billing/subscription", headers=headers)
    assert sub.status == 200 and sub.body["object"] == "billing_subscription"
    assert sub.body["hard_limit_usd"] == 10.0
    gateway.client(key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=50
    )
    row = gateway.logs_of(user, 1)[0]
    usage = http(
        "GET",
        gateway.v1 + "/dashboard/billing/usage?start_date=2000-01-01&end_date=2100-01-01",
        headers=headers,
    )
    assert usage.status == 200 and usage.body["object"] == "list"
    assert usage.body["total_usage"] == pytest.approx(row["cost_micro_usd"] / 10_000)
    limited = gateway.key(user, spend_limit_usd=2.5)
    sub = http(
        "GET",
        gateway.v1 + "/dashboard/billing/subscription",
        headers={"Authorization": f"Bearer {limited['key']}"},
    )
    assert sub.body["hard_limit_usd"] == 2.5


def test_unsupported_endpoints_answer_501(gateway: Gateway, upstream: FakeUpstream) -> None:
    _, _, key = gateway.setup_model(upstream)
    headers = {"Authorization": f"Bearer {key['key']}"}
    for method, path in (
        ("POST", "/images/variations"),
        ("GET", "/files"),
        ("GET", "/files/file-1"),
        ("POST", "/fine-tunes"),
        ("GET", "/fine-tunes/ft-1/events"),
    ):
        reply = http(method, gateway.v1 + path, headers=headers, raw=b"" if method == "POST" else None)
        assert reply.status == 501, path
        assert set(reply.body["error"]) == {"message", "type", "param", "code"}
        assert reply.headers.get("x-request-id", "").startswith("req_")
