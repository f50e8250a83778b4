"""Fuzz the real server from its OpenAPI schema: valid and invalid requests for every operation.

Schemathesis generates requests for each operation (positive and negative data, its coverage
and fuzzing phases) and sends them to ``python -m inference serve`` on a free loopback port.
No answer may be a 5xx; every answer's status must be one its operation documents
(schemathesis's ``status_code_conformance``) and match that status's response schema and
content type; an invalid request must be refused with a 4xx (413 included); and a valid one
must be accepted unless it breaks a rule the schema does not express (blank sentences).

The schema is built in-process from ``create_app`` with default ``Settings`` (the server below
runs with defaults too), and ``test_the_server_serves_the_fuzzed_schema`` checks that it is
exactly what the server publishes. It is not loaded lazily with
``schemathesis.pytest.from_fixture``: schemathesis 4.32.5's lazy loader reads
``request.node._nodeid``, which pytest 9 no longer has.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from benchmarks.harness import run_server
from inference.app import create_app
from inference.settings import Settings

# create_app only reads the model directory when the app starts, never to build its schema.
OPENAPI: dict[str, Any] = create_app(Settings(model_dir="unused")).openapi()
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            # Invalid data must be refused with a 4xx; 413 (a body over max_body_bytes) counts too.
            "negative_data_rejection": {"expected-statuses": ["4XX"]},
            # Schema-valid data must be accepted, but for a body over max_body_bytes (413: the
            # schema's length limits allow larger ones) and the rules the schema does not
            # express (422, see `refused_only_for_unwritten_rules`).
            "positive_data_acceptance": {"expected-statuses": ["2XX", "413", "422"]},
        }
    }
)
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)

# What the server checks beyond the schema: blank sentences or text (the schema says only
# "at least one character"), an article with no sentences or too many of them, and one
# context per sentence.
UNWRITTEN_RULES = re.compile(
    r"are blank|text is empty|text has no sentences|sentences; at most \d+|contexts for \d+ sentences"
)


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with run_server(tiny_model_dir) as running:
        yield running.base


def refused_only_for_unwritten_rules(
    ctx: Any, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """A schema-valid request refused with 422 breaks one of the ``UNWRITTEN_RULES``."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code != 422:
        return
    message = response.json().get("error", "")
    if not UNWRITTEN_RULES.search(message):
        raise AssertionError(f"a schema-valid request to {case.operation.label} was refused: {message}")


def test_the_server_serves_the_fuzzed_schema(server):
    assert httpx.get(f"{server}/openapi.json").json() == OPENAPI


@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_no_5xx_and_every_answer_matches_the_schema(case, server):
    case.call_and_validate(
        base_url=server,
        timeout=30,
        additional_checks=[refused_only_for_unwritten_rules],
    )
