"""Several API and dashboard processes on one PostgreSQL and one Redis share tokens, sessions and rate limits:
whichever process a proxy picks answers the same."""
from __future__ import annotations

import time

import httpx
import pytest

from accounts.accounts import add_user, issue_token
from accounts.logins import check_session, start_session
from dashboard.session_routes import COOKIE_NAME, SESSION_PATH
from storage.engine import make_engine
from storage.schema import metadata
from storage.users import revoke_tokens
from tests.api.conftest import API, collect_real_data, start_api

LIMIT = 20


@pytest.fixture
def pg_site(postgres_url, redis_url, tmp_path):
    collect_real_data(redis_url, postgres_url)
    engine = make_engine(postgres_url)
    add_user(engine, "admin@example.com", "ADMIN", "correct horse")
    procs = [start_api(postgres_url, redis_url, env={"QUEUEWATCH_API_RATE_LIMIT": str(LIMIT)}) for _ in range(2)]
    try:
        yield engine, [url for _, url in procs]
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait(timeout=10)
        metadata.drop_all(engine)
        engine.dispose()


def test_two_api_processes_share_tokens_and_one_rate_budget(pg_site):
    engine, urls = pg_site
    token, token_id = issue_token(engine, "admin@example.com", "shared")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=10) as http:
        first = [http.get(urls[i % 2] + API + "/dashboard", headers=headers) for i in range(LIMIT)]
        refused = [http.get(url + API + "/dashboard", headers=headers) for url in urls]
        assert [r.status_code for r in first] == [200] * LIMIT
        assert [r.headers["X-RateLimit-Remaining"] for r in first] == [str(LIMIT - 1 - i) for i in range(LIMIT)]
        assert [r.status_code for r in refused] == [429, 429]  # one budget, spent through both processes
        answers = [first[0].json(), first[1].json()]
        assert answers[0]["totalQueues"] == answers[1]["totalQueues"] > 0  # the same figures from either process
        assert answers[0]["totalWaiting"] == answers[1]["totalWaiting"]
        revoke_tokens(engine, time.time(), token_id=token_id)
        after = [http.get(url + API + "/dashboard", headers=headers).status_code for url in urls]
    assert after == [401, 401]  # a revocation reaches every process at once


def test_a_dashboard_session_started_on_one_process_is_known_to_another(postgres_url, tmp_path):
    from tests.dashboard.test_browser import dashboard_server

    engine = make_engine(postgres_url)
    try:
        user = add_user(engine, "ops@example.com", "ADMIN", "correct horse")
        _, grant = start_session(engine, user, "127.0.0.1", time.time(), 3600.0)
        env = {"QUEUEWATCH_DB_URL": postgres_url}
        with dashboard_server(postgres_url, tmp_path / "one.log", env) as one, \
                dashboard_server(postgres_url, tmp_path / "two.log", env) as two:
            with httpx.Client(timeout=10) as http:
                given = http.post(two + SESSION_PATH, data={"grant": grant})
                assert given.status_code == 204
                cookie = given.cookies[COOKIE_NAME]
                assert check_session(engine, time.time(), 3600.0, cookie=cookie).user.email == "ops@example.com"
                again = http.post(one + SESSION_PATH, data={"grant": grant})
                assert again.status_code == 403  # the grant was used, whichever process it went to
                http.cookies.set(COOKIE_NAME, cookie)
                ended = http.delete(one + SESSION_PATH)
                assert ended.status_code == 204
        assert check_session(engine, time.time(), 3600.0, cookie=cookie).reason == "missing"
    finally:
        metadata.drop_all(engine)
        engine.dispose()
