"""Rate limits shared by two API processes through Redis; fail-open when Redis is down."""
from __future__ import annotations

import time
from datetime import datetime

import httpx
import redis

from api.ratelimit import KEY_PREFIX, RateLimiter
from tests.api.conftest import API
from tests.conftest import free_port


def test_the_301st_request_in_a_minute_is_refused_across_two_processes(api_site):
    client = redis.Redis.from_url(api_site.redis_url)
    for key in client.scan_iter(KEY_PREFIX + "*"):
        client.delete(key)  # a fresh budget (earlier tests in this module spent some)
    started_s = time.time()
    with httpx.Client(timeout=10) as http:
        for i in range(300):
            url = api_site.urls[i % 2] + API + "/dashboard"
            response = http.get(url, headers=api_site.headers())
            assert response.status_code == 200, (i, response.text)
            assert response.headers["X-RateLimit-Remaining"] == str(299 - i)
        refused = http.get(api_site.urls[1] + API + "/alerts", headers=api_site.headers())
        other_user = http.get(api_site.urls[0] + API + "/dashboard", headers=api_site.headers(api_site.viewer))
    assert time.time() - started_s < 60, "the 300 requests must fall in one minute for this test to mean anything"
    assert refused.status_code == 429
    body = refused.json()
    assert body["success"] is False and body["error"] == "Rate limit exceeded"
    assert 1 <= body["retryAfter"] <= 60
    assert refused.headers["Retry-After"] == str(body["retryAfter"])
    assert refused.headers["X-RateLimit-Limit"] == "300" and refused.headers["X-RateLimit-Remaining"] == "0"
    reset = datetime.fromisoformat(refused.headers["X-RateLimit-Reset"].replace("Z", "+00:00")).timestamp()
    assert started_s + 59 <= reset <= time.time() + 61
    assert other_user.status_code == 403, "budgets are per user"


def test_sliding_window_and_fail_open_to_a_local_limit():
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    limiter = RateLimiter(dead, limit=3, window_s=60)
    decisions = [limiter.hit("user:1", now_s=1000.0 + i) for i in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert not decisions[0].shared and decisions[3].remaining == 0
    assert decisions[3].reset_at_s == 1060.0 and decisions[3].retry_after_s(1003.0) == 57
    assert limiter.hit("user:1", now_s=1060.5).allowed  # the first request left the window
    assert limiter.hit("user:2", now_s=1003.0).allowed


def test_shared_limiter_counts_in_redis(redis_url):
    client = redis.Redis.from_url(redis_url)
    first, second = RateLimiter(client, limit=2), RateLimiter(client, limit=2)
    assert first.hit("user:9").allowed and second.hit("user:9").allowed
    refused = first.hit("user:9")
    assert not refused.allowed and refused.shared and refused.remaining == 0
