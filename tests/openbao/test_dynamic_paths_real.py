"""Secret paths computed while rendering: kv2render against the real ``bao agent``, byte for byte.

Each case of ``tests/ctmpl/corpus_dynamic/`` (``template.ctmpl``; ``secrets.json`` to seed,
``{"MOUNT/data/PATH": {"data": ...}}``; ``case.json`` with the environment the template reads;
``expected.txt``, the bytes ``bao agent`` wrote) is rendered, against one real OpenBao dev
server, by the real agent and by kv2render from the SAME agent HCL config (``token_file``
auto_auth, ``exit_after_auth = true``, ``template_config { exit_on_retry_failure = true }``).
Both must write ``expected.txt`` exactly.

``KV2RENDER_RECORD_DYNAMIC=1`` writes ``expected.txt`` from the agent's output (after a
review of the diff, commit it).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_helpers import run_cli
from tests.realbao import BaoServer, bao_binary, bao_env

pytestmark = pytest.mark.openbao

CORPUS = Path(__file__).resolve().parents[1] / "ctmpl" / "corpus_dynamic"
RECORD = os.environ.get("KV2RENDER_RECORD_DYNAMIC") == "1"


@dataclass(frozen=True)
class DynCase:
    name: str
    path: Path
    secrets: dict[str, Any]
    env: dict[str, str]

    @property
    def expected(self) -> Path:
        return self.path / "expected.txt"


def load_cases() -> list[DynCase]:
    cases = []
    for path in sorted(p for p in CORPUS.iterdir() if p.is_dir()):
        case = json.loads((path / "case.json").read_text(encoding="utf-8"))
        secrets = json.loads((path / "secrets.json").read_text(encoding="utf-8"))
        cases.append(DynCase(path.name, path, secrets, dict(case.get("env", {}))))
    return cases


CASES = load_cases()


def _seed(server: BaoServer, cases: list[DynCase]) -> None:
    """Every case's secrets, once each (so a printed metadata.version is 1 in every case)."""
    union: dict[str, Any] = {}
    for case in cases:
        for key, body in case.secrets.items():
            assert union.setdefault(key, body) == body, f"{case.name}: {key} differs elsewhere"
    for key, body in union.items():
        mount, _, path = key.partition("/data/")
        server.kv_put(path, body["data"], mount=mount)


@pytest.fixture(scope="module")
def dyn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """A private real server for this module (bao_fresh_server's set-up, shared by the cases:
    their secrets never change, so one server serves them all)."""
    from tests.conftest import _bao_or_skip

    _bao_or_skip()
    server = BaoServer.dev_server(tmp_path_factory.mktemp("bao-dynamic"))
    try:
        _seed(server, CASES)
        yield server
    finally:
        server.close()


def agent_config(server: BaoServer, workdir: Path, source: Path, destination: Path) -> Path:
    """One agent config, as a Vault Agent user writes it; both tools run it unchanged."""
    token = workdir / "token"
    token.write_text(server.root_token, encoding="utf-8")
    token.chmod(0o600)
    config = workdir / "agent.hcl"
    config.write_text(
        f"""vault {{
  address = "{server.address}"
}}
exit_after_auth = true
auto_auth {{
  method "token_file" {{
    config = {{
      token_file_path = "{token}"
    }}
  }}
}}
template_config {{
  exit_on_retry_failure = true
}}
template {{
  source      = "{source}"
  destination = "{destination}"
}}
""",
        encoding="utf-8",
    )
    return config


def run_agent(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # noqa: S603 - the test's own binary and config
        [str(bao_binary()), "agent", f"-config={config}"],
        env=bao_env(env),
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_agent_and_kv2render_write_the_same_bytes(
    case: DynCase, dyn_server: BaoServer, tmp_path: Path
) -> None:
    """KV2-AC-396 KV2-INV-390: a dynamic-path template renders byte-identical with the real
    ``bao agent`` and with kv2render (same HCL config, same server, same environment)."""
    source = tmp_path / "template.ctmpl"
    source.write_bytes((case.path / "template.ctmpl").read_bytes())

    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    agent_out = agent_dir / "out.txt"
    agent = run_agent(agent_config(dyn_server, agent_dir, source, agent_out), case.env)
    assert agent.returncode == 0, agent.stdout.decode()[-2000:] + agent.stderr.decode()[-2000:]
    got_agent = agent_out.read_bytes()
    if RECORD:
        case.expected.write_bytes(got_agent)
    assert got_agent == case.expected.read_bytes(), "bao agent no longer writes expected.txt"

    ours_dir = tmp_path / "kv2render"
    ours_dir.mkdir()
    ours_out = ours_dir / "out.txt"
    result = run_cli(
        ["--config", str(agent_config(dyn_server, ours_dir, source, ours_out))], case.env
    )
    assert result.code == 0, result.text
    assert ours_out.read_bytes() == got_agent


def test_the_corpus_is_large_enough() -> None:
    """KV2-AC-396: at least ten real-world-style dynamic-path templates, each with its
    expected output captured from the real agent."""
    assert len(CASES) >= 10
    assert all(c.expected.is_file() for c in CASES), [
        c.name for c in CASES if not c.expected.is_file()
    ]
