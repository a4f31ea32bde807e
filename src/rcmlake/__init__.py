"""rcmlake: an open-source lakehouse for healthcare revenue cycle management.

The public entry point is :class:`rcmlake.project.Project`; the ``rcmlake``
command is a thin shell around it.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Project"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import rcmlake.synth` does not pay for deltalake and duckdb.
    if name == "Project":
        from rcmlake.project import Project

        return Project
    raise AttributeError(name)
