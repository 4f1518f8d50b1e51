"""Self-test of tests/fake_upstream.py: the official openai SDK must accept what the fake sends."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import openai
import pytest

try:  # `python -m pytest` (repo root on sys.path) or tests/ as a package
    from tests.fake_upstream import DEFAULT_CONTENT, FakeUpstream, chat_prompt_tokens, count_words
except ImportError:  # plain `pytest`, rootdir-relative: tests/ itself is on sys.path
    from fake_upstream import DEFAULT_CONTENT, FakeUpstream, chat_prompt_tokens, count_words


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("selftest").start()
    yield fake
    fake.stop()


@pytest.fixture
def client(upstream: FakeUpstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=upstream.base_url, api_key="x", max_retries=0, timeout=10)


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello please"}]


def test_chat_non_stream_with_usage(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.behave(cached_tokens=2)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.model == "gpt-4o-mini"
    assert reply.choices[0].message.content == DEFAULT_CONTENT
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == chat_prompt_tokens(MESSAGES) == 2 + 3 + 3 + 3
    assert reply.usage.completion_tokens == count_words(DEFAULT_CONTENT) == 5
    assert reply.usage.total_tokens == 16
    assert reply.usage.prompt_tokens_details.cached_tokens == 2
    assert reply.usage.completion_tokens_details.reasoning_tokens == 0
    rec = upstream.requests[-1]
    assert (rec.method, rec.path, rec.status) == ("POST", "/v1/chat/completions", 200)
    assert rec.headers["authorization"] == "Bearer x"
    assert rec.json["messages"] == MESSAGES


def test_chat_stream_with_include_usage(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    text = "One two three four five six seven, with ünïcødé."
    upstream.behave(content=text, chunks=4)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert len(chunks) == 1 + 4 + 1 + 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == count_words(text)
    assert all(c.usage is None for c in chunks[:-1])
    assert upstream.wait_for(lambda: upstream.streams_completed == 1)


def test_chat_stream_wire_format(upstream: FakeUpstream) -> None:
    """Raw bytes: chunked encoding, one `data:` event per chunk, [DONE], no usage unless asked."""
    body = json.dumps({"model": "m", "messages": MESSAGES, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"text/event-stream" in head
    events = [line for line in rest.split(b"\r\n") if line.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]\n\n"
    assert len(events) == 1 + 5 + 1 + 1
    assert all(b'"usage"' not in e for e in events)


def test_completions(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    reply = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a b", "c"])
    assert reply.object == "text_completion"
    assert reply.choices[0].text == DEFAULT_CONTENT
    assert reply.usage is not None and reply.usage.prompt_tokens == 3 + 1
    parts = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="x", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(p.choices[0].text for p in parts if p.choices) == DEFAULT_CONTENT
    assert parts[-1].usage is not None and parts[-1].usage.prompt_tokens == 2


def test_embeddings_base64_default_and_float(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    reply = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    assert upstream.requests[-1].json["encoding_format"] == "base64"  # the SDK default
    assert len(reply.data) == 2
    assert all(len(d.embedding) == 8 and all(isinstance(x, float) for x in d.embedding) for d in reply.data)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == 3
    as_floats = client.embeddings.create(
        model="text-embedding-3-small", input="hello world", encoding_format="float", dimensions=8
    )
    assert as_floats.data[0].embedding == reply.data[0].embedding
    assert len(client.embeddings.create(model="m", input=[[1, 2, 3]], dimensions=4).data[0].embedding) == 4


def test_moderations(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    reply = client.moderations.create(input=["have a nice day", "I will kill the process"])
    assert reply.id.startswith("modr-")
    assert [r.flagged for r in reply.results] == [False, True]
    assert reply.results[1].categories.violence is True
    raw = client.moderations.with_raw_response.create(input="hi", model="omni-moderation-latest")
    result = raw.http_response.json()["results"][0]
    for part in ("categories", "category_scores", "category_applied_input_types"):
        assert len(result[part]) == 13 and "self-harm/intent" in result[part]
    assert reply.results[0].category_applied_input_types.violence == ["text"]


def test_models_list(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids
    assert client.models.retrieve("gpt-4o").owned_by == "system"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_errors(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.behave(status=500)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert err.value.type == "server_error"
    upstream.reset()
    upstream.behave(status=429, fail_times=1)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert limited.value.code == "rate_limit_exceeded"
    assert limited.value.response.headers["retry-after"] == "1"
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices  # second one succeeds
    upstream.reset()
    upstream.behave(quota_exhausted=True)
    with pytest.raises(openai.RateLimitError) as quota:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert quota.value.code == "insufficient_quota"
    upstream.reset()
    upstream.behave(require_key="sk-right")
    with pytest.raises(openai.AuthenticationError) as auth:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert auth.value.code == "invalid_api_key"
    right = openai.OpenAI(base_url=upstream.base_url, api_key="sk-right", max_retries=0)
    assert right.chat.completions.create(model="m", messages=MESSAGES).choices
    upstream.reset()
    with pytest.raises(openai.NotFoundError):
        client.post("/nowhere", cast_to=object, body={})
    with pytest.raises(openai.BadRequestError):
        client.post("/chat/completions", cast_to=object, body=[1])


def test_stall_times_out(upstream: FakeUpstream) -> None:
    upstream.behave(stall_s=2)
    impatient = openai.OpenAI(base_url=upstream.base_url, api_key="x", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(model="m", messages=MESSAGES)


def test_cut_after_chunks(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.behave(chunks=5, cut_after_chunks=2)
    received = []
    with pytest.raises(Exception):  # noqa: B017 - httpx reports the incomplete chunked body
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            received.append(chunk)
    content = [c.choices[0].delta.content for c in received[1:]]
    assert len(content) == 2 and all(c.choices[0].finish_reason is None for c in received)
    assert upstream.streams_completed == 0


def test_client_disconnect_is_counted(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.behave(chunks=50, chunk_delay_s=0.02)
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    assert upstream.wait_for_stream_cut(timeout=5)
    assert upstream.requests[-1].client_disconnected
    started = time.monotonic()
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices  # server still fine
    assert time.monotonic() - started < 2
