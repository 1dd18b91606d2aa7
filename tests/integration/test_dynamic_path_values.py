"""KV2-INV-394 KV2-INV-497 KV2-AC-399: a secret path computed from a secret's value is read,
and shown redacted everywhere kv2render shows a location.

Paths are metadata: logged, put in error texts, the status file and metrics labels. A path
built from a secret's value (``secret/data/tenants/<tenant>``, the tenant read from another
secret) would carry that value there. kv2render reads it, so the template renders as the
agent renders it, but shows it as ``mount/[path computed from a secret value at name:line]``.
Paths built from names (env, constants) are shown as they are (tests of KV2-AC-390+).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from kv2render.devserver import DevServer
from kv2render.refs import SecretLocation, hide_marked, mark_derived
from tests.integration.cli_helpers import DaemonProcess, run_cli, write_config
from tests.integration.hygiene_util import Sentinels

CTMPL = (
    '{{ with secret "secret/data/app/tenant" }}'
    '{{ with secret (printf "secret/data/tenants/%s" .Data.data.name) }}'
    "{{ .Data.data.password }}{{ end }}{{ end }}"
)
JINJA = (
    '{{ kv2("vault+kv2:///secret/data/tenants/" ~ '
    'kv2("vault+kv2:///secret/data/app/tenant#name") ~ "#password") }}'
)
# Two levels of computed paths: the second is built from a secret read through the first
# (the ``used`` set of an earlier round, not a constant reference).
CTMPL_CHAIN = (
    '{{ with secret (printf "secret/data/%s" (env "APP")) }}'
    '{{ with secret (printf "secret/data/tenants/%s" .Data.data.name) }}'
    "{{ .Data.data.password }}{{ end }}{{ end }}"
)
SHOWN = "secret/[path computed from a secret value at "


def _config(workdir: Path, srv: DevServer, contents: str, syntax: str) -> Path:
    entry = {"contents": contents, "syntax": syntax, "destination": str(workdir / "out")}
    return write_config(workdir, {"vault": {"address": srv.url}, "template": [entry]})


def _seed(srv: DevServer, sentinels: Sentinels, app: str = "app/tenant") -> tuple[str, str]:
    tenant = sentinels.make("tenant", "tenant")
    password = sentinels.make("password", "pw")
    srv.put(app, {"name": tenant})
    srv.put(f"tenants/{tenant}", {"password": password})
    return tenant, password


@pytest.mark.parametrize(
    ("syntax", "contents"),
    [("consul-template", CTMPL), ("jinja2", JINJA), ("consul-template", CTMPL_CHAIN)],
    ids=["ctmpl", "jinja2", "ctmpl-chain"],
)
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_path_built_from_a_secret_value_is_read_and_shown_redacted(
    dev_server: DevServer, workdir: Path, syntax: str, contents: str, fmt: str
) -> None:
    """KV2-AC-399 KV2-AC-485: the template renders (exit 0, the right bytes), the computed
    path is read once, and neither the tenant nor the password shows at trace level."""
    sentinels = Sentinels()
    _tenant, password = _seed(dev_server, sentinels, "tenant-app")
    dev_server.put("app/tenant", {"name": sentinels["tenant"]})
    cfg = _config(workdir, dev_server, contents, syntax)
    dev_server.reset_counters()
    result = run_cli(
        ["--config", str(cfg), "--once", "--log-level", "trace", "--log-format", fmt],
        {"VAULT_TOKEN": dev_server.root_token, "APP": "tenant-app"},
    )
    assert result.code == 0, result.text
    assert (workdir / "out").read_text() == password
    assert dev_server.request_count(path_prefix="/v1/secret/data/tenants/") == 1
    assert sentinels.leaks("output", result.text) == []
    assert SHOWN in result.text


def test_a_failed_read_of_such_a_path_names_it_redacted(
    dev_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-487: the computed path holds a value and names no secret: the read error
    (exit 4) names the location in its redacted form, and the hint too."""
    sentinels = Sentinels()
    tenant = sentinels.make("tenant", "tenant")
    dev_server.put("app/tenant", {"name": tenant})
    cfg = _config(workdir, dev_server, CTMPL, "consul-template")
    result = run_cli(
        ["--config", str(cfg), "--once", "--log-level", "trace"],
        {"VAULT_TOKEN": dev_server.root_token},
    )
    assert result.code == 4, result.text
    assert SHOWN in result.text
    assert sentinels.leaks("output", result.text) == []
    assert not (workdir / "out").exists()


def test_a_denied_read_of_such_a_path_hints_at_the_policy_redacted(
    dev_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-487: the token may read the tenant's name but not the path computed from it:
    the 403 error (exit 4) and its policy hint name the location redacted."""
    sentinels = Sentinels()
    _seed(dev_server, sentinels)
    dev_server.add_policy("tenant-only", {"secret/data/app/*": ["read"]})
    token = dev_server.create_token(["tenant-only"])
    cfg = _config(workdir, dev_server, CTMPL, "consul-template")
    result = run_cli(
        ["--config", str(cfg), "--once", "--log-level", "trace"], {"VAULT_TOKEN": token}
    )
    assert result.code == 4, result.text
    assert 'grant "read" on "secret/data/[path computed from a secret value at ' in result.text
    assert sentinels.leaks("output", result.text) == []


def test_a_path_built_from_a_name_still_shows(dev_server: DevServer, workdir: Path) -> None:
    """KV2-AC-399: the same template shape with the tenant from the environment renders,
    and its location is logged as it is."""
    dev_server.put("tenants/acme-by-name", {"password": "tenant-pw"})
    contents = (
        '{{ with secret (printf "secret/data/tenants/%s" (env "TENANT")) }}'
        "{{ .Data.data.password }}{{ end }}"
    )
    cfg = _config(workdir, dev_server, contents, "consul-template")
    result = run_cli(
        ["--config", str(cfg), "--once", "--log-level", "debug"],
        {"VAULT_TOKEN": dev_server.root_token, "TENANT": "acme-by-name"},
    )
    assert result.code == 0, result.text
    assert (workdir / "out").read_text() == "tenant-pw"
    assert "secret/tenants/acme-by-name@v1" in result.text


def test_the_mark_changes_display_only() -> None:
    """KV2-INV-497: a marked location keeps its equality, hash and order (de-duplication,
    caching and polling are unchanged); str, repr and the shown parts hide the path, in
    every copy of it; text a library writes (a request line) is redacted too."""
    sentinels = Sentinels()
    value = sentinels.make("tenant", "tenant")
    first = SecretLocation("secret", f"tenants/{value}")
    twin = SecretLocation("secret", f"tenants/{value}", 3)
    mark_derived(first, "t.ctmpl:2")
    assert first == SecretLocation("secret", f"tenants/{value}")
    assert hash(first) == hash(SecretLocation("secret", f"tenants/{value}"))
    assert str(first) == "secret/[path computed from a secret value at t.ctmpl:2]"
    assert str(twin) == "secret/[path computed from a secret value at t.ctmpl:2]?version=3"
    assert twin.shown_mount == "secret"
    texts = [
        str(first),
        repr(twin),
        f"{twin!r}",
        twin.shown_path,
        hide_marked(f'"GET /v1/secret/data/tenants/{value}?version=3 HTTP/1.1" 200'),
    ]
    assert sentinels.leaks("display", "\n".join(texts)) == []
    mark_derived(first, "other.ctmpl:9")  # sticky: the first mark stays
    assert str(first).endswith("at t.ctmpl:2]")


def test_an_env_template_never_shows_such_a_path(dev_server: DevServer, workdir: Path) -> None:
    """KV2-AC-488: process-supervisor mode renders env templates from their constant
    references; one whose path is computed from a secret value is not rendered, and the
    error it logs (trace level) names the location redacted, no value."""
    sentinels = Sentinels()
    _seed(dev_server, sentinels)
    config = write_config(
        workdir,
        {
            "vault": {"address": dev_server.url, "retry": {"num_retries": 0}},
            "env_template": {"TENANT_PW": {"contents": CTMPL}},
            "exec": {"command": [sys.executable, "-c", "import time; time.sleep(30)"]},
        },
    )
    daemon = DaemonProcess(
        config, workdir / "logs", env={"VAULT_TOKEN": dev_server.root_token}, log_level="trace"
    )
    try:
        deadline = time.monotonic() + 20
        while SHOWN not in daemon.log() and daemon.poll() is None:
            assert time.monotonic() < deadline, daemon.log()[-3000:]
            time.sleep(0.05)
    finally:
        daemon.close()
    log = daemon.log()
    assert SHOWN in log, log[-3000:]
    assert sentinels.leaks("daemon log", log) == []
