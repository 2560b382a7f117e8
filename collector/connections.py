"""Clients for one configured Redis URL: plain or ACL user (redis://), TLS (rediss://), Sentinel
(redis+sentinel://), and the masters of a Redis Cluster reached through any of its nodes.

URL forms (see README "Redis URLs"):
- `redis://[user:password@]host:port/db`, `unix:///path?db=N`: one Redis (redis-py's from_url).
- `rediss://...?ssl_ca_certs=CA.pem&ssl_certfile=CLIENT.pem&ssl_keyfile=CLIENT.key&ssl_cert_reqs=required`:
  TLS; every query parameter redis-py's SSLConnection accepts is passed on (ssl_check_hostname=false too).
- `redis+sentinel://[user:password@]host:port[,host2:port2...]/master-name[/db]`, or the master and db as query
  parameters (`?master=name&db=N`); `sentinel_password=` (and `sentinel_username=`) authenticate to the
  sentinels, user and password to the master. Each cycle asks a sentinel for the master's address first, so
  after a failover the next cycle reads the new master.
- A `redis://` or `rediss://` URL naming a node of a Redis Cluster (`INFO cluster` says `cluster_enabled:1`):
  the URL seeds the slot map, and every master gets a plain client with the same credentials and TLS settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
from redis.crc import key_slot
from redis.sentinel import Sentinel, SentinelConnectionPool

from config.redis_urls import is_sentinel_url, parse_sentinel_url
from config.settings import SettingsError, redacted

SOCKET_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0

READ_ONLY_ACL = ("%R~* &* -@all +ping +hello +auth +select +client|list +info +time +multi +exec "
                 "+scan +smembers +llen +lrange +zcard +zcount +zrange +zrangebyscore +zrevrangebyscore +hgetall "
                 "+hget +hmget +hlen +hrandfield +lindex +exists +xrange +xrevrange +mget +psubscribe +punsubscribe "
                 "+cluster|slots")
"""The ACL rules of a collector's Redis user (Redis >= 7.0): every key readable (`%R~*`, read-only key
access), every channel subscribable, and only the commands the readers send: connection set-up, INFO (is it a
cluster node?), discovery, counts, the Celery event subscription, the cluster slot map. The collector writes
nothing in Redis, so the user holds no write command and no writable key."""


@dataclass(frozen=True)
class SlotRange:
    """Hash slots first..last (inclusive) served by one master."""

    first: int
    last: int


@dataclass
class ClusterNode:
    """One master of a Redis Cluster: its address, its slots and a plain client to it."""

    host: str
    port: int
    slots: list[SlotRange]
    client: redis.Redis = field(repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def owns(self, key: str | bytes) -> bool:
        """Whether this master serves the slot of `key` (by the slot map read last)."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        return any(r.first <= slot <= r.last for r in self.slots)


def connect(url: str) -> redis.Redis:
    """A client for one configured URL (a Sentinel URL gives a client of its current master); a malformed URL
    or an option redis-py does not know is a SettingsError."""
    try:
        if is_sentinel_url(url):
            client = _sentinel_master(url)
        else:
            client = redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S,
                                          socket_connect_timeout=CONNECT_TIMEOUT_S)
        client.connection_pool.make_connection()  # unknown query parameters fail here, before any I/O
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"bad Redis URL {redacted(url)}: {exc}") from exc
    return client


def source_label(url: str) -> str:
    """The URL as alerts and logs name it: without user or password, with no query."""
    scheme, _, rest = url.partition("://")
    rest = rest.split("?", 1)[0]
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def one_slot(prefixes: list[str]) -> bool:
    """Whether every key under these prefixes hashes to one slot (they share one `{hash tag}`)."""
    return len({key_slot(f"{prefix}:{suffix}".encode()) for prefix in prefixes for suffix in ("a", "b")}) == 1


def is_sentinel(client: redis.Redis) -> bool:
    return isinstance(client.connection_pool, SentinelConnectionPool)


def follow_master(client: redis.Redis) -> None:
    """Ask the sentinels where the master is now; idle connections to a former master are dropped."""
    if is_sentinel(client):
        client.connection_pool.get_master_address()


def is_cluster(client: redis.Redis) -> bool:
    """Whether the Redis behind `client` is a node of a Redis Cluster (one INFO round trip)."""
    return bool(client.info("cluster").get("cluster_enabled"))


def cluster_masters(seed: redis.Redis, known: dict[str, ClusterNode] | None = None) -> list[ClusterNode]:
    """Every master with its slots (one CLUSTER SLOTS round trip to `seed`); clients of `known` masters are
    kept, new masters get a client with the seed's options."""
    known = known or {}
    seed_host = seed.connection_pool.connection_kwargs.get("host", "127.0.0.1")
    slots: dict[tuple[str, int], list[SlotRange]] = {}
    for entry in seed.execute_command("CLUSTER SLOTS"):
        first, last, master = int(entry[0]), int(entry[1]), entry[2]
        host = _text(master[0]) or seed_host
        slots.setdefault((host, int(master[1])), []).append(SlotRange(first, last))
    nodes = []
    for (host, port), ranges in sorted(slots.items()):
        old = known.get(f"{host}:{port}")
        client = old.client if old is not None else node_client(seed, host, port)
        nodes.append(ClusterNode(host, port, sorted(ranges, key=lambda r: r.first), client))
    return nodes


def node_client(seed: redis.Redis, host: str, port: int) -> redis.Redis:
    """A plain client to another node, with the seed's credentials, TLS settings and timeouts."""
    pool = seed.connection_pool
    kwargs: dict[str, Any] = {**pool.connection_kwargs, "host": host, "port": port}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


def _sentinel_master(url: str) -> redis.Redis:
    """The master client of a redis+sentinel:// URL."""
    parsed = parse_sentinel_url(url)
    timeouts = {"socket_timeout": SOCKET_TIMEOUT_S, "socket_connect_timeout": CONNECT_TIMEOUT_S}
    options = {name: _query_value(name, value) for name, value in parsed.options.items()}
    return Sentinel(parsed.sentinels, sentinel_kwargs={**timeouts, **parsed.sentinel_auth}, **timeouts).master_for(
        parsed.master, db=parsed.db, username=parsed.username, password=parsed.password, **{**timeouts, **options})


def _query_value(name: str, value: str) -> Any:
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS

    parser = URL_QUERY_ARGUMENT_PARSERS.get(name)
    return parser(value) if parser else value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
