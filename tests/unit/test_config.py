"""Config validation: every bad config fails before work starts, naming file, field and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rcmlake.config import json_schema, load_config, parse_config
from rcmlake.demo import demo_config
from rcmlake.errors import ConfigError


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "rcmlake.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def demo_raw() -> dict:
    return yaml.safe_load(demo_config())


def test_demo_config_is_valid(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, demo_raw()))
    assert sorted(config.sources) == ["hospital_a", "hospital_b"]
    patients = next(t for t in config.sources["hospital_b"].tables if t.name == "patients")
    assert (patients.load_type, patients.watermark) == ("incremental", "Updated_Date")
    assert config.lake_uri == str(tmp_path / "lake")


@pytest.mark.parametrize(
    ("mutate", "field", "says"),
    [
        (lambda r: r.update(lakes="x"), "lakes", "unknown key"),
        (
            lambda r: r["sources"]["hospital_a"].update(port="x"),
            "sources.hospital_a.sqlite.port",
            "unknown key",
        ),
        (
            lambda r: r["sources"]["hospital_a"]["tables"][0].update(load_type="delta"),
            "load_type",
            "allowed: 'full' or 'incremental'",
        ),
        (
            lambda r: r["sources"]["hospital_a"]["tables"][2].pop("watermark"),
            "tables.2",
            "needs a `watermark`",
        ),
        (
            lambda r: r["sources"]["hospital_a"].update(type="oracle"),
            "sources.hospital_a",
            "allowed",
        ),
        (
            lambda r: (
                r["run"].update(workers="many") if "run" in r else r.update(run={"workers": "many"})
            ),
            "run.workers",
            "integer",
        ),
        (
            lambda r: r["files"]["claims"].update(layout="remits"),
            "files.claims.layout",
            "allowed: 'claims', 'cpt_codes' or 'x835'",
        ),
    ],
)
def test_bad_config_names_file_field_and_allowed(
    tmp_path: Path, mutate, field: str, says: str
) -> None:
    raw = demo_raw()
    mutate(raw)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, raw))
    message = str(err.value)
    assert message.startswith(str(tmp_path / "rcmlake.yaml"))
    assert field in message
    assert says in message
    assert err.value.exit_code == 2


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lake: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_env_references_resolve_at_run_time_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = demo_raw()
    raw["sources"]["hospital_a"] = {
        "type": "mysql",
        "url": "mysql://etl:${HOSP_A_PW}@db:3306/a",
        "tables": [],
    }
    config = parse_config(raw, base_dir=tmp_path)  # loading does not need the variable yet
    source = config.sources["hospital_a"]
    with pytest.raises(ConfigError, match="environment variable HOSP_A_PW is not set"):
        source.resolved_url()
    monkeypatch.setenv("HOSP_A_PW", "s3cret")
    assert source.resolved_url() == "mysql://etl:s3cret@db:3306/a"
    assert "s3cret" not in source.display_url() and "s3cret" not in repr(config)


LOAD_CONFIG = """database,datasource,tablename,loadtype,watermark,is_active,targetpath
hospital_a_db,hos-a,departments,Full,,1,hosa
hospital_a_db,hos-a,patients,Incremental,ModifiedDate,1,hosa
hospital_b_db,hos-b,dbo.patients,Incremental,Updated_Date,1,hosb
hospital_b_db,hos-b,providers,Full,,0,hosb
"""


def test_reference_load_config_csv_is_the_table_list(tmp_path: Path) -> None:
    (tmp_path / "load_config.csv").write_text(LOAD_CONFIG)
    raw = demo_raw()
    for s in raw["sources"].values():
        s["tables"] = []
    raw["tables_csv"] = "load_config.csv"
    config = load_config(write(tmp_path, raw))
    a = {t.name: t for t in config.sources["hospital_a"].tables}
    b = {t.name: t for t in config.sources["hospital_b"].tables}
    assert a["departments"].load_type == "full" and a["patients"].watermark == "ModifiedDate"
    assert (
        b["dbo.patients"].entity_name == "patients"
        and b["dbo.patients"].watermark == "Updated_Date"
    )
    assert b["providers"].active is False


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            LOAD_CONFIG.replace("hos-a,departments", "hos-z,departments"),
            "line 2: datasource 'hos-z' is not a source or alias",
        ),
        (
            LOAD_CONFIG.replace("Incremental,ModifiedDate", "Incremental,"),
            "line 3: .*needs a `watermark`",
        ),
        (LOAD_CONFIG.replace("Full,,1", "Snapshot,,1"), "line 2.*load_type"),
        ("db,ds,table\n", "header is"),
    ],
)
def test_bad_load_config_csv(tmp_path: Path, content: str, says: str) -> None:
    (tmp_path / "load_config.csv").write_text(content)
    raw = demo_raw()
    for s in raw["sources"].values():
        s["tables"] = []
    raw["tables_csv"] = "load_config.csv"
    with pytest.raises(ConfigError, match=says):
        load_config(write(tmp_path, raw))


def test_json_schema_describes_the_config() -> None:
    import json

    schema = json.loads(json_schema())
    assert schema["title"] == "rcmlake.yaml"
    assert {"lake", "sources", "files", "run"} <= set(schema["properties"])
    assert "base_dir" not in schema["properties"]


def test_the_examples_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    for name in ("rcmlake.yaml", "hospital-group.yaml"):
        config = load_config(root / name)
        assert config.sources
    group = load_config(root / "hospital-group.yaml")
    assert (
        len(group.sources["hospital_a"].tables) == 5 and group.sources["hospital_b"].type == "mssql"
    )
    assert group.lake_uri == "s3://rcm-lake/prod"


def test_the_yaml_overrides_one_load_config_row_and_says_so(tmp_path: Path) -> None:
    from rcmlake.console import QuietConsole
    from rcmlake.project import Project

    (tmp_path / "load_config.csv").write_text(LOAD_CONFIG)
    raw = demo_raw()
    for s in raw["sources"].values():
        s["tables"] = []
    raw["sources"]["hospital_a"]["tables"] = [
        {"name": "patients", "load_type": "incremental", "watermark": "LastEdited"}
    ]
    raw["tables_csv"] = "load_config.csv"
    config = load_config(write(tmp_path, raw))
    a = {t.name: t for t in config.sources["hospital_a"].tables}
    assert a["patients"].watermark == "LastEdited" and a["departments"].load_type == "full"
    assert [t.name for t in config.sources["hospital_a"].tables].count("patients") == 1
    assert config.notices == (
        "hospital_a.patients: rcmlake.yaml overrides the load_config.csv row",
    )
    console = QuietConsole()
    Project(config, console=console).run(["gold"])
    assert ("info", config.notices[0]) in console.events


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            {"patterns": {"hospital_a": "../../../etc/*"}},
            "must name files inside the feed's folder",
        ),
        ({"patterns": {"hospital_a": "/etc/*.csv"}}, "must name files inside the feed's folder"),
        ({"folder": "../outside"}, "outside the landing folder"),
    ],
)
def test_feeds_cannot_reach_outside_the_landing_folder(
    tmp_path: Path, change: dict, says: str
) -> None:
    raw = demo_raw()
    raw["files"]["claims"] = {**raw["files"]["claims"], **change}
    with pytest.raises(ConfigError, match=says):
        load_config(write(tmp_path, raw))


def test_a_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    text = yaml.safe_dump(demo_raw()) + "lake: somewhere_else\n"
    (tmp_path / "rcmlake.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"line \d+.*duplicate key 'lake'"):
        load_config(tmp_path / "rcmlake.yaml")


def test_a_missing_environment_variable_stops_the_run_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rcmlake.project import Project

    monkeypatch.delenv("HOSP_A_PW", raising=False)
    raw = demo_raw()
    raw["sources"]["hospital_a"]["url"] = "mysql://etl:${HOSP_A_PW}@127.0.0.1:9/a"
    project = Project(parse_config(raw, base_dir=tmp_path))
    with pytest.raises(ConfigError, match="environment variable HOSP_A_PW is not set") as caught:
        project.run(["bronze"])
    assert caught.value.exit_code == 2
    assert not (tmp_path / "lake").exists()  # nothing was written


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"name": "../../x"}, "names must be non-empty and printable"),
        ({"name": "pat\nients", "entity": "patients"}, "names must be non-empty and printable"),
        ({"name": "a.b.c.d", "entity": "patients"}, "at most database.schema.table"),
        ({"name": "odd name"}, "does not give a lake folder name; set `entity` or `target`"),
        ({"name": "patients", "primary_key": [""]}, "names must be non-empty and printable"),
    ],
)
def test_source_names_from_config_are_validated(tmp_path: Path, table: dict, says: str) -> None:
    raw = demo_raw()
    raw["sources"]["hospital_a"]["tables"].append(table)
    with pytest.raises(ConfigError, match=says):
        load_config(write(tmp_path, raw))


@pytest.mark.parametrize(("cores", "workers"), [(None, 2), (1, 2), (2, 2), (4, 4), (64, 8)])
def test_workers_default_to_the_cores_within_two_to_eight(
    monkeypatch: pytest.MonkeyPatch, cores: int | None, workers: int
) -> None:
    from rcmlake.config.models import RunConfig

    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert RunConfig().workers == workers
    assert RunConfig(workers=5).workers == 5
