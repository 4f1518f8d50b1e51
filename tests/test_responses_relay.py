"""The Responses API through the real gateway with the official `openai` SDK (`client.responses`): each case
served by an `openai` channel (native pass-through to the fake's /v1/responses) and by channels that
convert through the hub (`deepseek`: OpenAI chat; `anthropic`; `gemini`), with the cost logged and debited as
the usage and the price say. Also stored responses (previous_response_id, GET, DELETE, cancel, another
user's ids, retention), compaction, input_tokens, errors, and Codex CLI's recorded requests replayed."""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
from openai._types import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.protocols.responses import SUMMARY_INTRO
from tests import fake_responses
from tests.conftest import Gateway, database_url_for, http, start_gateway, stop_gateway
from tests.fake_upstream import FakeUpstream, count_words

CONTENT = "Hello from the fake upstream."
CODEX = Path("/work/shared/clients/codex.jsonl")
INPUT_PER_MTOK, OUTPUT_PER_MTOK, CACHED_PER_MTOK = 1000, 3000, 100  # USD; a token costs that many micro-USD
ROUTES = ["native", "chat", "anthropic", "gemini"]
CHANNEL_TYPES = {"native": "openai", "chat": "deepseek", "anthropic": "anthropic", "gemini": "gemini"}
UPSTREAM_PATHS = {
    "native": "/v1/responses",
    "chat": "/v1/chat/completions",
    "anthropic": "/v1/messages",
}
EVENTS = TypeAdapter(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
# names the tool for each fake's rule: "tool" (Responses), "use a tool" (Anthropic), the name (Gemini)
TOOL_PROMPT = "Please use a tool: get_weather for Oslo."


@dataclass
class Setup:
    gateway: Gateway
    fake: FakeUpstream
    route: str
    model: str
    user: dict
    key: dict

    @property
    def client(self) -> openai.OpenAI:
        return self.gateway.client(self.key)

    @property
    def native(self) -> bool:
        return self.route == "native"

    def check_billed(self, request_id: str, usage: Any) -> dict:
        """The log row and the wallet agree with the usage the client was shown, at the model's price."""
        row = self.gateway.wait_for_log(request_id)
        cached = usage.input_tokens_details.cached_tokens
        cost = (
            (usage.input_tokens - cached) * INPUT_PER_MTOK
            + cached * CACHED_PER_MTOK
            + usage.output_tokens * OUTPUT_PER_MTOK
        )
        assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (
            usage.input_tokens,
            usage.output_tokens,
            cached,
        )
        assert row["cost_micro_usd"] == cost and row["usage_source"] == "upstream" and row["status"] == 200
        assert row["protocol"] == "responses" and row["channel_type"] == CHANNEL_TYPES[self.route]
        return row


def make_channel(gateway: Gateway, fake: FakeUpstream, route: str, models: list[str], **fields: Any) -> dict:
    base_url = fake.base_url if route in ("native", "chat") else fake.root_url
    return gateway.channel(fake, models, type=CHANNEL_TYPES[route], base_url=base_url, **fields)


def new_setup(gateway: Gateway, fake: FakeUpstream, route: str) -> Setup:
    model = ("gemini-3-" if route == "gemini" else "m-") + secrets.token_hex(4)
    make_channel(gateway, fake, route, [model])
    gateway.price(
        model,
        input_per_mtok_usd=INPUT_PER_MTOK,
        output_per_mtok_usd=OUTPUT_PER_MTOK,
        cached_input_per_mtok_usd=CACHED_PER_MTOK,
    )
    user = gateway.user(10)
    return Setup(gateway, fake, route, model, user, gateway.key(user))


@pytest.fixture(params=ROUTES)
def setup(request: pytest.FixtureRequest, gateway: Gateway, fresh_upstream: FakeUpstream) -> Setup:
    return new_setup(gateway, fresh_upstream, request.param)


def sent_text(setup: Setup) -> str:
    """Everything the upstream's last request carried, as text (to find a message in it)."""
    return json.dumps(setup.fake.last_request.json)


def accumulate(events: list[dict[str, Any]]) -> Any:
    """Typed events through openai-python's `responses.stream()` accumulator; the final Response."""
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(EVENTS.validate_python(event))
    assert state._completed_response is not None, "no response.completed"
    return state._completed_response


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block[:200]
        data = json.loads(lines[1][len("data: ") :])
        assert data["type"] == lines[0][len("event: ") :]
        events.append(data)
    assert [e["sequence_number"] for e in events] == sorted(e["sequence_number"] for e in events)
    return events


# -- create and stream -------------------------------------------------------------------------------
def test_create_is_relayed_and_billed_as_reported(setup: Setup) -> None:
    setup.fake.behave(cached_tokens=2)
    raw = setup.client.responses.with_raw_response.create(
        model=setup.model,
        instructions="You are terse.",
        input="Say hello to the gateway",
        max_output_tokens=200,
    )
    response = raw.parse()
    assert (
        response.output_text == CONTENT and response.status == "completed" and response.model == setup.model
    )
    assert response.id.startswith("resp_") and response.usage.input_tokens_details.cached_tokens == 2
    sent = setup.fake.last_request
    if setup.route in UPSTREAM_PATHS:
        assert sent.path == UPSTREAM_PATHS[setup.route]
    if setup.native:
        assert sent.json["input"] == "Say hello to the gateway" and sent.json["max_output_tokens"] == 200
        assert response.usage.input_tokens == fake_responses.input_tokens(sent.json)
    elif setup.route == "chat":
        assert sent.json["messages"] == [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to the gateway"},
        ]
        assert sent.json["max_tokens"] == 200
    assert response.usage.output_tokens == count_words(CONTENT)
    setup.check_billed(raw.headers["x-request-id"], response.usage)
    assert setup.gateway.balance(setup.user) < 10_000_000


def test_stream_helper_gives_deltas_and_the_final_response(setup: Setup) -> None:
    setup.fake.behave(chunks=4)
    with setup.client.responses.stream(model=setup.model, input="Stream it please") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    request_id = setup.gateway.logs_of(setup.user, 1)[0]["request_id"]
    assert "".join(deltas) == CONTENT == final.output_text and len(deltas) >= 2
    assert final.status == "completed" and final.usage.output_tokens == count_words(CONTENT)
    setup.check_billed(request_id, final.usage)


def test_raw_stream_is_a_typed_event_sequence(setup: Setup) -> None:
    body = {"model": setup.model, "input": "hi", "stream": True}
    reply = http(
        "POST", setup.gateway.v1 + "/responses", body, {"Authorization": "Bearer " + setup.key["key"]}
    )
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply.raw)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    for expected in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
    ):
        assert expected in kinds
    assert accumulate(events).output_text == CONTENT


# -- tools and reasoning ------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["native", "anthropic", "gemini"])
def test_function_call_round_trip_carries_reasoning_back(
    route: str, gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    """store: false, as Codex runs: the client sends the reasoning back itself, with its encrypted content
    (an Anthropic thinking signature; Gemini's thought signature of the call), which the upstream checks."""
    setup = new_setup(gateway, fresh_upstream, route)
    asked = {"role": "user", "content": TOOL_PROMPT}
    common: dict[str, Any] = {
        "model": setup.model,
        "tools": [WEATHER],
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "low", "summary": "auto"},
    }
    first = setup.client.responses.create(input=[asked], **common)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments)["city"]
    if route != "native":
        assert any(item.type == "reasoning" and item.encrypted_content for item in first.output)
    items = [item.model_dump(exclude_none=True, warnings=False) for item in first.output]
    result = {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C"}
    second = setup.client.responses.create(input=[asked, *items, result], **common)
    assert second.status == "completed" and second.output_text.startswith(CONTENT)
    if route != "native":
        assert "Sunny, 21 C" in second.output_text  # the fake quotes the tool's result
    if route == "anthropic":
        thinking = [
            b
            for m in setup.fake.last_request.json["messages"]
            for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "thinking"
        ]
        assert thinking and thinking[0]["signature"].startswith("sig-fake-")


@pytest.mark.parametrize("route", ["native", "anthropic", "gemini"])
def test_function_call_round_trip_with_previous_response_id(
    route: str, gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    """store on (the default): the follow-up names the previous response and sends only the tool's result."""
    setup = new_setup(gateway, fresh_upstream, route)
    common: dict[str, Any] = {"model": setup.model, "tools": [WEATHER], "reasoning": {"effort": "low"}}
    first = setup.client.responses.create(input=TOOL_PROMPT, **common)
    (call,) = [item for item in first.output if item.type == "function_call"]
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "Rainy"}
    second = setup.client.responses.create(previous_response_id=first.id, input=[result], **common)
    assert second.output_text.startswith(CONTENT) and second.previous_response_id == first.id
    if route != "native":
        assert "Rainy" in second.output_text and TOOL_PROMPT in sent_text(setup)


def test_custom_tool_calls_come_back_as_custom_tool_calls(
    gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    setup = new_setup(gateway, fresh_upstream, "anthropic")
    exec_tool = {
        "type": "custom",
        "name": "exec",
        "description": "Runs JavaScript.",
        "format": {"type": "text"},
    }
    tools = [{"type": "namespace", "name": "functions", "description": "Tools.", "tools": [exec_tool]}]
    with setup.client.responses.stream(model=setup.model, input="use a tool please", tools=tools) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    (call,) = final.output
    assert call.type == "custom_tool_call" and call.name == "exec" and call.namespace == "functions"
    assert call.input == "fake input"  # the fake fills the one string argument, `input`, with "fake input"
    assert "response.custom_tool_call_input.done" in kinds
    assert setup.fake.last_request.json["tools"][0]["name"] == "functions__exec"


# -- stored responses ---------------------------------------------------------------------------------
def test_previous_response_id_continues_the_conversation(setup: Setup) -> None:
    first = setup.client.responses.create(model=setup.model, input="My name is Ada.")
    second = setup.client.responses.create(
        model=setup.model, previous_response_id=first.id, input="Who am I?"
    )
    assert second.output_text == CONTENT
    sent = setup.fake.last_request.json
    if setup.native:
        assert sent["previous_response_id"] == first.id
    else:
        assert "My name is Ada." in json.dumps(sent) and CONTENT in json.dumps(sent)
        assert "previous_response_id" not in sent


def test_retrieve_cancel_and_delete(setup: Setup) -> None:
    client = setup.client
    created = client.responses.create(model=setup.model, input="Keep this.")
    got = client.responses.retrieve(created.id)
    assert got.id == created.id and got.output_text == CONTENT and got.status == "completed"
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(created.id)
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=setup.model, input="again", previous_response_id=created.id)


def test_another_users_responses_are_not_found(setup: Setup) -> None:
    created = setup.client.responses.create(model=setup.model, input="Mine.")
    other = setup.gateway.user(10)
    stranger = setup.gateway.client(setup.gateway.key(other))
    with pytest.raises(openai.NotFoundError):
        stranger.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.create(model=setup.model, input="x", previous_response_id=created.id)
    assert setup.client.responses.retrieve(created.id).id == created.id  # still there for its owner


def test_item_references_find_stored_items(gateway: Gateway, fresh_upstream: FakeUpstream) -> None:
    setup = new_setup(gateway, fresh_upstream, "chat")
    setup.fake.behave(content="The capital is Oslo.")
    first = setup.client.responses.create(model=setup.model, input="Capital of Norway?")
    (message,) = first.output
    setup.fake.behave(content=CONTENT)
    follow = setup.client.responses.create(
        model=setup.model,
        input=[
            {"role": "user", "content": "Capital of Norway?"},
            {"type": "item_reference", "id": message.id},
            {"role": "user", "content": "And its population?"},
        ],
    )
    assert follow.output_text == CONTENT
    assert [m["role"] for m in setup.fake.last_request.json["messages"]] == ["user", "assistant", "user"]
    assert setup.fake.last_request.json["messages"][1]["content"] == "The capital is Oslo."
    with pytest.raises(openai.NotFoundError):
        setup.client.responses.create(model=setup.model, input=[{"type": "item_reference", "id": "msg_nope"}])


def test_store_false_keeps_nothing(setup: Setup) -> None:
    created = setup.client.responses.create(model=setup.model, input="Forget this.", store=False)
    with pytest.raises(openai.NotFoundError):
        setup.client.responses.retrieve(created.id)


def test_a_follow_up_goes_to_the_channel_that_made_the_response(gateway: Gateway) -> None:
    maker, other = FakeUpstream("maker").start(), FakeUpstream("other").start()
    try:
        model = "m-" + secrets.token_hex(4)
        made_by = gateway.channel(maker, [model], priority=10)
        gateway.channel(other, [model], priority=5)
        gateway.price(model)
        client = gateway.client(gateway.key(gateway.user(10)))
        first = client.responses.create(model=model, input="Hi.")
        gateway.ok("PATCH", f"/channels/{made_by['id']}", {"priority": 0})  # the other one comes first now
        second = client.responses.create(model=model, input="Again.", previous_response_id=first.id)
        assert second.output_text == CONTENT
        assert maker.last_request.json["previous_response_id"] == first.id
        assert not [r for r in other.requests if r.path.startswith("/v1/responses")]
        assert client.responses.retrieve(first.id).id == first.id and maker.last_request.method == "GET"
    finally:
        maker.stop()
        other.stop()


def test_a_converted_conversation_continues_on_a_native_channel(gateway: Gateway) -> None:
    chat, native = FakeUpstream("chat").start(), FakeUpstream("native").start()
    try:
        model = "m-" + secrets.token_hex(4)
        converting = make_channel(gateway, chat, "chat", [model], priority=10)
        make_channel(gateway, native, "native", [model], priority=5)
        gateway.price(model)
        client = gateway.client(gateway.key(gateway.user(10)))
        first = client.responses.create(model=model, input="My name is Ada.")
        assert chat.last_request.path == "/v1/chat/completions"
        gateway.ok("PATCH", f"/channels/{converting['id']}", {"status": "disabled"})
        second = client.responses.create(model=model, input="Who am I?", previous_response_id=first.id)
        assert second.output_text == CONTENT
        sent = native.last_request.json
        assert "previous_response_id" not in sent
        texts = [
            i["content"] if isinstance(i["content"], str) else i["content"][0]["text"] for i in sent["input"]
        ]
        assert [(i["role"], text) for i, text in zip(sent["input"], texts, strict=True)] == [
            ("user", "My name is Ada."),
            ("assistant", CONTENT),
            ("user", "Who am I?"),
        ]
    finally:
        chat.stop()
        native.stop()


def test_expired_responses_are_gone(tmp_path: Path, fresh_upstream: FakeUpstream) -> None:
    gateway = start_gateway(
        tmp_path, database_url_for("sqlite", tmp_path), RESPONSES_RETENTION_DAYS="0.00002"
    )
    try:
        setup = new_setup(gateway, fresh_upstream, "chat")
        created = setup.client.responses.create(model=setup.model, input="Short-lived.")
        time.sleep(2.0)  # 0.00002 days is 1.7 s
        with pytest.raises(openai.NotFoundError):
            setup.client.responses.retrieve(created.id)
    finally:
        stop_gateway(gateway)


# -- compaction ------------------------------------------------------------------------------------
def test_compact_then_continue_from_the_compaction(setup: Setup) -> None:
    conversation = [
        {"role": "user", "content": "Tell me about cats."},
        {"role": "assistant", "content": "Cats purr and sleep a lot."},
    ]
    compacted = setup.client.responses.compact(model=setup.model, input=conversation)
    assert compacted.object == "response.compaction"
    assert [item.type for item in compacted.output][-1] == "compaction"
    kept = [item for item in compacted.output if item.type == "message"]
    assert [item.role for item in kept] == ["user"] and compacted.usage.total_tokens > 0
    items = [item.model_dump(exclude_none=True, warnings=False) for item in compacted.output]
    follow = setup.client.responses.create(
        model=setup.model, input=[*items, {"role": "user", "content": "And dogs?"}]
    )
    assert follow.output_text == CONTENT
    sent = sent_text(setup)
    if setup.native:
        assert setup.fake.last_request.json["input"][-2]["type"] == "compaction"
    else:
        assert "Cats purr" not in sent and SUMMARY_INTRO.strip() in sent.replace("\\n", "\n")


@pytest.mark.parametrize("route", ["chat", "anthropic"])
def test_a_forged_or_foreign_compaction_item_is_refused(
    route: str, gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    setup = new_setup(gateway, fresh_upstream, route)
    compacted = setup.client.responses.compact(model=setup.model, input="Remember the word walnut.")
    item = compacted.output[-1].model_dump(exclude_none=True, warnings=False)
    payload, _, mac = item["encrypted_content"].partition(".")[2].partition(".")
    forged = {**item, "encrypted_content": "rhc1." + payload[::-1] + "." + mac}
    with pytest.raises(openai.BadRequestError):
        setup.client.responses.create(model=setup.model, input=[forged])
    stranger = setup.gateway.client(setup.gateway.key(setup.gateway.user(10)))
    with pytest.raises(openai.BadRequestError):
        stranger.responses.create(model=setup.model, input=[item])
    assert setup.client.responses.create(model=setup.model, input=[item]).output_text.startswith(CONTENT)


# -- input_tokens ------------------------------------------------------------------------------------
def test_input_tokens_are_counted_free(setup: Setup) -> None:
    counted = setup.client.responses.input_tokens.count(
        model=setup.model, input="Count these five words please"
    )
    if setup.native:
        assert counted.input_tokens == fake_responses.input_tokens({"input": "Count these five words please"})
        assert setup.fake.last_request.path == "/v1/responses/input_tokens"
    else:
        assert 4 <= counted.input_tokens <= 10
    assert setup.gateway.balance(setup.user) == 10_000_000


# -- errors -------------------------------------------------------------------------------------------
def test_gateway_errors_are_the_sdks_typed_exceptions(setup: Setup) -> None:
    with pytest.raises(openai.NotFoundError):
        setup.client.responses.create(model="no-such-model", input="x")
    with pytest.raises(openai.AuthenticationError):
        setup.gateway.client("sk-wrong").responses.create(model=setup.model, input="x")
    broke = setup.gateway.client(setup.gateway.key(setup.gateway.user(0)))
    with pytest.raises(openai.APIStatusError) as caught:
        broke.responses.create(model=setup.model, input="x")
    assert caught.value.status_code == 402


@pytest.mark.parametrize("route", ["native", "chat"])
def test_an_error_mid_stream_is_an_error_event(
    route: str, gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    setup = new_setup(gateway, fresh_upstream, route)
    error = {"code": "server_error", "message": "The model broke down."}
    setup.fake.behave(
        error_event=error if route == "native" else {"error": {**error, "type": "server_error"}}
    )
    stream = setup.client.responses.create(model=setup.model, input="hi", stream=True)
    events = list(stream)
    assert events[-1].type == "error" and "broke down" in events[-1].message
    assert not any(event.type == "response.completed" for event in events)
    assert setup.gateway.logs_of(setup.user, 1)[0]["status"] == (200 if route == "native" else 502)


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_without_usage_is_estimated(
    stream: bool, gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    setup = new_setup(gateway, fresh_upstream, "native")
    setup.fake.behave(no_usage=True)
    if stream:
        events = setup.client.responses.create(model=setup.model, input="hi", stream=True)
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == CONTENT
    else:
        assert setup.client.responses.create(model=setup.model, input="hi").output_text == CONTENT
    row = setup.gateway.logs_of(setup.user, 1)[0]
    assert row["usage_source"] == "estimated" and row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["cost_micro_usd"] > 0


@pytest.mark.parametrize("route", ["native", "chat"])
def test_a_cut_stream_ends_with_an_error_event(
    route: str, gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    setup = new_setup(gateway, fresh_upstream, route)
    setup.fake.behave(chunks=4, cut_after_chunks=2)
    events = list(setup.client.responses.create(model=setup.model, input="hi", stream=True))
    assert events[-1].type == "error" and events[-1].code == "upstream_stream_cut"
    assert events[-1].sequence_number == events[-2].sequence_number + 1
    row = setup.gateway.logs_of(setup.user, 1)[0]
    assert row["status"] == 502 and row["completion_tokens"] > 0


# -- Codex CLI's recorded requests ---------------------------------------------------------------------
class ToolChat(ThreadingHTTPServer):
    """A chat completions upstream that calls the first tool when the last user message asks to read a file,
    and else answers `Done.`, streamed with usage; it records what it got."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ToolChatHandler)
        self.requests: list[dict[str, Any]] = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


CODEX_JS = 'const r = await tools.exec_command({cmd: "cat hello.txt"});\ntext(r);\n'


class _ToolChatHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ToolChat

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        last = body["messages"][-1]
        delta: dict[str, Any] = {"content": "Done."}
        finish = "stop"
        if body.get("tools") and last["role"] == "user" and "Read the file" in json.dumps(last["content"]):
            function = body["tools"][0]["function"]
            required = function["parameters"].get("required") or []
            arguments = (
                {"input": CODEX_JS} if required == ["input"] else {p: "cat hello.txt" for p in required}
            )
            call = {"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": function["name"], "arguments": json.dumps(arguments)}}  # fmt: skip
            delta, finish = {"tool_calls": [call]}, "tool_calls"
        chunks = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", **delta}, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
            {"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}},
        ]
        data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def codex_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CODEX.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("route", "upstream_model"), [("anthropic", "claude-x"), ("gemini", "gemini-3-flash")]
)
def test_codex_requests_replayed_to_anthropic_and_gemini(
    route: str, upstream_model: str, gateway: Gateway, fresh_upstream: FakeUpstream
) -> None:
    """Codex's recorded turns (the tool turns echo calls another upstream made, without signatures) make
    requests these upstreams take, and a valid event sequence back."""
    models = sorted({r["body"]["model"] for r in codex_records()})
    make_channel(gateway, fresh_upstream, route, models, model_mapping={m: upstream_model for m in models})
    for model in models:
        gateway.price(model)
    key = gateway.key(gateway.user(10))["key"]
    for record in codex_records():
        reply = http(
            "POST",
            gateway.v1 + "/responses",
            headers={"authorization": "Bearer " + key, "content-type": "application/json"},
            raw=json.dumps(record["body"]).encode(),
        )
        assert reply.status == 200, (record["scenario"], record["seq"], reply.raw[:500])
        final = accumulate(sse_events(reply.raw))
        assert upstream_model in fresh_upstream.last_request.path + json.dumps(
            fresh_upstream.last_request.json
        )
        assert final.status == "completed" and final.output


def test_codex_requests_replayed_to_a_chat_channel(gateway: Gateway) -> None:
    """Each recorded Codex request, as its bytes, to a channel that converts to chat (the model mapped): a
    valid event sequence the SDK accumulates; the tool turns' calls come back as Codex declared them."""
    stub = ToolChat()
    try:
        models = sorted({r["body"]["model"] for r in codex_records()})
        gateway.channel(
            stub,
            models,
            type="deepseek",
            base_url=stub.base_url,
            model_mapping={m: "stub-chat" for m in models},
        )  # type: ignore[arg-type]
        for model in models:
            gateway.price(model)
        key = gateway.key(gateway.user(10))["key"]
        for record in codex_records():
            headers = {
                k: v
                for k, v in record["headers"].items()
                if k not in ("authorization", "content-length", "host")
            }
            reply = http(
                "POST",
                gateway.v1 + "/responses",
                headers={**headers, "authorization": "Bearer " + key, "content-type": "application/json"},
                raw=json.dumps(record["body"]).encode(),
            )
            assert reply.status == 200, (record["scenario"], reply.raw[:300])
            final = accumulate(sse_events(reply.raw))
            assert stub.requests[-1]["model"] == "stub-chat"
            answer = record["answer"]
            if "tool_call" not in answer:
                assert final.output_text == "Done." and final.usage.input_tokens == 100
                continue
            (call,) = [item for item in final.output if item.type != "reasoning"]
            if answer["tool_call"] == "exec":
                assert call.type == "custom_tool_call" and call.name == "exec" and call.input == CODEX_JS
                assert call.namespace == "functions"
            else:
                assert call.type == "function_call" and call.name == answer["tool_call"]
                assert json.loads(call.arguments) == {"cmd": "cat hello.txt"}
    finally:
        stub.shutdown()
        stub.server_close()
