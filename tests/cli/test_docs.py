"""The docs name every table the code builds."""

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
