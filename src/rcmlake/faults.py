"""Named fault points for crash testing: SIGKILL the process at a chosen step.

``RCMLAKE_FAULTS=bronze.after_commit`` kills the run right after a bronze
commit and before its audit row, so tests (and the coming fault-injection
suite) can show that a re-run ends in the same state as a clean run.
A point fires once per process; ``name:N`` fires at its N-th pass.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_passes: Counter[str] = Counter()


def point(name: str) -> None:
    """Die here if ``RCMLAKE_FAULTS`` names this point."""
    wanted = os.environ.get("RCMLAKE_FAULTS")
    if not wanted:
        return
    _passes[name] += 1
    for spec in wanted.split(","):
        target, _, nth = spec.partition(":")
        if target == name and _passes[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
