"""Schemathesis against /api/openapi.json: a few hundred generated requests over every operation, as the
admin, on a real gateway. None may answer 5xx or anything the document does not describe, and none may
lock the admin out (root cannot demote or disable itself; RELAYHOUSE_ADMIN_TOKEN never expires)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Gateway, scratch_database, start_gateway, stop_gateway

EXAMPLES = 12  # per operation: about 400 requests over the 34 operations


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway of its own: the run creates, changes and deletes whatever the document allows."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    gw = start_gateway(tmp, scratch_database(request.param, tmp, "relayhouse_schemathesis"))
    yield gw
    stop_gateway(gw)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def test_api_answers_as_documented(api: Gateway) -> None:
    schema = schemathesis.openapi.from_url(api.url + "/api/openapi.json")
    admin = {"Authorization": f"Bearer {api.admin_token}"}
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if any(tag.startswith("relay-") for tag in operation.tags or ()):
            continue  # the relay's routes take the providers' bodies: tested with their SDKs

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(base_url=api.url, headers=admin, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # one operation's failure must not hide the others'
            failures.append(f"{operation.label}: {exc}")
        me = api.api("GET", "/auth/me")
        assert me.status == 200 and me.body["role"] == "root", f"{operation.label} locked the admin out"
    assert calls >= 300
    assert not failures, "\n\n".join(failures)
