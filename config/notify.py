"""Notification channels from the config file's `[[notify.channels]]` tables, secrets from env or files."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from core.notify import DEFAULT_REPEAT_INTERVAL_S, Route

CHANNEL_TYPES = ("slack", "email", "pagerduty", "webhook")
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
EMAIL_TLS = ("starttls", "ssl", "none")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,48}$")
SEVERITIES = ("warning", "critical")
LEGACY_WEBHOOK = "webhook"
"""Name (and delivery cursor) of the channel that QUEUEWATCH_WEBHOOK_URL defines."""


class MissingSecret(ValueError):
    """A secret's environment variable is unset or its file unreadable (only the collector needs it)."""


class Secret:
    """A credential that never shows itself in repr, str or logs; `reveal()` gives the value to a transport."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ChannelConfig:
    """One notification channel: where it sends, what it receives, how it retries."""

    name: str
    type: str
    route: Route = field(default_factory=Route)
    repeat_interval_s: float = DEFAULT_REPEAT_INTERVAL_S
    max_attempts: int = 8
    retry_base_s: float = 1.0
    retry_cap_s: float = 300.0
    timeout_s: float = 10.0
    url: Secret | None = None  # slack, webhook
    signing_secret: Secret | None = None  # webhook
    routing_key: Secret | None = None  # pagerduty
    events_url: str = PAGERDUTY_EVENTS_URL  # pagerduty
    smtp_host: str = "localhost"  # email
    smtp_port: int = 587
    smtp_tls: str = "starttls"
    smtp_ca_file: str | None = None
    username: str | None = None
    password: Secret | None = None
    sender: str = "queuewatch@localhost"
    recipients: tuple[str, ...] = ()
    consumer: str = ""  # the delivery cursor's name; notify:<name> unless set
    unresolved: str | None = None  # why a secret is missing in this process's environment, if it is

    @property
    def cursor_name(self) -> str:
        return self.consumer or f"notify:{self.name}"

    def secrets(self) -> list[str]:
        """The revealed secrets of this channel (to scrub them out of error texts)."""
        return [s.reveal() for s in (self.url, self.signing_secret, self.routing_key, self.password)
                if s is not None and s.reveal()]


def _secret(raw: Mapping[str, Any], key: str, env: Mapping[str, str], *, inline: bool = False) -> Secret | None:
    """`<key>_env` names an environment variable, `<key>_file` a file (stripped); `<key>` inline if allowed."""
    given = [k for k in (f"{key}_env", f"{key}_file", key) if k in raw]
    if len(given) > 1:
        raise ValueError(f"give one of {', '.join(given)}")
    if f"{key}_env" in raw:
        name = str(raw[f"{key}_env"])
        if not env.get(name):
            raise MissingSecret(f"environment variable {name} (from {key}_env) is not set")
        return Secret(env[name])
    if f"{key}_file" in raw:
        path = Path(str(raw[f"{key}_file"])).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise MissingSecret(f"cannot read {key}_file {path}: {exc.strerror}") from exc
        if not value:
            raise MissingSecret(f"{key}_file {path} is empty")
        return Secret(value)
    if key in raw:
        if not inline:
            raise ValueError(f"{key} is a credential: give {key}_env or {key}_file instead")
        return Secret(str(raw[key]))
    return None


def _strings(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key} must be a list of strings")
    return tuple(value)


def _number(raw: Mapping[str, Any], key: str, default: float, kind: type = float, *, low: float = 0.0) -> Any:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < low or (kind is int and int(value) != value):
        raise ValueError(f"{key} must be {'an integer' if kind is int else 'a number'} from {low:g}, got {value!r}")
    return kind(value)


KNOWN_KEYS = {
    "common": {"name", "type", "severities", "queues", "libraries", "repeat_interval_s", "max_attempts",
               "retry_base_s", "retry_cap_s", "timeout_s"},
    "slack": {"url", "url_env", "url_file"},  # inline credentials are refused with their own message
    "webhook": {"url", "url_env", "url_file", "secret_env", "secret_file"},
    "pagerduty": {"routing_key", "routing_key_env", "routing_key_file", "events_url"},
    "email": {"host", "port", "tls", "ca_file", "username", "password", "password_env", "password_file", "from",
              "to"},
}


def parse_channel(raw: Mapping[str, Any], env: Mapping[str, str], defaults: Mapping[str, Any]) -> ChannelConfig:
    """One `[[notify.channels]]` table as a ChannelConfig; ValueError says what is wrong."""
    kind = raw.get("type")
    if kind not in CHANNEL_TYPES:
        raise ValueError(f"type must be one of {', '.join(CHANNEL_TYPES)}, got {kind!r}")
    unknown = set(raw) - KNOWN_KEYS["common"] - KNOWN_KEYS[kind]
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} for a {kind} channel")
    name = raw.get("name", kind)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"name must be 1-48 letters, digits, '.', '_' or '-', got {name!r}")
    severities = _strings(raw, "severities")
    if set(severities) - set(SEVERITIES):
        raise ValueError(f"severities must be among {', '.join(SEVERITIES)}, got {list(severities)}")
    missing: list[str] = []

    def secret(key: str, inline: bool = False) -> Secret | None:
        """The secret, or an empty placeholder noted in `missing` (the dashboard and API run without it)."""
        try:
            return _secret(raw, key, env, inline=inline)
        except MissingSecret as exc:
            missing.append(str(exc))
            return Secret("")

    merged = {**defaults, **raw}
    values: dict[str, Any] = dict(
        name=name, type=kind, route=Route(severities, _strings(raw, "queues"), _strings(raw, "libraries")),
        repeat_interval_s=_number(merged, "repeat_interval_s", DEFAULT_REPEAT_INTERVAL_S),
        max_attempts=_number(merged, "max_attempts", 8, int, low=1),
        retry_base_s=_number(merged, "retry_base_s", 1.0),
        retry_cap_s=_number(merged, "retry_cap_s", 300.0),
        timeout_s=_number(merged, "timeout_s", 10.0, low=0.1),
    )
    if kind in ("slack", "webhook"):
        values["url"] = secret("url", inline=kind == "webhook")
        if values["url"] is None:
            raise ValueError("url_env or url_file is required" + (" (or url)" if kind == "webhook" else ""))
        if kind == "webhook":
            values["signing_secret"] = secret("secret")
            if values["signing_secret"] is None and env.get("QUEUEWATCH_WEBHOOK_SECRET"):
                values["signing_secret"] = Secret(env["QUEUEWATCH_WEBHOOK_SECRET"])
    elif kind == "pagerduty":
        values["routing_key"] = secret("routing_key")
        if values["routing_key"] is None:
            raise ValueError("routing_key_env or routing_key_file is required")
        values["events_url"] = str(raw.get("events_url", PAGERDUTY_EVENTS_URL))
    else:
        recipients = _strings(raw, "to")
        if not recipients:
            raise ValueError("to must list at least one address")
        tls = raw.get("tls", "starttls")
        if tls not in EMAIL_TLS:
            raise ValueError(f"tls must be one of {', '.join(EMAIL_TLS)}, got {tls!r}")
        values.update(smtp_host=str(raw.get("host", "localhost")),
                      smtp_port=_number(raw, "port", 465 if tls == "ssl" else 587, int, low=1),
                      smtp_tls=tls, smtp_ca_file=raw.get("ca_file"), username=raw.get("username"),
                      password=secret("password"), sender=str(raw.get("from", "queuewatch@localhost")),
                      recipients=recipients)
        if values["password"] is not None and not values["username"]:
            raise ValueError("password_env/password_file needs a username")
    return ChannelConfig(**values, unresolved="; ".join(missing) or None)


def parse_notify(table: Mapping[str, Any], env: Mapping[str, str]) -> tuple[ChannelConfig, ...]:
    """The `[notify]` table: defaults for every channel plus a `channels` array of tables."""
    if not isinstance(table, Mapping):
        raise ValueError("[notify] must be a table")
    defaults = {k: v for k, v in table.items() if k != "channels"}
    unknown = set(defaults) - {"repeat_interval_s", "max_attempts", "retry_base_s", "retry_cap_s", "timeout_s"}
    if unknown:
        raise ValueError(f"[notify]: unknown key(s) {sorted(unknown)}")
    channels: list[ChannelConfig] = []
    for index, raw in enumerate(table.get("channels", [])):
        try:
            channel = parse_channel(raw, env, defaults)
        except ValueError as exc:
            label = raw.get("name", f"#{index + 1}") if isinstance(raw, Mapping) else f"#{index + 1}"
            raise ValueError(f"[[notify.channels]] {label}: {exc}") from exc
        if any(c.name == channel.name for c in channels):
            raise ValueError(f"[[notify.channels]]: two channels are named {channel.name!r}")
        channels.append(channel)
    return tuple(channels)


def legacy_webhook(url: str, secret: str | None) -> ChannelConfig:
    """The generic webhook of QUEUEWATCH_WEBHOOK_URL (signed with QUEUEWATCH_WEBHOOK_SECRET when set)."""
    return ChannelConfig(name=LEGACY_WEBHOOK, type="webhook", url=Secret(url),
                         signing_secret=Secret(secret) if secret else None, consumer=LEGACY_WEBHOOK)
