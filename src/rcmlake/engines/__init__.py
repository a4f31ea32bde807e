"""SQL engines behind one interface: DuckDB (embedded default), Spark Connect (scale-out)."""

from __future__ import annotations

import os

from rcmlake.config.models import RunConfig
from rcmlake.engines.base import Capabilities, Engine, EngineSession
from rcmlake.engines.duckdb import DuckDBEngine
from rcmlake.errors import ConfigError


def spark_remote(run: RunConfig) -> str:
    """The Spark Connect URL: config, then ``$RCMLAKE_SPARK_REMOTE``, then ``$SPARK_REMOTE``."""
    remote = (
        run.spark_remote or os.environ.get("RCMLAKE_SPARK_REMOTE") or os.environ.get("SPARK_REMOTE")
    )
    if not remote:
        raise ConfigError(
            "run.engine is spark but no Spark Connect URL is set: give run.spark_remote, "
            "--spark-remote or $RCMLAKE_SPARK_REMOTE (sc://host:port)"
        )
    return remote


def engine_for(run: RunConfig, scratch: str | None = None) -> Engine:
    """The engine ``run.engine`` names, configured from ``run``; ``scratch``: a folder the
    engine may write intermediate results to (Spark, where its server does not cache)."""
    if run.engine == "spark":
        from rcmlake.engines.spark import SparkEngine

        return SparkEngine(spark_remote(run), scratch)
    return DuckDBEngine(run.memory_limit, run.threads)


__all__ = ["Capabilities", "DuckDBEngine", "Engine", "EngineSession", "engine_for", "spark_remote"]
