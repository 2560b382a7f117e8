"""Counting the Redis round trips made through a redis-py client."""
from __future__ import annotations

from typing import Any

import redis
from redis.client import Pipeline


class CountingRedis(redis.Redis):
    """A redis.Redis whose `round_trips` counts each command sent alone and each pipeline executed."""

    round_trips: int = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> CountingPipeline:
        return CountingPipeline(self, transaction, shard_hint)


class CountingPipeline(Pipeline):
    """A pipeline that adds one round trip to its client per non-empty execute()."""

    def __init__(self, owner: CountingRedis, transaction: bool, shard_hint: Any) -> None:
        super().__init__(owner.connection_pool, owner.response_callbacks, transaction, shard_hint)
        self._owner = owner

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self.command_stack or self.watching:
            self._owner.round_trips += 1
        return super().execute(raise_on_error)

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        self._owner.round_trips += 1
        return super().immediate_execute_command(*args, **options)


def counting(client: redis.Redis) -> CountingRedis:
    """A counting client over the same connection pool (the client itself if it already counts)."""
    if isinstance(client, CountingRedis):
        return client
    wrapped = CountingRedis(connection_pool=client.connection_pool)
    wrapped.response_callbacks = client.response_callbacks
    return wrapped
