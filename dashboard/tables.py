"""Pure shaping of query DataFrames into the tables the pages display."""
from __future__ import annotations

import pandas as pd

from storage.queries_latest import issues_of, unavailable_of

# Overview columns that show a QueueMetrics field (blank where the backend cannot measure it).
METRIC_COLUMNS = {"waiting": "Waiting", "active": "Active", "delayed": "Delayed", "failed": "Failed",
                  "jobsPerMinute": "Jobs/min", "errorRate": "Error %", "timeoutRate": "Timeout %",
                  "p95ProcessingTimeMs": "p95 (ms)", "oldestWaitingMs": "Oldest waiting (s)"}


def overview_table(latest: pd.DataFrame, now_s: float) -> pd.DataFrame:
    """One row per queue: status, issues, depths, throughput, error rate, p95, age of the newest snapshot."""
    columns = ["Status", "Queue", "Issues", "Waiting", "Active", "Delayed", "Failed", "Jobs/min", "Error %",
               "Timeout %", "p95 (ms)", "Oldest waiting (s)", "Last seen (s ago)"]
    if latest.empty:
        return pd.DataFrame(columns=columns)
    records = latest.to_dict("records")
    table = pd.DataFrame({
        "Status": [r["status"] if r["current"] else "stale" for r in records],
        "Queue": [r["queue_name"] for r in records],
        "Issues": ["; ".join(issues_of(r)) for r in records],
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
    })
    for index, record in enumerate(records):
        for field in unavailable_of(record):
            if field in METRIC_COLUMNS:
                table.loc[index, METRIC_COLUMNS[field]] = pd.NA
    order = {"critical": 0, "warning": 1, "healthy": 2}
    rank = [order.get(r["status"], 3) if r["current"] else 4 for r in records]
    ordered = table.assign(_rank=rank).sort_values(["_rank", "Queue"])
    return ordered.drop(columns="_rank").reset_index(drop=True)


def worker_display_table(workers: pd.DataFrame) -> pd.DataFrame:
    """Workers as displayed: name, queues, host, pid, state, jobs, times, RSS and recycle verdict."""
    columns = ["Worker", "Queues", "Host", "PID", "State", "Jobs processed", "Started", "Last heartbeat",
               "RSS (MB)", "Should recycle", "Recycle reason"]
    if workers.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame({
        "Worker": workers["worker_name"],
        "Queues": workers["queues"].str.replace(",", ", "),
        "Host": workers["hostname"],
        "PID": workers["pid"].astype("Int64"),
        "State": workers["status"],
        "Jobs processed": workers["jobs_processed"].astype("int64"),
        "Started": workers["started"],
        "Last heartbeat": workers["last_heartbeat"],
        "RSS (MB)": workers["rss_mb"].astype("float64"),
        "Should recycle": workers["should_recycle"].astype(bool),
        "Recycle reason": workers["recycle_reason"].fillna(""),
    })


def alert_history_table(history: pd.DataFrame) -> pd.DataFrame:
    """Alert history as displayed: state, severity, queue, type, value/threshold, times, acknowledgement."""
    columns = ["State", "Severity", "Queue", "Type", "Message", "Value", "Threshold", "Opened", "Resolved",
               "Acknowledged by", "Acknowledged at", "Id"]
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
        "Id": history["id"],
    })


def alert_events_table(events: pd.DataFrame) -> pd.DataFrame:
    """Alert events as displayed, newest first."""
    columns = ["At", "Event", "Severity", "Value", "By", "Alert"]
    if events.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame({"At": events["at"], "Event": events["event"], "Severity": events["severity"],
                         "Value": events["value"].astype("float64"), "By": events["actor"].fillna(""),
                         "Alert": events["alert_id"]})
