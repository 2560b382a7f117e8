"""Queue detail's history read in parts (the settled part cached) equals one read of the whole range."""
from __future__ import annotations

import time

import pandas as pd
import pytest

from dashboard import history_cache
from storage import queries
from storage.engine import make_engine


def _compare(engine, since_s: float, until_s: float) -> pd.DataFrame:
    whole = queries.queue_series(engine, "thumbnails", since_s, until_s, library="rq")
    parted = history_cache.queue_series(engine, "thumbnails", since_s, until_s, library="rq")
    pd.testing.assert_frame_equal(parted.reset_index(drop=True), whole.reset_index(drop=True), check_exact=False,
                                  rtol=1e-9)
    assert parted.attrs == whole.attrs
    timing_whole = queries.range_timing(engine, "thumbnails", since_s, until_s, library="rq")
    timing_parted = history_cache.range_timing(engine, "thumbnails", since_s, until_s, library="rq")
    for kind in ("processing", "wait"):
        assert timing_parted[kind] == pytest.approx(timing_whole[kind], rel=1e-9)
    pd.testing.assert_frame_equal(timing_parted["histogram"], timing_whole["histogram"])
    return whole


def test_a_day_read_in_parts_equals_the_whole_read(template):
    engine = make_engine(f"sqlite:///{template}")
    now_s = time.time()
    whole = _compare(engine, now_s - 86400, now_s)
    assert whole.attrs["bucket_width_s"] >= history_cache.SETTLED_MIN_WIDTH_S
    assert history_cache._parts(now_s - 86400, now_s, whole.attrs["bucket_width_s"]) is not None
    assert len(whole) >= 50 and whole["samples"].sum() > 0
    engine.dispose()


def test_every_part_holding_snapshots_joins_bucket_for_bucket(template, monkeypatch):
    monkeypatch.setattr(history_cache, "SETTLED_MIN_WIDTH_S", 0.0)
    engine = make_engine(f"sqlite:///{template}")
    now_s = queries.newest_sample_at_s(engine) + 0.5  # the newest snapshot in the newest bucket: a tail
    rough = queries.queue_series(engine, "thumbnails", now_s - 3900, now_s, library="rq")
    inside = rough[rough["first_sampled_at_s"] > rough["bucket_start_s"]].iloc[1]
    # the range starts inside a bucket, before one of its snapshots: a partial head
    since_s = (inside["bucket_start_s"] + inside["first_sampled_at_s"]) / 2
    whole = _compare(engine, since_s, now_s)
    width_s = whole.attrs["bucket_width_s"]
    assert width_s == rough.attrs["bucket_width_s"]
    first_s, end_s = history_cache._parts(since_s, now_s, width_s)
    head = whole[whole["bucket_start_s"] < first_s]
    tail = whole[whole["bucket_start_s"] >= end_s]
    assert len(head) == 1 and len(tail) >= 1 and len(whole) > len(head) + len(tail) + 10
    engine.dispose()


def test_the_settled_part_is_read_once(template, monkeypatch):
    engine = make_engine(f"sqlite:///{template}")
    calls = []
    real = queries.queue_series

    def counted(*args, **kwargs):
        calls.append((args[2], args[3]))
        return real(*args, **kwargs)

    monkeypatch.setattr(queries, "queue_series", counted)
    now_s = (time.time() // 60) * 60 + 5  # 10 s later both ends are still in the same 60 s buckets
    history_cache._settled_series.clear()
    history_cache.queue_series(engine, "thumbnails", now_s - 86400, now_s, library="rq")
    history_cache.queue_series(engine, "thumbnails", now_s - 86400 + 10, now_s + 10, library="rq")
    assert len(calls) == 5  # head, settled and tail, then head and tail only
    engine.dispose()


def test_every_stored_run_time_read_in_parts_equals_one_read(template):
    from storage.queries_capacity import stored_processing_sketch

    engine = make_engine(f"sqlite:///{template}")
    now_s = queries.newest_sample_at_s(engine) + 0.5
    whole = stored_processing_sketch(engine, "thumbnails", "rq", 0.0, now_s)
    history_cache._settled_sketches.clear()
    for later_s in (now_s, now_s + 3600.0, now_s + 7200.0):  # the settled hours cover none, some, all rows
        parted = history_cache.stored_processing(engine, "thumbnails", "rq", later_s)
        assert parted.count == whole.count > 100 and parted.buckets == whole.buckets
        assert parted.total == pytest.approx(whole.total, rel=1e-12)
    engine.dispose()
