"""`rcmlake demo`: synthetic hospitals → full lake → KPIs → dashboard, in the current folder."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rcmlake.synth import MANIFEST, SynthSpec, synthesize

PATIENT_COLUMNS = {
    "hospital_a": ("PatientID", "ModifiedDate"),
    "hospital_b": ("ID", "Updated_Date"),
}


def demo_config(urls: dict[str, tuple[str, str]] | None = None) -> str:
    """The rcmlake.yaml that `rcmlake demo` writes, pointing at the synthetic sources.

    ``urls`` maps a datasource to (source type, URL); the default is the
    SQLite files under ``sources/``.
    """
    blocks = []
    for ds, (pid, modified) in PATIENT_COLUMNS.items():
        kind, url = (urls or {}).get(ds, ("sqlite", f"sqlite:///sources/{ds}.db"))
        blocks.append(f"""  {ds}:
    type: {kind}
    url: {url}
    aliases: [hos-{ds[-1]}]
    tables:
      - {{name: departments, load_type: full, primary_key: [DeptID]}}
      - {{name: providers, load_type: full, primary_key: [ProviderID]}}
      - {{name: patients, load_type: incremental, watermark: {modified}, primary_key: [{pid}]}}
      - {{name: encounters, load_type: incremental, watermark: ModifiedDate, primary_key: [EncounterID]}}
      - {{name: transactions, load_type: incremental, watermark: ModifiedDate, primary_key: [TransactionID]}}""")
    sources = "\n".join(blocks)
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
    patterns: {{hospital_a: "hospital1_*.csv", hospital_b: "hospital2_*.csv"}}
  cpt_codes:
    folder: landing/cptcodes
    layout: cpt_codes
    patterns: {{codesets: "*.csv"}}
  remittances:
    folder: landing/remittances
    layout: x835
    patterns: {{hospital_a: "hospital1_*.835", hospital_b: "hospital2_*.835"}}
codesets:
  icd: {{mode: packaged}}
  npi: {{mode: "off"}}
silver:
  mappings:
    # hospital B names its patient columns differently; everything else follows the defaults
    hospital_b:
      patients:
        source_patient_id: ID
        first_name: F_Name
        middle_name: M_Name
        last_name: L_Name
        source_modified_at: Updated_Date
"""


def prepare(folder: Path, spec: SynthSpec) -> bool:
    """Write sources and config under ``folder`` unless the same spec is already there.

    Returns whether synthetic sources were (re)generated.
    """
    manifest = folder / MANIFEST
    fresh = True
    if manifest.exists():
        old = json.loads(manifest.read_text())
        fresh = old["spec"] != {
            **asdict(spec),
            "start": spec.start.isoformat(),
            "datasources": list(spec.datasources),
        }
    if fresh:
        synthesize(folder, spec)
    config = folder / "rcmlake.yaml"
    if not config.exists():
        config.write_text(demo_config(), encoding="utf-8")
    return fresh
