"""One render pass, against the shared fake of our own SecretStore protocol (tests/fakes.py;
no server, no hvac)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from kv2render import hardening, runner
from kv2render.config import TemplateSpec
from kv2render.errors import SecretNotFoundError
from kv2render.refs import parse_ref
from tests.fakes import FakeSecretStore


def _ref_spec(index: int, dest: Path, ref: str) -> TemplateSpec:
    return TemplateSpec(index=index, destination=dest, ref=parse_ref(ref))


def test_each_unique_secret_is_read_once_and_failures_stay_local(tmp_path: Path) -> None:
    """KV2-AC-067 KV2-AC-099 KV2-INV-052: one read per unique secret; a missing secret fails
    its template only; the exit code is the first failure's in config order."""
    store = FakeSecretStore(secrets={"secret/a": {"k": "A"}, "secret/b": {"k": "B"}})
    specs = [
        _ref_spec(0, tmp_path / "a1", "vault+kv2:///secret/data/a#k"),
        _ref_spec(1, tmp_path / "missing", "vault+kv2:///secret/data/nope#k"),
        _ref_spec(2, tmp_path / "a2", "vault+kv2:///secret/data/a#k"),
        _ref_spec(3, tmp_path / "b", "vault+kv2:///secret/data/b#k"),
    ]
    prepared = [runner.prepare_one(spec) for spec in specs]
    report = runner.run_pass(prepared, store, concurrency=4)
    assert {str(loc): n for loc, n in store.reads.items()} == {
        "secret/a": 1,
        "secret/b": 1,
        "secret/nope": 1,
    }
    assert [r.ok for r in report.results] == [True, False, True, True]
    assert report.exit_code == SecretNotFoundError.exit_code
    assert (tmp_path / "a1").read_text() == "A" and (tmp_path / "b").read_text() == "B"
    assert not (tmp_path / "missing").exists()


def test_renders_and_writes_run_concurrently_in_config_order(tmp_path: Path) -> None:
    """KV2-INV-102: writes run in the bounded pool (several at once), results keep config order."""
    store = FakeSecretStore(secrets={f"secret/s{i}": {"k": f"v{i}"} for i in range(8)})
    prepared = [
        runner.prepare_one(_ref_spec(i, tmp_path / f"o{i}", f"vault+kv2:///secret/data/s{i}#k"))
        for i in range(8)
    ]
    active = 0
    peak = 0
    lock = threading.Lock()

    def slow_write(path: Path, data: bytes, **_: Any) -> bool:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)  # an fsync-bound write
        path.write_bytes(data)
        with lock:
            active -= 1
        return True

    secrets = runner.read_secrets(store, {loc for p in prepared for loc in p.locations})
    results = runner.render_all(
        [(item, secrets) for item in prepared], concurrency=4, write=slow_write
    )
    assert peak > 1, "the writes ran one after another"
    assert peak <= 4
    assert [r.template.index for r in results] == list(range(8))
    assert all(r.did_write for r in results)


def test_a_crashing_render_costs_its_own_template_only(tmp_path: Path) -> None:
    """KV2-INV-102: an unexpected exception in one render is an internal error for that
    template (exit 1); the others still render and write."""
    store = FakeSecretStore(secrets={"secret/a": {"k": "A"}})
    good = runner.prepare_one(_ref_spec(0, tmp_path / "good", "vault+kv2:///secret/data/a#k"))
    bad_spec = _ref_spec(1, tmp_path / "bad", "vault+kv2:///secret/data/a#k")

    def crash(_: Any) -> bytes:
        raise ZeroDivisionError("a bug")

    bad = runner.PreparedTemplate(bad_spec, None, frozenset(good.locations), crash)
    secrets = runner.read_secrets(store, good.locations)
    results = runner.render_all([(bad, secrets), (good, secrets)], concurrency=2)
    assert results[0].error is not None and results[0].error.exit_code == 1
    assert "internal error ZeroDivisionError" in str(results[0].error)
    assert "a bug" not in str(results[0].error)
    assert results[1].ok and (tmp_path / "good").read_text() == "A"


def test_command_environment_holds_no_token() -> None:
    """KV2-INV-096: commands inherit no VAULT_TOKEN/BAO_TOKEN or other credential variable."""
    env = hardening.command_environment(
        {
            "PATH": "/bin",
            "VAULT_TOKEN": "t",
            "BAO_TOKEN": "t",
            "VAULT_ADDR": "https://v",
            "VAULT_SECRET_ID": "s",
            "KV2RENDER_LIVE_VAULT_TOKEN": "t",
        }
    )
    assert env == {"PATH": "/bin", "VAULT_ADDR": "https://v"}
