"""What each channel type sends for a notification: Slack, PagerDuty Events v2, generic webhook JSON, e-mail."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import Any, NamedTuple

from config.notify import ChannelConfig
from core.notify import webhook_signature

WEBHOOK_EVENTS = {"opened": "alert:created", "escalated": "alert:escalated", "acknowledged": "alert:acknowledged",
                  "resolved": "alert:resolved", "repeat": "alert:repeated"}
PAGERDUTY_ACTIONS = {"opened": "trigger", "escalated": "trigger", "repeat": "trigger",
                     "acknowledged": "acknowledge", "resolved": "resolve"}
HEADLINES = {"opened": "Alert firing", "escalated": "Alert escalated", "repeat": "Alert still firing",
             "acknowledged": "Alert acknowledged", "resolved": "Alert resolved"}
SLACK_MARKS = {"critical": ":red_circle:", "warning": ":large_orange_circle:"}


class Notification(NamedTuple):
    """One thing to tell a channel about one alert."""

    change: str  # opened | escalated | acknowledged | resolved | repeat
    alert: dict[str, Any]  # the spec's Alert
    severity: str
    libraries: tuple[str, ...]
    feed_event_id: int | None  # None for repeats


class HttpRequest(NamedTuple):
    url: str
    body: bytes
    headers: dict[str, str]


def iso_now(now_s: float) -> str:
    return datetime.fromtimestamp(now_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def summary(note: Notification) -> str:
    """One line: headline, severity, queue and the alert's message."""
    alert = note.alert
    text = f"{HEADLINES[note.change]}: [{note.severity.upper()}] {alert['queueName']}: {alert['message']}"
    if note.change == "acknowledged" and alert.get("acknowledgedBy"):
        text += f" (by {alert['acknowledgedBy']})"
    return text


def details(note: Notification) -> list[tuple[str, str]]:
    alert = note.alert
    return [("Alert", alert["id"]), ("Queue", alert["queueName"]), ("Library", ", ".join(note.libraries) or "n/a"),
            ("Type", alert["type"]), ("Severity", note.severity), ("Value", f"{alert['value']:g}"),
            ("Threshold", f"{alert['threshold']:g}"), ("Opened", alert["timestamp"])]


def webhook_request(channel: ChannelConfig, note: Notification, now_s: float) -> HttpRequest:
    """The generic webhook POST: {"event", "change", "alert", "sentAt"}, signed when the channel has a secret."""
    body = json.dumps({"event": WEBHOOK_EVENTS[note.change], "change": note.change, "alert": note.alert,
                       "sentAt": iso_now(now_s)}).encode()
    headers = {"Content-Type": "application/json"}
    if channel.signing_secret is not None:
        timestamp_s = int(now_s)
        headers["X-Queuewatch-Timestamp"] = str(timestamp_s)
        headers["X-Queuewatch-Signature"] = webhook_signature(channel.signing_secret.reveal(), timestamp_s, body)
    assert channel.url is not None
    return HttpRequest(channel.url.reveal(), body, headers)


def slack_request(channel: ChannelConfig, note: Notification, now_s: float) -> HttpRequest:
    """A Slack incoming-webhook message: `text` (the fallback and notification line) and a section block."""
    mark = ":white_check_mark:" if note.change == "resolved" else SLACK_MARKS.get(note.severity, ":bell:")
    lines = [f"{mark} *{summary(note)}*"] + [f"*{name}:* {value}" for name, value in details(note)]
    body = json.dumps({"text": f"{mark} {summary(note)}",
                       "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}]})
    assert channel.url is not None
    return HttpRequest(channel.url.reveal(), body.encode(), {"Content-Type": "application/json"})


def pagerduty_request(channel: ChannelConfig, note: Notification, now_s: float) -> HttpRequest:
    """A PagerDuty Events API v2 event: trigger, acknowledge or resolve, the alert id as `dedup_key`."""
    assert channel.routing_key is not None
    action = PAGERDUTY_ACTIONS[note.change]
    event: dict[str, Any] = {"routing_key": channel.routing_key.reveal(), "event_action": action,
                             "dedup_key": note.alert["id"], "client": "queuewatch"}
    if action == "trigger":
        event["payload"] = {
            "summary": summary(note)[:1024], "source": note.alert["queueName"],
            "severity": "critical" if note.severity == "critical" else "warning", "timestamp": iso_now(now_s),
            "component": note.alert["queueName"], "class": note.alert["type"],
            "custom_details": dict(details(note)),
        }
        if note.libraries:
            event["payload"]["group"] = ",".join(note.libraries)
    return HttpRequest(channel.events_url, json.dumps(event).encode(), {"Content-Type": "application/json"})


def email_message(channel: ChannelConfig, note: Notification, now_s: float) -> EmailMessage:
    """A plain-text e-mail: the summary as subject, the alert's figures as body."""
    message = EmailMessage()
    message["Subject"] = f"[queuewatch] {summary(note)}"[:250]
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.recipients)
    message["X-Queuewatch-Alert"] = note.alert["id"]
    body = [summary(note), ""] + [f"{name}: {value}" for name, value in details(note)]
    body += ["", f"Sent at {iso_now(now_s)} by queuewatch."]
    message.set_content("\n".join(body) + "\n")
    return message


HTTP_FORMATS = {"webhook": webhook_request, "slack": slack_request, "pagerduty": pagerduty_request}
