"""The same ten series of one queue in Prometheus: backfilled with promtool, read through query_range.

Used by bench_history.py. Prometheus is Debian's `prometheus` package (apt-get install -y prometheus); it is
started on 127.0.0.1 only, on a free port, over a fresh data folder, and stopped at the end. Without it the
figures are null.
"""
from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from storage.queries_export import iter_snapshot_exports

SERIES = ("waiting", "active", "delayed", "failed", "jobsPerMinute", "errorRate", "timeoutRate",
          "p50ProcessingTimeMs", "p95ProcessingTimeMs", "p99ProcessingTimeMs")
READY_WITHIN_S = 60.0
MAX_POINTS = 2000  # points per series of the dashboard's charts (step = range / MAX_POINTS)
REPEAT = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_openmetrics(engine, queue: str, since_s: float, until_s: float, out: Path) -> int:
    """The queue's ten series as an OpenMetrics file (one gauge per field); returns the samples written."""
    parts = list(iter_snapshot_exports(engine, [queue], since_s, until_s))
    rows = pd.concat(parts, ignore_index=True)
    epoch = pd.Timestamp(0, tz="UTC")
    stamps = ((pd.to_datetime(rows["timestamp"], utc=True) - epoch) / pd.Timedelta(seconds=1)).to_numpy()
    samples = 0
    with out.open("w") as stream:
        for field in SERIES:
            name = f"queuewatch_{field}"
            stream.write(f"# TYPE {name} gauge\n")
            values = pd.to_numeric(rows[field], errors="coerce").to_numpy(dtype="float64")
            keep = ~np.isnan(values)
            label = f'{name}{{queue="{queue}",field="{field}"}} '
            stream.writelines(f"{label}{v:.6g} {t:.3f}\n" for v, t in zip(values[keep], stamps[keep]))
            samples += int(keep.sum())
        stream.write("# EOF\n")
    return samples


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (loopback only)
        return response.read()


def _wait_ready(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("prometheus exited before it was ready")
        try:
            _get(f"{base}/-/ready")
            return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError("prometheus not ready in time")


def compare_with_prometheus(engine, queue: str, since_s: float, until_s: float, folder: Path) -> dict[str, Any]:
    """prometheus_chart_7d_ms (median query_range of the ten series, max per point as the chart draws
    depths) and prometheus_bytes_per_sample (the TSDB blocks' size per sample); null without prometheus."""
    figures: dict[str, Any] = {"prometheus_chart_7d_ms": None, "prometheus_bytes_per_sample": None}
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prometheus or not promtool:
        return figures
    shutil.rmtree(folder, ignore_errors=True)
    data = folder / "data"
    data.mkdir(parents=True)
    source = folder / "series.om"
    samples = write_openmetrics(engine, queue, since_s, until_s, source)
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(source), str(data)],
                   check=True, timeout=600)
    source.unlink()
    block_bytes = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    figures["prometheus_bytes_per_sample"] = round(block_bytes / samples, 3)
    config = folder / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    port = _free_port()
    process = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={data}",
                                f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=90d"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process)
        step_s = max(10.0, (until_s - since_s) / MAX_POINTS)
        query = f'max_over_time({{__name__=~"queuewatch_.+",queue="{queue}"}}[{int(step_s)}s])'
        url = f"{base}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": query, "start": since_s, "end": until_s, "step": step_s})
        body = json.loads(_get(url))
        if body.get("status") != "success" or len(body["data"]["result"]) != len(SERIES):
            raise RuntimeError(f"unexpected query_range answer: {str(body)[:300]}")
        runs = []
        for _ in range(REPEAT):
            started = time.perf_counter()
            json.loads(_get(url))
            runs.append(time.perf_counter() - started)
        figures["prometheus_chart_7d_ms"] = round(statistics.median(runs) * 1000.0, 2)
        figures["prometheus_samples"] = samples
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return figures
