"""Loading the consul-template corpus (tests/ctmpl/corpus); no Go needed.

Each case directory holds ``template.ctmpl``, ``secrets.json`` (``{"mount/data/path[?version=N]":
{"data": ..., "metadata": ...}}``), an optional ``case.json`` (delimiters, env) and, per mode
(``zero`` = error_on_missing_key false, ``error`` = true), either ``expected.MODE.txt`` (bytes
Go's text/template wrote) or ``expected.MODE.err`` (the error Go reported).
tools/ctmpl-golden regenerates the expected files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kv2render.model import SecretVersion
from kv2render.refs import SecretLocation, parse_ref
from kv2render.render.ctmpl.values import loads_json

CORPUS = Path(__file__).parent / "corpus"
FIXED_NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)  # tools/ctmpl-golden uses the same clock
MODES = ("zero", "error")


@dataclass
class Case:
    name: str
    path: Path
    template: str
    secrets: dict[SecretLocation, SecretVersion]
    left_delim: str = "{{"
    right_delim: str = "}}"
    env: dict[str, str] = field(default_factory=dict)

    def expected(self, mode: str) -> tuple[bytes | None, str | None]:
        out = self.path / f"expected.{mode}.txt"
        if out.exists():
            return out.read_bytes(), None
        return None, (self.path / f"expected.{mode}.err").read_text(encoding="utf-8").rstrip("\n")


def _secrets(raw: dict[str, Any]) -> dict[SecretLocation, SecretVersion]:
    out: dict[SecretLocation, SecretVersion] = {}
    for key, body in raw.items():
        location = parse_ref(key, allow_path_form=True).location
        metadata = body.get("metadata") or {}
        out[location] = SecretVersion(
            location=location,
            version=int(metadata.get("version", 1)),
            data=body["data"],
            metadata=metadata,
        )
    return out


def load_cases() -> list[Case]:
    cases = []
    for path in sorted(p for p in CORPUS.iterdir() if p.is_dir()):
        raw = loads_json((path / "secrets.json").read_text(encoding="utf-8"))
        cfg: dict[str, Any] = {}
        if (path / "case.json").exists():
            cfg = json.loads((path / "case.json").read_text(encoding="utf-8"))
        cases.append(
            Case(
                name=path.name,
                path=path,
                template=(path / "template.ctmpl").read_bytes().decode("utf-8"),
                secrets=_secrets(raw),
                left_delim=cfg.get("left_delim") or "{{",
                right_delim=cfg.get("right_delim") or "}}",
                env=cfg.get("env", {}),
            )
        )
    return cases
