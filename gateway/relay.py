"""The relay pipeline, top to bottom: authenticate, parse, check the model and its price, admit against
the key's limits, reserve the estimated cost, try channels until one answers, then answer or stream,
and settle the exact cost with one log row. Failover happens only before any byte reached the client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from gateway import accesslog, protocols, tokens, upstream
from gateway.auth import authenticate
from gateway.billing import Hold
from gateway.catalog import ChannelInfo, UpstreamKey
from gateway.domain.keys import KeyInfo
from gateway.domain.pricing import PriceInfo, cost_micro_usd
from gateway.limits import Admission
from gateway.neutral import Call, GatewayError, Reply, Usage, empty_stream, redact_secret, redacted
from gateway.protocols.base import ProtocolModule, Tally
from gateway.writer import Record

if TYPE_CHECKING:
    from gateway.runtime import Runtime


@dataclass(slots=True)
class Inbound:
    """What the pipeline reads of the HTTP request, whatever serves it."""

    headers: Mapping[str, str]
    remote_addr: str | None
    content_length: int | None
    read: Callable[[int], bytes]  # at most n bytes of the body
    path: str = ""
    query: str = ""  # the raw query string
    params: dict[str, str] = field(default_factory=dict)  # route parameters, such as a Gemini path's model


JSON_HEADERS = [("Content-Type", "application/json")]
FREE = PriceInfo("")
UNREADABLE = "unreadable_body"


@dataclass(slots=True)
class Ticket:
    """One request's bookkeeping: whatever happens, `finish` runs once and settles money and log together."""

    rt: Runtime
    frontend: ProtocolModule
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
                    cache_write_tokens=usage.cache_write_tokens if usage else 0,
                    reasoning_tokens=usage.reasoning_tokens if usage else 0,
                    protocol=self.call.protocol,
                    channel_type=channel.type if channel else "",
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
        count runs off the event loop). A prompt in another protocol than OpenAI's is counted in its hub
        form."""
        call, text = self.call, completion_text or ""
        endpoint, body = call.endpoint, call.body
        if call.protocol != "openai":
            endpoint, body = call.kind, call.hub
            if body is None:
                try:
                    body = call.hub = self.frontend.request_to_hub(call)
                except GatewayError:
                    body = {}
        return tokens.estimate_usage(call.model, endpoint, body, text, len(call.raw) + len(text))


def handle(rt: Runtime, frontend: ProtocolModule, endpoint: str, inbound: Inbound, request_id: str) -> Reply:
    started = time.perf_counter()
    key: KeyInfo | None = None
    call: Call | None = None
    try:
        limit = rt.settings.max_body_bytes
        if (inbound.content_length or 0) > limit:
            raise _too_large(rt)
        key = authenticate(rt.catalog, inbound.headers, inbound.remote_addr, inbound.query)
        try:
            raw = inbound.read(limit + 1)
        except OSError:  # the client hung up mid-body, or broke its chunked framing
            raise GatewayError(400, "The request body could not be read.", code=UNREADABLE) from None
        if len(raw) > limit:  # a chunked body gives no length up front
            raise _too_large(rt)
        call = frontend.parse_request(endpoint, raw, inbound)
        prepare = getattr(frontend, "prepare", None)
        if prepare is not None:  # state the protocol keeps, such as a stored conversation to continue
            prepare(rt, key, call)
        if call.kind == "count":
            return count(rt, frontend, key, call)
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
                        protocol=call.protocol if call else getattr(frontend, "name", ""),
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
    prompt = tokens.reserve_prompt_tokens(call.kind, call.body, len(call.raw))
    output = 0
    if call.kind in ("chat", "completions"):
        output = call.max_output_tokens or rt.settings.default_output_reserve_tokens
    elif call.kind == "images":  # the protocol put the images asked for, and their tokens' bound, in the call
        output = call.max_output_tokens or 0
        return cost_micro_usd(price, Usage(prompt, output, images=call.extra["images"]), multiplier)
    return cost_micro_usd(price, Usage(prompt, output), multiplier)


def _candidates(t: Ticket) -> list[tuple[ChannelInfo, ProtocolModule, bool]]:
    """The channels that may serve the call, in the router's order, each with the module that talks to its
    upstream and whether the call passes through natively."""
    rt, call = t.rt, t.call
    channels = rt.router.candidates(t.key.group, call.model)
    if not channels:
        raise rt.router.unavailable(t.key.group, call.model)
    if call.pin_channel is not None:
        channels = [c for c in channels if c.id == call.pin_channel]
        if not channels:
            raise GatewayError(
                503,
                "The channel that holds this response is not available now; retry later.",
                "server_error",
                "response_channel_unavailable",
                retry_after=1,
            )
    found = []
    for channel in channels:
        how = protocols.route(call, channel)
        if how is not None:
            found.append((channel, *how))
    if not found:
        raise GatewayError(
            400,
            f"The model `{call.model}` is not served for this endpoint by any channel.",
            "invalid_request_error",
            "unsupported_endpoint",
            "model",
        )
    return found


def _forward(t: Ticket) -> Reply:
    rt, router = t.rt, t.rt.router
    last: GatewayError | None = None
    rejected_keys: set[int] = set()
    queue = _candidates(t)
    attempts = rt.catalog.snapshot.settings.get("retry_attempts") or rt.settings.retry_attempts
    while queue and t.attempts < attempts:
        channel, module, native = queue.pop(0)
        key = router.pick_key(channel, rejected_keys)
        if key is None or not router.begin(channel):  # no usable key, or a half-open channel is busy
            continue
        t.channel, t.attempts = channel, t.attempts + 1
        try:
            response = _attempt(t, module, native, channel, key)
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
                queue.insert(0, (channel, module, native))
            continue
        finally:
            router.end(channel)
        router.succeeded(channel)
        return response
    raise _final_error(last)


def _attempt(
    t: Ticket, module: ProtocolModule, native: bool, channel: ChannelInfo, key: UpstreamKey
) -> Reply:
    call, frontend = t.call, t.frontend
    call.served_by = channel.id
    hub = None
    if not native:
        if call.hub is None:
            call.hub = frontend.request_to_hub(call)
        hub = call.hub
        ceiling = channel.settings.get("max_output_tokens")
        if ceiling and (hub.get("max_tokens") or 0) > ceiling:  # another protocol's client asked for more
            hub = {**hub, "max_tokens": ceiling}
    request = module.build_request(call, channel, key, hub)
    timeout_s = channel.timeout_s or t.rt.settings.default_timeout_s
    response = upstream.send(t.rt.pools, request, timeout_s)
    if response.status_code >= 400:
        body = upstream.read_body(response)
        raise module.map_error(response.status_code, body, response.headers)
    if call.stream and "event-stream" in (response.get("content-type") or ""):
        tally = Tally()
        chunks = upstream.iter_body(response)
        if native:
            frames = module.native_stream(call, chunks, tally)
        else:
            frames = frontend.stream_from_hub(call, module.stream_to_hub(call, chunks, tally))
        try:
            first = next(frames)  # before the first byte goes out, a failure can still fail over
        except StopIteration:
            raise empty_stream() from None
        except GatewayError as err:
            err.retryable = True
            raise
        t.ttft_ms = t.elapsed_ms()
        t.channel_ok = True
        body = StreamBody(t, chunks, _stream(t, first, frames, chunks, tally, key.secret))
        return Reply(200, frontend.stream_headers(call), body)
    raw = upstream.read_body(response)
    if native:
        body, usage = module.native_response(call, raw)
        if usage is None:
            usage = t.estimate(_answered_text(module, call, body))
    else:
        answer = module.response_to_hub(call, raw)
        body = frontend.response_from_hub(call, answer)
        usage = answer.get("usage") or t.estimate(_hub_text(answer))
    t.channel_ok = True
    t.ttft_ms = t.elapsed_ms()
    t.finish(usage, 200)
    return Reply(200, list(JSON_HEADERS), body)


def _hub_text(answer: dict) -> str:
    choices = answer.get("choices") or ()
    message = choices[0].get("message") or {} if choices else {}
    parts = [message.get("content"), message.get("reasoning_content")]
    for tool_call in message.get("tool_calls") or ():
        parts += [tool_call["function"].get("name"), tool_call["function"].get("arguments")]
    return "".join(p for p in parts if isinstance(p, str))


def _answered_text(module: ProtocolModule, call: Call, body: bytes) -> str:
    """A native answer's text, to estimate its tokens when the upstream reported no usage."""
    if call.kind != "chat":
        return ""
    try:
        return _hub_text(module.response_to_hub(call, body))
    except GatewayError:
        return ""


def _stream(
    t: Ticket, first: bytes, frames: Iterator[bytes], chunks: Iterator[bytes], tally: Tally, secret: str
) -> Iterator[bytes]:
    """Forward each frame as it arrives; settle from the upstream's usage, or from what was delivered. An
    error event the upstream sends mid-way may quote its key: such frames are redacted first."""
    status, error = 200, ""
    frame = first
    try:
        while True:
            if b'"error"' in frame:
                frame = redact_secret(frame.decode("utf-8", "replace"), secret).encode()
            yield frame
            frame = next(frames)
    except StopIteration:
        pass
    except GatewayError as err:
        status, error = 502, f"The upstream stream broke off: {redact_secret(err.message, secret)}"
        yield t.frontend.stream_error(GatewayError(502, error, "server_error", "upstream_stream_cut"), t.call)
    except GeneratorExit:
        status, error = 499, "The client closed the stream."
        raise
    finally:
        frames.close()
        chunks.close()  # stops the upstream request when the client went away
        usage = tally.usage or t.estimate(tally.text())
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


def count(rt: Runtime, frontend: ProtocolModule, key: KeyInfo, call: Call) -> Reply:
    """A token-count request (`count_tokens`, `countTokens`, `input_tokens`): asked of a channel that
    speaks the client's protocol natively, else counted here with the tokenizer. Free, and not logged."""
    if key.models is not None and call.model not in key.models:
        raise GatewayError(403, f"This API key may not use the model `{call.model}`.", "permission_denied")
    if (key.group, call.model) not in rt.catalog.snapshot.known:
        raise GatewayError(
            404,
            f"The model `{call.model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    for channel in rt.router.candidates(key.group, call.model):
        if call.pin_channel is not None and channel.id != call.pin_channel:
            continue  # a stored response's conversation is known only where it was made
        how = protocols.route(call, channel)
        upstream_key = rt.router.pick_key(channel, set())
        if how is None or not how[1] or upstream_key is None:
            continue
        module = how[0]
        try:
            response = upstream.send(
                rt.pools,
                module.build_request(call, channel, upstream_key, None),
                channel.timeout_s or rt.settings.default_timeout_s,
            )
            body = upstream.read_body(response)
        except GatewayError:
            continue
        if response.status_code < 400:
            return Reply(200, list(JSON_HEADERS), body)
        err = redacted(module.map_error(response.status_code, body, response.headers), upstream_key.secret)
        if not err.retryable:
            raise err
    return Reply(200, list(JSON_HEADERS), frontend.estimate_count(call))


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
