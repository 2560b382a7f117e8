"""Schemathesis over the generated OpenAPI document: no 500s, every response as documented."""
from __future__ import annotations

import pytest
import schemathesis
from schemathesis import checks
from hypothesis import HealthCheck, given, settings

from tests.api.conftest import start_api

OPERATIONS = [
    "GET /api/admin/queue-system/health", "GET /api/admin/queue-system/dashboard",
    "GET /api/admin/queue-system/queues/health", "GET /api/admin/queue-system/queues/{queueName}/metrics",
    "GET /api/admin/queue-system/alerts", "POST /api/admin/queue-system/alerts/{alertId}/acknowledge",
    "GET /api/admin/queue-system/workers/memory", "GET /api/admin/queue-system/memory/current",
    "GET /api/admin/queue-system/queues/{queueName}/execution-stats",
]
EXTENSIONS = [
    "GET /api/admin/queue-system/silences", "POST /api/admin/queue-system/silences",
    "POST /api/admin/queue-system/silences/{silenceId}/expire", "POST /api/admin/queue-system/alerts/acknowledge",
    "GET /api/admin/queue-system/system-alerts", "GET /api/admin/queue-system/queues/{queueName}/advice",
]


@pytest.fixture(scope="module")
def fuzzed_api(api_site):
    """A third API process with a budget large enough that the fuzzing is not rate limited."""
    proc, url = start_api(api_site.db_url, api_site.redis_url, env={"QUEUEWATCH_API_RATE_LIMIT": "1000000"})
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = {op.ok().label: op.ok() for op in schema.get_all_operations()}
    yield operations, api_site.admin
    proc.terminate()
    proc.wait(timeout=10)


def test_the_document_lists_exactly_the_nine_endpoints_and_the_extensions(fuzzed_api):
    operations, _ = fuzzed_api
    assert sorted(operations) == sorted(OPERATIONS + EXTENSIONS)


@pytest.mark.parametrize("label", OPERATIONS + EXTENSIONS)
def test_operation_conforms_to_its_schema(fuzzed_api, label):
    operations, token = fuzzed_api

    @given(case=operations[label].as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        # The spec answers 400 INVALID_QUEUE_NAME for a well-formed name of a queue that does not exist, so
        # "schema-valid data is accepted" does not hold by contract; every other check runs.
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                               excluded_checks=[checks.positive_data_acceptance])

    check()
