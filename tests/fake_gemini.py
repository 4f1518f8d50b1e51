"""Fake Gemini upstream endpoints, served by tests.fake_upstream.FakeUpstream (see its `_protocol_fake`).

`POST /v1beta/models/<model>:<action>` (and the same under `/v1/models/`) for `generateContent`,
`streamGenerateContent` (`?alt=sse`: SSE events; without: one JSON array streamed element by element),
`countTokens`, `embedContent` and `batchEmbedContents`, answered as generativelanguage.googleapis.com does
(api-contracts.md section 6), with Google's error bodies.

Deterministic counts, so tests can compute usage and cost:
* prompt = words of every text part (system instruction included) + 2 per content, at least 1
  (`prompt_tokens`); `cachedContentTokenCount` is the `cached_tokens` knob (a part of the prompt);
* candidates = words of the answer text (`count_words`); a function call counts 3;
* thoughts = words of `THOUGHT` when the request enables thinking (a thinkingConfig with includeThoughts, a
  thinkingLevel or a positive thinkingBudget); the thought text itself is sent only with includeThoughts.

Function calls: when the request declares functions and the last user turn's text names one of them, the
answer is a call of it (args: each required property filled by `fake_args`), with no id (as Google's API
sends none) and with `thoughtSignature` `signature_for(name)`. A last user turn holding a function's result
is answered with the text `<content> The tool returned: <response as JSON>`.

Signatures are checked as Google checks them: a model turn's signature that this fake did not make (and
that is not `skip_thought_signature_validator`) is a 400; for Gemini 3 models the first function call of
each model turn after the last user text must carry one.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from tests.fake_upstream import _embedding, count_words, split_content

ACTIONS = ("generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents")
PATH = re.compile(r"^/(?:v1|v1beta)/models/(?P<model>[^/:]+):(?P<action>[A-Za-z]+)$")
THOUGHT = "Thinking about the question first."
SKIP_SIGNATURE = "skip_thought_signature_validator"
FUNCTION_CALL_TOKENS = 3
DEFAULT_DIMENSIONS = 8
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
MESSAGES = {
    403: "Method doesn't allow unregistered callers (callers without established identity).",
    404: "models/{model} is not found for API version v1beta, or is not supported for generateContent.",
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}


def owns(method: str, path: str) -> bool:
    found = PATH.match(path)
    return method == "POST" and found is not None and found["action"] in ACTIONS


def signature_for(function_name: str) -> str:
    return base64.b64encode(f"fake-signature:{function_name}".encode()).decode()


THOUGHT_SIGNATURE = signature_for("thought")


def field(obj: Any, name: str) -> Any:
    """A request field by its JSON name or its proto name (`thinkingConfig`, `thinking_config`): Google's
    parser takes both, and google-genai sends some nested fields in snake case."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), name)) if value is None else value


def _texts(parts: Any) -> list[str]:
    return [p["text"] for p in parts or () if isinstance(p, dict) and isinstance(p.get("text"), str)]


def prompt_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens of a generate (or count) request: words of its text parts + 2 per content; at least 1."""
    system = field(field(body, "systemInstruction"), "parts")
    total = sum(count_words(t) for t in _texts(system))
    for content in body.get("contents") or ():
        total += sum(count_words(t) for t in _texts(content.get("parts"))) + 2
    return max(1, total)


def thinking_enabled(body: dict[str, Any]) -> bool:
    config = field(field(body, "generationConfig"), "thinkingConfig") or {}
    return bool(
        field(config, "includeThoughts")
        or field(config, "thinkingLevel")
        or (field(config, "thinkingBudget") or 0) > 0
    )


def fake_args(schema: Any) -> dict[str, Any]:
    """Arguments for a declared function: each required property, a string as `<name>-value`."""
    schema = schema if isinstance(schema, dict) else {}
    properties = schema.get("properties") or {}
    args: dict[str, Any] = {}
    for prop in schema.get("required") or ():
        kind = str((properties.get(prop) or {}).get("type", "string")).lower()
        args[prop] = 1 if kind in ("integer", "number") else True if kind == "boolean" else f"{prop}-value"
    return args


def _declarations(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for tool in body.get("tools") or () for d in field(tool, "functionDeclarations") or ()]


def _signature_problem(model: str, body: dict[str, Any]) -> str | None:
    contents = body.get("contents") or []
    last_user = max(
        (i for i, c in enumerate(contents) if c.get("role", "user") == "user" and _texts(c.get("parts"))),
        default=-1,
    )
    known = {THOUGHT_SIGNATURE, SKIP_SIGNATURE} | {
        signature_for(d.get("name", "")) for d in _declarations(body)
    }
    for index, content in enumerate(contents):
        if content.get("role") != "model":
            continue
        parts = content.get("parts") or []
        for part in parts:
            signature = field(part, "thoughtSignature")
            if signature is not None and signature not in known:
                return "Thought signature is not valid."
        calls = [p for p in parts if field(p, "functionCall")]
        if (
            model.startswith("gemini-3")
            and index > last_user
            and calls
            and not field(calls[0], "thoughtSignature")
        ):
            name = field(calls[0], "functionCall").get("name")
            return (
                f"Function call `{name}` in the {index + 1}. content block is missing a `thought_signature`. "
                "Learn more: https://ai.google.dev/gemini-api/docs/thought-signatures"
            )
    return None


def _answer_parts(body: dict[str, Any], content: str) -> tuple[list[dict[str, Any]], int]:
    """The answer's parts (without thoughts) and its candidate tokens."""
    contents = body.get("contents") or []
    last = contents[-1] if contents else {}
    results = [field(p, "functionResponse") for p in last.get("parts") or () if field(p, "functionResponse")]
    if results:
        text = f"{content} The tool returned: {json.dumps(results[-1].get('response'))}"
        return [{"text": text}], count_words(text)
    said = " ".join(_texts(last.get("parts")))
    for declaration in _declarations(body):
        if declaration.get("name") and declaration["name"] in said:
            schema = field(declaration, "parametersJsonSchema") or declaration.get("parameters")
            call = {"name": declaration["name"], "args": fake_args(schema)}
            return [
                {"functionCall": call, "thoughtSignature": signature_for(declaration["name"])}
            ], FUNCTION_CALL_TOKENS
    return [{"text": content}], count_words(content)


def _usage(handler: Any, prompt: int, candidates: int, thoughts: int) -> dict[str, Any]:
    usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts,
    }
    if handler.beh.cached_tokens:
        usage["cachedContentTokenCount"] = handler.beh.cached_tokens
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _response(
    model: str, parts: list[dict[str, Any]], finish: str | None, usage: dict | None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    answer: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        answer["usageMetadata"] = usage
    answer.update({"modelVersion": model, "responseId": "fake-response-id"})
    return answer


def handle(handler: Any, path: str, body: Any) -> None:
    found = PATH.match(path)
    assert found is not None
    model, action = found["model"], found["action"]
    if not isinstance(body, dict):
        _error(handler, 400, "Invalid JSON payload received.")
    elif action in ("embedContent", "batchEmbedContents"):
        _embed(handler, action, body)
    elif action == "countTokens":
        request = field(body, "generateContentRequest") or body
        handler._send_json(200, {"totalTokens": prompt_tokens(request)})
    elif not body.get("contents"):
        _error(handler, 400, "* GenerateContentRequest.contents: contents is not specified\n")
    elif (problem := _signature_problem(model, body)) is not None:
        _error(handler, 400, problem)
    else:
        _generate(handler, model, action == "streamGenerateContent", body)


def _generate(handler: Any, model: str, stream: bool, body: dict[str, Any]) -> None:
    beh = handler.beh
    parts, candidates = _answer_parts(body, beh.content)
    thinking = thinking_enabled(body)
    thoughts = count_words(THOUGHT) if thinking else 0
    shown = field(field(field(body, "generationConfig"), "thinkingConfig"), "includeThoughts") is True
    thought_parts = [{"text": THOUGHT, "thought": True}] if shown else []
    prompt = prompt_tokens(body)
    usage = None if beh.no_usage else _usage(handler, prompt, candidates, thoughts)
    if not stream:
        if thinking and "text" in parts[0]:  # the signature of the thoughts, on the first text part
            parts[0]["thoughtSignature"] = THOUGHT_SIGNATURE
        handler._send_json(200, _response(model, thought_parts + parts, "STOP", usage))
        return
    if "text" in parts[0]:
        pieces = [[{"text": p}] for p in split_content(parts[0]["text"], beh.chunks)]
        if thinking:  # the signature of the thoughts, on the first text part
            pieces[0][0]["thoughtSignature"] = THOUGHT_SIGNATURE
    else:
        pieces = [parts]
    early = None if beh.no_usage else {"promptTokenCount": prompt, "totalTokenCount": prompt}
    events = [
        _response(model, part, None, early) for part in ([thought_parts] if thought_parts else []) + pieces
    ]
    last = _response(model, [{"text": ""}], "STOP", usage)
    _stream(handler, events, last, sse="alt=sse" in handler.rec.query)


def _stream(handler: Any, events: list[dict[str, Any]], last: dict[str, Any], sse: bool) -> None:
    beh, fake = handler.beh, handler.server.fake
    handler.start_stream("text/event-stream" if sse else "application/json; charset=UTF-8")
    first = True

    def send(event: dict[str, Any]) -> bool:
        nonlocal first
        text = json.dumps(event, ensure_ascii=False).encode()
        if sse:
            data = b"data: " + text + b"\r\n\r\n"
        else:
            data = (b"[" if first else b",\r\n") + text
        first = False
        return handler.write_chunk(data)

    for event in events[: beh.cut_after_chunks]:
        if beh.chunk_delay_s > 0 and fake._stopping.wait(beh.chunk_delay_s):
            handler.cut_stream()
            return
        if not send(event):
            return
    if beh.cut_after_chunks is not None and beh.error_event is None:
        handler.cut_stream()
        return
    tail = beh.error_event if beh.error_event is not None else last
    if not send(tail):
        return
    if not sse and not handler.write_chunk(b"]"):
        return
    handler.end_stream()


def _embed(handler: Any, action: str, body: dict[str, Any]) -> None:
    requests = body.get("requests") if action == "batchEmbedContents" else [body]
    if not isinstance(requests, list) or not requests:
        _error(handler, 400, "* BatchEmbedContentsRequest.requests: requests is not specified\n")
        return
    vectors = []
    for request in requests:
        text = " ".join(_texts((request.get("content") or {}).get("parts")))
        if not text:
            _error(handler, 400, "* EmbedContentRequest.content: contents is not specified\n")
            return
        dimensions = field(request, "outputDimensionality") or DEFAULT_DIMENSIONS
        vectors.append({"values": _embedding(text, dimensions)})
    handler._send_json(
        200, {"embedding": vectors[0]} if action == "embedContent" else {"embeddings": vectors}
    )


def error_object(status: int, message: str, reason: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if reason:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
            }
        ]
    return {"error": error}


def _error(
    handler: Any, status: int, message: str, reason: str | None = None, headers: dict | None = None
) -> None:
    handler._send_json(status, error_object(status, message, reason), headers)


def failure(handler: Any, status: int, body: Any) -> None:
    """A refused key (the fake's 401) is Google's 400 API_KEY_INVALID; a 429 has Retry-After and RetryInfo."""
    beh = handler.beh
    if beh.error_body is not None:
        handler._send_json(status, beh.error_body)
    elif status == 401:
        _error(handler, 400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
    elif status == 429:
        payload = error_object(429, MESSAGES[429])
        if beh.retry_after is not None and beh.retry_after.isdigit():
            retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{beh.retry_after}s"}
            payload["error"]["details"] = [retry]
        handler._send_json(
            429, payload, {"Retry-After": beh.retry_after} if beh.retry_after is not None else None
        )
    else:
        message = MESSAGES.get(status, f"Request failed with status {status}.")
        _error(handler, status, message.format(model=PATH.match(handler.rec.path)["model"]))
