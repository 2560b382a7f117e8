"""The collector: reads queue state from Redis, derives metrics, health and alerts, writes snapshots."""
