"""The redis+sentinel:// URL form, parsed without connecting (checked with the other settings)."""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_AUTH = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True)
class SentinelURL:
    """`redis+sentinel://[user:password@]host:port[,host:port...]/master[/db][?options]`, parsed."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_auth: dict[str, str] = field(default_factory=dict)
    """username/password for the sentinels themselves (from sentinel_username=, sentinel_password=)."""
    options: dict[str, str] = field(default_factory=dict)
    """Other query parameters, passed to the master's connections."""


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SENTINEL_SCHEME


def parse_sentinel_url(url: str) -> SentinelURL:
    """The parts of a redis+sentinel:// URL; ValueError when one is missing or malformed. The master and db may
    also be given as query parameters (`?master=name&db=N`)."""
    rest = url.split("://", 1)[1]
    rest, _, query = rest.partition("?")
    params = {name: unquote(values[0]) for name, values in parse_qs(query).items() if values}
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    parts = [unquote(p) for p in path.split("/") if p]
    master = params.pop("master", None) or (parts[0] if parts else None)
    db_text = params.pop("db", None) or (parts[1] if len(parts) > 1 else "0")
    if not master:
        raise ValueError("a redis+sentinel:// URL names its master: redis+sentinel://host:port/master-name[/db]")
    if not db_text.isdigit():
        raise ValueError(f"db must be a number, not {db_text!r}")
    sentinels = [_host_port(item) for item in hosts.split(",") if item.strip()]
    if not sentinels:
        raise ValueError("a redis+sentinel:// URL names at least one sentinel host:port")
    auth = {name.removeprefix("sentinel_"): params.pop(name) for name in SENTINEL_AUTH if name in params}
    return SentinelURL(sentinels, master, int(db_text), unquote(username) or None, unquote(password) or None,
                       auth, params)


def _host_port(item: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep:
        return item.strip(), DEFAULT_SENTINEL_PORT
    if not port.isdigit():
        raise ValueError(f"sentinel port must be a number, not {port!r}")
    return host.strip("[]"), int(port)
