"""A pytest plugin that saves every text kv2render.config.hcl.loads is given into this directory,
named by its hash: how the corpus here was gathered from the HCL inputs of the other tests.

    PYTHONPATH=tests/unit/hcl_corpus python -m pytest -p _record -q \\
        tests/unit/test_agentconfig.py tests/unit/test_config.py \\
        tests/integration/test_agent_dropin.py tests/integration/test_hygiene.py

(then delete the copies of examples/vault-agent/*.hcl, which test_hcl.py reads directly).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import kv2render.config.hcl

_HERE = Path(__file__).resolve().parent
_loads = kv2render.config.hcl.loads


def _recording_loads(text: str) -> dict[str, object]:
    data = text.encode("utf-8", "surrogatepass")
    (_HERE / f"{hashlib.sha256(data).hexdigest()[:16]}.hcl").write_bytes(data)
    return _loads(text)


kv2render.config.hcl.loads = _recording_loads  # type: ignore[assignment]
