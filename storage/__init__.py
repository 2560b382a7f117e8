"""History storage: engine and migrations, tables, writes, queries and retention. Never imports streamlit."""
