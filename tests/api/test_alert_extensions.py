"""The alert extensions over real HTTP: silences, snooze, bulk acknowledge, system alerts, the stale-data watch."""
from __future__ import annotations

import time

import httpx
import redis
from sqlalchemy import select

from accounts.accounts import add_user, issue_token
from collector.loop import Collector
from collector.rq_reader import RQReader
from config.settings import load_settings
from storage.engine import make_engine
from storage.schema import alert_events, alerts
from tests.api.conftest import API, start_api
from tests.api.test_contract import ALERT, ALERT_OPTIONAL, check


def _post(site, path: str, **kwargs) -> httpx.Response:
    return httpx.post(site.url + API + path, headers=site.headers(kwargs.pop("token", None)), timeout=10, **kwargs)


def _get(site, path: str, **kwargs) -> httpx.Response:
    return httpx.get(site.url + API + path, headers=site.headers(kwargs.pop("token", None)), timeout=10, **kwargs)


def _silenced_by(engine, queue_name: str) -> set:
    with engine.connect() as conn:
        return set(conn.execute(select(alerts.c.silenced_by).where(alerts.c.queue_name == queue_name,
                                                                   alerts.c.resolved_at_s.is_(None))).scalars())


def test_silences_add_list_expire(api_site):
    created = _post(api_site, "/silences", json={"queue": "email-*", "type": "queue_depth", "duration": "2h",
                                                 "comment": "campaign send"})
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["createdBy"] == "admin@example.com" and silence["active"] and silence["queue"] == "email-*"
    assert _silenced_by(api_site.engine, "email-campaigns") == {silence["id"]}
    listed = _get(api_site, "/silences").json()
    assert [s["id"] for s in listed] == [silence["id"]] and listed[0]["silencedAlerts"] == 1
    alert = next(a for a in _get(api_site, "/alerts").json() if a["queueName"] == "email-campaigns")
    check(alert, ALERT, ALERT_OPTIONAL)  # the spec's shape is unchanged by the silence
    expired = _post(api_site, f"/silences/{silence['id']}/expire")
    assert expired.status_code == 200 and not expired.json()["active"]
    assert _silenced_by(api_site.engine, "email-campaigns") == {None}
    assert _get(api_site, "/silences").json() == []
    assert [s["id"] for s in _get(api_site, "/silences", params={"all": "true"}).json()] == [silence["id"]]


def test_silence_errors_use_the_envelope(api_site):
    missing = _post(api_site, "/silences/999999/expire")
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "error": "Silence not found", "code": "SILENCE_NOT_FOUND",
                              "details": {"silenceId": 999999}}
    for body in ({"type": "nonsense", "duration": "1h", "comment": "x"}, {"duration": "soon", "comment": "x"},
                 {"duration": "1h"}, {"duration": "1h", "comment": "x", "extra": 1}):
        bad = _post(api_site, "/silences", json=body)
        assert bad.status_code == 400 and bad.json()["code"] == "INVALID_PARAMETERS", body
    assert _post(api_site, "/silences", json={"duration": "1h", "comment": "x"},
                 token=api_site.viewer).status_code == 403
    assert httpx.get(api_site.url + API + "/silences", timeout=10).status_code == 401


def test_snooze_then_the_alert_counts_as_unacknowledged_again(api_site):
    alert = next(a for a in _get(api_site, "/alerts").json() if a["type"] == "queue_depth")
    snoozed = _post(api_site, f"/alerts/{alert['id']}/acknowledge", params={"forSeconds": 1.5})
    assert snoozed.status_code == 200 and snoozed.json()["alert"]["acknowledged"]
    assert alert["id"] not in [a["id"] for a in _get(api_site, "/alerts").json()]
    assert alert["id"] in [a["id"] for a in _get(api_site, "/alerts", params={"acknowledged": "true"}).json()]
    time.sleep(1.6)
    again = {a["id"]: a for a in _get(api_site, "/alerts").json()}  # a read, evaluated now, writes nothing
    assert alert["id"] in again and "acknowledgedBy" not in again[alert["id"]]
    with api_site.engine.connect() as conn:
        assert conn.execute(select(alerts.c.acknowledged).where(alerts.c.id == alert["id"])).scalar_one()
    settings = load_settings(env={}, redis_url=api_site.redis_url, db_url=api_site.db_url)
    Collector(settings, api_site.engine, RQReader(redis.Redis.from_url(api_site.redis_url), settle_s=0)).run_cycle()
    with api_site.engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == alert["id"])).mappings().one()
        events = list(conn.execute(select(alert_events.c.event).where(alert_events.c.alert_id == alert["id"])
                                   .order_by(alert_events.c.id)).scalars())
    assert row["acknowledged"] is False and row["acknowledged_until_s"] is None
    assert events[-2:] == ["acknowledged", "unacknowledged"]


def test_bulk_acknowledge(api_site):
    open_ids = [a["id"] for a in _get(api_site, "/alerts").json()]
    assert len(open_ids) >= 2
    answer = _post(api_site, "/alerts/acknowledge", json={"alertIds": [*open_ids, "alert-0-nope-queue_depth"]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is False and body["notFound"] == ["alert-0-nope-queue_depth"]
    assert sorted(a["id"] for a in body["alerts"]) == sorted(open_ids)
    assert all(a["acknowledged"] and a["acknowledgedBy"] == "admin@example.com" for a in body["alerts"])
    assert _get(api_site, "/alerts").json() == []
    assert _post(api_site, "/alerts/acknowledge", json={"alertIds": []}).status_code == 400


def test_a_stopped_collector_raises_the_stale_data_alert(redis_url, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'stale.db'}"
    settings = load_settings(env={}, redis_url=redis_url, db_url=db_url, interval_s=0.5)
    engine = make_engine(db_url)
    collector = Collector(settings, engine, RQReader(redis.Redis.from_url(redis_url), settle_s=0))
    assert collector.run_cycle().ok
    add_user(engine, "ops@example.com", "ADMIN", "correct horse")
    token, _ = issue_token(engine, "ops@example.com")
    proc, url = start_api(db_url, redis_url, env={"QUEUEWATCH_STALE_CHECK_S": "0.2", "QUEUEWATCH_INTERVAL_S": "0.5"})
    headers = {"Authorization": f"Bearer {token}"}
    try:
        started = time.monotonic()
        found: list = []
        while not found and time.monotonic() - started < 15:
            found = httpx.get(url + API + "/system-alerts", headers=headers, timeout=5).json()
            time.sleep(0.1)
        (stale,) = found
        print(f"\nstale-data alert listed {time.monotonic() - started:.2f} s after the API started "
              "(3 intervals of 0.5 s since the last cycle)")
        assert stale["type"] == "stale_data" and stale["source"] == "(collector)" and stale["value"] >= 1.5  # rounded
        assert stale["threshold"] == 1.5
        assert httpx.get(url + API + "/alerts", headers=headers, timeout=5).json() == []  # not a queue alert
        refused = httpx.post(url + API + f"/alerts/{stale['id']}/acknowledge", headers=headers, timeout=5)
        assert refused.status_code == 404
        with engine.connect() as conn:
            assert list(conn.execute(select(alert_events.c.event)).scalars()) == ["opened"]  # notifications fire
        assert collector.run_cycle().ok  # the collector is back
        deadline = time.monotonic() + 10
        while httpx.get(url + API + "/system-alerts", headers=headers, timeout=5).json() and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.get(url + API + "/system-alerts", headers=headers, timeout=5).json() == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    with engine.connect() as conn:
        events = list(conn.execute(select(alert_events.c.event).order_by(alert_events.c.id)).scalars())
    assert events[:2] == ["opened", "resolved"]  # (it reopens once the data is 3 intervals old again)
