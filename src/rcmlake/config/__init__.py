"""Configuration: pydantic models, the YAML and load_config.csv loaders, secrets."""

from rcmlake.config.loader import DEFAULT_FILE, json_schema, load_config, parse_config
from rcmlake.config.models import FileFeedConfig, ProjectConfig, SourceConfig, TableConfig

__all__ = [
    "DEFAULT_FILE",
    "FileFeedConfig",
    "ProjectConfig",
    "SourceConfig",
    "TableConfig",
    "json_schema",
    "load_config",
    "parse_config",
]
