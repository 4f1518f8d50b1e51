"""Image generation (`POST /v1/images/generations`) through the official `openai` SDK: relayed to
OpenAI-compatible channels, streamed or not, billed per token from the usage gpt-image models report or
per image from a per-request price, held before the call like any other, refused in OpenAI's shape when
malformed; and the channel test of an image model, which draws nothing."""

from __future__ import annotations

import base64
import secrets

import openai
import pytest

from tests.conftest import Gateway, http
from tests.fake_upstream import FAKE_PNG_B64, IMAGE_TOKENS, FakeUpstream, count_words

PROMPT = "A lighthouse at dawn, in watercolour"


def model_of(gateway: Gateway, upstream: FakeUpstream, family: str, balance_usd: float = 10, **price: float):
    """A fresh model of `family` on one OpenAI channel, priced, and a funded user with a key."""
    model = f"{family}-{secrets.token_hex(3)}"
    gateway.channel(upstream, [model])
    gateway.price(model, **price)
    user = gateway.user(balance_usd)
    return model, user, gateway.key(user)


def test_a_gpt_image_model_is_billed_from_the_tokens_it_reports(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    model, user, key = model_of(
        gateway, upstream, "gpt-image-1", input_per_mtok_usd=5, output_per_mtok_usd=40
    )
    response = gateway.client(key).images.with_raw_response.generate(model=model, prompt=PROMPT, n=2)
    result = response.parse()
    assert [base64.b64decode(image.b64_json)[:4] for image in result.data] == [b"\x89PNG"] * 2
    assert result.usage.output_tokens == 2 * IMAGE_TOKENS
    sent = upstream.last_request.json
    assert sent["model"] == model and sent["prompt"] == PROMPT and sent["n"] == 2
    row = gateway.wait_for_log(response.headers["x-request-id"])
    prompt_tokens = count_words(PROMPT)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt_tokens, 2 * IMAGE_TOKENS)
    assert row["usage_source"] == "upstream" and row["endpoint"] == "images" and row["status"] == 200
    cost = prompt_tokens * 5 + 2 * IMAGE_TOKENS * 40
    assert row["cost_micro_usd"] == cost
    assert gateway.balance(user) == 10_000_000 - cost


def test_a_per_request_price_is_charged_per_image(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = model_of(gateway, upstream, "dall-e-2", per_request_usd=0.02)
    result = gateway.client(key).images.generate(model=model, prompt=PROMPT, n=3, size="256x256")
    assert len(result.data) == 3 and all(image.url.endswith(".png") for image in result.data)
    row = gateway.logs_of(user, 1)[0]
    assert row["cost_micro_usd"] == 3 * 20_000
    assert row["usage_source"] == "estimated"  # dall-e reports no usage: the prompt is counted here
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] == 0
    assert gateway.balance(user) == 10_000_000 - 60_000

    one = gateway.client(key).images.generate(model=model, prompt=PROMPT, response_format="b64_json")
    assert one.data[0].b64_json == FAKE_PNG_B64
    assert gateway.logs_of(user, 2)[0]["cost_micro_usd"] == 20_000
    assert gateway.balance(user) == 10_000_000 - 80_000


@pytest.mark.parametrize("n", [1, 2])
def test_a_streamed_generation_passes_its_events_on_and_is_billed_from_them(
    gateway: Gateway, upstream: FakeUpstream, n: int
) -> None:
    model, user, key = model_of(
        gateway, upstream, "gpt-image-1", input_per_mtok_usd=5, output_per_mtok_usd=40
    )
    stream = gateway.client(key).images.generate(
        model=model, prompt=PROMPT, n=n, stream=True, partial_images=2
    )
    events = list(stream)
    kinds = ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert [e.type for e in events] == kinds * n
    assert [e.partial_image_index for e in events if e.type.endswith("partial_image")] == [0, 1] * n
    assert base64.b64decode(events[-1].b64_json)[:4] == b"\x89PNG"
    assert events[-1].usage.output_tokens == IMAGE_TOKENS
    sent = upstream.last_request.json
    assert sent["stream"] is True and sent["partial_images"] == 2 and "stream_options" not in sent
    row = gateway.logs_of(user, 1)[0]
    prompt_tokens = count_words(PROMPT)
    assert row["stream"] is True and row["usage_source"] == "upstream"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt_tokens, n * IMAGE_TOKENS)
    cost = prompt_tokens * 5 + n * IMAGE_TOKENS * 40
    assert row["cost_micro_usd"] == cost and gateway.balance(user) == 10_000_000 - cost


def test_a_model_that_cannot_stream_images_says_so_and_costs_nothing(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    model, user, key = model_of(gateway, upstream, "dall-e-3", per_request_usd=0.04)
    with pytest.raises(openai.BadRequestError) as caught:
        list(gateway.client(key).images.generate(model=model, prompt=PROMPT, stream=True))
    assert "Streaming is not supported" in caught.value.message
    assert gateway.logs_of(user, 1)[0]["cost_micro_usd"] == 0
    assert gateway.balance(user) == 10_000_000


def test_the_images_asked_for_are_held_before_the_call(gateway: Gateway, upstream: FakeUpstream) -> None:
    model, user, key = model_of(gateway, upstream, "dall-e-3", balance_usd=0.1, per_request_usd=0.04)
    client = gateway.client(key)
    before = len(upstream.requests)
    with pytest.raises(openai.APIStatusError) as caught:
        client.images.generate(model=model, prompt=PROMPT, n=3)  # 0.12 USD asked of a 0.10 USD wallet
    assert caught.value.status_code == 402
    assert len(upstream.requests) == before  # refused before any upstream was asked
    result = client.images.generate(model=model, prompt=PROMPT, n=2)
    assert result.data[0].revised_prompt == PROMPT
    assert gateway.logs_of(user, 2)[0]["cost_micro_usd"] == 80_000  # the 402 wrote a row too
    assert gateway.balance(user) == 100_000 - 80_000


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({}, "prompt", "Missing required parameter: 'prompt'."),
        ({"prompt": ["a", "b"]}, "prompt", "'prompt' must be a string."),
        ({"prompt": "x" * 32_001}, "prompt", "'prompt' must be at most 32000 characters long."),
        ({"prompt": PROMPT, "n": 11}, "n", "'n' must be an integer from 1 to 10."),
        ({"prompt": PROMPT, "n": True}, "n", "'n' must be an integer from 1 to 10."),
    ],
    ids=["no-prompt", "prompt-list", "prompt-too-long", "too-many", "n-bool"],
)
def test_a_malformed_request_is_refused_in_openai_shape_and_costs_nothing(
    gateway: Gateway, upstream: FakeUpstream, body: dict, param: str, says: str
) -> None:
    model, user, key = model_of(gateway, upstream, "gpt-image-1")
    before = len(upstream.requests)
    answer = http(
        "POST",
        gateway.v1 + "/images/generations",
        {"model": model, **body},
        {"Authorization": "Bearer " + key["key"]},
    )
    assert answer.status == 400, answer.raw
    error = answer.body["error"]
    assert (error["message"], error["param"], error["type"]) == (says, param, "invalid_request_error")
    assert len(upstream.requests) == before
    assert gateway.balance(user) == 10_000_000


def test_a_model_only_other_protocols_serve_cannot_draw(gateway: Gateway, upstream: FakeUpstream) -> None:
    model = "claude-" + secrets.token_hex(3)
    gateway.channel(upstream, [model], type="anthropic", base_url=upstream.root_url)
    gateway.price(model)
    user = gateway.user()
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client(gateway.key(user)).images.generate(model=model, prompt=PROMPT)
    assert caught.value.code == "unsupported_endpoint"
    assert gateway.balance(user) == 10_000_000


def test_an_sdk_without_v1_is_told_to_add_it(gateway: Gateway) -> None:
    answer = http("POST", gateway.url + "/images/generations", {"prompt": PROMPT}, {})
    assert answer.status == 404 and "/v1" in answer.body["error"]["message"]


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-3", "dall-e-missing"])
def test_the_channel_test_looks_an_image_model_up_and_draws_nothing(
    gateway: Gateway, fresh_upstream: FakeUpstream, model: str
) -> None:
    channel = gateway.channel(fresh_upstream, [model])
    result = gateway.ok("POST", f"/channels/{channel['id']}/test")
    asked = [(r.method, r.path) for r in fresh_upstream.requests]
    assert asked == [("GET", f"/v1/models/{model}")]  # an image costs cents; a lookup nothing
    if model.endswith("missing"):
        assert (result["ok"], result["status"]) == (False, 404)
    else:
        assert result["ok"] is True and result["error"] is None


def test_image_edits_and_variations_say_they_are_not_relayed(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    _model, _user, key = model_of(gateway, upstream, "dall-e-2")
    for path in ("/images/edits", "/images/variations"):
        answer = http(
            "POST", gateway.v1 + path, {"prompt": PROMPT}, {"Authorization": "Bearer " + key["key"]}
        )
        assert answer.status == 501 and answer.body["error"]["code"] == "not_implemented", answer.raw


def test_a_stream_cut_after_its_first_image_pays_for_that_image(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    fresh_upstream.behave(cut_after_chunks=2)  # a preview and the first completed image, then nothing
    model = "gpt-image-1-" + secrets.token_hex(3)
    gateway.channel(fresh_upstream, [model])
    gateway.price(model, input_per_mtok_usd=5, output_per_mtok_usd=40)
    user = gateway.user()
    stream = gateway.client(gateway.key(user)).images.generate(
        model=model, prompt=PROMPT, n=2, stream=True, partial_images=1
    )
    got = []
    with pytest.raises(openai.APIError):
        for event in stream:
            got.append(event.type)
    assert got == ["image_generation.partial_image", "image_generation.completed"]
    row = gateway.logs_of(user, 1)[0]
    assert row["status"] == 502 and row["completion_tokens"] == IMAGE_TOKENS  # one image of two
    cost = count_words(PROMPT) * 5 + IMAGE_TOKENS * 40
    assert row["cost_micro_usd"] == cost and gateway.balance(user) == 10_000_000 - cost
