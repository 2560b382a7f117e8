"""The pure domain: readings, the quantile sketch, thresholds and health, alert, leak and recycle rules.

Nothing here imports Redis, SQL, Streamlit or any other queuewatch package; the collector, storage, the API
and the dashboard all build on it.
"""
