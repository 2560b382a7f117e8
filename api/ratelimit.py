"""Per-user rate limits shared by every API process through Redis (a sliding one-minute log).

When Redis cannot be reached the limiter fails open to a per-process limit of the same size, so the API
keeps answering (and still refuses floods) while the shared budget is unavailable.
"""
from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass

import redis

KEY_PREFIX = "queuewatch:ratelimit:"
RETRY_SHARED_AFTER_S = 5.0

# KEYS[1] log key; ARGV: now_ms, window_ms, limit, member. Returns {allowed, count, oldest_ms}.
_SLIDING_LOG = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', key, window)
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {allowed, count, oldest[2] or now}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_at_s: float
    shared: bool  # False while falling back to the per-process limit

    def retry_after_s(self, now_s: float) -> int:
        return max(1, math.ceil(self.reset_at_s - now_s))


class RateLimiter:
    """`limit` requests per `window_s` per key, counted in Redis across processes."""

    def __init__(self, client: redis.Redis | None, limit: int = 300, window_s: float = 60.0):
        self.client = client
        self.limit = limit
        self.window_s = window_s
        self._script = client.register_script(_SLIDING_LOG) if client is not None else None
        self._local: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._shared_down_until_s = 0.0

    def hit(self, key: str, now_s: float | None = None) -> Decision:
        now_s = time.time() if now_s is None else now_s
        if self._script is not None and now_s >= self._shared_down_until_s:
            try:
                allowed, count, oldest_ms = self._script(
                    keys=[KEY_PREFIX + key],
                    args=[int(now_s * 1000), int(self.window_s * 1000), self.limit, uuid.uuid4().hex])
                reset = float(oldest_ms) / 1000 + self.window_s
                return Decision(bool(allowed), self.limit, max(0, self.limit - int(count)), reset, True)
            except redis.RedisError:
                self._shared_down_until_s = now_s + RETRY_SHARED_AFTER_S
        return self._hit_local(key, now_s)

    def _hit_local(self, key: str, now_s: float) -> Decision:
        with self._lock:
            log = self._local.setdefault(key, deque())
            while log and log[0] <= now_s - self.window_s:
                log.popleft()
            allowed = len(log) < self.limit
            if allowed:
                log.append(now_s)
            reset = (log[0] if log else now_s) + self.window_s
            return Decision(allowed, self.limit, max(0, self.limit - len(log)), reset, False)
