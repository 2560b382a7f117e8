"""Security headers on every answer, the docs pages' switch, X-Forwarded-For only from trusted proxies."""
from __future__ import annotations

import httpx
import pytest
import redis

from api.ratelimit import KEY_PREFIX
from api.security import API_POLICY, DOCS_POLICY
from tests.api.conftest import API, start_api

ANSWERS = [  # (path, token: admin / none / bad, expected status)
    (API + "/health", "admin", 200), (API + "/dashboard", "admin", 200), (API + "/queues/health", "admin", 200),
    (API + "/queues/email-campaigns/metrics?history=true", "admin", 200), (API + "/alerts", "admin", 200),
    (API + "/workers/memory", "admin", 200), (API + "/memory/current", "admin", 200),
    (API + "/queues/email-campaigns/execution-stats", "admin", 200), ("/metrics", "admin", 200),
    (API + "/dashboard", None, 401), (API + "/dashboard", "bad", 401), (API + "/queues/nope/metrics", "admin", 400),
    (API + "/queues/email-campaigns/metrics?historyLimit=5000", "admin", 400), ("/nowhere", None, 404),
    ("/openapi.json", None, 200), ("/docs", None, 200), ("/redoc", None, 200),
]


def _headers(site, token):
    if token == "admin":
        return site.headers()
    return {"Authorization": "Bearer qw_wrong"} if token == "bad" else {}


def assert_secured(response: httpx.Response, policy: str = API_POLICY) -> None:
    assert response.headers["Content-Security-Policy"] == policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path,token,status", ANSWERS)
def test_every_answer_carries_the_security_headers(api_site, path, token, status):
    response = httpx.get(api_site.url + path, headers=_headers(api_site, token), timeout=10)
    assert response.status_code == status, response.text
    assert_secured(response, DOCS_POLICY if path in ("/docs", "/redoc") else API_POLICY)


def test_post_and_event_stream_answers_are_secured_too(api_site):
    ack = httpx.post(api_site.url + API + "/alerts/alert-0-none-queue_depth/acknowledge", headers=api_site.headers(),
                     timeout=10)
    assert ack.status_code == 404
    assert_secured(ack)
    with httpx.stream("GET", api_site.url + API + "/events", headers=api_site.headers(), timeout=10) as stream:
        assert stream.status_code == 200
        assert_secured(stream)


@pytest.fixture
def quiet_site(api_site):
    """The API site's database and Redis, for servers started with other settings."""
    client = redis.Redis.from_url(api_site.redis_url)
    for key in client.scan_iter(KEY_PREFIX + "*"):
        client.delete(key)
    yield api_site
    for key in client.scan_iter(KEY_PREFIX + "*"):
        client.delete(key)


def _serve(site, **env: str):
    return start_api(site.db_url, site.redis_url, env=env)


def test_docs_can_be_switched_off(quiet_site):
    proc, url = _serve(quiet_site, QUEUEWATCH_DOCS_ACCESS="off")
    try:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            response = httpx.get(url + path, timeout=10)
            assert response.status_code == 404, path
            assert response.json()["code"] == "NOT_FOUND"
            assert_secured(response)
        assert httpx.get(url + API + "/dashboard", headers=quiet_site.headers(), timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_bad_docs_access_value_is_refused(quiet_site):
    from tests.queuewatch.test_bad_input import assert_one_line_refusal, run_cli

    result = run_cli("api", "--db", quiet_site.db_url, "--redis", quiet_site.redis_url,
                     env={"QUEUEWATCH_DOCS_ACCESS": "private"})
    assert_one_line_refusal(result, "QUEUEWATCH_DOCS_ACCESS")


def _anonymous_statuses(url: str, forwarded_for: list[str]) -> list[int]:
    with httpx.Client(timeout=10) as http:
        return [http.get(url + API + "/dashboard", headers={"X-Forwarded-For": address}).status_code
                for address in forwarded_for]


def test_x_forwarded_for_is_ignored_without_trusted_proxies(quiet_site):
    proc, url = _serve(quiet_site, QUEUEWATCH_API_RATE_LIMIT="3")
    try:
        # a client that invents a new address per request still shares one budget: its own address
        statuses = _anonymous_statuses(url, [f"198.51.100.{n}" for n in range(5)])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert statuses == [401, 401, 401, 429, 429]


def test_x_forwarded_for_counts_behind_a_trusted_proxy(quiet_site):
    proc, url = _serve(quiet_site, QUEUEWATCH_API_RATE_LIMIT="3", QUEUEWATCH_TRUSTED_PROXIES="10.9.9.9, 127.0.0.1")
    try:
        separate = _anonymous_statuses(url, [f"198.51.100.{n}" for n in range(5)])
        same = _anonymous_statuses(url, ["203.0.113.7"] * 4)
        # the proxy appends the address it saw; what the client itself claimed before it is not trusted
        chained = _anonymous_statuses(url, [f"192.0.2.{n}, 203.0.113.7" for n in range(2)])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert separate == [401] * 5  # each client address has its own budget
    assert same == [401, 401, 401, 429]
    assert chained == [429, 429]
    keys = {key.decode() for key in redis.Redis.from_url(quiet_site.redis_url).scan_iter(KEY_PREFIX + "anonymous:*")}
    assert KEY_PREFIX + "anonymous:203.0.113.7" in keys and KEY_PREFIX + "anonymous:127.0.0.1" not in keys
