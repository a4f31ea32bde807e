"""SQL engines behind one interface: DuckDB (embedded default), Spark Connect (scale-out)."""

from rcmlake.engines.base import Engine, EngineSession
from rcmlake.engines.duckdb import DuckDBEngine

__all__ = ["DuckDBEngine", "Engine", "EngineSession"]
