#!/usr/bin/env python3
"""What converting between protocols costs: `/v1/messages` (Anthropic's protocol) served by an OpenAI
channel, beside `/v1/chat/completions` relayed to the same channel natively, in the same run.

    .venv/bin/python bench/protocols.py                      # about a minute
    .venv/bin/python bench/protocols.py --conc 64 --duration 5 --rounds 3 --streams 1000

Phases, against one gateway and bench/upstream.py (the fast fake OpenAI upstream):

1. non-streaming, closed loop at ``--conc``: chat completions and Anthropic messages alternate for
   ``--rounds`` rounds of ``--duration`` s each, so that both see the same machine; the table gives each
   round and the ratio of their best rounds (messages / chat);
2. ``--streams`` concurrent streamed `/v1/messages` requests, converted event by event from the OpenAI
   stream; a stream is complete when it reaches `event: message_stop`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run as bench  # noqa: E402  (bench/run.py: the load tools)

MESSAGE_STOP = re.compile(rb"event: message_stop")
ANTHROPIC_HEADERS = ("anthropic-version: 2023-06-01",)


def messages_body(model: str, stream: bool) -> dict:
    body = {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": "Say hello"}]}
    if stream:
        body["stream"] = True
    return body


async def measure(args: argparse.Namespace, target: bench.Target, upstream_port: int, gw_pid: int) -> None:
    chat = target.request(bench.chat_body(args.model, stream=False))
    messages = target.request(messages_body(args.model, False), "/v1/messages", ANTHROPIC_HEADERS)
    best = {"chat": 0.0, "messages": 0.0}
    rows = []
    for round_no in range(1, args.rounds + 1):
        for name, request in (("chat", chat), ("messages", messages)):
            res = await bench.closed_loop(target, request, args.conc, args.warmup, args.duration, gw_pid)
            errors = sum(res.errors.values())
            best[name] = max(best[name], res.rps)
            rows.append(
                [str(round_no), name, f"{res.rps:.1f}", f"{res.p50_ms:.2f}", f"{res.p99_ms:.2f}", str(errors)]
            )
            bench.log(f"  round {round_no} {name:8} {res.rps:9.1f} req/s  errors {errors}")
    print(f"\nnon-streaming, c={args.conc}, {args.duration:g} s per round")
    print(bench.table(["round", "endpoint", "req/s", "p50 ms", "p99 ms", "errors"], rows))
    ratio = best["messages"] / best["chat"] if best["chat"] else 0.0
    print(f"best messages / best chat: {ratio:.3f}")
    if args.streams:
        bench.upstream_config(upstream_port, args.chunks, args.chunk_delay_ms)
        request = target.request(messages_body(args.model, True), "/v1/messages", ANTHROPIC_HEADERS)
        res = await bench.stream_phase(
            target, args.model, args.streams, args.ramp_s, 60.0, gw_pid, request, MESSAGE_STOP
        )
        ideal = args.chunks * args.chunk_delay_ms / 1000
        print(
            f"\n{args.streams} converted /v1/messages streams, {args.chunks} chunks "
            f"{args.chunk_delay_ms:g} ms apart (ideal {ideal:.2f} s)"
        )
        print(
            bench.table(
                ["completed", "TTFB p50 ms", "TTFB p99 ms", "dur p50 s", "dur p99 s", "errors"],
                [[f"{res.completed}/{res.streams}", f"{res.ttfb_p50_ms:.1f}", f"{res.ttfb_p99_ms:.1f}",
                  f"{res.dur_p50_s:.3f}", f"{res.dur_p99_s:.3f}", str(res.errors or "")]],
            )
        )  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conc", type=int, default=64)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--chunks", type=int, default=40)
    p.add_argument("--chunk-delay-ms", type=float, default=50.0)
    p.add_argument("--ramp-s", type=float, default=0.5)
    p.add_argument("--model", default=bench.MODEL_DEFAULT)
    args = p.parse_args()
    args.upstream_port = 0
    tmp = tempfile.mkdtemp(prefix="relayhouse-bench-")
    upstream = gateway = None
    try:
        upstream, upstream_port = bench.start_upstream(args, tmp, None)
        token = secrets.token_urlsafe(18)
        gateway, port, _ = bench.start_gateway(tmp, token, None)
        base = f"http://127.0.0.1:{port}"
        key = bench.configure_gateway(base, token, upstream_port, args.model)
        target = bench.Target.from_url("gateway", base, key)
        asyncio.run(measure(args, target, upstream_port, gateway.pid))
    finally:
        bench.terminate(gateway, "gateway")
        bench.terminate(upstream, "upstream")
    return 0


if __name__ == "__main__":
    sys.exit(main())
