"""The admin JSON API of shared/spec/monitoring-api.md, served from what the collector stored."""
