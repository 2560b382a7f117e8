"""`queuewatch demo`: an embedded Redis with real RQ, BullMQ and Celery workers and seeded workloads to watch."""
