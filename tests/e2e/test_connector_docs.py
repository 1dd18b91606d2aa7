"""docs/connector.md and examples/connector/ say the same thing, and the config passes `check`.

The PostgreSQL tests (test_postgres.py) run the same kv2render.yaml, pgpass.j2 and policy;
this file keeps the page honest: each example file appears verbatim in it, the configs pass
``kv2render check`` (KV2-AC-217), and the paths line up between kv2render and signals.yaml.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from kv2render.refs import parse_ref
from tests.integration.cli_helpers import REPO, run_cli

from .connector import EXAMPLE_CONFIG, EXAMPLE_POLICY, EXAMPLES

DOC = REPO / "docs" / "connector.md"
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
VERBATIM = [
    "kv2render.yaml",
    "kv2render-policy.hcl",
    "kv2render.service",
    "signals-after-kv2render.conf",
    "signals-password-file.yaml",
    "signals-pgpass-file.yaml",
]


def doc_blocks() -> list[str]:
    return FENCE.findall(DOC.read_text(encoding="utf-8"))


def destinations(tree: dict[str, Any]) -> set[str]:
    return {entry["destination"] for entry in tree["template"]}


@pytest.mark.parametrize("name", VERBATIM)
def test_each_example_file_is_shown_verbatim(name: str) -> None:
    """KV2-AC-217: the page shows the files a test runs, not a copy that can drift."""
    assert (EXAMPLES / name).read_text(encoding="utf-8") in doc_blocks()


def test_the_documented_config_passes_check() -> None:
    """KV2-AC-217: `kv2render check` accepts docs/connector.md's config and lists both outputs."""
    result = run_cli(["check", "--config", str(EXAMPLE_CONFIG)])
    assert result.code == 0, result.text
    for destination in destinations(yaml.safe_load(EXAMPLE_CONFIG.read_text())):
        assert destination in result.text


def test_the_kubernetes_config_passes_check(tmp_path: Path) -> None:
    """KV2-AC-217: the ConfigMap's kv2render.yaml passes `check`; signals.yaml reads its output."""
    docs = list(yaml.safe_load_all((EXAMPLES / "kubernetes.yaml").read_text()))
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    config = tmp_path / "kv2render.yaml"
    config.write_text(configmap["data"]["kv2render.yaml"])
    result = run_cli(["check", "--config", str(config)])
    assert result.code == 0, result.text
    signals = yaml.safe_load(configmap["data"]["signals.yaml"])
    rendered = destinations(yaml.safe_load(config.read_text()))
    assert {t["password_file"] for t in signals["targets"]} <= rendered


@pytest.mark.parametrize(
    ("name", "key"),
    [("signals-password-file.yaml", "password_file"), ("signals-pgpass-file.yaml", "pgpass_file")],
)
def test_signals_snippets_read_what_kv2render_writes(name: str, key: str) -> None:
    """Each snippet uses exactly one credential source, pointing at a kv2render destination."""
    targets = yaml.safe_load((EXAMPLES / name).read_text())["targets"]
    sources = {"password_file", "password_env", "pgpass_file", "secret_store"}
    for target in targets:
        assert sources & set(target) == {key}
        assert target[key] in destinations(yaml.safe_load(EXAMPLE_CONFIG.read_text()))


def test_the_policy_grants_read_on_exactly_the_referenced_secret() -> None:
    """Least privilege: one rule, `read`, on the data path of every reference in the config."""
    rules = {
        path.strip('"'): [c.strip('"') for c in body["capabilities"]]
        for block in hcl2.loads(EXAMPLE_POLICY.read_text())["path"]
        for path, body in block.items()
    }
    tree = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    refs = [parse_ref(e["ref"]) for e in tree["template"] if "ref" in e]
    wanted = {f"{r.mount}/data/{r.path}" for r in refs}
    assert rules == {path: ["read"] for path in wanted}


def test_the_pgpass_template_is_the_ready_one_with_its_reference() -> None:
    """examples/connector/pgpass.j2 is templates/pgpass.j2 with only the reference changed."""
    ready = (REPO / "templates" / "pgpass.j2").read_text()
    example = (EXAMPLES / "pgpass.j2").read_text()
    assert example == ready.replace("secret/data/app/db", "secret/data/signals/pg-monitor")
    assert example != ready


def test_the_unit_can_hand_files_to_the_connector() -> None:
    """A template with `user:` needs CAP_CHOWN only (writer.py sets the mode before the chown,
    see tests/unit/test_writer.py); the unit runs the documented config."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((EXAMPLES / "kv2render.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].endswith("--config /etc/kv2render/kv2render.yaml")
    tree = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    owners = {entry.get("user") for entry in tree["template"]}
    assert service["User"] not in owners  # the connector never sees the AppRole credentials
    assert set(service["AmbientCapabilities"].split()) == {"CAP_CHOWN"}
    assert set(service["CapabilityBoundingSet"].split()) == {"CAP_CHOWN"}
    assert all(Path(d).parent == Path("/run/kv2render") for d in destinations(tree))
    assert tree["auto_auth"]["method"]["config"]["remove_secret_id_file_after_reading"] is False
