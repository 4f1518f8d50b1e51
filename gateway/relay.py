"""The relay pipeline, top to bottom: authenticate, parse, check the model and its price, admit against
the key's limits, reserve the estimated cost, try channels until one answers, then answer or stream,
and settle the exact cost with one log row. Failover happens only before any byte reached the client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol

import orjson

from gateway import accesslog, adaptors, sse, tokens, upstream
from gateway.auth import authenticate
from gateway.billing import Hold
from gateway.catalog import ChannelInfo, UpstreamKey
from gateway.domain.keys import KeyInfo
from gateway.domain.pricing import PriceInfo, cost_micro_usd
from gateway.limits import Admission
from gateway.neutral import Call, GatewayError, Reply, Usage, redact_secret, redacted
from gateway.writer import Record

if TYPE_CHECKING:
    from gateway.runtime import Runtime


class Frontend(Protocol):
    """What the pipeline needs from an inbound protocol (gateway.frontends.openai is one)."""

    def parse_request(self, endpoint: str, raw: bytes) -> Call: ...
    def render_error(self, err: GatewayError) -> Reply: ...
    def delivered_text(self, payloads: list[bytes]) -> str: ...
    def answered_text(self, body: bytes) -> str: ...


@dataclass(slots=True)
class Inbound:
    """What the pipeline reads of the HTTP request, whatever serves it."""

    headers: Mapping[str, str]
    remote_addr: str | None
    content_length: int | None
    read: Callable[[int], bytes]  # at most n bytes of the body


JSON_HEADERS = [("Content-Type", "application/json")]
STREAM_HEADERS = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
]
FREE = PriceInfo("")
UNREADABLE = "unreadable_body"


@dataclass(slots=True)
class Ticket:
    """One request's bookkeeping: whatever happens, `finish` runs once and settles money and log together."""

    rt: Runtime
    frontend: Frontend
    request_id: str
    started: float
    key: KeyInfo
    call: Call
    price: PriceInfo
    multiplier: Fraction
    admission: Admission
    hold: Hold
    channel: ChannelInfo | None = None
    channel_ok: bool = False
    attempts: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    ttft_ms: int | None = None
    done: bool = False

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def finish(self, usage: Usage | None, status: int, error: str = "") -> None:
        if self.done:
            return
        self.done = True
        cost = cost_micro_usd(self.price, usage, self.multiplier) if usage is not None else 0
        rt = self.rt
        rt.wallets.settle(self.hold, cost)
        rt.limiter.release(self.admission, usage.total_tokens if usage else 0)
        channel = self.channel
        rt.writer.record(
            accesslog.noted(
                Record(
                    request_id=self.request_id,
                    user_id=self.key.user_id,
                    key_id=self.key.id,
                    channel_id=channel.id if channel else None,
                    endpoint=self.call.endpoint,
                    model=self.call.model,
                    upstream_model=channel.upstream_model(self.call.model) if channel else "",
                    stream=self.call.stream,
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0,
                    cached_tokens=usage.cached_tokens if usage else 0,
                    cost_micro_usd=cost,
                    usage_source=usage.source if usage else "upstream",
                    latency_ms=self.elapsed_ms(),
                    ttft_ms=self.ttft_ms,
                    status=status,
                    error=error[:1000],
                    attempts=self.attempts,
                    failed_channels=self.failed,
                    channel_ok=self.channel_ok,
                )
            )
        )

    def estimate(self, completion_text: str | None) -> Usage:
        """Usage counted here when the upstream reported none: the prompt, plus the text delivered (a long
        count runs off the event loop)."""
        call, text = self.call, completion_text or ""
        return tokens.estimate_usage(call.model, call.endpoint, call.body, text, len(call.raw) + len(text))


def handle(rt: Runtime, frontend: Frontend, endpoint: str, inbound: Inbound, request_id: str) -> Reply:
    started = time.perf_counter()
    key: KeyInfo | None = None
    call: Call | None = None
    try:
        limit = rt.settings.max_body_bytes
        if (inbound.content_length or 0) > limit:
            raise _too_large(rt)
        key = authenticate(rt.catalog, inbound.headers, inbound.remote_addr)
        try:
            raw = inbound.read(limit + 1)
        except OSError:  # the client hung up mid-body, or broke its chunked framing
            raise GatewayError(400, "The request body could not be read.", code=UNREADABLE) from None
        if len(raw) > limit:  # a chunked body gives no length up front
            raise _too_large(rt)
        call = frontend.parse_request(endpoint, raw)
        price, multiplier = _price(rt, key, call)
        admission = rt.limiter.admit(key)
        try:
            hold = rt.wallets.reserve(key, _estimated_cost(rt, call, price, multiplier))
        except GatewayError:
            rt.limiter.release(admission, 0)
            raise
    except GatewayError as err:
        if key is not None:  # refused before any upstream call: logged, never charged
            rt.writer.record(
                accesslog.noted(
                    Record(
                        request_id,
                        key.user_id,
                        key.id,
                        None,
                        endpoint,
                        call.model if call else "",
                        stream=bool(call and call.stream),
                        status=err.status,
                        error=err.message,
                        latency_ms=int((time.perf_counter() - started) * 1000),
                        attempts=0,
                    )
                )
            )
        reply = frontend.render_error(err)
        if err.code == UNREADABLE:  # where this request ends is unknown: the next cannot be read
            reply.headers.append(("Connection", "close"))
        return reply
    ticket = Ticket(rt, frontend, request_id, started, key, call, price, multiplier, admission, hold)
    try:
        return _forward(ticket)
    except GatewayError as err:
        ticket.finish(None, err.status, err.message)
        return frontend.render_error(err)
    except BaseException:
        ticket.finish(None, 500, "internal error")
        raise


def _too_large(rt: Runtime) -> GatewayError:
    return GatewayError(
        413, f"The request body is larger than {rt.settings.max_body_mb} MB.", code="request_too_large"
    )


def _price(rt: Runtime, key: KeyInfo, call: Call) -> tuple[PriceInfo, Fraction]:
    snap = rt.catalog.snapshot
    if key.models is not None and call.model not in key.models:
        raise GatewayError(
            403,
            f"This API key may not use the model `{call.model}`.",
            "permission_denied",
            "model_not_allowed",
            "model",
        )
    if (key.group, call.model) not in snap.known:
        raise GatewayError(
            404,
            f"The model `{call.model}` does not exist or you do not have access to it. "
            "GET /v1/models lists the models this key can use.",
            "invalid_request_error",
            "model_not_found",
            "model",
        )
    price = snap.prices.get(call.model)
    if price is None:
        if not (rt.settings.allow_free_models or snap.settings.get("allow_free_models")):
            raise GatewayError(
                403,
                f"The model `{call.model}` has no price yet; an admin must set one.",
                "permission_denied",
                "model_not_priced",
                "model",
            )
        price = FREE
    multiplier = snap.multipliers.get(key.group, Fraction(1))
    if multiplier is None:
        raise GatewayError(
            503,
            "The price multiplier of your group is invalid; an admin must correct it.",
            "server_error",
            "group_multiplier_invalid",
        )
    return price, multiplier


def _estimated_cost(rt: Runtime, call: Call, price: PriceInfo, multiplier: Fraction) -> int:
    # cheap upper-ish bound, no tokenizer on the hot path; images count as their allowance, not their bytes
    prompt = tokens.reserve_prompt_tokens(call.endpoint, call.body, len(call.raw))
    output = 0
    if call.endpoint in ("chat", "completions"):
        output = call.max_output_tokens or rt.settings.default_output_reserve_tokens
    return cost_micro_usd(price, Usage(prompt, output), multiplier)


def _forward(t: Ticket) -> Reply:
    rt, call, router = t.rt, t.call, t.rt.router
    candidates = router.candidates(t.key.group, call.model)
    if not candidates:
        raise router.unavailable(t.key.group, call.model)
    last: GatewayError | None = None
    rejected_keys: set[int] = set()
    queue = list(candidates)
    while queue and t.attempts < rt.settings.retry_attempts:
        channel = queue.pop(0)
        key = router.pick_key(channel, rejected_keys)
        if key is None or not router.begin(channel):  # no usable key, or a half-open channel is busy
            continue
        adaptor = adaptors.get(channel.type)
        t.channel, t.attempts = channel, t.attempts + 1
        try:
            response = _attempt(t, adaptor, channel, key)
        except GatewayError as err:
            err = redacted(err, key.secret)
            if not err.retryable:
                router.succeeded(channel)  # the client's own mistake, as the upstream judged it: it answered
                raise
            router.failed(channel, key, err)
            t.failed.append((channel.id, err.message))
            last = err
            if err.disables_key or err.upstream_status == 429:  # that key is set aside or cools down;
                rejected_keys.add(key.id)  # the channel's other keys may still serve
                queue.insert(0, channel)
            continue
        finally:
            router.end(channel)
        router.succeeded(channel)
        return response
    raise _final_error(last)


def _attempt(t: Ticket, adaptor: adaptors.Adaptor, channel: ChannelInfo, key: UpstreamKey) -> Reply:
    request = adaptor.build_request(t.call, channel, key)
    timeout_s = channel.timeout_s or t.rt.settings.default_timeout_s
    response = upstream.send(t.rt.pools, request, timeout_s)
    if response.status_code >= 400:
        body = upstream.read_body(response)
        raise adaptor.map_error(response.status_code, body, response.headers)
    if t.call.stream and "event-stream" in (response.get("content-type") or ""):
        events = adaptor.stream_events(t.call, upstream.iter_body(response))
        try:
            first = next(events)  # before the first byte goes out, a failure can still fail over
        except StopIteration:
            raise GatewayError(
                502,
                "The upstream closed the stream before sending anything.",
                "server_error",
                "upstream_empty_stream",
                retryable=True,
            ) from None
        t.ttft_ms = t.elapsed_ms()
        t.channel_ok = True
        body = StreamBody(t, events, _stream(t, adaptor, first, events, key.secret))
        return Reply(200, list(STREAM_HEADERS), body)
    body, usage = adaptor.parse_response(t.call, upstream.read_body(response))
    t.channel_ok = True
    t.ttft_ms = t.elapsed_ms()
    t.finish(usage or t.estimate(t.frontend.answered_text(body)), 200)
    return Reply(200, list(JSON_HEADERS), body)


def _stream(
    t: Ticket, adaptor: adaptors.Adaptor, first: bytes, events: Iterator[bytes], secret: str
) -> Iterator[bytes]:
    """Forward each event as it arrives; settle from the upstream's usage, or from what was delivered. An
    error event the upstream sends mid-way may quote its key: such events are redacted first."""
    usage: Usage | None = None
    delivered: list[bytes] = []
    status, error = 200, ""
    wants_usage = t.call.wants_usage
    payload = first
    try:
        while True:
            if payload == b"[DONE]":
                yield b"data: [DONE]\n\n"
                break
            found = adaptor.event_usage(payload)
            if found is not None:
                usage = found
                if not wants_usage and (b'"choices":[]' in payload or b'"choices": []' in payload):
                    payload = next(events)
                    continue  # the gateway asked for this chunk, the client did not
            if b'"error"' in payload:
                payload = redact_secret(payload.decode("utf-8", "replace"), secret).encode()
            delivered.append(payload)
            yield sse.frame(payload)
            payload = next(events)
    except StopIteration:
        pass  # some servers end without [DONE]; the stream is still whole
    except GatewayError as err:
        status, error = 502, f"The upstream stream broke off: {redact_secret(err.message, secret)}"
        body = {
            "error": {"message": error, "type": "server_error", "param": None, "code": "upstream_stream_cut"}
        }
        yield sse.frame(orjson.dumps(body))
    except GeneratorExit:
        status, error = 499, "The client closed the stream."
        raise
    finally:
        events.close()  # stops the upstream request when the client went away
        if usage is None:
            usage = t.estimate(t.frontend.delivered_text(delivered))
        t.finish(usage, status, error)


class StreamBody:
    """The streamed response body. The server closes it when the client is gone; if that happens before
    the first event was even sent, the generator's own clean-up never ran, so close settles here."""

    def __init__(self, ticket: Ticket, events: Iterator[bytes], frames: Iterator[bytes]) -> None:
        self._ticket = ticket
        self._events = events
        self._frames = frames

    def __iter__(self) -> Iterator[bytes]:
        return self._frames

    def close(self) -> None:
        self._frames.close()
        if not self._ticket.done:
            self._events.close()
            self._ticket.finish(self._ticket.estimate(""), 499, "The client closed the stream.")


def _final_error(last: GatewayError | None) -> GatewayError:
    if last is None:
        return GatewayError(
            503, "No channel could take this request.", "server_error", "no_channel_available", retry_after=1
        )
    if last.upstream_status == 429 and not last.disables_key:
        return GatewayError(
            429,
            "The upstream is rate limited; retry later.",
            "requests",
            "upstream_rate_limited",
            retry_after=last.retry_after or 1,
        )
    if last.status == 504:
        return last
    detail = f" (last: {last.message})" if last.message else ""
    return GatewayError(502, f"Every upstream channel failed{detail}", "server_error", "upstream_error")
