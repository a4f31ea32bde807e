"""Read ``rcmlake.yaml`` (and a reference ``load_config.csv``) into a ProjectConfig.

Every problem becomes a one-line :class:`ConfigError` naming the file, the
field and what is allowed, raised before any work starts.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rcmlake.config.models import ProjectConfig, TableConfig
from rcmlake.errors import ConfigError

DEFAULT_FILE = "rcmlake.yaml"
LOAD_CONFIG_HEADER = [
    "database",
    "datasource",
    "tablename",
    "loadtype",
    "watermark",
    "is_active",
    "targetpath",
]


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error: PyYAML keeps
    the last one and silently drops the first block."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: Path | str | None = None) -> ProjectConfig:
    """Load and validate a config file; relative paths in it start from its folder."""
    file = Path(path or DEFAULT_FILE)
    if not file.exists():
        raise ConfigError(
            "config file not found; run `rcmlake demo` or pass --config", file=str(file)
        )
    try:
        raw = yaml.load(file.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise ConfigError(
            f"not valid YAML ({getattr(exc, 'problem', exc)})", file=str(file), field=where
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError("top level must be a mapping", file=str(file))
    return parse_config(raw, base_dir=file.resolve().parent, file=str(file))


def parse_config(raw: dict[str, Any], *, base_dir: Path, file: str = "<config>") -> ProjectConfig:
    """Validate a config mapping (as read from YAML)."""
    try:
        config = ProjectConfig.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        raise _config_error(exc, file) from None
    if config.tables_csv is not None:
        config = _merge_load_config(config, config.path(config.tables_csv))
    return config


def _config_error(exc: ValidationError, file: str, prefix: str = "") -> ConfigError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    loc = ".".join(p for p in (prefix, loc) if p)
    kind, msg = first["type"], first["msg"]
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind in ("literal_error", "union_tag_invalid"):
        allowed = first.get("ctx", {}).get("expected") or first.get("ctx", {}).get("expected_tags")
        msg = f"got {first.get('input')!r}; allowed: {allowed}"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return ConfigError(msg.removeprefix("Value error, ") + more, file=file, field=loc)


def _merge_load_config(config: ProjectConfig, csv_path: Path) -> ProjectConfig:
    """Add the tables of a reference ``load_config.csv`` to the sources they name.

    The CSV's ``datasource`` must be a source name or one of its ``aliases``;
    a team keeps its file while rcmlake keeps one code per hospital.
    """
    rows = read_load_config(csv_path)
    by_alias = {a: name for name, s in config.sources.items() for a in (name, *s.aliases)}
    added: dict[str, list[TableConfig]] = {}
    for line, row in rows:
        field = f"line {line}"
        name = by_alias.get(row["datasource"])
        if name is None:
            raise ConfigError(
                f"datasource {row['datasource']!r} is not a source or alias; known: {sorted(by_alias)}",
                file=str(csv_path),
                field=field,
            )
        try:
            table = TableConfig(
                name=row["tablename"],
                load_type=row["loadtype"],
                watermark=row["watermark"] or None,
                active=row["is_active"].strip() == "1",
            )
        except ValidationError as exc:
            raise _config_error(exc, str(csv_path), prefix=field) from None
        added.setdefault(name, []).append(table)
    sources = dict(config.sources)
    notices = [*config.notices]
    for name, tables in added.items():
        own = {t.name for t in sources[name].tables}
        for t in tables:
            if t.name in own:  # the YAML's row wins, so one watermark is fixed without the CSV
                notices.append(f"{name}.{t.name}: rcmlake.yaml overrides the {csv_path.name} row")
        kept = [t for t in tables if t.name not in own]
        sources[name] = sources[name].model_copy(update={"tables": [*sources[name].tables, *kept]})
    return config.model_copy(update={"sources": sources, "notices": tuple(notices)})


def read_load_config(path: Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of a reference ``load_config.csv`` with their line numbers."""
    if not path.exists():
        raise ConfigError("tables_csv file not found", file=str(path))
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        if header != LOAD_CONFIG_HEADER:
            raise ConfigError(
                f"header is {header}; expected {LOAD_CONFIG_HEADER}", file=str(path), field="line 1"
            )
        return [
            (i + 2, {k.strip(): (v or "").strip() for k, v in row.items()})
            for i, row in enumerate(reader)
        ]


def json_schema() -> str:
    """The JSON Schema of ``rcmlake.yaml`` for editors (yaml-language-server)."""
    schema = ProjectConfig.model_json_schema(mode="validation")
    schema["properties"].pop("base_dir", None)
    schema["properties"].pop("notices", None)
    schema["title"] = "rcmlake.yaml"
    return json.dumps(schema, indent=2)
