"""Property-based checks of the API against its own OpenAPI schema (schemathesis): whatever a
client sends within or around the schema, no 5xx, and every answer matches the schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from api.process import serve_api
from sql.questdb_local import ServerState


@pytest.fixture(scope="module")
def api_base(questdb_with_schema: ServerState) -> Iterator[str]:
    # QUESTDB_ILP: where the exports stream from (QuestDB's HTTP server).
    yield from serve_api(questdb_with_schema.pg_dsn, QUESTDB_ILP=questdb_with_schema.ilp_conf)


def test_no_server_errors_and_answers_match_the_schema(api_base: str) -> None:
    # schemathesis' pytest plugin does not run under pytest 9 (from_fixture fails on
    # Function._nodeid), so each operation's strategy is driven with hypothesis directly.
    schema = schemathesis.openapi.from_url(f"{api_base}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {op.path for op in operations} >= {"/api/market/prices", "/health"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            # Schema-valid but refused is allowed for one rule OpenAPI cannot state:
            # start must come before end (a 400 naming start, tested on its own).
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
