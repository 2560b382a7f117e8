"""Settings: read once (CLI flags > environment > config file > defaults) and passed in."""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from config.notify import LEGACY_WEBHOOK, ChannelConfig, legacy_webhook, parse_notify
from core.alert_rules import AlertTiming, AlertTimings
from core.health import Thresholds, ThresholdSet

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_DB_LOCATION = "$XDG_DATA_HOME/queuewatch/queuewatch.db"
"""Where the history database lives by default (XDG_DATA_HOME defaults to ~/.local/share)."""
INTERVAL_S_RANGE = (0.1, 86400.0)
PORT_RANGE = (1, 65535)


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Setting:
    """One documented setting: environment variable, default and help text."""

    name: str
    env: str
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("redis_url", "QUEUEWATCH_REDIS_URL", DEFAULT_REDIS_URL,
            "Redis that the workers use; several, comma-separated, are all read."),
    Setting("libraries", "QUEUEWATCH_LIBRARIES", "rq,bullmq,celery",
            "Queue libraries to read on every Redis (any of rq, bullmq, celery)."),
    Setting("bullmq_prefixes", "QUEUEWATCH_BULLMQ_PREFIXES", "bull",
            "BullMQ key prefixes, comma-separated (hash tags such as {bull} work)."),
    Setting("celery_queues", "QUEUEWATCH_CELERY_QUEUES", "",
            "Celery queues to read besides those found in kombu's bindings, comma-separated."),
    Setting("db_url", "QUEUEWATCH_DB_URL", f"sqlite:///{DEFAULT_DB_LOCATION}",
            "SQLAlchemy URL of the history database (SQLite file by default, PostgreSQL for larger sites); "
            "a relative SQLite path is relative to the directory the command was started in."),
    Setting("collector_id", "QUEUEWATCH_COLLECTOR_ID", None,
            "Name of this collector in the leases of shared collectors and on the Overview (default hostname:pid)."),
    Setting("interval_s", "QUEUEWATCH_INTERVAL_S", 10.0,
            "Seconds between two collection cycles (0.1 to 86400)."),
    Setting("retention_days", "QUEUEWATCH_RETENTION_DAYS", 7.0,
            "Days of snapshots and alert history kept (any finite number above 0)."),
    Setting("rollup_retention_days", "QUEUEWATCH_ROLLUP_RETENTION_DAYS", 90.0,
            "Days of 10-minute and hourly rollups kept for trends beyond the snapshots (any finite number above 0)."),
    Setting("rq_key_prefix", "RQ_KEY_PREFIX", "rq", "Key prefix of RQ 3.x (RQ 2.x always uses `rq`)."),
    Setting("backoff_cap_s", "QUEUEWATCH_BACKOFF_CAP_S", 60.0,
            "Longest wait between retries while Redis is unreachable."),
    Setting("config_path", "QUEUEWATCH_CONFIG", None,
            "TOML file with alert thresholds (global and per queue), memory limits and notification channels."),
    Setting("sample_jobs_per_cycle", "QUEUEWATCH_SAMPLE_JOBS", 500,
            "Most finished jobs per queue whose timings are read in one cycle."),
    Setting("failures_kept", "QUEUEWATCH_FAILURES_KEPT", 1000,
            "Most recent failed jobs (with tracebacks) kept per queue for Queue detail; older ones go sooner "
            "by retention."),
    Setting("wait_target_s", "QUEUEWATCH_WAIT_TARGET_S", 60.0,
            "Target for the p95 wait (s) that the capacity advice sizes workers for."),
    Setting("agent_prefix", "QUEUEWATCH_AGENT_PREFIX", "queuewatch",
            "Key prefix under which worker memory agents publish (read on the first Redis URL)."),
    Setting("api_rate_limit_per_minute", "QUEUEWATCH_API_RATE_LIMIT", 300,
            "API requests per minute per user, shared by all API processes through Redis."),
    Setting("metrics_access", "QUEUEWATCH_METRICS_ACCESS", "admin",
            "Who may read /metrics: `admin` (admin token), `public` (anyone) or `off`."),
    Setting("docs_access", "QUEUEWATCH_DOCS_ACCESS", "public",
            "Whether the API serves /docs, /redoc and /openapi.json: `public` or `off`."),
    Setting("trusted_proxies", "QUEUEWATCH_TRUSTED_PROXIES", "",
            "Proxy addresses, comma-separated, whose X-Forwarded-For gives the API client's address "
            "(none by default: the connecting address counts)."),
    Setting("webhook_url", "QUEUEWATCH_WEBHOOK_URL", None,
            "URL of a generic webhook channel: a JSON POST when an alert fires, repeats, is acknowledged or "
            "resolves."),
    Setting("webhook_secret", "QUEUEWATCH_WEBHOOK_SECRET", None,
            "Key that signs generic webhook POSTs (X-Queuewatch-Signature, HMAC-SHA256); unsigned when unset."),
    Setting("stale_check_s", "QUEUEWATCH_STALE_CHECK_S", 10.0,
            "Seconds between the API process's checks for stale data (no stored cycle for 3 collection "
            "intervals), which raise and resolve the stale-data alert; 0 turns the checks off."),
    Setting("session_ttl_s", "QUEUEWATCH_SESSION_TTL_S", 28800.0,
            "Seconds a dashboard login lasts without activity."),
    Setting("session_max_age_s", "QUEUEWATCH_SESSION_MAX_AGE_S", 604800.0,
            "Seconds a dashboard login lasts at most, however active (the cookie's lifetime)."),
    Setting("login_lockout_s", "QUEUEWATCH_LOGIN_LOCKOUT_S", 60.0,
            "Seconds logins are refused after 5 failures within 15 min (doubling with each further one)."),
    Setting("timezone", "QUEUEWATCH_TIMEZONE", "UTC",
            "IANA time zone (e.g. Europe/Berlin) in which the dashboard shows times; UTC by default."),
)

METRICS_ACCESS = ("admin", "public", "off")
DOCS_ACCESS = ("public", "off")
LIBRARIES = ("rq", "bullmq", "celery")


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def split_urls(value: str) -> list[str]:
    """Comma-separated URLs; a part without `scheme://` continues the URL before it (the further sentinels of
    `redis+sentinel://h1:26379,h2:26379/master`)."""
    urls: list[str] = []
    for part in _split(value):
        if urls and "://" not in part:
            urls[-1] += f",{part}"
        else:
            urls.append(part)
    return urls


@dataclass(frozen=True)
class Settings:
    """Everything the collector, dashboard and CLI need, resolved once."""

    redis_url: str = DEFAULT_REDIS_URL
    libraries: str = "rq,bullmq,celery"
    bullmq_prefixes: str = "bull"
    celery_queues: str = ""
    db_url: str = field(default_factory=lambda: default_db_url(os.environ))
    collector_id: str | None = None
    interval_s: float = 10.0
    retention_days: float = 7.0
    rollup_retention_days: float = 90.0
    rq_key_prefix: str = "rq"
    backoff_cap_s: float = 60.0
    config_path: str | None = None
    sample_jobs_per_cycle: int = 500
    failures_kept: int = 1000
    wait_target_s: float = 60.0
    agent_prefix: str = "queuewatch"
    api_rate_limit_per_minute: int = 300
    metrics_access: str = "admin"
    docs_access: str = "public"
    trusted_proxies: str = ""
    webhook_url: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    stale_check_s: float = 10.0
    session_ttl_s: float = 28800.0
    session_max_age_s: float = 604800.0
    login_lockout_s: float = 60.0
    timezone: str = "UTC"
    thresholds: Thresholds = field(default_factory=Thresholds)
    notify_channels: tuple[ChannelConfig, ...] = ()
    alert_timings: AlertTimings = field(default_factory=AlertTimings)

    @property
    def channels(self) -> tuple[ChannelConfig, ...]:
        """The config file's notification channels, plus the webhook of QUEUEWATCH_WEBHOOK_URL when set."""
        if not self.webhook_url:
            return self.notify_channels
        return (*self.notify_channels, legacy_webhook(self.webhook_url, self.webhook_secret))

    @property
    def retention_s(self) -> float:
        return self.retention_days * 86400.0

    @property
    def rollup_retention_s(self) -> float:
        return self.rollup_retention_days * 86400.0

    @property
    def redis_urls(self) -> list[str]:
        return split_urls(self.redis_url)

    @property
    def library_names(self) -> list[str]:
        return _split(self.libraries)

    def with_overrides(self, **overrides: Any) -> Settings:
        """Copy with the given non-None values replaced (CLI flags)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given)


def default_db_url(env: Mapping[str, str]) -> str:
    """sqlite:/// URL of $XDG_DATA_HOME/queuewatch/queuewatch.db (XDG_DATA_HOME defaults to ~/.local/share)."""
    data_home = env.get("XDG_DATA_HOME") or ""
    base = Path(data_home) if Path(data_home).is_absolute() else Path.home() / ".local" / "share"
    return f"sqlite:///{base / 'queuewatch' / 'queuewatch.db'}"


def absolute_db_url(db_url: str, cwd: Path | None = None) -> str:
    """The URL with a relative SQLite path made absolute against `cwd` (default: the current directory)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(db_url)
    except (ArgumentError, ValueError):
        return db_url  # make_engine reports it
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return db_url
    path = Path(database).expanduser()
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    return url.set(database=str(path)).render_as_string(hide_password=False)


def _number(raw: Any, kind: type, low: float, high: float, *, low_inclusive: bool = True) -> Any:
    """`raw` as a finite `kind` within [low, high] (or (low, high] when not low_inclusive); else ValueError."""
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or isinstance(value, bool) or not math.isfinite(value) \
            or value > high or value < low or (value == low and not low_inclusive):
        shown = "an integer" if kind is int else "a finite number"
        above = f"from {low:g}" if low_inclusive else f"above {low:g}"
        upper = f" to {high:g}" if math.isfinite(high) else ""
        raise ValueError(f"must be {shown} {above}{upper}, got {raw!r}")
    return value


def interval_s_value(raw: Any) -> float:
    """Seconds between cycles: a finite number from 0.1 to 86400."""
    return _number(raw, float, *INTERVAL_S_RANGE)


def retention_days_value(raw: Any) -> float:
    """Days kept: a finite number above 0."""
    return _number(raw, float, 0.0, math.inf, low_inclusive=False)


def port_value(raw: Any) -> int:
    """A TCP port from 1 to 65535."""
    return _number(raw, int, *PORT_RANGE)


def _positive(raw: Any, kind: type) -> Any:
    return _number(raw, kind, 0, math.inf, low_inclusive=False)


def stale_check_s_value(raw: Any) -> float:
    """Seconds between stale-data checks: 0 (off) or a finite number up to a day."""
    return _number(raw, float, 0.0, 86400.0)


def timezone_value(raw: Any) -> str:
    """An IANA time zone name known to zoneinfo ("UTC", "Europe/Berlin"); else SettingsError."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(str(raw))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingsError(f"QUEUEWATCH_TIMEZONE must be an IANA time zone such as UTC or Europe/Berlin, "
                            f"got {raw!r}") from exc
    return str(raw)


_CHECKS = {"interval_s": interval_s_value, "retention_days": retention_days_value,
           "rollup_retention_days": retention_days_value, "stale_check_s": stale_check_s_value}


def _coerce(setting: Setting, raw: str) -> Any:
    kind = type(setting.default) if setting.default is not None else str
    check = _CHECKS.get(setting.name)
    if check is None and kind not in (int, float):
        return kind(raw)
    try:
        return check(raw) if check else _positive(raw, kind)
    except ValueError as exc:
        raise SettingsError(f"{setting.env}: {exc}") from exc


def check_redis_urls(urls: str) -> None:
    """SettingsError, naming the URL with its password hidden, unless every comma-separated URL parses."""
    from redis.connection import parse_url

    from config.redis_urls import is_sentinel_url, parse_sentinel_url

    for url in split_urls(urls) or [urls]:
        try:
            parse_sentinel_url(url) if is_sentinel_url(url) else parse_url(url)
        except ValueError as exc:
            raise SettingsError(f"bad Redis URL {redacted(url)}: {exc}") from exc


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings from environment, the optional TOML file and explicit overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw not in (None, ""):
            values[setting.name] = _coerce(setting, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    config_path = values.get("config_path")
    if config_path:
        values["thresholds"], values["alert_timings"] = load_rules(Path(config_path))
        values["notify_channels"] = load_channels(Path(config_path), env)
        if values.get("webhook_url") and any(c.name == LEGACY_WEBHOOK for c in values["notify_channels"]):
            raise SettingsError(f"{config_path}: a channel is named {LEGACY_WEBHOOK!r}, the name of the "
                                "QUEUEWATCH_WEBHOOK_URL channel: rename it")
    unknown = set(_split(values.get("libraries", "rq"))) - set(LIBRARIES)
    if unknown or not _split(values.get("libraries", "rq")):
        raise SettingsError(f"QUEUEWATCH_LIBRARIES must list some of {', '.join(LIBRARIES)}, "
                            f"got {values.get('libraries')!r}")
    if values.get("metrics_access", "admin") not in METRICS_ACCESS:
        raise SettingsError(f"QUEUEWATCH_METRICS_ACCESS must be one of {', '.join(METRICS_ACCESS)}, "
                            f"got {values['metrics_access']!r}")
    if values.get("docs_access", "public") not in DOCS_ACCESS:
        raise SettingsError(f"QUEUEWATCH_DOCS_ACCESS must be one of {', '.join(DOCS_ACCESS)}, "
                            f"got {values['docs_access']!r}")
    for key, check in (*_CHECKS.items(), ("backoff_cap_s", lambda raw: _positive(raw, float))):
        if key in values:
            try:
                values[key] = check(values[key])
            except ValueError as exc:
                raise SettingsError(f"{key} {exc}") from exc
    if "timezone" in values:
        values["timezone"] = timezone_value(values["timezone"])
    values["db_url"] = absolute_db_url(values.get("db_url") or default_db_url(env))
    return Settings(**values)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SettingsError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc


def load_channels(path: Path, env: Mapping[str, str]) -> tuple[ChannelConfig, ...]:
    """Read the `[notify]` table and its `[[notify.channels]]` from a TOML file (secrets from `env` or files)."""
    table = _read_config(path).get("notify", {})
    try:
        return parse_notify(table, env)
    except ValueError as exc:
        raise SettingsError(f"{path}: {exc}") from exc


def load_thresholds(path: Path) -> Thresholds:
    """Read `[thresholds]` and `[thresholds.queues.<name>]` tables from a TOML file."""
    return _thresholds(_read_config(path), path)


def load_rules(path: Path) -> tuple[Thresholds, AlertTimings]:
    """Thresholds and alert timing from one read of the TOML file."""
    data = _read_config(path)
    return _thresholds(data, path), _alert_timings(data, path)


def _alert_timings(data: Mapping[str, Any], path: Path) -> AlertTimings:
    """`[alerts]` (pending_s, keep_firing_s, min_jobs) and `[alerts.queues.<name>]` overrides."""
    table = data.get("alerts", {})
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: [alerts] must be a table")
    default = _timing(AlertTiming(), {k: v for k, v in table.items() if k != "queues"}, path, "[alerts]")
    queues = table.get("queues", {})
    if not isinstance(queues, dict):
        raise SettingsError(f"{path}: [alerts.queues] must hold one table per queue")
    per_queue = {name: _timing(default, values, path, f"[alerts.queues.{name}]") for name, values in queues.items()}
    return AlertTimings(default=default, per_queue=per_queue)


def _timing(base: AlertTiming, values: Any, path: Path, where: str) -> AlertTiming:
    known = set(AlertTiming.__dataclass_fields__)
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: {where} must be a table")
    unknown = set(values) - known
    if unknown:
        raise SettingsError(f"{path}: {where} unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
    try:
        updated = replace(base, **{k: _number(v, float, 0, math.inf) for k, v in values.items()})
    except ValueError as exc:
        raise SettingsError(f"{path}: {where} {exc}") from exc
    return updated


def _thresholds(data: Mapping[str, Any], path: Path) -> Thresholds:
    """`[thresholds]` and `[thresholds.queues.<name>]` tables."""
    table = data.get("thresholds", {})
    per_queue_raw = table.get("queues", {})
    global_set = _threshold_set(ThresholdSet(), {k: v for k, v in table.items() if k != "queues"}, path)
    per_queue = {name: _threshold_set(global_set, values, path) for name, values in per_queue_raw.items()}
    return Thresholds(default=global_set, per_queue=per_queue)


def _threshold_set(base: ThresholdSet, values: Mapping[str, Any], path: Path) -> ThresholdSet:
    known = set(ThresholdSet.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise SettingsError(f"{path}: unknown threshold(s) {sorted(unknown)}; known: {sorted(known)}")
    try:
        updated = replace(base, **{k: float(v) for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{path}: thresholds must be numbers ({exc})") from exc
    try:
        updated.validate()
    except ValueError as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    return updated


def redacted(urls: str) -> str:
    """URL(s), comma-separated, with passwords (user info or a `password=` query value) hidden, for logs."""
    import re

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = []
    for url in split_urls(urls) or [urls]:
        try:
            text = make_url(url).render_as_string(hide_password=True)
        except (ArgumentError, ValueError):  # not parseable: hide all user info (up to the last '@')
            text = re.sub(r"^([\w+.-]+://)?.*@", r"\1***@", url)
        shown.append(re.sub(r"(?i)(password=)[^&;]*", r"\1***", text))
    return ",".join(shown)
