"""Claims and CPT files: loaded once, typed, archived; unreadable ones rejected with a reason."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pytest
import yaml

from rcmlake.demo import demo_config
from rcmlake.layers.bronze import bronze_path
from tests.conftest import make_project

GOOD = Path("landing/claims/hospital1_claims_2025_01.csv")


def reject_reason(workdir: Path, name: str) -> str:
    return (workdir / "landing" / "rejected" / "claims" / f"{name}.reason.txt").read_text().strip()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("hospital1_empty.csv", b"", "empty file"),
        ("hospital1_header_only.csv", None, "no data rows after the header"),
        ("hospital1_latin1.csv", None, "not UTF-8 text"),
        (
            "hospital1_wrong_header.csv",
            b"ClaimID,Amount\nCLAIM1,10\n",
            "unexpected header: missing [",
        ),
        ("hospital1_truncated.csv", None, "truncated: last line"),
    ],
)
def test_unreadable_file_is_rejected_and_the_run_goes_on(
    workdir: Path, name: str, content: bytes | None, reason: str
) -> None:
    good = (workdir / GOOD).read_bytes()
    header = good.split(b"\n", 1)[0] + b"\n"
    if name == "hospital1_header_only.csv":
        content = header
    elif name == "hospital1_latin1.csv":
        content = good.replace(b"BlueCross", "BlueCroß".encode("latin-1"), 1)
    elif name == "hospital1_truncated.csv":
        content = good.rstrip(b"\n")[:-40]
    (workdir / "landing" / "claims" / name).write_bytes(content)
    project = make_project(workdir)
    result = project.ingest()
    rejected = [r for r in result.records if r.status == "rejected"]
    assert [Path(r.source_file).name for r in rejected] == [name]
    assert reason in rejected[0].error
    assert reason in reject_reason(workdir, name)
    assert (workdir / "landing" / "rejected" / "claims" / name).read_bytes() == content
    assert result.exit_code == 1
    loaded = [
        r
        for r in result.records
        if r.status == "success" and r.load_type == "file" and r.table in ("claims", "cpt_codes")
    ]
    assert len(loaded) == 4 * 2 + 1  # every good month of both hospitals, and the CPT file
    audit = project.audit.read()
    row = audit.filter(pc.equal(audit["status"], "rejected")).to_pylist()[0]
    assert row["source_file"] == f"claims/{name}" and reason in row["error"]


def test_each_file_loads_once_and_is_archived(workdir: Path) -> None:
    project = make_project(workdir)
    project.ingest()
    path = bronze_path("hospital_a", "claims")
    first = project.lake.read(path).num_rows
    assert not list((workdir / "landing" / "claims").glob("*.csv"))
    archived = workdir / "landing" / "archive" / GOOD.relative_to("landing")
    assert archived.exists()
    # the same file dropped again (same bytes, new name) is not loaded twice
    (workdir / "landing" / "claims" / "hospital1_resent.csv").write_bytes(archived.read_bytes())
    result = project.ingest()
    resent = next(
        r
        for r in result.records
        if r.source_file and r.source_file.endswith("hospital1_resent.csv")
    )
    assert resent.status == "skipped" and "already loaded" in resent.error
    assert project.lake.read(path).num_rows == first
    assert result.exit_code == 0


def test_a_resent_name_never_overwrites_the_archived_original(workdir: Path) -> None:
    project = make_project(workdir)
    project.ingest()
    archived = workdir / "landing" / "archive" / GOOD.relative_to("landing")
    original = archived.read_bytes()
    # a corrected file under the same name: loaded, and archived beside the original
    lines = original.decode().splitlines()
    corrected = "\n".join([*lines[:-1], lines[-1].replace("Pending", "Paid", 1)]) + "\n"
    (workdir / GOOD).write_text(corrected)
    result = project.ingest()
    again = next(r for r in result.records if r.source_file == str(GOOD.relative_to("landing")))
    assert again.status == "success"
    assert archived.read_bytes() == original
    beside = archived.with_name(f"{archived.stem}.{again.file_sha256[:12]}{archived.suffix}")
    assert beside.read_text() == corrected
    # and a rollback of that run returns the corrected file, not the original, to landing
    project.rollback(result.run_id)
    assert (workdir / GOOD).read_text() == corrected and archived.read_bytes() == original


def test_claims_are_typed_and_bad_rows_kept_with_reasons(workdir: Path) -> None:
    import json

    manifest = json.loads((workdir / "synth_manifest.json").read_text())
    project = make_project(workdir)
    project.ingest()
    claims = project.lake.read(bronze_path("hospital_a", "claims"))
    types = {f.name: str(f.type) for f in claims.schema}
    assert types["ClaimAmount"] == "decimal128(18, 2)" and types["ServiceDate"] == "date32[day]"
    # the lineage columns are written from one-value dictionaries, and stored as text
    assert {types[c] for c in ("_file_sha256", "_batch_id", "_source")} == {"string"}
    malformed = claims.filter(pc.invert(pc.is_null(claims["_malformed_line"])))
    defects = manifest["defects"]["hospital_a"]
    assert (
        sorted(line.split(",")[0].strip('"') for line in malformed["_malformed_line"].to_pylist())
        == defects["claim_malformed_row"]
    )
    bad_cast = claims.filter(pc.greater(pc.list_value_length(claims["_cast_errors"]), 0))
    assert sorted(bad_cast["ClaimID"].to_pylist()) == defects["claim_non_numeric_amount"]
    assert all(e == ["PaidAmount"] for e in bad_cast["_cast_errors"].to_pylist())
    cpt = project.lake.read(bronze_path("codesets", "cpt_codes"))
    assert cpt.num_rows == 59 and "CPT Codes" in cpt.column_names


def test_an_oversized_field_rejects_its_file_and_the_run_goes_on(workdir: Path) -> None:
    good = (workdir / GOOD).read_text()
    header, first = good.splitlines()[:2]
    fields = first.split(",")
    fields[11] = '"' + "x" * (3 << 20) + '"'  # a 3 MiB quoted ClaimStatus
    name = "hospital1_huge.csv"
    (workdir / "landing" / "claims" / name).write_text(header + "\n" + ",".join(fields) + "\n")
    project = make_project(workdir)
    result = project.run()
    rejected = [r for r in result.records if r.status == "rejected"]
    assert [Path(r.source_file).name for r in rejected] == [name]
    assert "over the limit of 1,048,576" in rejected[0].error
    assert "over the limit" in reject_reason(workdir, name)
    assert result.exit_code == 1
    # everything else loaded: both hospitals' good files, then silver and gold
    b = [r for r in result.records if r.datasource == "hospital_b" and r.load_type == "file"]
    assert b and all(r.status == "success" for r in b)
    assert {r.status for r in result.records if r.layer == "gold"} == {"success"}
    # the limit is config: raised, the same file loads (its value kept, quarantined by silver rules)
    (workdir / "landing" / "rejected" / "claims" / name).rename(
        workdir / "landing" / "claims" / name
    )
    raw_files = project.config.model_dump(mode="json")["files"]
    raw_files["claims"]["max_line_bytes"] = 8 << 20
    project = make_project(workdir, files=raw_files)
    again = project.ingest({"claims"})
    loaded = [r for r in again.records if r.source_file and r.source_file.endswith(name)]
    assert loaded and loaded[0].status == "success" and loaded[0].rows_written == 1


def test_a_file_two_patterns_match_is_the_first_datasources(workdir: Path) -> None:
    """Each datasource of a feed loads in its own task; a file an earlier datasource's pattern
    also matches is loaded once, by that datasource, as when they loaded in turn."""
    files = yaml.safe_load(demo_config())["files"]
    files["claims"]["patterns"] = {"hospital_a": "hospital*.csv", "hospital_b": "*2_*.csv"}
    project = make_project(workdir, files=files)
    names = sorted(p.name for p in (workdir / "landing" / "claims").glob("*.csv"))
    assert any(n.startswith("hospital2_") for n in names)
    result = project.ingest()
    claims = [r for r in result.records if r.table == "claims" and r.status == "success"]
    assert sorted(Path(r.source_file or "").name for r in claims) == names
    assert {r.datasource for r in claims} == {"hospital_a"}
    assert project.lake.read(bronze_path("hospital_b", "claims")) is None
    assert result.exit_code == 0
