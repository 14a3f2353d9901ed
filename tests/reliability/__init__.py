"""Reliability suites: faults (kill -9, database restart, full disk, clock skew) and soak.

The end-to-end helpers (processes, the agent swarm) live in tests/e2e, which is
not a package: its directory is put on the import path here.
"""

import sys
from pathlib import Path

_E2E = str(Path(__file__).resolve().parents[1] / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)
