"""BullMQ's priority tiers as queuewatch groups waiting jobs: Critical 1, High 3, Normal 5, Low 7, Background 10."""
from __future__ import annotations

CRITICAL, HIGH, NORMAL, LOW, BACKGROUND = 1, 3, 5, 7, 10
TIERS: tuple[int, ...] = (CRITICAL, HIGH, NORMAL, LOW, BACKGROUND)
TIER_NAMES = {CRITICAL: "Critical", HIGH: "High", NORMAL: "Normal", LOW: "Low", BACKGROUND: "Background"}
