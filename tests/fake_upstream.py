"""Fake OpenAI-protocol upstream for the gateway's test suite.

Owns one thing: an HTTP server on 127.0.0.1 that answers like api.openai.com (wire format per
/work/shared/api-contracts.md sections 1-3), records every request it receives, and misbehaves on
demand (error statuses, stalls, cut streams, missing usage). The gateway under test reaches it over real
HTTP/1.1 keep-alive, so everything here is bytes on a socket: `Content-Length` bodies for JSON answers,
`Transfer-Encoding: chunked` with one SSE event per chunk for streams.

Standard library only. Typical use::

    fake = FakeUpstream().start()
    fake.behave(status=429, fail_times=1)      # first request 429 + Retry-After: 1, then normal
    ...                                         # point a channel at fake.base_url
    assert fake.requests[-1].json["model"] == "gpt-4o-mini"
    fake.stop()

Token counts are deterministic so tests can compute expected usage and cost:
chat prompt = sum over messages of (words in the text + 3), at least 1 (`chat_prompt_tokens`);
completions prompt = words in the prompt(s) + 1 (`completion_prompt_tokens`);
completion = words in the assistant content (`count_words`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import select
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

DEFAULT_CONTENT = "Hello from the fake upstream."
# a 1 x 1 PNG, what the fake's image models draw; and the output tokens gpt-image-1 reports for one
# low-quality 1024 x 1024 image
FAKE_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
IMAGE_TOKENS = 272
DEFAULT_EMBEDDING_DIMENSIONS = 8
MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "omni-moderation-latest",
    "gpt-image-1",
    "dall-e-3",
)
_MODEL_CREATED = 1715367049

# The 13 moderation categories of omni-moderation (openai-python types/moderation.py), with the input
# types each one is evaluated on for image input; text input is evaluated on every category.
_MODERATION_IMAGE_CATEGORIES = frozenset(
    ["self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence", "violence/graphic"]
)
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)  # fmt: skip

_KILL = re.compile(r"\bkill", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------
# Public data


@dataclass
class RecordedRequest:
    """One request as received. `json` is the parsed body or None (no body, or not valid JSON)."""

    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]  # names lowercased; repeated headers joined with ", "
    json: Any
    raw: bytes
    status: int | None = None  # status answered (None until the headers were sent)
    client_disconnected: bool = False  # the client went away while this request's stream was running
    # every usage object the answer carried, in order: `usage` (OpenAI, Anthropic, and the Responses API's
    # `response.usage`) or `usageMetadata` (Gemini), as sent
    usages: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def reported_usages(payload: Any) -> list[dict[str, Any]]:
    """The usage objects inside one answer body or stream event."""
    if isinstance(payload, list):
        return [u for item in payload for u in reported_usages(item)]
    if not isinstance(payload, dict):
        return []
    found = [payload[k] for k in ("usage", "usageMetadata") if isinstance(payload.get(k), dict)]
    for inner in ("message", "response"):  # Anthropic's message_start, the Responses API's lifecycle events
        found += reported_usages(payload.get(inner)) if isinstance(payload.get(inner), dict) else []
    return found


def _note_usages(rec: RecordedRequest | None, data: bytes) -> None:
    """Read the usage objects out of bytes sent: a JSON body, or SSE events."""
    if rec is None:
        return
    texts = [line[5:].strip() for line in data.split(b"\n") if line.startswith(b"data:")] or [data]
    for text in texts:
        try:
            rec.usages += reported_usages(json.loads(text))
        except ValueError:
            continue


@dataclass
class Behaviour:
    """Knobs set through `FakeUpstream.behave`; see that method."""

    status: int | None = None
    error_body: dict[str, Any] | None = None
    quota_exhausted: bool = False
    fail_times: int | None = None
    stall_s: float = 0.0
    cut_after_chunks: int | None = None
    chunks: int = 5
    chunk_delay_s: float = 0.0
    no_usage: bool = False
    cached_tokens: int = 0
    content: str = DEFAULT_CONTENT
    require_key: str | None = None
    retry_after: str | None = "1"
    fail_key: str | None = None
    strict_models: bool = False
    error_event: dict[str, Any] | None = None


_KNOBS = {f.name for f in dataclasses.fields(Behaviour)}
_FAILURE_KNOBS = {"status", "error_body", "quota_exhausted", "fail_times"}


# --------------------------------------------------------------------------------------------------
# Deterministic token counts


def count_words(text: str) -> int:
    """Completion tokens for `text`: its whitespace-separated words."""
    return len(text.split())


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts; only text parts count
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def chat_prompt_tokens(messages: Any) -> int:
    """Prompt tokens of a chat request: per message, words of its text + 3; at least 1."""
    if not isinstance(messages, list):
        return 1
    total = sum(count_words(_message_text(m.get("content"))) + 3 for m in messages if isinstance(m, dict))
    return max(1, total)


def _input_tokens(item: Any) -> int:
    if isinstance(item, str):
        return count_words(item)
    if isinstance(item, list):
        if all(isinstance(x, int) for x in item):  # one token array
            return len(item)
        return sum(_input_tokens(x) for x in item)
    return 0


TOOL_TRIGGER = "use a tool"
READ_FILE = re.compile(r"Read the file (\S+?)\.? and")


def chat_answer(body: dict[str, Any], content: str) -> tuple[dict[str, Any] | None, str, str]:
    """How the fake answers a chat turn: (a tool call or None, the text, the reasoning text).

    A tool call of the first tool (or the one `tool_choice` names) when the last message is the user's and
    `tool_choice` is `required` or names a function, or the user's text contains "use a tool"; its
    arguments fill each required string property with "fake <name>", and a `file_path` with the file a
    "Read the file <path> and ..." prompt names. After a tool result: `<content> The tool returned: <it>`.
    Reasoning text ("Let me think about it.") when the request sets `reasoning_effort`."""
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    reasoning = "Let me think about it." if body.get("reasoning_effort") not in (None, "none") else ""
    last = next((m for m in reversed(messages) if m.get("role") in ("user", "tool", "assistant")), {})
    if last.get("role") == "tool":
        return None, f"{content} The tool returned: {_message_text(last.get('content'))}", reasoning
    tools = [
        t["function"]
        for t in body.get("tools") or ()
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    choice = body.get("tool_choice")
    text = _message_text(last.get("content")) if last.get("role") == "user" else ""
    named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if not tools or choice == "none" or not (choice == "required" or named or TOOL_TRIGGER in text.lower()):
        return None, content, reasoning
    found = READ_FILE.search(text)
    reads = (
        [t for t in tools if str(t.get("name")).lower() in ("read", "read_file")]
        if found and not named
        else []
    )
    tool = reads[0] if reads else next((t for t in tools if t.get("name") == named), tools[0])
    schema = tool.get("parameters") if isinstance(tool.get("parameters"), dict) else {}
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    arguments = {
        name: f"fake {name}"
        for name in schema.get("required") or ()
        if (properties.get(name) or {}).get("type", "string") == "string"
    }
    if found and "file_path" in properties:
        arguments["file_path"] = found.group(1)
    call = {"id": _new_id("call_"), "type": "function",
            "function": {"name": tool.get("name", ""), "arguments": json.dumps(arguments)}}  # fmt: skip
    return call, content, reasoning


def completion_prompt_tokens(prompt: Any) -> int:
    """Prompt tokens of a legacy completion: words (or token ids) of the prompt(s) + 1."""
    return _input_tokens(prompt) + 1


def _usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def split_content(content: str, pieces: int) -> list[str]:
    """Split `content` into `pieces` roughly equal parts; every character exactly once, in order."""
    n = len(content)
    return [content[n * i // pieces : n * (i + 1) // pieces] for i in range(pieces)]


# --------------------------------------------------------------------------------------------------
# Error bodies (api-contracts.md section 2)


def error_object(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """An OpenAI error body: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_QUOTA_ERROR = error_object(
    "You exceeded your current quota, please check your plan and billing details. For more information on "
    "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
    "insufficient_quota",
    "insufficient_quota",
)


def _invalid_key_error(auth_header: str) -> dict[str, Any]:
    key = auth_header[7:] if auth_header.lower().startswith("bearer ") else auth_header
    if not key:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    else:
        masked = key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "*" * len(key)
        message = (
            f"Incorrect API key provided: {masked}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
    return error_object(message, "invalid_request_error", "invalid_api_key")


def default_error_body(status: int, model: str = "gpt-4o-mini") -> dict[str, Any]:
    """The body api.openai.com sends with `status` (as far as documented)."""
    if status == 400:
        return error_object("Invalid request.", "invalid_request_error")
    if status == 401:
        return _invalid_key_error("Bearer sk-fake-wrong-key")
    if status == 403:
        return error_object(
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        )
    if status == 404:
        return error_object(
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )
    if status == 429:
        return error_object(
            f"Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
            "Limit 3, Used 3, Requested 1. Please try again in 1s.",
            "requests",
            "rate_limit_exceeded",
        )
    if status == 503:
        return error_object("The engine is currently overloaded, please try again later.", "server_error")
    if status >= 500:
        return error_object(
            "The server had an error while processing your request. Sorry about that!", "server_error"
        )
    return error_object(f"Request failed with status {status}.", "invalid_request_error")


REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
COMPLETION_MARKERS = ("-instruct", "davinci", "babbage")


def model_refusal(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """What api.openai.com answers when `body["model"]` does not serve `path`, with its own messages."""
    model = str(body.get("model") or "").lower()
    if path == "/v1/chat/completions":
        if "embedding" in model or "moderation" in model or any(m in model for m in COMPLETION_MARKERS):
            message = (
                "This is not a chat model and thus not supported in the v1/chat/completions endpoint. "
                "Did you mean to use v1/completions?"
            )
            return 404, error_object(message, "invalid_request_error", None, "model")
        if model.startswith(REASONING_PREFIXES) and "max_tokens" in body:
            message = (
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead."
            )
            return 400, error_object(message, "invalid_request_error", "unsupported_parameter", "max_tokens")
    if path == "/v1/completions" and not any(m in model for m in COMPLETION_MARKERS):
        message = (
            "This is a chat model and not supported in the v1/completions endpoint. "
            "Did you mean to use v1/chat/completions?"
        )
        return 404, error_object(message, "invalid_request_error", None, "model")
    return None


def _bad_json_error() -> dict[str, Any]:
    return error_object(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
        "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
        "valid JSON.)",
        "invalid_request_error",
    )


def _missing_param(name: str) -> dict[str, Any]:
    return error_object(
        f"Missing required parameter: '{name}'.", "invalid_request_error", "missing_required_parameter", name
    )


# --------------------------------------------------------------------------------------------------
# Response builders (pure functions of the request body and the behaviour)


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _embedding(item: Any, dimensions: int) -> list[float]:
    """A unit vector derived from the input, rounded to float32 so float and base64 answers agree."""
    seed = json.dumps(item).encode()
    raw = [
        int.from_bytes(hashlib.sha256(seed + b":%d" % i).digest()[:4], "little") / 2**31 - 1.0
        for i in range(dimensions)
    ]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(x / norm for x in raw))))


def _embedding_inputs(value: Any) -> list[Any] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(x, int) for x in value):
            return [value]
        if all(
            isinstance(x, str) or (isinstance(x, list) and all(isinstance(t, int) for t in x)) for x in value
        ):
            return list(value)
    return None


def _moderation_result(text: str, has_image: bool) -> dict[str, Any]:
    flagged = bool(_KILL.search(text))
    categories = {c: flagged and c == "violence" for c in MODERATION_CATEGORIES}
    scores = {c: (0.91 if categories[c] else 0.00001) for c in MODERATION_CATEGORIES}
    applied = {
        c: ["text", "image"] if has_image and c in _MODERATION_IMAGE_CATEGORIES else ["text"]
        for c in MODERATION_CATEGORIES
    }
    return {
        "flagged": flagged,
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": applied,
    }


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _MODEL_CREATED, "owned_by": "system"}


# --------------------------------------------------------------------------------------------------
# HTTP server


def _protocol_fake(method: str, path: str) -> Any:
    """The module that fakes the protocol `path` belongs to (Anthropic, Gemini, Responses), or None for the
    OpenAI endpoints served here. Each such module has `owns(method, path)`, `handle(handler, path, body)`
    and `failure(handler, status, body)`, and writes through the handler's `_send_json`, `start_stream`,
    `write_chunk`, `end_stream` and `cut_stream`, reading the knobs from `handler.beh`."""
    from tests import fake_anthropic, fake_gemini, fake_responses

    for module in (fake_anthropic, fake_gemini, fake_responses):
        if module.owns(method, path):
            return module
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeUpstream

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can hang in sandboxes.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # client disconnects are expected; the handler already swallows them


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai/1.0"
    disable_nagle_algorithm = True  # each SSE event must leave at once
    server: _Server
    rec: RecordedRequest  # the request being answered
    beh: Behaviour  # the behaviour snapshot it is answered with

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # ConnectionResetError, BrokenPipeError, socket shut down by stop()
            pass

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    # -- request ------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        fake = self.server.fake
        try:
            raw = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        url = urlsplit(self.path)
        rec = RecordedRequest(self.command, url.path, url.query, headers, body, raw)
        fake._record(rec)
        credential = headers.get("authorization") or ""
        if not credential and (
            headers.get("x-api-key") or headers.get("x-goog-api-key") or headers.get("api-key")
        ):
            credential = "Bearer " + (
                headers.get("x-api-key") or headers.get("x-goog-api-key") or headers["api-key"]
            )
        beh, outcome = fake._decide(credential)
        self.rec, self.beh = rec, beh
        protocol = _protocol_fake(self.command, url.path)
        try:
            if beh.stall_s > 0 and fake._stopping.wait(beh.stall_s):
                self.close_connection = True  # stopped while stalling: hang up without an answer
                return
            if outcome == "auth" and protocol is not None:
                protocol.failure(self, 401, body)
            elif outcome == "auth":
                self._send_json(401, _invalid_key_error(credential))
            elif outcome == "fail" and protocol is not None:
                protocol.failure(
                    self, 429 if beh.quota_exhausted and beh.status is None else (beh.status or 500), body
                )
            elif outcome == "fail":
                self._send_failure(body)
            elif protocol is not None:
                protocol.handle(self, url.path, body)
            else:
                self._route(url.path, raw, body)
        except OSError:  # the client went away before or while we answered
            self.close_connection = True

    def _send_failure(self, body: Any) -> None:
        beh = self.beh
        status = 429 if beh.quota_exhausted and beh.status is None else (beh.status or 500)
        extra: dict[str, str] = {}
        if beh.error_body is not None:
            payload = beh.error_body
        elif beh.quota_exhausted:
            payload = _QUOTA_ERROR
        else:
            model = (
                body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None
            )
            payload = default_error_body(status, model or "gpt-4o-mini")
        if status == 429 and not beh.quota_exhausted and beh.retry_after is not None:
            extra["Retry-After"] = beh.retry_after
        self._send_json(status, payload, extra)

    def _route(self, path: str, raw: bytes, body: Any) -> None:
        if path.startswith("/openai/deployments/"):  # Azure OpenAI: /openai/deployments/<name>/chat/...
            deployment, _, rest = path[len("/openai/deployments/") :].partition("/")
            if "api-version=" not in self.rec.query or not deployment:
                self._send_json(404, error_object("Resource not found", "invalid_request_error"))
                return
            path = "/v1/" + rest
        post_routes: dict[str, Callable[[dict[str, Any]], None]] = {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completions,
            "/v1/embeddings": self._embeddings,
            "/v1/moderations": self._moderations,
            "/v1/images/generations": self._images,
        }
        if self.command == "POST" and path in post_routes:
            if not isinstance(body, dict):
                self._send_json(400, _bad_json_error())
            elif not isinstance(body.get("model"), str) and path not in (
                "/v1/moderations",
                "/v1/images/generations",
            ):
                self._send_json(
                    400, error_object("you must provide a model parameter", "invalid_request_error")
                )
            elif self.beh.strict_models and (refusal := model_refusal(path, body)) is not None:
                self._send_json(*refusal)
            else:
                post_routes[path](body)
        elif self.command == "GET" and path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [_model_object(m) for m in MODELS]})
        elif self.command == "GET" and path.startswith("/v1/models/"):
            model_id = unquote(path[len("/v1/models/") :])
            if model_id in MODELS:
                self._send_json(200, _model_object(model_id))
            else:
                self._send_json(404, default_error_body(404, model_id))
        else:
            self._send_json(
                404, error_object(f"Invalid URL ({self.command} {path})", "invalid_request_error")
            )

    # -- endpoints ----------------------------------------------------------------------------------

    def _usage_for(self, prompt_tokens: int) -> dict[str, Any]:
        return _usage(prompt_tokens, count_words(self.beh.content), self.beh.cached_tokens)

    def _chat(self, body: dict[str, Any]) -> None:
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            self._send_json(400, _missing_param("messages"))
            return
        beh, model, created, cid = self.beh, body["model"], int(time.time()), _new_id("chatcmpl-")
        usage = self._usage_for(chat_prompt_tokens(body["messages"]))
        tool_call, content, reasoning = chat_answer(body, beh.content)
        if tool_call is not None or content != beh.content or reasoning:
            self._chat_turn(body, cid, created, tool_call, content, reasoning)
            return
        if body.get("stream"):
            base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "system_fingerprint": "fp_fake"}  # fmt: skip

            def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
                return {
                    **base,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                }

            first = chunk({"role": "assistant", "content": "", "refusal": None}, None)
            pieces = [chunk({"content": p}, None) for p in split_content(beh.content, beh.chunks)]
            self._stream(body, first, pieces, chunk({}, "stop"), {**base, "choices": []}, usage)
            return
        message = {"role": "assistant", "content": beh.content, "refusal": None, "annotations": []}
        answer: dict[str, Any] = {
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
            "service_tier": "default", "system_fingerprint": "fp_fake",
        }  # fmt: skip
        if not beh.no_usage:
            answer["usage"] = usage
        self._send_json(200, answer)

    def _chat_turn(
        self,
        body: dict[str, Any],
        cid: str,
        created: int,
        tool_call: dict[str, Any] | None,
        content: str,
        reasoning: str,
    ) -> None:
        """A chat answer with a tool call, a tool result quoted, or reasoning text (see `chat_answer`)."""
        beh, model = self.beh, body["model"]
        arguments = tool_call["function"]["arguments"] if tool_call else ""
        completion = count_words(arguments) if tool_call else count_words(content)
        usage = _usage(
            chat_prompt_tokens(body["messages"]), completion + count_words(reasoning), beh.cached_tokens
        )
        usage["completion_tokens_details"] = {"reasoning_tokens": count_words(reasoning)}
        finish = "tool_calls" if tool_call else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if tool_call else content}
            if reasoning:
                message["reasoning_content"] = reasoning
            if tool_call:
                message["tool_calls"] = [tool_call]
            answer = {"id": cid, "object": "chat.completion", "created": created, "model": model,
                      "choices": [{"index": 0, "message": message, "finish_reason": finish}]}  # fmt: skip
            if not beh.no_usage:
                answer["usage"] = usage
            self._send_json(200, answer)
            return
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        pieces = [chunk({"reasoning_content": p}) for p in split_content(reasoning, 2)] if reasoning else []
        if tool_call:
            half = len(arguments) // 2
            head = {"index": 0, "id": tool_call["id"], "type": "function",
                    "function": {"name": tool_call["function"]["name"], "arguments": ""}}  # fmt: skip
            pieces.append(chunk({"tool_calls": [head]}))
            for part in (arguments[:half], arguments[half:]):
                pieces.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
        else:
            pieces += [chunk({"content": p}) for p in split_content(content, beh.chunks)]
        first = chunk({"role": "assistant", "content": ""})
        self._stream(body, first, pieces, chunk({}, finish), {**base, "choices": []}, usage)

    def _completions(self, body: dict[str, Any]) -> None:
        beh, model, created, cid = self.beh, body["model"], int(time.time()), _new_id("cmpl-")
        usage = self._usage_for(completion_prompt_tokens(body.get("prompt", "")))
        base = {"id": cid, "object": "text_completion", "created": created, "model": model}

        def choice(text: str, finish: str | None) -> dict[str, Any]:
            return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

        if body.get("stream"):
            pieces = [{**base, "choices": [choice(p, None)]} for p in split_content(beh.content, beh.chunks)]
            last = {**base, "choices": [choice("", "stop")]}
            self._stream(body, None, pieces, last, {**base, "choices": []}, usage)
            return
        answer: dict[str, Any] = {
            **base,
            "choices": [choice(beh.content, "stop")],
            "system_fingerprint": "fp_fake",
        }
        if not beh.no_usage:
            answer["usage"] = usage
        self._send_json(200, answer)

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = _embedding_inputs(body.get("input"))
        if inputs is None:
            problem = _missing_param("input")
            if "input" in body:
                message = "'input' must be a non-empty string, array of strings, or array of token arrays."
                problem = error_object(message, "invalid_request_error", None, "input")
            self._send_json(400, problem)
            return
        dims = body.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
        if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
            self._send_json(
                400, error_object("Invalid 'dimensions'.", "invalid_request_error", None, "dimensions")
            )
            return
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(inputs):
            vector = _embedding(item, dims)
            value: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": value})
        answer: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if not self.beh.no_usage:
            tokens = sum(_input_tokens(item) for item in inputs)
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._send_json(200, answer)

    def _moderations(self, body: dict[str, Any]) -> None:
        value = body.get("input")
        if isinstance(value, str):
            results = [_moderation_result(value, False)]
        elif isinstance(value, list) and value and all(isinstance(x, str) for x in value):
            results = [_moderation_result(x, False) for x in value]
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            # multimodal parts are judged together, as one input
            text = " ".join(str(p.get("text", "")) for p in value if p.get("type") == "text")
            results = [_moderation_result(text, any(p.get("type") == "image_url" for p in value))]
        else:
            self._send_json(400, _missing_param("input"))
            return
        model = body.get("model") if isinstance(body.get("model"), str) else "omni-moderation-latest"
        self._send_json(200, {"id": _new_id("modr-"), "model": model, "results": results})

    def _images(self, body: dict[str, Any]) -> None:
        """OpenAI's image generation: gpt-image models answer base64 PNGs and report token usage; the
        dall-e ones answer URLs (or base64 with `response_format`) and report none."""
        prompt, n = body.get("prompt"), body.get("n", 1)
        if not isinstance(prompt, str) or not prompt:
            self._send_json(400, _missing_param("prompt"))
            return
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            self._send_json(400, error_object("Invalid 'n'.", "invalid_request_error", None, "n"))
            return
        model = body.get("model") if isinstance(body.get("model"), str) else "dall-e-2"
        token_priced = model.startswith("gpt-image")
        if body.get("stream") is True:
            if not token_priced:
                problem = error_object(f"Streaming is not supported for {model}.", "invalid_request_error")
                self._send_json(400, problem)
            else:
                self._image_stream(prompt, n, body.get("partial_images") or 0)
            return
        data: list[dict[str, Any]] = []
        for _ in range(n):
            if token_priced or body.get("response_format") == "b64_json":
                data.append({"b64_json": FAKE_PNG_B64})
            else:
                data.append({"url": f"https://images.fake-upstream.test/{_new_id('img-')}.png"})
            if model.startswith("dall-e-3"):
                data[-1]["revised_prompt"] = prompt
        answer: dict[str, Any] = {"created": int(time.time()), "data": data}
        if token_priced and not self.beh.no_usage:
            words = count_words(prompt)
            answer["usage"] = {
                "input_tokens": words,
                "output_tokens": IMAGE_TOKENS * n,
                "total_tokens": words + IMAGE_TOKENS * n,
                "input_tokens_details": {"text_tokens": words, "image_tokens": 0},
            }
        self._send_json(200, answer)

    def _image_stream(self, prompt: str, n: int, partials: int) -> None:
        """gpt-image's streamed generation: `partials` previews, then a completed event with its usage, per
        image; named events, no `[DONE]`. `cut_after_chunks` drops the connection after that many events."""
        self.start_stream()
        words = count_words(prompt)
        shared = {"background": "opaque", "created_at": int(time.time()), "output_format": "png"}
        shared |= {"quality": "low", "size": "1024x1024"}
        events: list[dict[str, Any]] = []
        for _ in range(n):
            for index in range(partials):
                events.append({"type": "image_generation.partial_image", "b64_json": FAKE_PNG_B64, **shared})
                events[-1]["partial_image_index"] = index
            events.append({"type": "image_generation.completed", "b64_json": FAKE_PNG_B64, **shared})
            if not self.beh.no_usage:
                events[-1]["usage"] = {
                    "input_tokens": words,
                    "output_tokens": IMAGE_TOKENS,
                    "total_tokens": words + IMAGE_TOKENS,
                    "input_tokens_details": {"text_tokens": words, "image_tokens": 0},
                }
        for event in events[: self.beh.cut_after_chunks]:
            data = b"event: %s\ndata: %s\n\n" % (event["type"].encode(), json.dumps(event).encode())
            if not self.write_chunk(data):
                return
        if self.beh.cut_after_chunks is not None:
            self._cut()
            return
        self.end_stream()

    # -- writing ------------------------------------------------------------------------------------

    def start_stream(self, content_type: str = "text/event-stream; charset=utf-8") -> None:
        """Send a 200 with chunked transfer; then `write_chunk` each piece and `end_stream`."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self._common_headers()
        self.end_headers()
        self.rec.status = 200

    def write_chunk(self, data: bytes) -> bool:
        """Write `data` as one HTTP chunk; False (the stream is over) if the client left."""
        _note_usages(self.rec, data)
        if self._peer_closed():
            self._client_left()
            return False
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError:
            self._client_left()
            return False
        return True

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.server.fake._stream_finished(self.rec, cut_by_client=False)

    def cut_stream(self) -> None:
        self._cut()

    def _send_json(self, status: int, payload: Any, extra_headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, indent=2, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self._common_headers()
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.rec.status = status
        if status < 400:
            _note_usages(self.rec, data)
        self.wfile.write(data)

    def _common_headers(self) -> None:
        self.send_header("x-request-id", _new_id("req_"))
        self.send_header("openai-processing-ms", "1")
        self.send_header("x-ratelimit-limit-requests", "10000")
        self.send_header("x-ratelimit-remaining-requests", "9999")
        self.send_header("x-ratelimit-reset-requests", "6ms")

    def _stream(
        self,
        body: dict[str, Any],
        first: dict[str, Any] | None,
        pieces: list[dict[str, Any]],
        last: dict[str, Any],
        usage_chunk: dict[str, Any],
        usage: dict[str, Any],
    ) -> None:
        """Send an SSE stream: [first], content pieces, last, [usage chunk], [DONE] (api-contracts.md 1)."""
        beh, fake = self.beh, self.server.fake
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True and not beh.no_usage
        if with_usage:  # with include_usage every chunk but the last carries "usage": null
            for chunk in [first, *pieces, last]:
                if chunk is not None:
                    chunk["usage"] = None
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self._common_headers()
        self.end_headers()
        self.rec.status = 200
        if first is not None and not self._event(first):
            return
        for piece in pieces[: beh.cut_after_chunks]:
            if beh.chunk_delay_s > 0 and fake._stopping.wait(beh.chunk_delay_s):
                self._cut()
                return
            if not self._event(piece):
                return
        if beh.error_event is not None:  # an error event where the stream's end should be, then [DONE]
            for event in [beh.error_event, "[DONE]"]:
                if not self._event(event):
                    return
            self.wfile.write(b"0\r\n\r\n")
            fake._stream_finished(self.rec, cut_by_client=False)
            return
        if beh.cut_after_chunks is not None:  # cut after min(N, chunks) content chunks
            self._cut()
            return
        tail: list[dict[str, Any] | str] = [last, {**usage_chunk, "usage": usage}] if with_usage else [last]
        for event in [*tail, "[DONE]"]:
            if not self._event(event):
                return
        self.wfile.write(b"0\r\n\r\n")
        fake._stream_finished(self.rec, cut_by_client=False)

    def _event(self, event: dict[str, Any] | str) -> bool:
        """Write one `data:` event as its own HTTP chunk; False (the stream is over) if the client left."""
        if self._peer_closed():
            self._client_left()
            return False
        text = (
            event if isinstance(event, str) else json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        )
        data = b"data: " + text.encode() + b"\n\n"
        _note_usages(self.rec, data)
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError:
            self._client_left()
            return False
        return True

    def _peer_closed(self) -> bool:
        """True when the client has closed its end (readable with nothing to read) or reset it."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _client_left(self) -> None:
        self.close_connection = True
        self.server.fake._stream_finished(self.rec, cut_by_client=True)

    def _cut(self) -> None:
        """Drop the connection mid-stream: no [DONE], no terminating zero-length chunk."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------------
# Public API


class FakeUpstream:
    """A fake api.openai.com on a free loopback port. See the module docstring."""

    def __init__(self, name: str = "up") -> None:
        self.name = name
        self.base_url = ""
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self.streams_completed = 0
        self.streams_cut_by_client = 0
        self._behaviour = Behaviour()
        self._failures_sent = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"FakeUpstream({self.name!r}, base_url={self.base_url!r})"

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FakeUpstream:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"{self!r} is already running")
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server, self.port = server, server.server_address[1]
        self.root_url = f"http://127.0.0.1:{self.port}"  # as the anthropic and google-genai SDKs take it
        self.base_url = self.root_url + "/v1"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-upstream-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (including stalled and streaming ones)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset(self) -> None:
        """Forget recorded requests and counters, and go back to the default behaviour."""
        with self._lock:
            self.requests.clear()
            self.streams_completed = self.streams_cut_by_client = 0
            self._behaviour = Behaviour()
            self._failures_sent = 0

    def behave(self, **knobs: Any) -> None:
        """Change behaviour for the following requests; knobs accumulate until `reset()`.

        status (int), error_body (dict): answer every request with this status and an OpenAI error object
            (default body chosen from the status; 429 adds `Retry-After: 1`).
        quota_exhausted (bool): 429 with type and code `insufficient_quota`.
        fail_times (int): only the first N requests fail (status 500 if no status given), then normal answers.
            Setting any failure knob restarts this count.
        stall_s (float): wait this long before sending the response headers.
        cut_after_chunks (int): in a stream, drop the TCP connection after N content chunks (at most
            `chunks`): no finish chunk, no [DONE], no terminating zero-length chunk.
        chunks (int, default 5), chunk_delay_s (float, default 0): content chunks per stream and the wait
            before each of them.
        no_usage (bool): no usage in answers or streams, even when include_usage was asked.
        cached_tokens (int): `prompt_tokens_details.cached_tokens` in usage.
        content (str): the assistant text; streams split it into `chunks` pieces.
        require_key (str): a request without `Authorization: Bearer <it>` gets 401 invalid_api_key.
        retry_after (str or None, default "1"): the `Retry-After` header of a 429 (seconds or an HTTP
            date); None sends none.
        fail_key (str): the failure knobs apply only to requests with `Authorization: Bearer <it>`; others
            are answered normally (one key of a channel rate limited, the others not).
        error_event (dict): in a stream, send this event after the content chunks instead of the finish
            chunk and usage, then [DONE] (as servers report a failure that came up mid-stream).
        strict_models (bool): refuse what api.openai.com refuses per model (`model_refusal`): a chat with an
            embedding or moderation model, a completion with a chat model, `max_tokens` for a reasoning
            model (o1, o3, o4, gpt-5).
        """
        unknown = set(knobs) - _KNOBS
        if unknown:
            raise TypeError(f"unknown behaviour knob(s): {', '.join(sorted(unknown))}")
        if "chunks" in knobs and (not isinstance(knobs["chunks"], int) or knobs["chunks"] < 1):
            raise ValueError("chunks must be an int >= 1")
        with self._lock:
            self._behaviour = dataclasses.replace(self._behaviour, **knobs)
            if _FAILURE_KNOBS & set(knobs):
                self._failures_sent = 0

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            return self.requests[-1]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until `predicate()` holds (re-checked whenever a request arrives or a stream ends)."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def wait_for_stream_cut(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until `count` streams were abandoned by the client; for "the gateway hung up upstream"."""
        return self.wait_for(lambda: self.streams_cut_by_client >= count, timeout)

    # -- called from handler threads ----------------------------------------------------------------

    def _record(self, rec: RecordedRequest) -> None:
        with self._changed:
            self.requests.append(rec)
            self._changed.notify_all()

    def _decide(self, authorization: str) -> tuple[Behaviour, str | None]:
        """Snapshot the behaviour and pick the outcome: "auth" (401), "fail" (failure status) or None."""
        with self._lock:
            beh = self._behaviour
            if beh.require_key is not None and authorization != f"Bearer {beh.require_key}":
                return beh, "auth"
            failing = beh.status is not None or beh.quota_exhausted or beh.fail_times is not None
            if beh.fail_key is not None and authorization != f"Bearer {beh.fail_key}":
                failing = False
            if failing and (beh.fail_times is None or self._failures_sent < beh.fail_times):
                self._failures_sent += 1
                return beh, "fail"
            return beh, None

    def _stream_finished(self, rec: RecordedRequest, cut_by_client: bool) -> None:
        with self._changed:
            if cut_by_client:
                rec.client_disconnected = True
                self.streams_cut_by_client += 1
            else:
                self.streams_completed += 1
            self._changed.notify_all()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
