"""`rcmlake demo`: synthetic hospitals → full lake → KPIs → dashboard, in the current folder."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rcmlake.errors import ConfigError
from rcmlake.synth import MANIFEST, SynthSpec, has_layout_b, synthesize

# Hospital B (and every second hospital after it: ``synth.has_layout_b``) names its patient
# columns its own way (SOURCES.md).
PATIENT_COLUMNS = {
    "hospital_a": ("PatientID", "ModifiedDate"),
    "hospital_b": ("ID", "Updated_Date"),
}


def hospital_names(count: int) -> tuple[str, ...]:
    """``hospital_a``, ``hospital_b``, … for ``count`` synthetic hospitals (at most 26)."""
    if not 1 <= count <= 26:
        raise ConfigError(f"the synthetic set has 1 to 26 hospitals, not {count}")
    return tuple(f"hospital_{chr(ord('a') + i)}" for i in range(count))


def demo_config(
    urls: dict[str, tuple[str, str]] | None = None,
    datasources: tuple[str, ...] = ("hospital_a", "hospital_b"),
) -> str:
    """The rcmlake.yaml that `rcmlake demo` writes, pointing at the synthetic sources.

    ``urls`` maps a datasource to (source type, URL); the default is the
    SQLite files under ``sources/``. ``datasources`` are the synthetic set's hospitals in
    order: the i-th one's files are ``hospital{i}_*``, and every second one has hospital
    B's patient columns.
    """
    blocks = []
    layout_b = [ds for i, ds in enumerate(datasources) if has_layout_b(i)]
    for ds in datasources:
        pid, modified = PATIENT_COLUMNS["hospital_b" if ds in layout_b else "hospital_a"]
        kind, url = (urls or {}).get(ds, ("sqlite", f"sqlite:///sources/{ds}.db"))
        blocks.append(f"""  {ds}:
    type: {kind}
    url: {url}
    aliases: [hos-{ds.rpartition("_")[2]}]
    tables:
      - {{name: departments, load_type: full, primary_key: [DeptID]}}
      - {{name: providers, load_type: full, primary_key: [ProviderID]}}
      - {{name: patients, load_type: incremental, watermark: {modified}, primary_key: [{pid}]}}
      - {{name: encounters, load_type: incremental, watermark: ModifiedDate, primary_key: [EncounterID]}}
      - {{name: transactions, load_type: incremental, watermark: ModifiedDate, primary_key: [TransactionID]}}""")
    sources = "\n".join(blocks)

    def patterns(ext: str) -> str:
        return ", ".join(f'{ds}: "hospital{i + 1}_*.{ext}"' for i, ds in enumerate(datasources))

    mappings = "".join(
        f"""
    {ds}:
      patients:
        source_patient_id: ID
        first_name: F_Name
        middle_name: M_Name
        last_name: L_Name
        source_modified_at: Updated_Date"""
        for ds in layout_b
    )
    return f"""# yaml-language-server: $schema=rcmlake.schema.json
# Written by `rcmlake demo`. Paths are relative to this file.
name: rcmlake-demo
lake: lake
landing: landing
sources:
{sources}
files:
  claims:
    folder: landing/claims
    layout: claims
    patterns: {{{patterns("csv")}}}
  cpt_codes:
    folder: landing/cptcodes
    layout: cpt_codes
    patterns: {{codesets: "*.csv"}}
  remittances:
    folder: landing/remittances
    layout: x835
    patterns: {{{patterns("835")}}}
codesets:
  icd: {{mode: packaged}}
  npi: {{mode: "off"}}
silver:
  mappings:
    # hospital B names its patient columns differently; everything else follows the defaults{mappings}
"""


def prepare(folder: Path, spec: SynthSpec) -> bool:
    """Write sources and config under ``folder`` unless the same spec is already there.

    Returns whether synthetic sources were (re)generated.
    """
    manifest = folder / MANIFEST
    fresh, before = True, ("hospital_a", "hospital_b")
    if manifest.exists():
        old = json.loads(manifest.read_text())
        before = tuple(old["spec"]["datasources"])
        fresh = old["spec"] != {
            **asdict(spec),
            "start": spec.start.isoformat(),
            "datasources": list(spec.datasources),
        }
    if fresh:
        synthesize(folder, spec)
    config = folder / "rcmlake.yaml"
    # the config written here follows the set's hospitals; one edited since is kept
    if not config.exists() or config.read_text(encoding="utf-8") == demo_config(datasources=before):
        config.write_text(demo_config(datasources=spec.datasources), encoding="utf-8")
    return fresh
