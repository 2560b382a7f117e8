"""A real Sentinel over a real master and replica: a redis+sentinel:// URL reads the master, and after a
failover the next cycle reads the new one."""
from __future__ import annotations

import pytest
import redis
from sqlalchemy import func, select

from collector.loop import Collector
from collector.readers import build_readers, close_readers
from config.settings import SettingsError, check_redis_urls, load_settings
from storage.engine import make_engine
from storage.schema import queue_snapshots
from tests.collector.redis_servers import start_sentinel, wait_for
from tests.collector.rq_fill import fill_rq, rq_counts, stored_counts


def _latest(engine) -> dict[str, dict]:
    t = queue_snapshots
    last = select(func.max(t.c.cycle_id)).scalar_subquery()
    with engine.connect() as conn:
        return {row["queue_name"]: dict(row) for row in conn.execute(select(t).where(t.c.cycle_id == last)).mappings()}


def test_a_sentinel_url_reads_the_master_and_follows_a_failover(tmp_path, db_url):
    servers, master_port, replica_port, sentinel_port = start_sentinel(tmp_path)
    try:
        master = redis.Redis(host="127.0.0.1", port=master_port)
        fill_rq(master, "mail", "reports")
        url = f"redis+sentinel://127.0.0.1:{sentinel_port}/mymaster/0"
        settings = load_settings(env={}, redis_url=url, db_url=db_url, libraries="rq")
        readers = build_readers(settings)
        collector = Collector(settings, make_engine(db_url), readers)
        try:
            first = collector.run_cycle()
            assert first.ok and first.error is None
            rows = _latest(collector.engine)
            for name in ("mail", "reports"):
                assert stored_counts(rows[name]) == rq_counts(master, name)

            sentinel = redis.Redis(host="127.0.0.1", port=sentinel_port)
            sentinel.execute_command("SENTINEL FAILOVER", "mymaster")
            new_master = redis.Redis(host="127.0.0.1", port=replica_port)
            wait_for(lambda: sentinel.sentinel_get_master_addr_by_name("mymaster")[1] == replica_port
                     and new_master.info("replication")["role"] == "master", "failover done", timeout_s=60)
            servers.procs[0].terminate()  # the former master is gone: only the new one can answer
            servers.procs[0].wait(timeout=10)
            fill_rq(new_master, "mail", finished=1, failed=1, waiting=2)  # the 4 waiting run too

            after = collector.run_cycle()
            assert after.ok and after.error is None
            rows = _latest(collector.engine)
            for name in ("mail", "reports"):
                assert stored_counts(rows[name]) == rq_counts(new_master, name)
        finally:
            close_readers(readers)
    finally:
        servers.stop()


@pytest.mark.parametrize("url", ["redis+sentinel://127.0.0.1:26379", "redis+sentinel://127.0.0.1:x/m",
                                 "redis+sentinel://u:pw@h:1/m/zero"])
def test_a_malformed_sentinel_url_is_a_settings_error_without_its_password(url):
    with pytest.raises(SettingsError) as raised:
        check_redis_urls(url)
    assert "pw" not in str(raised.value) and "bad Redis URL" in str(raised.value)


def test_the_query_form_names_the_master_and_db():
    from config.redis_urls import parse_sentinel_url

    parsed = parse_sentinel_url("redis+sentinel://app:s3cret@127.0.0.1:26381,127.0.0.1/?master=main&db=2"
                                "&sentinel_password=sp&socket_timeout=3")
    assert (parsed.sentinels, parsed.master, parsed.db, parsed.username, parsed.password) == (
        [("127.0.0.1", 26381), ("127.0.0.1", 26379)], "main", 2, "app", "s3cret")
    assert parsed.sentinel_auth == {"password": "sp"} and parsed.options == {"socket_timeout": "3"}


def test_a_sentinel_url_with_several_hosts_is_one_of_the_comma_separated_urls():
    settings = load_settings(env={}, redis_url="redis://a:6379/0,redis+sentinel://u:pw@h1:26379,h2:26380/m/1,"
                                               "rediss://b:6380/0")
    assert settings.redis_urls == ["redis://a:6379/0", "redis+sentinel://u:pw@h1:26379,h2:26380/m/1",
                                   "rediss://b:6380/0"]
