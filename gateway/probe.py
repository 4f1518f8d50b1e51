"""Channel tests and the background probe that brings auto-disabled channels and set-aside keys back.

A test is one tiny non-streaming request with the channel's `test_model`, or its first model, sent
through the channel's own adaptor to the endpoint that model serves (`probe_call`): a chat-only test
would fail an embeddings-only channel, or an o-series model that refuses `max_tokens`, for ever.

An auto-disabled channel that answers goes `half_open` (see `gateway.routing`); the probe keeps testing
half-open channels too, so one that gets no traffic still earns its way back to `enabled`. Every status
change goes through the router, which hands it to the runtime's `set_status`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from gevent.pool import Pool

from gateway import protocols, upstream
from gateway.catalog import ChannelInfo, UpstreamKey
from gateway.neutral import Call, GatewayError, redacted
from gateway.protocols import openai

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("relayhouse.probe")
PROBE_TIMEOUT_S = 30.0
PING = "ping"
# OpenAI's reasoning models refuse `max_tokens` ("unsupported_parameter": use `max_completion_tokens`),
# and spend part of the allowance on reasoning, so they get a few tokens more than one.
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
REASONING_MAX_TOKENS = 16
COMPLETIONS_MARKERS = ("-instruct", "davinci", "babbage")
# an image costs cents: an image model is tested by looking it up (`GET /models/<model>`, free), except on
# Azure, which has no such lookup per deployment and draws one small image
IMAGE_MARKERS = ("dall-e", "gpt-image")
# a test result's `error_code` when the upstream answered with an error: `status` and `error` are its own;
# when it refused the key (401, or its quota is spent): `status` is its, `error` the gateway's
UPSTREAM_ANSWERED = "upstream_answered"
KEY_REJECTED = "key_rejected"


def probe_call(channel: ChannelInfo, model: str) -> Call:
    """The cheapest request `model` answers, judged by its public and its upstream name."""
    names = {model.lower(), channel.upstream_model(model).lower()}
    body: dict[str, Any]
    if any("embedding" in n for n in names) or (
        channel.models and all("embedding" in m.lower() for m in channel.models)
    ):
        endpoint, body = "embeddings", {"model": model, "input": PING}
    elif any(marker in n for n in names for marker in IMAGE_MARKERS):
        endpoint, body = "images", {"model": model, "prompt": PING, "n": 1}
    elif any("moderation" in n for n in names):
        endpoint, body = "moderations", {"model": model, "input": PING}
    elif any(marker in n for n in names for marker in COMPLETIONS_MARKERS):
        endpoint, body = "completions", {"model": model, "prompt": PING, "max_tokens": 1}
    elif any(n.startswith(REASONING_PREFIXES) for n in names):
        endpoint = "chat"
        body = {
            "model": model,
            "messages": [{"role": "user", "content": PING}],
            "max_completion_tokens": REASONING_MAX_TOKENS,
        }
    else:
        endpoint = "chat"
        body = {"model": model, "messages": [{"role": "user", "content": PING}], "max_tokens": 1}
    return Call(endpoint, model, body, orjson.dumps(body), kind=openai.KINDS[endpoint])


def _try(
    rt: Runtime, channel: ChannelInfo, key: UpstreamKey, model: str
) -> tuple[dict[str, Any], GatewayError | None]:
    call = probe_call(channel, model)
    started = time.perf_counter()
    try:
        how = protocols.route(call, channel)
        if how is None:
            raise GatewayError(
                400,
                f"A {channel.type} channel cannot serve /v1/{call.endpoint} for `{model}`.",
                code="unsupported_endpoint",
            )
        module, native = how
        lookup = call.kind == "images" and channel.type != "azure"
        if lookup:
            request = openai.model_lookup(channel, key, model)
        else:
            hub = None if native else openai.request_to_hub(call)
            request = module.build_request(call, channel, key, hub)
        response = upstream.send(
            rt.pools, request, min(channel.timeout_s or PROBE_TIMEOUT_S, PROBE_TIMEOUT_S)
        )
        payload = upstream.read_body(response)
        if response.status_code >= 400:
            raise module.map_error(response.status_code, payload, response.headers)
        if lookup:
            openai.upstream_json(payload)
        elif native:
            module.native_response(call, payload)
        else:
            module.response_to_hub(call, payload)
    except GatewayError as err:
        err = redacted(err, key.secret)
        result = {
            "ok": False,
            "status": err.upstream_status or err.status,
            "error": err.message,
            "error_code": _error_code(err),
            "latency_ms": int((time.perf_counter() - started) * 1000),
            "model": model,
        }
        return result, err
    result = {
        "ok": True,
        "status": response.status_code,
        "error": None,
        "error_code": None,
        "latency_ms": int((time.perf_counter() - started) * 1000),
        "model": model,
    }
    return result, None


def _error_code(err: GatewayError) -> str | None:
    if err.disables_key:  # its message is the gateway's: the upstream's may quote the key
        return KEY_REJECTED
    return UPSTREAM_ANSWERED if err.upstream_status else err.code


def _model(channel: ChannelInfo, model: str | None) -> str:
    return model or channel.test_model or (sorted(channel.models)[0] if channel.models else "gpt-4o-mini")


def _judge(rt: Runtime, channel: ChannelInfo, key: UpstreamKey, error: GatewayError | None) -> None:
    """Tell the router what a test of a channel under trial found."""
    if error is None:
        rt.router.revived(channel)
    elif channel.status == "half_open" and error.retryable:
        rt.router.failed(channel, key, error)


def test_channel(rt: Runtime, channel_id: int, model: str | None = None) -> dict[str, Any]:
    """Test a channel now (the admin's button); a success sets a rejected key back to work and lets an
    auto-disabled channel take traffic again (half-open)."""
    channel = rt.catalog.snapshot.channels.get(channel_id)
    if channel is None:
        return {
            "ok": False,
            "status": None,
            "error": "no such channel",
            "error_code": "no_such_channel",
            "latency_ms": 0,
            "model": model,
        }
    keys = channel.keys or channel.set_aside_keys
    if not keys:
        return {
            "ok": False,
            "status": None,
            "error": "the channel has no keys",
            "error_code": "no_keys",
            "latency_ms": 0,
            "model": model,
        }
    result, error = _try(rt, channel, keys[0], _model(channel, model))
    if error is None and not channel.keys:
        rt.router.key_revived(keys[0])
    if channel.status in ("auto_disabled", "half_open"):
        _judge(rt, channel, keys[0], error)
    return result


PROBE_CONCURRENCY = 16


def _probe_channel(rt: Runtime, channel: ChannelInfo) -> int:
    """Test one channel's set-aside keys, and the channel itself when it is disabled or on trial."""
    answered = 0
    with rt.app.app_context():
        for key in channel.set_aside_keys:
            if _try(rt, channel, key, _model(channel, None))[1] is None:
                rt.router.key_revived(key)
                answered += 1
        if channel.status in ("auto_disabled", "half_open"):
            keys = channel.keys or channel.set_aside_keys
            if keys:
                error = _try(rt, channel, keys[0], _model(channel, None))[1]
                _judge(rt, channel, keys[0], error)
                answered += error is None
    return answered


def probe_once(rt: Runtime) -> int:
    """Test every auto-disabled or half-open channel and every set-aside key once, several channels at a
    time, so that one upstream that hangs until its timeout does not hold the others back; return how
    many answered."""
    channels = [
        c
        for c in rt.catalog.snapshot.channels.values()
        if c.status != "disabled" and (c.set_aside_keys or c.status in ("auto_disabled", "half_open"))
    ]
    answered = sum(Pool(PROBE_CONCURRENCY).imap_unordered(lambda c: _probe_channel(rt, c), channels))
    if answered:
        log.info("probe: %d channel(s) or key(s) answered", answered)
    return answered
