"""Pure shaping of query DataFrames into the tables the pages display."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from dashboard.formatting import fmt_count, fmt_ms, fmt_rate, fmt_utc
from dashboard.libraries import NOT_AVAILABLE, TIER_LABELS, label_of
from storage.queries_details import BullMQDetails, bullmq_details
from storage.queries_latest import issues_of, unavailable_of

# Overview columns that show a QueueMetrics field ("n/a" where the backend cannot measure it).
METRIC_COLUMNS = {"waiting": "Waiting", "active": "Active", "delayed": "Delayed", "failed": "Failed",
                  "jobsPerMinute": "Jobs/min", "errorRate": "Error %", "timeoutRate": "Timeout %",
                  "p95ProcessingTimeMs": "p95 (ms)", "oldestWaitingMs": "Oldest waiting (s)"}


def by_library(rows: pd.DataFrame, libraries: Sequence[str] | None, column: str = "library") -> pd.DataFrame:
    """The rows of those libraries (all rows when `libraries` is None or empty)."""
    if not libraries or rows.empty:
        return rows
    return rows[rows[column].isin(list(libraries))].reset_index(drop=True)


def stale_note(last_seen_at_s: float, library: str) -> str:
    """What a stale queue shows instead of its issues."""
    return f"Not reported by {library or 'its library'} since {fmt_utc(last_seen_at_s)}"


def queue_notes(record: Mapping[str, Any]) -> list[str]:
    """The overview's Issues cell: stale, or paused plus the health issues."""
    if not record["current"]:
        return [stale_note(float(record["sampled_at_s"]), str(record.get("library") or ""))]
    details = bullmq_details(record)
    return (["Paused"] if details is not None and details.paused else []) + issues_of(record)


def overview_table(latest: pd.DataFrame, now_s: float,
                   trends: Mapping[tuple[str, str], list[float]] | None = None) -> pd.DataFrame:
    """One row per queue: status, library, issues, depths, throughput, error rate, p95, age of the newest
    snapshot; figures the queue's backend could not measure are NA (shown as "n/a"), never 0.

    A stale queue (its library no longer reports it) shows when it was last seen and no figures: its last
    ones are not current. A paused queue says so first in Issues. With `trends` ((library, queue) to peak
    waiting per minute), a "Depth trend" column follows Issues (None where no minute was stored).
    """
    trend = ["Depth trend"] if trends is not None else []
    columns = ["Status", "Queue", "Library", "Issues", *trend, "Waiting", "Active", "Delayed", "Failed", "Jobs/min",
               "Error %", "Timeout %", "p95 (ms)", "Oldest waiting (s)", "Last seen (s ago)"]
    if latest.empty:
        return pd.DataFrame(columns=columns)
    records = latest.to_dict("records")
    table = pd.DataFrame({
        "Status": [r["status"] if r["current"] else "stale" for r in records],
        "Queue": [r["queue_name"] for r in records],
        "Library": [r.get("library") or "" for r in records],
        "Issues": ["; ".join(queue_notes(r)) for r in records],
        **({"Depth trend": [trends.get((str(r.get("library") or ""), str(r["queue_name"]))) for r in records]}
           if trends is not None else {}),
        "Waiting": latest["waiting"].astype("Int64"),
        "Active": latest["active"].astype("Int64"),
        "Delayed": latest["delayed"].astype("Int64"),
        "Failed": latest["failed"].astype("Int64"),
        "Jobs/min": latest["jobs_per_minute"].astype("float64"),
        "Error %": latest["error_rate_pct"].astype("float64"),
        "Timeout %": latest["timeout_rate_pct"].astype("float64"),
        "p95 (ms)": latest["p95_processing_ms"].astype("float64"),
        "Oldest waiting (s)": latest["oldest_waiting_ms"].astype("float64") / 1000.0,
        "Last seen (s ago)": (now_s - latest["sampled_at_s"].astype("float64")).clip(lower=0),
    })[columns]
    for index, record in enumerate(records):
        unmeasured = METRIC_COLUMNS if not record["current"] else unavailable_of(record)
        for field in unmeasured:
            if field in METRIC_COLUMNS:
                table.loc[index, METRIC_COLUMNS[field]] = pd.NA
    order = {"critical": 0, "warning": 1, "healthy": 2}
    rank = [order.get(r["status"], 3) if r["current"] else 4 for r in records]
    ordered = table.assign(_rank=rank).sort_values(["_rank", "Queue", "Library"], kind="stable")
    return ordered.drop(columns="_rank").reset_index(drop=True)


def queue_choices(listing: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Select labels ("emails · rq") to (library, queue_name), in the listing's order."""
    return {label_of(row["queue_name"], row["library"]): (str(row["library"]), str(row["queue_name"]))
            for row in listing.to_dict("records")}


def requested_choice(choices: Mapping[str, tuple[str, str]], queue_name: str | None,
                     library: str | None) -> int:
    """Index of the choice a link asked for (?queue=...&library=...), 0 when none matches."""
    for index, (choice_library, choice_queue) in enumerate(choices.values()):
        if choice_queue == queue_name and library in (None, "", choice_library):
            return index
    return 0


def priority_tier_table(details: BullMQDetails) -> pd.DataFrame:
    """Waiting jobs per BullMQ priority tier: tier, label ("Critical (1)"), waiting; every tier, in order."""
    return pd.DataFrame({"tier": list(TIER_LABELS), "label": list(TIER_LABELS.values()),
                         "waiting": [int(details.priority_counts.get(tier, 0)) for tier in TIER_LABELS]})


def current_figures(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) of the queue's newest QueueMetrics figures; "n/a" where its backend cannot measure."""
    unmeasured = set(unavailable_of(row))
    memory_mb = row.get("memory_usage_mb")
    shown = [
        ("waiting", "Waiting", fmt_count(row.get("waiting"))),
        ("active", "Active", fmt_count(row.get("active"))),
        ("delayed", "Delayed", fmt_count(row.get("delayed"))),
        ("failed", "Failed", fmt_count(row.get("failed"))),
        ("completed", "Completed", fmt_count(row.get("completed"))),
        ("jobsPerMinute", "Jobs/min", fmt_rate(row.get("jobs_per_minute"))),
        ("errorRate", "Error rate", fmt_rate(row.get("error_rate_pct"), "%")),
        ("timeoutRate", "Timeout rate", fmt_rate(row.get("timeout_rate_pct"), "%")),
        ("oldestWaitingMs", "Oldest waiting", fmt_ms(row.get("oldest_waiting_ms"))),
        ("memoryUsageMB", "Worker memory", "–" if memory_mb is None else f"{memory_mb:,.0f} MB"),
    ]
    return [(label, NOT_AVAILABLE if field in unmeasured else text) for field, label, text in shown]


def worker_display_table(workers: pd.DataFrame) -> pd.DataFrame:
    """Workers as displayed: name, library, queues, host, pid, state, jobs, times, memory and recycle verdict.

    "Memory source" is psutil, agent or "n/a"; RSS is NA (shown as "n/a") where memory is unknown, never 0.
    """
    columns = ["Worker", "Library", "State", "RSS (MB)", "Should recycle", "Recycle reason", "Queues", "Host",
               "PID", "Jobs processed", "Memory source", "Started", "Last heartbeat"]
    if workers.empty:
        return pd.DataFrame(columns=columns)
    sources = workers["memory_source"].astype(object).where(workers["memory_source"].notna(), None)
    return pd.DataFrame({
        "Worker": workers["worker_name"],
        "Library": workers["library"],
        "Queues": workers["queues"].str.replace(",", ", "),
        "Host": workers["hostname"],
        "PID": workers["pid"].astype("Int64"),
        "State": workers["status"],
        "Jobs processed": workers["jobs_processed"].astype("int64"),
        "Started": workers["started"],
        "Last heartbeat": workers["last_heartbeat"],
        "Memory source": [str(source) if source else NOT_AVAILABLE for source in sources],
        "RSS (MB)": workers["rss_mb"].astype("float64"),
        "Should recycle": workers["should_recycle"].astype(bool),
        "Recycle reason": workers["recycle_reason"].fillna(""),
    })[columns]


def alert_history_table(history: pd.DataFrame) -> pd.DataFrame:
    """Alert history as displayed: state, severity, queue, type, value/threshold, times, acknowledgement."""
    columns = ["Severity", "State", "Queue", "Message", "Type", "Value", "Threshold", "Opened", "Resolved",
               "Acknowledged by", "Acknowledged at", "Silenced by", "Id"]
    if history.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame({
        "State": history["state"],
        "Severity": history["severity"],
        "Queue": history["queue_name"],
        "Type": history["alert_type"],
        "Message": history["message"],
        "Value": history["value"].astype("float64"),
        "Threshold": history["threshold"].astype("float64"),
        "Opened": history["opened_at"],
        "Resolved": history["resolved_at"],
        "Acknowledged by": history["acknowledged_by"].fillna(""),
        "Acknowledged at": history["acknowledged_at"],
        "Silenced by": [None if pd.isna(v) else f"#{int(v)}" for v in history["silenced_by"]],
        "Id": history["id"],
    })[columns]


def alert_events_table(events: pd.DataFrame) -> pd.DataFrame:
    """Alert events as displayed, newest first."""
    columns = ["At", "Event", "Severity", "Value", "By", "Alert"]
    if events.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame({"At": events["at"], "Event": events["event"], "Severity": events["severity"],
                         "Value": events["value"].astype("float64"), "By": events["actor"].fillna(""),
                         "Alert": events["alert_id"]})
