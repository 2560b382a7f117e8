"""`queuewatch demo`: an embedded Redis, real RQ workers and a synthetic workload to watch."""
