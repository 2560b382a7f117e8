"""Settings: read once from flags, environment and the thresholds file, then passed in."""
