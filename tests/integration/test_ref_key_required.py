"""A ``ref:`` output names one key (issue 14 item 5, KV2-INV-365, KV2-FC-369, KV2-AC-371).

A ``ref:`` without ``#key`` used to write the whole secret (username, password, host) as JSON
into what the config calls a password file, and ``check`` passed it. Now it is a config error
at load time, and ``whole_secret: true`` is the explicit opt-in for the whole object.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kv2render.devserver import DevServer

from .cli_helpers import run_cli, write_config

DB = {"username": "user-7f3a9c", "password": "pw-7f3a9c", "host": "host-7f3a9c"}
BARE = "vault+kv2:///secret/data/app/db"


@pytest.fixture
def seeded(dev_server: DevServer) -> DevServer:
    dev_server.put("app/db", DB)
    return dev_server


def _env(server: DevServer) -> dict[str, str]:
    return {"VAULT_ADDR": server.url, "VAULT_TOKEN": server.root_token}


@pytest.mark.parametrize("command", ["check", "run"])
def test_ref_without_key_is_a_config_error(seeded: DevServer, workdir: Path, command: str) -> None:
    """KV2-AC-371 KV2-FC-369 KV2-INV-365: a bare ref is refused at load time (exit 2), by
    ``check`` offline and by ``--once`` before any read; the message shows the ``#password``
    form and the opt-in; the old file is kept and no secret value is printed."""
    dest = workdir / "db-password"
    dest.write_text("old-good")
    cfg = write_config(workdir, {"template": [{"ref": BARE, "destination": str(dest)}]})
    argv = ["check", "--config", str(cfg)] if command == "check" else ["--config", str(cfg)]
    if command == "run":
        argv.append("--once")
    result = run_cli(argv, _env(seeded))
    assert result.code == 2, result.text
    assert "template[0].ref" in result.text
    assert "vault+kv2:///secret/data/app/db#password" in result.text
    assert "whole_secret: true" in result.text
    assert dest.read_text() == "old-good"
    for value in DB.values():
        assert value not in result.text
    if command == "run":
        assert not [r for r in seeded.requests if "/data/app/db" in r[1]]


def test_whole_secret_opt_in_writes_the_object(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-371 KV2-INV-365: ``whole_secret: true`` writes the whole secret as compact JSON."""
    dest = workdir / "app.json"
    cfg = write_config(
        workdir, {"template": [{"ref": BARE, "destination": str(dest), "whole_secret": True}]}
    )
    assert run_cli(["check", "--config", str(cfg)], _env(seeded)).code == 0
    result = run_cli(["--config", str(cfg), "--once"], _env(seeded))
    assert result.code == 0, result.text
    assert json.loads(dest.read_text()) == DB


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"ref": BARE + "#password", "whole_secret": True}, "template[0].whole_secret"),
        ({"contents": "x", "whole_secret": True}, "applies to ref: templates only"),
        ({"ref": BARE, "whole_secret": "yes please"}, "template[0].whole_secret"),
    ],
)
def test_whole_secret_misuse_is_refused(
    workdir: Path, entry: dict[str, object], words: str
) -> None:
    """KV2-AC-371 KV2-FC-369: whole_secret with a #key, on a template body, or not a boolean is
    a config error naming the key."""
    cfg = write_config(workdir, {"template": [{**entry, "destination": str(workdir / "o")}]})
    result = run_cli(["check", "--config", str(cfg)], {"VAULT_ADDR": "http://127.0.0.1:1"})
    assert result.code == 2, result.text
    assert words in result.text


def test_pointer_selection_is_a_key(seeded: DevServer, workdir: Path) -> None:
    """KV2-INV-365 KV2-AC-019: a ``#/pointer`` selection counts as naming a key."""
    dest = workdir / "pw"
    cfg = write_config(
        workdir, {"template": [{"ref": BARE + "#/password", "destination": str(dest)}]}
    )
    result = run_cli(["--config", str(cfg), "--once"], _env(seeded))
    assert result.code == 0, result.text
    assert dest.read_text() == DB["password"]
