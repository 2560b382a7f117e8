"""Malformed values written into a real Redis next to real RQ, BullMQ and Celery state: one function each.

Every poison touches only the `*poison*` queues, made-up workers and agent reports, so that the clean queues'
figures can be compared with each library's own counts while the poisoned ones are being read.
"""
from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Callable

import redis

from tests.collector.celery_helpers import envelope

RQ_QUEUE, BULL_QUEUE, CELERY_QUEUE = "rpoison", "bpoison", "cpoison"
LONG = "q" * 20_000
DEEP_JSON = "[" * 100_000 + "]" * 100_000
SEP = "\x06\x16"

Poison = Callable[[redis.Redis], None]


def _iso(at_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_s)) + ".000000Z"


def _rq_worker(name: str, **fields: object) -> Poison:
    def poison(r: redis.Redis) -> None:
        now = _iso(time.time())
        base = {"birth": now, "last_heartbeat": now, "queues": RQ_QUEUE, "pid": "4242", "hostname": "far-host",
                "state": "idle", "successful_job_count": "1", "failed_job_count": "0"}
        key = f"rq:worker:{name}"
        r.hset(key, mapping={**base, **fields})
        r.sadd("rq:workers", key)
    return poison


def _rq_set(key: str, member: bytes | str) -> Poison:
    return lambda r: r.sadd(key, member)


def _wrong_type(key: str) -> Poison:
    return lambda r: r.set(key, "not what the library writes")


def _rq_failed_job(r: redis.Redis) -> None:
    """A failed entry whose hash times are absurd and whose traceback inflates to 64 MB."""
    r.zadd(f"rq:failed:{RQ_QUEUE}", {"badjob": time.time() + 3600})
    r.hset("rq:job:badjob", mapping={"status": "failed", "enqueued_at": "garbage",
                                     "started_at": "0001-01-01T00:00:00Z", "ended_at": "1e400"})
    bomb = base64.b64encode(zlib.compress(b"\0" * (64 * 1024 * 1024), 9)).decode()
    r.xadd("rq:results:badjob", {"type": "2", "exc_string": bomb})


def _rq_infinite_scores(r: redis.Redis) -> None:
    r.zadd(f"rq:failed:{RQ_QUEUE}", {"plus-inf": float("inf"), "minus-inf": float("-inf")})


def _rq_head_time(r: redis.Redis) -> None:
    head = r.lindex(f"rq:queue:{RQ_QUEUE}", 0)
    r.hset(f"rq:job:{head.decode()}", "enqueued_at", "9999-12-31T23:59:59Z")


def _bull_job(field: str, value: str, *, position: int = -1) -> Poison:
    def poison(r: redis.Redis) -> None:
        job_id = r.lindex(f"bull:{BULL_QUEUE}:wait", position).decode()
        r.hset(f"bull:{BULL_QUEUE}:{job_id}", field, value)
    return poison


def _bull_metrics(r: redis.Redis) -> None:
    r.hset(f"bull:{BULL_QUEUE}:metrics:completed", mapping={"count": "inf", "prevTS": "1e400", "prevCount": "-7"})
    r.rpush(f"bull:{BULL_QUEUE}:metrics:completed:data", "1e30", "NaN", "-3")


def _bull_finished(r: redis.Redis) -> None:
    now_ms = time.time() * 1000
    r.zadd(f"bull:{BULL_QUEUE}:completed", {"inf-job": float("inf"), "ninf-job": float("-inf"), "odd": now_ms})
    r.hset(f"bull:{BULL_QUEUE}:odd", mapping={"timestamp": "NaN", "processedOn": "1e400", "finishedOn": "huge"})
    r.zadd(f"bull:{BULL_QUEUE}:failed", {"deep": now_ms})
    r.hset(f"bull:{BULL_QUEUE}:deep", mapping={"timestamp": str(int(now_ms - 9000)), "processedOn": str(int(now_ms - 5000)),
                                               "finishedOn": str(int(now_ms)), "failedReason": "x" * 5_000_000,
                                               "stacktrace": DEEP_JSON})


def _bull_meta(name: bytes) -> Poison:
    return lambda r: r.hset(b"bull:" + name + b":meta", "opts.maxLenEvents", "10000")


def _celery_message(raw: bytes | str, bucket: str = CELERY_QUEUE) -> Poison:
    return lambda r: r.lpush(bucket, raw)


def _celery_binding(member: bytes | str) -> Poison:
    return lambda r: r.sadd("_kombu.binding.celery", member)


def _celery_unacked(tag: str, raw: bytes | str) -> Poison:
    return lambda r: r.hset("unacked", tag, raw)


def _celery_event(kind: str, body_text: str | None = None, **event: object) -> Poison:
    """PUBLISH an event the way a worker does; `body_text` is raw JSON (for values json.dumps cannot write)."""
    def poison(r: redis.Redis) -> None:
        body = body_text if body_text is not None else json.dumps({"type": kind, **event})
        raw = json.dumps({"body": base64.b64encode(body.encode()).decode(), "content-encoding": "utf-8",
                          "content-type": "application/json", "headers": {},
                          "properties": {"body_encoding": "base64", "delivery_info": {}, "priority": 0}})
        r.publish(f"/0.celeryev/{kind.replace('-', '.')}", raw)
    return poison


def _agent(worker_id: str, raw: str | None = None, **fields: object) -> Poison:
    def poison(r: redis.Redis) -> None:
        now = time.time()
        report = {"library": "rq", "worker_id": worker_id, "queues": [RQ_QUEUE], "pid": 4343,
                  "hostname": "far-host", "started_at_s": now - 60, "reported_at_s": now, "period_s": 5.0,
                  "ttl_s": 3600.0, "rss_mb": 50.0, **fields}
        key = f"queuewatch:agent:rq:{worker_id}"
        r.set(key, raw if raw is not None else json.dumps(report), ex=3600)
        r.zadd("queuewatch:agents", {key: now + 3600})
    return poison


def _agent_member(member: bytes) -> Poison:
    return lambda r: r.zadd("queuewatch:agents", {member: time.time() + 3600})


def _agent_wrong_type(r: redis.Redis) -> None:
    r.hset("queuewatch:agent:rq:hash-report", "rss_mb", "1")
    r.zadd("queuewatch:agents", {"queuewatch:agent:rq:hash-report": time.time() + 3600})


POISONS: list[tuple[str, Poison]] = [
    # RQ: workers
    ("rq worker successful_job_count 10**30", _rq_worker("big-count", successful_job_count=str(10 ** 30))),
    ("rq worker successful_job_count 1e30", _rq_worker("float-count", successful_job_count="1e30")),
    ("rq worker failed_job_count -5", _rq_worker("negative-count", failed_job_count="-5")),
    ("rq worker pid 2**70", _rq_worker("big-pid", pid=str(2 ** 70))),
    ("rq worker birth 1e400, heartbeat 9999-99-99", _rq_worker("bad-times", birth="1e400",
                                                               last_heartbeat="9999-99-99T99:99:99Z")),
    ("rq worker hostname and state of 20,000 chars", _rq_worker("long-fields", hostname=LONG, state=LONG)),
    ("rq worker name of 20,000 chars", _rq_worker(LONG)),
    ("rq worker name with NUL", _rq_worker("nul\x00worker")),
    ("rq worker hash of the wrong type", lambda r: (_wrong_type("rq:worker:string")(r),
                                                    r.sadd("rq:workers", "rq:worker:string"))),
    ("rq workers set member of invalid UTF-8", _rq_set("rq:workers", b"rq:worker:\xff\xfe")),
    # RQ: queues
    ("rq queue name of 20,000 chars", _rq_set("rq:queues", f"rq:queue:{LONG}")),
    ("rq queue name with NUL", _rq_set("rq:queues", "rq:queue:a\x00b")),
    ("rq queue name of invalid UTF-8", _rq_set("rq:queues", b"rq:queue:\xff\xfe")),
    ("rq started registry of the wrong type", _wrong_type(f"rq:wip:{RQ_QUEUE}")),
    ("rq finished registry of the wrong type", _wrong_type(f"rq:finished:{RQ_QUEUE}")),
    ("rq failed registry +inf/-inf scores", _rq_infinite_scores),
    ("rq failed job with absurd times and a 64 MB traceback", _rq_failed_job),
    ("rq head job enqueued in 9999", _rq_head_time),
    # BullMQ
    ("bullmq job timestamp 1e400", _bull_job("timestamp", "1e400")),
    ("bullmq job timestamp NaN, delay -5", lambda r: (_bull_job("timestamp", "NaN", position=0)(r),
                                                       _bull_job("delay", "-5", position=0)(r))),
    ("bullmq metrics count inf, prevTS 1e400, points 1e30/NaN", _bull_metrics),
    ("bullmq completed +inf/-inf scores, times NaN/1e400/huge, 5 MB reason, deep stacktrace", _bull_finished),
    ("bullmq active list of the wrong type", _wrong_type(f"bull:{BULL_QUEUE}:active")),
    ("bullmq queue name of 20,000 chars", _bull_meta(LONG.encode())),
    ("bullmq queue name with NUL", _bull_meta(b"a\x00b")),
    ("bullmq queue name of invalid UTF-8", _bull_meta(b"\xff\xfe")),
    # Celery: waiting messages, bindings, unacked
    ("celery message headers a string", _celery_message(envelope([[], {}, {}], headers="headers-as-text"))),  # type: ignore[arg-type]
    ("celery message published at 1e400",
     _celery_message('{"headers": {"id": "m1", "qw_published_at": 1e400}, "body": "", "properties": {}}')),
    ("celery message deeply nested", _celery_message(DEEP_JSON)),
    ("celery message of invalid UTF-8", _celery_message(b"\xff\xfe{")),
    ("celery priority bucket of the wrong type", lambda r: r.hset(f"{CELERY_QUEUE}{SEP}3", "x", "y")),
    ("celery binding to a queue named with NUL", _celery_binding(f"k{SEP}{SEP}a\x00b")),
    ("celery binding to a queue of 20,000 chars", _celery_binding(f"k{SEP}{SEP}{LONG}")),
    ("celery unacked deeply nested", _celery_unacked("p1", DEEP_JSON)),
    ("celery unacked headers a string", _celery_unacked("p2", json.dumps([{"headers": "x"}, "", CELERY_QUEUE]))),
    ("celery unacked eta in 9999",
     _celery_unacked("p3", json.dumps([{"headers": {"id": "u3", "eta": "9999-12-31T23:59:59+00:00"}}, "",
                                       CELERY_QUEUE]))),
    # Celery: events
    ("celery heartbeat pid 2**70, processed 10**30", _celery_event("worker-heartbeat", hostname="poison@far",
                                                                    pid=2 ** 70, processed=10 ** 30, freq=2.0,
                                                                    timestamp=time.time())),
    ("celery heartbeat timestamp 1e400, loadavg text",
     _celery_event("worker-heartbeat", '{"type": "worker-heartbeat", "hostname": "inf@far", "timestamp": 1e400, '
                                       '"loadavg": "abc", "freq": 0, "active": "x", "processed": -5}')),
    ("celery heartbeat hostname of 20,000 chars", _celery_event("worker-heartbeat", hostname=LONG, freq=2.0)),
    ("celery heartbeat hostname with NUL", _celery_event("worker-heartbeat", hostname="a\x00b@far", freq=2.0)),
    ("celery task-sent to a queue of 20,000 chars", _celery_event("task-sent", uuid="ps1", queue=LONG)),
    ("celery task-succeeded runtime 1e400",
     _celery_event("task-succeeded", '{"type": "task-succeeded", "uuid": "ps2", "hostname": "poison@far", '
                                     '"runtime": 1e400, "timestamp": -1e400}')),
    ("celery event body deeply nested", _celery_event("task-failed", DEEP_JSON)),
    # Agent reports
    ("agent index member of invalid UTF-8", _agent_member(b"queuewatch:agent:rq:\xff\xfe")),
    ("agent index member of 20,000 chars", _agent_member(f"queuewatch:agent:rq:{LONG}".encode())),
    ("agent rss_mb 'huge'", _agent("huge-rss", rss_mb="huge")),
    ("agent jobs_processed 1e30", _agent("many-jobs", jobs_processed=1e30)),
    ("agent pid 2**70", _agent("big-pid-agent", pid=2 ** 70)),
    ("agent rss_mb Infinity", _agent("inf-rss", raw='{"library": "rq", "worker_id": "inf-rss", "pid": 1, '
                                               '"rss_mb": Infinity}')),
    ("agent report deeply nested", _agent("deep-agent", raw='{"library": ' + DEEP_JSON + "}")),
    ("agent queues of 20,000 chars, negative counts", _agent("long-queues", queues=[LONG], failed_jobs=-3)),
    ("agent report of the wrong type", _agent_wrong_type),
]
