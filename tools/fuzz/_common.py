"""Shared set-up for the atheris harnesses (run from the repository root or anywhere).

Each harness puts the source tree on ``sys.path`` and lets only the documented error
tree out of the code under test: any other exception is a finding, which atheris
reports as a crash and saves as ``crash-<sha1>`` (KV2-AC-291; docs/testing.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
