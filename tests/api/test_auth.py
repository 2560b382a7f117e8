"""Authentication and roles over real HTTP: no token, bad token, revoked token, viewer, admin."""
from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import API

ENDPOINTS = [("GET", "/health"), ("GET", "/dashboard"), ("GET", "/queues/health"),
             ("GET", "/queues/email-campaigns/metrics"), ("GET", "/alerts"),
             ("POST", "/alerts/alert-1-x-queue_depth/acknowledge"), ("GET", "/workers/memory"),
             ("GET", "/memory/current"), ("GET", "/queues/email-campaigns/execution-stats")]


pytestmark = pytest.mark.parametrize("api_backend", ["sqlite", "postgresql"], indirect=True, scope="module")
"""Every test of this module runs against an API site on SQLite and one on PostgreSQL."""


def _call(site, method, path, headers):
    return httpx.request(method, site.url + API + path, headers=headers, timeout=10)


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_auth_matrix(api_site, method, path):
    cases = [({}, 401, "UNAUTHORIZED"), ({"Authorization": "Bearer qw_not-a-real-token"}, 401, "UNAUTHORIZED"),
             ({"Authorization": "Basic YWRtaW46eA=="}, 401, "UNAUTHORIZED"),
             (api_site.headers(api_site.revoked), 401, "UNAUTHORIZED"),
             (api_site.headers(api_site.viewer), 403, "FORBIDDEN")]
    for headers, status, code in cases:
        response = _call(api_site, method, path, headers)
        assert response.status_code == status, (headers, response.text)
        body = response.json()
        assert body == {"success": False, "error": body["error"], "code": code}
        assert body["error"] == {"UNAUTHORIZED": "Please log in to continue", "FORBIDDEN": "Admin access required"}[code]
        assert "X-RateLimit-Limit" in response.headers
    admin = _call(api_site, method, path, api_site.headers())
    assert admin.status_code in (200, 404)  # 404: the acknowledge of an unknown alert
    assert admin.headers["X-RateLimit-Limit"] == "300"


def test_acknowledge_is_idempotent_and_records_the_user(api_site):
    alert = httpx.get(api_site.url + API + "/alerts", headers=api_site.headers(), timeout=10).json()[0]
    url = api_site.url + API + f"/alerts/{alert['id']}/acknowledge"
    first = httpx.post(url, headers=api_site.headers(), timeout=10).json()
    assert first["success"] is True
    assert first["alert"]["acknowledged"] is True and first["alert"]["acknowledgedBy"] == "admin@example.com"
    again = httpx.post(api_site.urls[1] + API + f"/alerts/{alert['id']}/acknowledge", headers=api_site.headers(),
                       timeout=10).json()
    assert again == first
    listed = httpx.get(api_site.url + API + "/alerts", headers=api_site.headers(),
                       params={"acknowledged": "true"}, timeout=10).json()
    assert alert["id"] in [a["id"] for a in listed]
    assert alert["id"] not in [a["id"] for a in httpx.get(api_site.url + API + "/alerts", headers=api_site.headers(),
                                                           timeout=10).json()]
