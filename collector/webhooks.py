"""Transports of notifications: an HTTP POST (Slack, PagerDuty, generic webhooks) and SMTP e-mail.

Each raises DeliveryError with a one-line reason, and says whether trying again may help (a 4xx answer other
than 408 and 429, or an SMTP 5xx, will not). Error texts never carry the channel's secrets.
"""
from __future__ import annotations

import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage

from collector.notify_formats import HTTP_FORMATS, Notification, email_message
from config.notify import ChannelConfig

RETRYABLE_HTTP = (408, 429)


class DeliveryError(Exception):
    """A notification was not accepted; `retryable` is False when the same request would fail again."""

    def __init__(self, reason: str, retryable: bool = True):
        super().__init__(reason)
        self.retryable = retryable


def scrub(text: str, secrets: list[str]) -> str:
    """`text` on one line with every secret replaced by ***."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return " ".join(text.split())[:500]


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """POST `body`; returns the HTTP status (raises DeliveryError when no answer comes)."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"User-Agent": "queuewatch", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, malformed URLs
        reason = getattr(exc, "reason", None) or exc
        raise DeliveryError(f"no answer: {reason}") from exc


def send_http(channel: ChannelConfig, note: Notification, now_s: float) -> None:
    request = HTTP_FORMATS[channel.type](channel, note, now_s)
    status = post(request.url, request.body, request.headers, channel.timeout_s)
    if not 200 <= status < 300:
        retryable = status >= 500 or status in RETRYABLE_HTTP or status < 400
        raise DeliveryError(f"HTTP {status}", retryable=retryable)


def send_email(channel: ChannelConfig, note: Notification, now_s: float) -> None:
    """Send over SMTP: implicit TLS (`ssl`), STARTTLS (`starttls`, the default) or plain (`none`); log in when
    the channel has a username."""
    message: EmailMessage = email_message(channel, note, now_s)
    context = ssl.create_default_context(cafile=channel.smtp_ca_file)
    try:
        if channel.smtp_tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(channel.smtp_host, channel.smtp_port,
                                                  timeout=channel.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=channel.timeout_s)
        with smtp:
            if channel.smtp_tls == "starttls":
                smtp.starttls(context=context)
            if channel.username:
                smtp.login(channel.username, channel.password.reveal() if channel.password else "")
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryError(f"SMTP {exc.smtp_code} {text}", retryable=exc.smtp_code < 500) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"SMTP recipients refused: {sorted(exc.recipients)}", retryable=False) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP: {exc}") from exc


def send(channel: ChannelConfig, note: Notification, now_s: float) -> None:
    """Deliver one notification on its channel, or raise DeliveryError."""
    (send_email if channel.type == "email" else send_http)(channel, note, now_s)
