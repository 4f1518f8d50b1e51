"""The Gemini client's side before any conversion: a request parsed and checked just enough to route it,
errors rendered as Google's error object (https://cloud.google.com/apis/design/errors), and a model as
`GET /v1beta/models` lists it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from gateway.neutral import Call, GatewayError, Reply, bad_request
from gateway.protocols.gemini.fields import _dict, _f, _is_int, model_id
from gateway.protocols.gemini.tables import ERROR_INFO, GOOGLE_STATUSES, KINDS, RETRY_INFO, STATUS_NAMES, name
from gateway.protocols.openai import check_model, json_object

if TYPE_CHECKING:
    from gateway.relay import Inbound

JSON_HEADERS = [("Content-Type", "application/json")]


def model_object(model: str, display_name: str | None = None) -> dict[str, Any]:
    """A model as `GET /v1beta/models` lists it."""
    embeds = "embed" in model
    methods = (
        ["embedContent", "batchEmbedContents"] if embeds else ["generateContent", "streamGenerateContent"]
    )
    return {
        "name": f"models/{model}",
        "baseModelId": model,
        "version": "001",
        "displayName": display_name or model,
        "description": "",
        "supportedGenerationMethods": [*methods, "countTokens"],
    }


def parse_request(endpoint: str, raw: bytes, inbound: Inbound) -> Call:
    kind = KINDS.get(endpoint)
    if kind is None:
        raise GatewayError(404, f"The method `{endpoint}` is not served here.", code="unknown_method")
    body = json_object(raw)
    model = check_model(model_id(inbound.params.get("model")))
    CHECKS[kind](body)
    config = _dict(_f(body, "generationConfig"))
    max_output = _f(config, "maxOutputTokens")
    if max_output is not None and not (_is_int(max_output) and max_output >= 0):
        raise bad_request(
            "`generationConfig.maxOutputTokens` must be a non-negative integer.", "maxOutputTokens"
        )
    thoughts = _f(_f(config, "thinkingConfig"), "includeThoughts") is True
    alt = parse_qs(inbound.query or "").get("alt", [""])[-1]
    return Call(
        endpoint,
        model,
        body,
        raw,
        endpoint == "streamGenerateContent",
        True,  # every Gemini answer carries its usage
        max_output,
        {"sse": alt == "sse", "thoughts": thoughts},
        protocol=name,
        kind=kind,
    )


def _check_generate(body: dict[str, Any]) -> None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise bad_request("* GenerateContentRequest.contents: contents is not specified", "contents")
    if not all(isinstance(c, dict) and isinstance(c.get("parts", []), list) for c in contents):
        raise bad_request(
            "* GenerateContentRequest.contents: each content must be an object with parts", "contents"
        )
    count = _f(_f(body, "generationConfig"), "candidateCount")
    if count is not None and count != 1:
        raise bad_request(
            "Only one candidate can be generated (`candidateCount` must be 1).", "candidateCount"
        )


def _check_count(body: dict[str, Any]) -> None:
    if not isinstance(body.get("contents", []), list) or not isinstance(
        _f(body, "generateContentRequest") or {}, dict
    ):
        raise bad_request("* CountTokensRequest: `contents` must be a list.", "contents")


def _check_embed(body: dict[str, Any]) -> None:
    requests = body.get("requests") if "requests" in body else [body]
    if not isinstance(requests, list) or not requests:
        raise bad_request("* BatchEmbedContentsRequest.requests: requests is not specified", "requests")
    for request in requests:
        if not isinstance(request, dict) or not isinstance(request.get("content"), dict):
            raise bad_request("* EmbedContentRequest.content: content is not specified", "content")


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "chat": _check_generate,
    "count": _check_count,
    "embeddings": _check_embed,
}


def error_body(err: GatewayError) -> dict[str, Any]:
    """Google's error object. The status name is the upstream's own when it gave one (kept as `code` by
    `map_error`), else the one that fits the HTTP status."""
    status = err.code if err.code in GOOGLE_STATUSES else None
    status = (
        status or STATUS_NAMES.get(err.status) or ("INTERNAL" if err.status >= 500 else "FAILED_PRECONDITION")
    )
    error: dict[str, Any] = {"code": err.status, "message": err.message, "status": status}
    details = []
    if err.code and err.code not in GOOGLE_STATUSES:
        details.append({"@type": ERROR_INFO, "reason": err.code, "domain": "relayhouse"})
    if err.retry_after is not None:
        details.append({"@type": RETRY_INFO, "retryDelay": f"{err.retry_after}s"})
    if details:
        error["details"] = details
    return {"error": error}


def render_error(err: GatewayError) -> Reply:
    headers = list(JSON_HEADERS)
    if err.retry_after is not None:
        headers.append(("Retry-After", str(err.retry_after)))
    return Reply(err.status, headers, orjson.dumps(error_body(err)))
