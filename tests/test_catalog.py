"""A value stored before the API bounded it never hangs the gateway: the catalog loads, and only the
requests it concerns are refused."""

from __future__ import annotations

import secrets
import time

from sqlalchemy import text

from tests.conftest import Gateway, http
from tests.fake_upstream import FakeUpstream


def test_a_stored_multiplier_with_a_huge_exponent_refuses_its_group_only(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    group = "huge-" + secrets.token_hex(3)
    model = "cg-" + secrets.token_hex(3)
    gateway.channel(upstream, [model], groups=["default", group])
    user = gateway.user(5, group=group)
    key = gateway.key(user)
    other = gateway.key(gateway.user(5))
    engine = gateway.db()  # as an older version stored it, before the API bounded multipliers
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO groups (name, multiplier) VALUES (:n, '1e999999999')"), {"n": group})
    engine.dispose()
    started = time.monotonic()
    gateway.price(model)  # any catalog change reloads it
    assert time.monotonic() - started < 5

    def chat(secret: str) -> object:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        return http("POST", gateway.v1 + "/chat/completions", body, {"Authorization": f"Bearer {secret}"})

    refused = chat(key["key"])
    assert refused.status == 503 and refused.body["error"]["code"] == "group_multiplier_invalid"
    assert chat(other["key"]).status == 200
