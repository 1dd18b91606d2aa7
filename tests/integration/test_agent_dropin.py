"""Vault Agent drop-in, end to end: an agent HCL with AppRole auto_auth and consul-template
``contents`` templates renders, through the real CLI, real hvac and the dev server, the bytes
Go's text/template wrote for the same secrets (the committed ctmpl corpus expected files).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kv2render.devserver import DevServer

from .cli_helpers import REPO, cli_env, run_cli, write_config

CORPUS = REPO / "tests" / "ctmpl" / "corpus"
EXAMPLES = REPO / "examples" / "vault-agent"
ROLE_ID, SECRET_ID = "role-4d1c", "S3NT1NEL-secret-id-9b2e"
# Corpus cases whose secrets the dev server stores as the corpus states them (no pinned
# versions, no printed metadata, no float literals), in zero mode (error_on_missing_key false).
CASES = ("02-pgpass", "03-dotenv-range", "17-missing-key")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def hcl_string(text: str) -> str:
    """A template body as Vault Agent users write it: a heredoc when it ends in a newline
    (HCL heredocs always do), else a quoted string (JSON escapes are valid HCL escapes)."""
    if text.endswith("\n") and "EOT" not in text:
        return f"<<EOT\n{text}EOT"
    return json.dumps(text)


@pytest.fixture
def agent_server(dev_server: DevServer) -> DevServer:
    for case in CASES:
        secrets = json.loads((CORPUS / case / "secrets.json").read_text(encoding="utf-8"))
        for key, body in secrets.items():
            mount, _, path = key.partition("/data/")
            if mount != "secret":
                dev_server.add_mount(mount)
            dev_server.put(path, body["data"], mount=mount)
    dev_server.add_policy("app", {"secret/data/*": ["read"], "kv/data/*": ["read"]})
    dev_server.add_approle("app", ROLE_ID, SECRET_ID, ["app"], token_ttl=300)
    return dev_server


def agent_config(workdir: Path, server: DevServer, *, extra: str = "") -> Path:
    (workdir / "role-id").write_text(ROLE_ID + "\n")
    (workdir / "secret-id").write_text(SECRET_ID + "\n")
    blocks = [
        extra,
        f'vault {{\n  address = "{server.url}"\n}}',
        "auto_auth {\n"
        '  method "approle" {\n'
        "    config = {\n"
        '      role_id_file_path   = "role-id"\n'
        '      secret_id_file_path = "secret-id"\n'
        "    }\n"
        "  }\n"
        "}",
        'listener "tcp" {\n  address = "127.0.0.1:8100"\n  tls_disable = true\n}',
        "cache {}",
    ]
    for case in CASES:
        template = (CORPUS / case / "template.ctmpl").read_text(encoding="utf-8")
        blocks.append(
            f'template {{\n  destination = "out/{case}"\n  contents    = {hcl_string(template)}\n}}'
        )
    path = workdir / "agent.hcl"
    path.write_text("\n".join(blocks) + "\n", encoding="utf-8")
    return path


def test_agent_hcl_renders_the_bytes_vault_agent_renders(
    agent_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-263, KV2-AC-267, KV2-AC-261, KV2-AC-265, KV2-AC-266, KV2-FC-251, KV2-INV-253:
    an unchanged agent HCL (approle, contents templates, listener and cache stanzas) with
    exit_after_auth renders once, byte-identical to Go, 0600, with the notices, exit 0."""
    path = agent_config(workdir, agent_server, extra="exit_after_auth = true")
    result = run_cli(["--config", str(path)])
    assert result.code == 0, result.text
    for case in CASES:
        expected = (CORPUS / case / "expected.zero.txt").read_bytes()
        out = workdir / "out" / case
        assert out.read_bytes() == expected, case
        assert mode(out) == 0o600
    text = result.text
    assert "ignoring the agent 'listener' stanza" in text
    assert "ignoring the agent 'cache' stanza" in text
    assert "no perms set; writing 0600, not Vault Agent's 0644" in text
    assert "set error_on_missing_key = true" in text
    assert text.count("no perms set") == 1  # said once, naming every template
    # Vault Agent's approle default: the secret_id file is consumed.
    assert not (workdir / "secret-id").exists()
    assert SECRET_ID not in text


def test_exit_after_auth_false_and_no_once_would_run_the_daemon(
    agent_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-267: exit_after_auth = true is the only thing that made the run above one-shot;
    `check` reports it in the config (the daemon itself is tested with the pid file below)."""
    from kv2render.config import load

    on = load(agent_config(workdir, agent_server, extra="exit_after_auth = true"), env={})
    off = load(agent_config(workdir, agent_server), env={})
    assert on.exit_after_auth is True and off.exit_after_auth is False


def test_error_on_missing_key_true_fails_the_render(agent_server: DevServer, workdir: Path) -> None:
    """KV2-AC-258, KV2-AC-266: the recommended strict mode turns `<no value>` into an error."""
    template = (CORPUS / "17-missing-key" / "template.ctmpl").read_text(encoding="utf-8")
    path = agent_config(workdir, agent_server, extra="exit_after_auth = true")
    path.write_text(
        f'vault {{\n  address = "{agent_server.url}"\n}}\n'
        "exit_after_auth = true\n"
        "template {\n"
        '  destination          = "out/strict"\n'
        f"  contents             = {hcl_string(template)}\n"
        "  error_on_missing_key = true\n"
        "}\n",
        encoding="utf-8",
    )
    result = run_cli(["--config", str(path)], {"VAULT_TOKEN": agent_server.root_token})
    assert result.code == 5, result.text  # RenderError
    assert 'map has no entry for key "api_token"' in result.text
    assert not (workdir / "out" / "strict").exists()


def test_refused_stanzas_fail_check_with_one_message(workdir: Path) -> None:
    """KV2-AC-264, KV2-FC-251, KV2-FC-490: a response-wrapping sink fails with exit 2 and its
    reason (a plain sink is written since issue 16); env_template is no longer refused
    (process-supervisor mode, KV2-INV-470), so only the sink is named."""
    path = workdir / "agent.hcl"
    path.write_text(
        'vault {\n  address = "https://vault.example:8200"\n}\n'
        "auto_auth {\n"
        '  method "approle" {\n    config = { role_id_file_path = "/r" }\n  }\n'
        '  sink "file" {\n    wrap_ttl = "5m"\n    config = { path = "/tmp/token" }\n  }\n'
        "}\n"
        'env_template "DB" {\n  contents = "x"\n}\n',
        encoding="utf-8",
    )
    result = run_cli(["check", "--config", str(path)])
    assert result.code == 2
    lines = [line for line in result.text.splitlines() if "not supported by kv2render" in line]
    assert len(lines) == 1 and "auto_auth.sink[0].wrap_ttl: not supported" in lines[0]
    assert "env_template" not in lines[0]
    assert "response-wrapped tokens are not supported" in lines[0]


@pytest.mark.parametrize(
    "example",
    sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".hcl", ".json")),
    ids=lambda p: p.name,
)
def test_vault_documentation_examples_pass_check(example: Path) -> None:
    """KV2-AC-269, KV2-AC-263: the examples/vault-agent configs (AppRole, Kubernetes,
    contents; HCL and JSON) load and pass `check`."""
    result = run_cli(["check", "--config", str(example)])
    assert result.code == 0, result.text
    assert "config OK" in result.text


def test_convert_config_output_runs(agent_server: DevServer, workdir: Path) -> None:
    """KV2-AC-268: `convert-config` prints YAML that kv2render runs to the same bytes."""
    path = agent_config(workdir, agent_server, extra="exit_after_auth = true")
    converted = run_cli(["convert-config", str(path)])
    assert converted.code == 0, converted.text
    yaml_path = workdir / "kv2render.yaml"
    yaml_path.write_text(converted.out, encoding="utf-8")
    (workdir / "secret-id").write_text(SECRET_ID + "\n")
    result = run_cli(["--config", str(yaml_path)])
    assert result.code == 0, result.text
    for case in CASES:
        assert (workdir / "out" / case).read_bytes() == (
            CORPUS / case / "expected.zero.txt"
        ).read_bytes()
    assert "no perms set" not in result.text  # the YAML states perms: '0600'


def test_convert_ctmpl_renders_the_same_bytes_through_jinja2(
    agent_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-262: `kv2render convert FILE.ctmpl` prints Jinja2 that kv2render renders to the
    bytes Go rendered from the original."""
    for case in ("02-pgpass", "03-dotenv-range"):
        converted = run_cli(["convert", str(CORPUS / case / "template.ctmpl")])
        assert converted.code == 0, converted.text
        assert "{%" in converted.out or "{{" in converted.out
        (workdir / f"{case}.j2").write_text(converted.out, encoding="utf-8")
    cfg = write_config(
        workdir,
        {
            "template": [
                {"source": f"{case}.j2", "destination": f"out/{case}", "create_dest_dirs": True}
                for case in ("02-pgpass", "03-dotenv-range")
            ]
        },
    )
    env = {"VAULT_ADDR": agent_server.url, "VAULT_TOKEN": agent_server.root_token}
    result = run_cli(["--config", str(cfg), "--once"], env)
    assert result.code == 0, result.text
    for case in ("02-pgpass", "03-dotenv-range"):
        expected = (CORPUS / case / "expected.zero.txt").read_bytes()
        assert (workdir / "out" / case).read_bytes() == expected, case


def _wait_for(predicate: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.05)
    return False


def test_pid_file_holds_the_pid_while_running_and_is_removed_at_exit(
    agent_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-270: the daemon started from an agent HCL writes pid_file after start-up and
    removes it when stopped by SIGTERM."""
    path = agent_config(workdir, agent_server, extra='pid_file = "run/agent.pid"')
    (workdir / "run").mkdir(mode=0o700)
    pid_file = workdir / "run" / "agent.pid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kv2render", "--config", str(path)],
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert _wait_for(
            lambda: pid_file.exists() and pid_file.read_text().strip() == str(proc.pid)
        ), "pid file never held the daemon's pid"
        assert _wait_for(lambda: (workdir / "out" / CASES[0]).exists())
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert not pid_file.exists()
    assert os.fspath(SECRET_ID) not in output
