"""The snapshot CSV export read as plain rows writes, byte for byte, what the DataFrame path writes."""
from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import insert, select, update

from storage import queries_export
from storage.engine import make_engine
from storage.queries_export import export_frames, write_csv, write_frames
from storage.schema import queue_samples, series
from tests.seed import seed_database
from tests.storage.queries_helpers import NOW_S

HOSTILE = [("rq", '=HYPERLINK("http://127.0.0.1/x")'), ("rq", 'a,b "c"\r\nd'), ("bullmq", "emails"),
           ("celery", "-cmd")]


def _site(engine) -> None:
    """The seed's five queues of three libraries, plus copies of one queue's rows under hostile names (one a
    name another library also has), some of them with fields listed as unavailable."""
    seed_database(engine, NOW_S, hours=0.5)
    with engine.begin() as conn:
        source = conn.execute(select(series.c.id).where(series.c.queue_name == "thumbnails")).scalar_one()
        rows = [dict(row) for row in conn.execute(select(queue_samples).where(queue_samples.c.series_id == source))
                .mappings()]
        for index, (library, name) in enumerate(HOSTILE):
            sid = conn.execute(insert(series).values(library=library, queue_name=name)).inserted_primary_key[0]
            conn.execute(insert(queue_samples), [{**row, "series_id": sid} for row in rows])
            if index % 2:
                conn.execute(update(queue_samples).where(queue_samples.c.series_id == sid,
                                                         queue_samples.c.sampled_at_ms % 20000 == 0)
                             .values(unavailable="waiting, avgProcessingTimeMs,p95WaitTimeMs"))


def _both(engine, **options) -> tuple[str, str]:
    fast, reference = io.StringIO(), io.StringIO()
    count = write_csv(engine, fast, **options)
    kind = options.pop("kind", "snapshots")
    assert write_frames(reference, export_frames(engine, kind, options.pop("queues", None), options["since_s"],
                                                 options["until_s"], options.get("libraries"))) == count
    return fast.getvalue(), reference.getvalue()


def _check(engine) -> None:
    ranges = [(NOW_S - 3600, NOW_S + 1), (NOW_S - 1234.5, NOW_S - 600), (NOW_S + 10, NOW_S + 20)]
    for since_s, until_s in ranges:
        for narrowed in ({}, {"queues": ["emails", "-cmd"]}, {"libraries": ["bullmq", "celery"]}):
            fast, reference = _both(engine, since_s=since_s, until_s=until_s, **narrowed)
            assert fast == reference
    whole, _ = _both(engine, since_s=NOW_S - 3600, until_s=NOW_S + 1)
    rows = list(csv.DictReader(io.StringIO(whole, newline="")))
    names = {row["queueName"] for row in rows}
    assert {"'=HYPERLINK(\"http://127.0.0.1/x\")", 'a,b "c"\r\nd', "'-cmd", "emails"} <= names
    blanked = [row for row in rows if row["unavailable"] == "waiting, avgProcessingTimeMs,p95WaitTimeMs"]
    assert blanked and all(row["waiting"] == "" and row["avgProcessingTimeMs"] == "" for row in blanked)
    celery = [row for row in rows if row["library"] == "celery" and row["queueName"] == "celery"]
    assert celery and all(row["avgProcessingTimeMs"] in ("", "0.0") for row in celery)
    assert len(rows) > 1000


def test_rows_path_writes_what_the_frame_path_writes(tmp_path, monkeypatch):
    engine = make_engine(f"sqlite:///{tmp_path / 'export.db'}")
    _site(engine)
    _check(engine)
    monkeypatch.setattr(queries_export, "EXPORT_CHUNK_ROWS", 37)  # many small windows: order across them
    monkeypatch.setattr(queries_export, "FIRST_WINDOW_MS", 1000)
    _check(engine)
    engine.dispose()


def test_rows_path_writes_what_the_frame_path_writes_on_postgres(pg_engine):
    _site(pg_engine)
    _check(pg_engine)


def test_an_unknown_kind_is_refused(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    with pytest.raises(ValueError):
        write_csv(engine, io.StringIO(), kind="nope", since_s=0, until_s=1)
