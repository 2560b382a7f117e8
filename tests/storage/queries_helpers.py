"""Constants of the query tests: the seed's clock, the spec's field names."""
from __future__ import annotations

import re

from storage.fields import QUEUE_METRICS_FIELDS

NOW_S = 1_760_875_200.0  # 2025-10-19T12:00:00Z
HOUR_S = 3600.0
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
METRIC_NAMES = [name for name, _ in QUEUE_METRICS_FIELDS]
ALERT_KEYS = ["id", "severity", "queueName", "type", "message", "value", "threshold", "timestamp",
              "acknowledged"]
