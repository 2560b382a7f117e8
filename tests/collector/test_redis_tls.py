"""A real TLS-only redis-server with certificates made by the test: rediss:// URLs with a CA and a client
certificate collect real RQ counts; a wrong CA is a clear error."""
from __future__ import annotations

import pytest
import redis
from sqlalchemy import select

from collector.loop import Collector
from collector.readers import build_readers, close_readers, redis_client
from config.settings import SettingsError, load_settings
from storage.engine import make_engine
from storage.schema import queue_snapshots
from storage.status import REDIS_OUTAGE_PREFIX
from tests.collector.redis_servers import make_certificates, start_tls_server
from tests.collector.rq_fill import fill_rq, rq_counts, stored_counts


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """(port, certificate paths) of a redis-server that speaks TLS only and checks client certificates."""
    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    servers, port = start_tls_server(tmp_path_factory.mktemp("tls"), certs)
    yield port, certs
    servers.stop()


def _url(port: int, certs: dict, ca: str = "ca.crt") -> str:
    return (f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs[ca]}&ssl_certfile={certs['client.crt']}"
            f"&ssl_keyfile={certs['client.key']}&ssl_cert_reqs=required")


def _run(url: str, db_url: str):
    settings = load_settings(env={}, redis_url=url, db_url=db_url, libraries="rq")
    readers = build_readers(settings)
    collector = Collector(settings, make_engine(db_url), readers)
    try:
        return collector.run_cycle(), collector.engine
    finally:
        close_readers(readers)


def test_rediss_with_ca_and_client_certificates_collects(tls, db_url):
    port, certs = tls
    url = _url(port, certs)
    client = redis.Redis.from_url(url)
    client.flushall()
    fill_rq(client, "mail")
    result, engine = _run(url, db_url)
    assert result.ok and result.error is None
    with engine.connect() as conn:
        row = dict(conn.execute(select(queue_snapshots).where(queue_snapshots.c.queue_name == "mail")).mappings().one())
    assert stored_counts(row) == rq_counts(client, "mail") and row["waiting"] == 4


def test_a_wrong_ca_is_a_clear_error(tls, db_url):
    port, certs = tls
    result, _ = _run(_url(port, certs, ca="other-ca.crt"), db_url)
    assert not result.ok and result.error.startswith(REDIS_OUTAGE_PREFIX)
    assert "certificate verify failed" in result.error, result.error


def test_without_a_client_certificate_the_server_refuses(tls, db_url):
    port, certs = tls
    result, _ = _run(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs['ca.crt']}", db_url)
    assert not result.ok and result.error.startswith(REDIS_OUTAGE_PREFIX)


def test_an_option_redis_py_does_not_know_is_a_settings_error():
    with pytest.raises(SettingsError, match="bad Redis URL"):
        redis_client("rediss://127.0.0.1:1/0?ssl_ca_cert=/typo.pem")
