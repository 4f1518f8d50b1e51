#!/usr/bin/env python3
"""The ceiling of Relayhouse's serving stack, measured beside the fake upstream.

It serves a bare app through Relayhouse's own server (`gateway.serving.make_server`: gevent pywsgi with
gevent-websocket's handler), shaped as Relayhouse is: a WSGI callable in front of a Flask app answers
`POST /v1/chat/completions` itself (as `RelayRoutes` does), reading the body and returning a constant
answer, with no relay work. It then runs the same closed-loop load as `bench/run.py` against that app and
against `bench/upstream.py` (direct). The bare stack's `x direct` is the best that any gateway built on
this stack could reach in `bench/run.py`.

    .venv/bin/python bench/ceiling.py [--pin] [--conc 1,16,64] [--duration 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BODY = b'{"id":"chatcmpl-ceiling","object":"chat.completion","choices":[],"usage":null}'


def serve(port: int) -> None:
    from gevent import monkey

    monkey.patch_all()
    sys.path.insert(0, ROOT)
    from flask import Flask

    from gateway.serving import make_server

    flask_app = Flask("ceiling")

    def bare(environ, start_response):  # noqa: ANN001, ANN202
        if environ["PATH_INFO"] != "/v1/chat/completions" or environ["REQUEST_METHOD"] != "POST":
            return flask_app(environ, start_response)
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
        return [BODY]

    make_server(bare, "127.0.0.1", port).serve_forever()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--conc", default="1,16,64")
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=1.5)
    ap.add_argument("--pin", action="store_true", help="bare app on CPU 1, everything else on CPU 0")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return 0

    import run  # bench/run.py: the load generator, process helpers and the upstream

    load_cpus, app_cpus = ({0}, {1}) if args.pin else (None, None)
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)
    tmp = tempfile.mkdtemp(prefix="relayhouse-ceiling-")
    upstream, up_port = run.start_upstream(argparse.Namespace(upstream_port=None), tmp, load_cpus)
    port = run.free_port()
    bare = run.spawn(
        [run.venv_python(), __file__, "--serve", str(port)],
        ROOT,
        dict(os.environ),
        os.path.join(tmp, "ceiling.log"),
        app_cpus,
    )
    try:
        deadline = time.monotonic() + 30
        while (
            run.http("POST", f"http://127.0.0.1:{port}/v1/chat/completions", body={}, timeout=1.0)[0] != 200
        ):
            if bare.poll() is not None or time.monotonic() > deadline:
                raise run.BenchError(
                    "the bare app did not start:\n" + run.tail(os.path.join(tmp, "ceiling.log"))
                )
            time.sleep(0.1)
        direct = run.Target("direct", "127.0.0.1", up_port)
        stack = run.Target("bare stack", "127.0.0.1", port)
        rows = []
        for conc in [int(c) for c in args.conc.split(",")]:
            results = {}
            for target in (direct, stack):
                request = target.request(run.chat_body("gpt-4o-mini", stream=False))
                results[target.name] = asyncio.run(
                    run.closed_loop(target, request, conc, args.warmup, args.duration, None)
                )
            ratio = results["bare stack"].rps / results["direct"].rps if results["direct"].rps else 0.0
            rows.append(
                [
                    f"c={conc}",
                    f"{results['direct'].rps:.0f}",
                    f"{results['bare stack'].rps:.0f}",
                    f"{ratio:.3f}",
                    f"{results['bare stack'].p50_ms:.2f}",
                ]
            )
        print(
            "Serving-stack ceiling (the relay route with no relay work), "
            + ("pinned" if args.pin else "not pinned")
        )
        print(run.table(["level", "direct req/s", "bare stack req/s", "x direct", "stack p50 ms"], rows))
    finally:
        run.terminate(bare, "bare app")
        run.terminate(upstream, "upstream")
    return 0


if __name__ == "__main__":
    sys.exit(main())
