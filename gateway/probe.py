"""Channel tests and the background probe that brings auto-disabled channels and set-aside keys back.

A test is one tiny non-streaming chat completion (`max_tokens: 1`) with the channel's `test_model`, or
its first model, sent through the channel's own adaptor.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import gevent
import orjson

from gateway import adaptors, upstream
from gateway.catalog import ChannelInfo, UpstreamKey
from gateway.domain import channels as channel_store
from gateway.neutral import Call, GatewayError, redacted

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("relayhouse.probe")
PROBE_TIMEOUT_S = 30.0


def _try(rt: Runtime, channel: ChannelInfo, key: UpstreamKey, model: str) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
    call = Call("chat", model, body, orjson.dumps(body))
    adaptor = adaptors.get(channel.type)
    started = time.perf_counter()
    try:
        response = upstream.send(
            rt.pools,
            adaptor.build_request(call, channel, key),
            min(channel.timeout_s or PROBE_TIMEOUT_S, PROBE_TIMEOUT_S),
        )
        payload = upstream.read_body(response)
        if response.status_code >= 400:
            raise adaptor.map_error(response.status_code, payload, response.headers)
        adaptor.parse_response(call, payload)
    except GatewayError as err:
        return {
            "ok": False,
            "status": err.upstream_status or err.status,
            "error": redacted(err, key.secret).message,
            "latency_ms": int((time.perf_counter() - started) * 1000),
            "model": model,
        }
    return {
        "ok": True,
        "status": response.status_code,
        "error": None,
        "latency_ms": int((time.perf_counter() - started) * 1000),
        "model": model,
    }


def _model(channel: ChannelInfo, model: str | None) -> str:
    return model or channel.test_model or (sorted(channel.models)[0] if channel.models else "gpt-4o-mini")


def test_channel(rt: Runtime, channel_id: int, model: str | None = None) -> dict[str, Any]:
    """Test a channel now (the admin's button); a success brings an auto-disabled channel back."""
    channel = rt.catalog.snapshot.channels.get(channel_id)
    if channel is None:
        return {"ok": False, "status": None, "error": "no such channel", "latency_ms": 0, "model": model}
    keys = channel.keys or channel.set_aside_keys
    if not keys:
        return {
            "ok": False,
            "status": None,
            "error": "the channel has no keys",
            "latency_ms": 0,
            "model": model,
        }
    result = _try(rt, channel, keys[0], _model(channel, model))
    if result["ok"]:
        if not channel.keys:
            channel_store.set_key_status(keys[0].id, "active", "")
        if channel.status == "auto_disabled":
            channel_store.set_status(channel.id, "enabled", "")
        rt.catalog.reload()
    return result


def probe_once(rt: Runtime) -> int:
    """Test every auto-disabled channel and set-aside key once; return how many came back."""
    revived = 0
    with rt.app.app_context():
        for channel in list(rt.catalog.snapshot.channels.values()):
            if channel.status == "disabled":
                continue
            for key in channel.set_aside_keys:
                if _try(rt, channel, key, _model(channel, None))["ok"]:
                    channel_store.set_key_status(key.id, "active", "")
                    revived += 1
            if channel.status == "auto_disabled":
                keys = channel.keys or channel.set_aside_keys
                if keys and _try(rt, channel, keys[0], _model(channel, None))["ok"]:
                    channel_store.set_status(channel.id, "enabled", "")
                    revived += 1
        if revived:
            log.info("probe brought back %d channel(s) or key(s)", revived)
            rt.catalog.reload()
    return revived


def run_forever(rt: Runtime) -> None:
    while True:
        gevent.sleep(rt.settings.probe_interval_s)
        try:
            probe_once(rt)
        except Exception:
            log.exception("probe round failed")
