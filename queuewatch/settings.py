"""Settings: read once (CLI flags > environment > config file > defaults) and passed in."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from collector.health import Thresholds, ThresholdSet

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_DB_PATH = Path("data") / "queuewatch.db"


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
    Setting("db_url", "QUEUEWATCH_DB_URL", f"sqlite:///{DEFAULT_DB_PATH}",
            "SQLAlchemy URL of the history database (SQLite file by default, PostgreSQL for larger sites)."),
    Setting("interval_s", "QUEUEWATCH_INTERVAL_S", 10.0, "Seconds between two collection cycles."),
    Setting("retention_days", "QUEUEWATCH_RETENTION_DAYS", 7.0, "Days of snapshots and alert history kept."),
    Setting("rq_key_prefix", "RQ_KEY_PREFIX", "rq", "Key prefix of RQ 3.x (RQ 2.x always uses `rq`)."),
    Setting("backoff_cap_s", "QUEUEWATCH_BACKOFF_CAP_S", 60.0,
            "Longest wait between retries while Redis is unreachable."),
    Setting("config_path", "QUEUEWATCH_CONFIG", None,
            "TOML file with alert thresholds (global and per queue) and memory limits."),
    Setting("sample_jobs_per_cycle", "QUEUEWATCH_SAMPLE_JOBS", 500,
            "Most finished jobs per queue whose timings are read in one cycle."),
    Setting("agent_prefix", "QUEUEWATCH_AGENT_PREFIX", "queuewatch",
            "Key prefix under which worker memory agents publish (read on the first Redis URL)."),
    Setting("api_rate_limit_per_minute", "QUEUEWATCH_API_RATE_LIMIT", 300,
            "API requests per minute per user, shared by all API processes through Redis."),
    Setting("metrics_access", "QUEUEWATCH_METRICS_ACCESS", "admin",
            "Who may read /metrics: `admin` (admin token), `public` (anyone) or `off`."),
    Setting("webhook_url", "QUEUEWATCH_WEBHOOK_URL", None,
            "URL that receives a JSON POST when an alert opens, escalates or is acknowledged."),
    Setting("session_ttl_s", "QUEUEWATCH_SESSION_TTL_S", 28800.0,
            "Seconds a dashboard login lasts without activity."),
    Setting("session_max_age_s", "QUEUEWATCH_SESSION_MAX_AGE_S", 604800.0,
            "Seconds a dashboard login lasts at most, however active (the cookie's lifetime)."),
    Setting("login_lockout_s", "QUEUEWATCH_LOGIN_LOCKOUT_S", 60.0,
            "Seconds logins are refused after 5 failures within 15 min (doubling with each further one)."),
)

METRICS_ACCESS = ("admin", "public", "off")
LIBRARIES = ("rq", "bullmq", "celery")


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@dataclass(frozen=True)
class Settings:
    """Everything the collector, dashboard and CLI need, resolved once."""

    redis_url: str = DEFAULT_REDIS_URL
    libraries: str = "rq,bullmq,celery"
    bullmq_prefixes: str = "bull"
    celery_queues: str = ""
    db_url: str = f"sqlite:///{DEFAULT_DB_PATH}"
    interval_s: float = 10.0
    retention_days: float = 7.0
    rq_key_prefix: str = "rq"
    backoff_cap_s: float = 60.0
    config_path: str | None = None
    sample_jobs_per_cycle: int = 500
    agent_prefix: str = "queuewatch"
    api_rate_limit_per_minute: int = 300
    metrics_access: str = "admin"
    webhook_url: str | None = None
    session_ttl_s: float = 28800.0
    session_max_age_s: float = 604800.0
    login_lockout_s: float = 60.0
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def retention_s(self) -> float:
        return self.retention_days * 86400.0

    @property
    def redis_urls(self) -> list[str]:
        return _split(self.redis_url)

    @property
    def library_names(self) -> list[str]:
        return _split(self.libraries)

    def with_overrides(self, **overrides: Any) -> Settings:
        """Copy with the given non-None values replaced (CLI flags)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given)


def _coerce(setting: Setting, raw: str) -> Any:
    kind = type(setting.default) if setting.default is not None else str
    try:
        value = kind(raw)
    except ValueError as exc:
        raise SettingsError(f"{setting.env}={raw!r}: expected a {kind.__name__}") from exc
    if isinstance(value, (int, float)) and value <= 0:
        raise SettingsError(f"{setting.env}={raw!r}: must be greater than 0")
    return value


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
        values["thresholds"] = load_thresholds(Path(config_path))
    unknown = set(_split(values.get("libraries", "rq"))) - set(LIBRARIES)
    if unknown or not _split(values.get("libraries", "rq")):
        raise SettingsError(f"QUEUEWATCH_LIBRARIES must list some of {', '.join(LIBRARIES)}, "
                            f"got {values.get('libraries')!r}")
    if values.get("metrics_access", "admin") not in METRICS_ACCESS:
        raise SettingsError(f"QUEUEWATCH_METRICS_ACCESS must be one of {', '.join(METRICS_ACCESS)}, "
                            f"got {values['metrics_access']!r}")
    for key in ("interval_s", "retention_days", "backoff_cap_s"):
        if key in values and float(values[key]) <= 0:
            raise SettingsError(f"{key} must be greater than 0, got {values[key]!r}")
    return Settings(**values)


def load_thresholds(path: Path) -> Thresholds:
    """Read `[thresholds]` and `[thresholds.queues.<name>]` tables from a TOML file."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SettingsError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc
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
    """URL(s), comma-separated, with passwords hidden, for logs and banners."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = []
    for url in _split(urls) or [urls]:
        try:
            shown.append(make_url(url).render_as_string(hide_password=True))
        except ArgumentError:
            shown.append("<url>" if "@" in url else url)
    return ",".join(shown)
