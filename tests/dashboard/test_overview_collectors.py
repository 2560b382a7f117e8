"""The Overview's Collectors table shows which collector stored each Redis's newest reading, from the leases."""
from __future__ import annotations

from storage.engine import make_engine
from storage.leases import Member, acquire, fence
from tests.dashboard.test_pages import _app

TARGETS = ["redis://127.0.0.1:6390/0", "redis://127.0.0.1:6391/0"]


def test_the_overview_names_the_collector_of_each_redis(seeded_url):
    engine = make_engine(seeded_url)
    first, second = Member("collector-a", "host-a", 11), Member("collector-b", "host-b", 12)
    held = acquire(engine, first, TARGETS[:1], 15.0, 10.0)
    with engine.begin() as conn:
        assert fence(conn, first.collector_id, {t: lease.token for t, lease in held.items()}) == {TARGETS[0]}
    acquire(engine, second, TARGETS, 15.0, 10.0)  # its share of two targets between two live collectors: one
    engine.dispose()
    at = _app()
    assert not at.exception
    table = next(frame.value for frame in at.dataframe if "Read by" in frame.value.columns)
    assert table["Redis"].tolist() == TARGETS
    assert table["Read by"].tolist() == ["collector-a", "–"]
    assert table["Lease"].tolist()[0].startswith("collector-a, ")
    assert table["Lease"].tolist()[1].startswith("collector-b, ")
    last_read = table["Last read"].tolist()
    assert last_read[1] == "never" and last_read[0].endswith(" s ago") and int(last_read[0].split()[0]) < 60
