"""Ways in: SQL over the lake, exports to DuckDB and PostgreSQL, the HTML dashboard, quality report."""
