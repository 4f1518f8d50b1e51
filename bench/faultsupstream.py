#!/usr/bin/env python3
"""A fake OpenAI chat upstream that misbehaves at random, request by request, for `bench/faults.py`.

`tests/fake_upstream.py` holds one behaviour at a time, set by the test; a fault run needs a mix at
once, so here each request draws its own fate from weighted odds (a seeded generator, so a run can be
repeated): a normal answer, a 500, an answer without usage, a slow answer, or a cut (a stream dropped
after some chunks; a JSON body dropped half-way). A 429 with `Retry-After: 1` comes only to upstream
keys with `ratelimited` in them, at RATE_LIMITED_ODDS: the gateway cools a key down for the Retry-After
after its 429, so 429s spread over every key would keep them all cooling under load, and the gateway
would answer 429 itself to almost everything, which is right but tests nothing else. Wire format per
/work/shared/api-contracts.md section 1: JSON bodies with `Content-Length`, streams as
`Transfer-Encoding: chunked` with one SSE event per chunk, usage in a last `"choices": []` chunk when
`stream_options.include_usage` is set.

Usage is deterministic: prompt tokens = words of each message + 3, completion tokens = words of the
answer. The answer is made of common one-token English words, at most `MAX_WORDS`, so the gateway's own
estimate (tiktoken) of an answer without usage stays well under a request's `max_tokens`.

Standard library only; run on its own with `python bench/faultsupstream.py --port 18100`.
`GET /_faults/stats` answers the counts of each fate drawn and of streams finished or cut.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# fate -> weight; the odds of each way a request can go
DEFAULT_MIX = {"ok": 55, "error_500": 10, "no_usage": 10, "slow": 12, "cut": 13}
RATE_LIMITED_ODDS = 0.5
WORDS = "the a of and to in is it you that he was for on are with as his they be at one have this".split()
MAX_WORDS = 24
CHUNK_DELAY_S = 0.01


def words_in(text: str) -> int:
    return len(text.split())


def prompt_tokens(messages: Any) -> int:
    if not isinstance(messages, list):
        return 1
    texts = [m.get("content") if isinstance(m, dict) else "" for m in messages]
    return max(1, sum(words_in(t if isinstance(t, str) else "") + 3 for t in texts))


class Fates:
    """The weighted draw and its counters, shared by the handler threads."""

    def __init__(self, mix: dict[str, int], seed: int) -> None:
        self.names = list(mix)
        self.weights = [mix[n] for n in self.names]
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def draw(self, authorization: str) -> tuple[str, float, int, int]:
        """A fate, a stall in seconds, an answer length in words, and where a cut falls (in chunks)."""
        with self.lock:
            if "ratelimited" in authorization and self.rng.random() < RATE_LIMITED_ODDS:
                fate = "rate_429"
            else:
                fate = self.rng.choices(self.names, self.weights)[0]
            stall_s = self.rng.uniform(0.3, 1.6) if fate == "slow" else 0.0
            n_words = self.rng.randint(6, MAX_WORDS)
            cut_at = self.rng.randint(1, 5)
            self.counts[fate] += 1
        return fate, stall_s, n_words, cut_at

    def count(self, name: str) -> None:
        with self.lock:
            self.counts[name] += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's connection pool expects
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        if self.path == "/_faults/stats":
            with self.server.fates.lock:
                self._json(200, dict(self.server.fates.counts))
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": []})
        else:
            self._json(404, _error(f"Invalid URL (GET {self.path})", "invalid_request_error", None))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            body = None
        if self.path != "/v1/chat/completions" or not isinstance(body, dict):
            self._json(
                400, _error("We could not parse the JSON body of your request.", "invalid_request_error")
            )
            return
        fate, stall_s, n_words, cut_at = self.server.fates.draw(self.headers.get("Authorization", ""))
        if stall_s:
            time.sleep(stall_s)
        if fate == "error_500":
            self._json(500, _error("The server had an error while processing your request.", "server_error"))
            return
        if fate == "rate_429":
            message = "Rate limit reached for requests on this organization. Please try again in 1s."
            self._json(429, _error(message, "requests", "rate_limit_exceeded"), {"Retry-After": "1"})
            return
        content = " ".join(self.server.text_rng_words(n_words))
        usage = {
            "prompt_tokens": prompt_tokens(body.get("messages")),
            "completion_tokens": n_words,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        with_usage = fate != "no_usage"
        if body.get("stream"):
            options = body.get("stream_options")
            asked = isinstance(options, dict) and options.get("include_usage") is True
            self._stream(
                body["model"], content, usage if with_usage and asked else None, cut_at, fate == "cut"
            )
        else:
            self._answer(body["model"], content, usage if with_usage else None, fate == "cut")

    # -- answers ------------------------------------------------------------------------------------

    def _answer(self, model: str, content: str, usage: dict[str, int] | None, cut: bool) -> None:
        answer: dict[str, Any] = {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
        }
        if usage is not None:
            answer["usage"] = usage
        data = json.dumps(answer).encode()
        self._head(200, "application/json", {"Content-Length": str(len(data))})
        if cut:  # the promised length never arrives
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._drop()
            self.server.fates.count("cut_body")
            return
        self.wfile.write(data)

    def _stream(self, model: str, content: str, usage: dict[str, int] | None, cut_at: int, cut: bool) -> None:
        base = {"id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model}  # fmt: skip

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**base, "choices": [choice], **({"usage": None} if usage else {})}

        words = content.split()
        pieces = [" ".join(words[i : i + 4]) + " " for i in range(0, len(words), 4)]
        events: list[Any] = [chunk({"role": "assistant", "content": ""}, None)]
        events += [chunk({"content": p}, None) for p in pieces]
        events.append(chunk({}, "stop"))
        if usage is not None:
            events.append({**base, "choices": [], "usage": usage})
        events.append("[DONE]")
        self._head(200, "text/event-stream; charset=utf-8", {"Transfer-Encoding": "chunked"})
        for index, event in enumerate(events):
            if cut and index > cut_at:
                self._drop()
                self.server.fates.count("cut_stream")
                return
            if index and CHUNK_DELAY_S:
                time.sleep(CHUNK_DELAY_S)
            text = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
            data = b"data: " + text.encode() + b"\n\n"
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            except OSError:  # the gateway hung up (its client did)
                self.close_connection = True
                self.server.fates.count("stream_left_by_gateway")
                return
        self.wfile.write(b"0\r\n\r\n")
        self.server.fates.count("stream_finished")

    # -- writing ------------------------------------------------------------------------------------

    def _head(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("x-request-id", "req_" + uuid.uuid4().hex)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self._head(status, "application/json", {"Content-Length": str(len(data)), **(headers or {})})
        self.wfile.write(data)

    def _drop(self) -> None:
        """Close the connection without finishing the response."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, port: int, mix: dict[str, int], seed: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.fates = Fates(mix, seed)
        self._text_rng = random.Random(seed + 1)
        self._text_lock = threading.Lock()

    def text_rng_words(self, n: int) -> list[str]:
        with self._text_lock:
            return [self._text_rng.choice(WORDS) for _ in range(n)]


def parse_mix(text: str) -> dict[str, int]:
    """`ok=50,error_500=10,...`: weights for the fates named in DEFAULT_MIX (others keep their default)."""
    mix = dict(DEFAULT_MIX)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in DEFAULT_MIX or not weight.isdigit():
            raise argparse.ArgumentTypeError(
                f"--mix: expected NAME=WEIGHT with NAME in {sorted(DEFAULT_MIX)}"
            )
        mix[name] = int(weight)
    return mix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=18100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mix", type=parse_mix, default=dict(DEFAULT_MIX), help="e.g. ok=50,error_500=10")
    args = parser.parse_args()
    server = Server(args.port, args.mix, args.seed)
    print(f"fault upstream on http://127.0.0.1:{args.port}/v1 mix={args.mix}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
