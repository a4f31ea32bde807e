"""The docs say what the code builds: docs/TABLES.md is current, every model is described."""

from __future__ import annotations

from pathlib import Path

from rcmlake.transforms import models

ROOT = Path(__file__).resolve().parents[2]


def test_every_model_is_documented() -> None:
    tables = (ROOT / "docs" / "TABLES.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for layer in ("silver", "gold"):
        for m in models(layer):
            assert f"`{layer}.{m.name}`" in tables, f"{layer}.{m.name} missing from docs/TABLES.md"
            assert m.spec.get("description"), (
                f"{layer}.{m.name} has no description in its YAML sidecar"
            )
    for m in models("gold"):
        assert m.name in readme, f"{m.name} is not mentioned in README.md"


def test_tables_doc_is_current() -> None:
    """docs/TABLES.md is exactly what scripts/gen_tables_doc.py writes from the code today."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gen_tables_doc", ROOT / "scripts" / "gen_tables_doc.py"
    )
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    expected = gen.build()
    current = (ROOT / "docs" / "TABLES.md").read_text()
    assert current == expected, (
        "docs/TABLES.md is stale: run .venv/bin/python scripts/gen_tables_doc.py"
    )


def test_docs_stand_on_their_own() -> None:
    """The project's docs never send a reader to a file the repository does not have."""
    import re

    texts = [ROOT / "README.md", ROOT / "DEVELOPERS.md", *(ROOT / "docs").glob("*.md")]
    for path in texts:
        for target in re.findall(r"`([A-Za-z_./-]+\.md)`", path.read_text()):
            found = [p for p in (ROOT / target, ROOT / "docs" / target) if p.exists()]
            assert found, f"{path.name} points to {target}, which is not in the repository"
