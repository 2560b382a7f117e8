"""Job functions of the demo workload: they sleep a given time, fail when told to, and some hold memory."""
from __future__ import annotations

import time
from collections import OrderedDict

MB = 1024 * 1024

_asset_cache: OrderedDict[int, bytes] = OrderedDict()


class SmtpRejectedError(RuntimeError):
    """The mail relay refused a message."""


class PushProviderError(RuntimeError):
    """The push provider did not accept a notification."""


class WebhookDeliveryError(RuntimeError):
    """A subscriber's endpoint answered with an error status."""


class AssetDecodeError(ValueError):
    """An uploaded asset could not be decoded."""


class ReportQueryError(RuntimeError):
    """A report query failed."""


def _work(work_ms: float) -> None:
    """Spend `work_ms` milliseconds (sleeping, so a demo does not load the CPU)."""
    time.sleep(max(0.0, work_ms) / 1000.0)


def send_campaign_email(campaign_id: int, recipient_id: int, work_ms: float, fail: bool = False) -> str:
    """Render and send one campaign e-mail."""
    _work(work_ms)
    if fail:
        raise SmtpRejectedError(f"550 mailbox unavailable: recipient {recipient_id}, campaign {campaign_id}")
    return f"campaign {campaign_id} sent to {recipient_id}"


def deliver_notification(user_id: int, channel: str, work_ms: float, fail: bool = False) -> str:
    """Deliver one push, SMS or in-app notification."""
    _work(work_ms)
    if fail:
        raise PushProviderError(f"{channel} provider returned 503 for user {user_id}")
    return f"{channel} notification delivered to {user_id}"


def deliver_webhook(endpoint: str, event_id: int, work_ms: float, fail: bool = False) -> int:
    """POST one event to a subscriber's endpoint; returns the HTTP status."""
    _work(work_ms)
    if fail:
        raise WebhookDeliveryError(f"POST {endpoint} for event {event_id}: HTTP 502 Bad Gateway")
    return 200


def process_asset(asset_id: int, work_ms: float, hold_mb: float, cache_limit_mb: float,
                  fail: bool = False) -> float:
    """Make renditions of an uploaded asset and keep them in this process's cache; returns its size in MB."""
    rendition = b"\xa5" * int(hold_mb * MB)
    _asset_cache[asset_id] = rendition
    _asset_cache.move_to_end(asset_id)
    _evict_assets(cache_limit_mb)
    _work(work_ms)
    if fail:
        raise AssetDecodeError(f"asset {asset_id}: unsupported colour profile")
    return asset_cache_mb()


def _evict_assets(cache_limit_mb: float) -> None:
    """Drop the oldest renditions until the cache fits in `cache_limit_mb`."""
    while len(_asset_cache) > 1 and asset_cache_mb() > cache_limit_mb:
        _asset_cache.popitem(last=False)


def asset_cache_mb() -> float:
    """Size of the renditions this process holds, in MB."""
    return sum(len(rendition) for rendition in _asset_cache.values()) / MB


def generate_report(report_id: int, work_ms: float, fail: bool = False) -> str:
    """Run the queries of one report and render it."""
    _work(work_ms)
    if fail:
        raise ReportQueryError(f"report {report_id}: canceling statement due to statement timeout")
    return f"report {report_id} rendered"


def build_report_section(report_id: int, section: str, work_ms: float) -> str:
    """Compute one section of a multi-part report."""
    _work(work_ms)
    return f"report {report_id}/{section}"


def assemble_report(report_id: int, sections: list[str]) -> str:
    """Join the sections of a report once they are all done."""
    _work(50)
    return f"report {report_id}: {', '.join(sections)}"
