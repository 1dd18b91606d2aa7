"""Live smoke tests: the same kv2render against a real Vault, OpenBao and OVHcloud domain.

KV2 protocol, three targets. Each test runs ``kv2render --once`` as a subprocess and checks
the rendered bytes and mode 0600. They are skipped, with the variables to set in the reason,
unless their environment is present (KV2-AC-203). docs/live-tests.md says how to run them.

    Vault    KV2RENDER_LIVE_VAULT_ADDR, KV2RENDER_LIVE_VAULT_TOKEN
             optional: _CACERT (PEM file), _NAMESPACE, _MOUNT (default: secret)
    OpenBao  KV2RENDER_LIVE_OPENBAO_ADDR, KV2RENDER_LIVE_OPENBAO_TOKEN
             optional: _CACERT, _NAMESPACE, _MOUNT (default: secret)
    OVHcloud KV2RENDER_LIVE_OVH_ADDR (https://<region>.okms.ovh.net/api/<okms-id>),
             KV2RENDER_LIVE_OVH_PATH (a pre-created secret with a `password` key), and
             KV2RENDER_LIVE_OVH_CERT + KV2RENDER_LIVE_OVH_KEY (access certificate, mtls) and/or
             KV2RENDER_LIVE_OVH_TOKEN (personal access token, bearer_token_file);
             optional: KV2RENDER_LIVE_OVH_CACERT

For Vault and OpenBao the test writes a fresh secret under ``kv2render-live/<random>`` with
hvac (so the token needs create/update, read and delete on that mount) and deletes it at the
end. OVHcloud is read-only here: the test reads the pre-created secret with hvac to learn the
expected value, then checks kv2render wrote exactly that.

``test_live_scenarios_against_the_dev_server`` runs the very same scenarios against the
embedded dev server, and ``test_live_scenarios_against_the_real_openbao_server`` runs the Vault
and OpenBao ones against the real OpenBao server of the test tier (marked ``openbao``: never
skipped in CI), so the live code cannot rot unseen while nobody has the variables set.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.cli_helpers import run_cli_subprocess

PASSWORD_KEY = "password"
_HINT = "see docs/live-tests.md"


def _required(env: Mapping[str, str], prefix: str, *names: str, label: str = "") -> dict[str, str]:
    """The KV2RENDER_LIVE_<prefix>_* values, or a skip naming every variable to set."""
    wanted = [f"KV2RENDER_LIVE_{prefix}_{name}" for name in names]
    missing = [name for name in wanted if not env.get(name, "").strip()]
    if missing:
        pytest.skip(f"live {label or prefix.lower()} test: set {', '.join(missing)} ({_HINT})")
    found = {}
    for key, value in env.items():
        head = f"KV2RENDER_LIVE_{prefix}_"
        if key.startswith(head) and value.strip():
            found[key[len(head) :]] = value.strip()
    return found


def _private_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    return path


def _write_config(workdir: Path, tree: dict[str, Any]) -> Path:
    path = workdir / "kv2render.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def _assert_output(path: Path, expected: str) -> None:
    assert path.read_bytes() == expected.encode("utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _run_once(cfg: Path, env: Mapping[str, str], secret_value: str) -> None:
    result = run_cli_subprocess(["--config", str(cfg), "--once"], env, timeout=90)
    assert result.code == 0, result.text
    assert secret_value not in result.text  # the value reaches the file only


# --------------------------------------------------------------------------- scenarios


def vault_like_scenario(workdir: Path, live: Mapping[str, str], *, openbao: bool) -> None:
    """Write a secret with hvac, render it with kv2render --once, check bytes and 0600.

    Vault: address, CA and namespace in the config, token from a token_file.
    OpenBao: everything from BAO_ADDR / BAO_TOKEN / BAO_CACERT / BAO_NAMESPACE.
    """
    import hvac

    mount = live.get("MOUNT", "secret").strip("/")
    path = f"kv2render-live/{secrets.token_hex(6)}"
    value = f"live:{secrets.token_urlsafe(12)} é\\"
    client = hvac.Client(
        url=live["ADDR"],
        token=live["TOKEN"],
        verify=live.get("CACERT", True),
        namespace=live.get("NAMESPACE"),
        timeout=30,
    )
    client.secrets.kv.v2.create_or_update_secret(
        path, {PASSWORD_KEY: value, "username": "kv2render"}, mount_point=mount
    )
    try:
        templates = [
            {
                "ref": f"vault+kv2:///{mount}/data/{path}#{PASSWORD_KEY}",
                "destination": str(workdir / "password"),
            },
            {
                "contents": f'{{{{ kv2("vault+kv2:///{mount}/data/{path}#username") }}}}\n',
                "destination": str(workdir / "username"),
            },
        ]
        env: dict[str, str] = {}
        tree: dict[str, Any] = {}
        if openbao:
            env["BAO_ADDR"] = live["ADDR"]
            env["BAO_TOKEN"] = live["TOKEN"]
            for key in ("CACERT", "NAMESPACE"):
                if key in live:
                    env[f"BAO_{key}"] = live[key]
        else:
            vault: dict[str, Any] = {"address": live["ADDR"]}
            if "CACERT" in live:
                vault["ca_cert"] = live["CACERT"]
            if "NAMESPACE" in live:
                vault["namespace"] = live["NAMESPACE"]
            token_file = _private_file(workdir / "vault-token", live["TOKEN"])
            tree["vault"] = vault
            tree["auto_auth"] = {
                "method": {"type": "token_file", "config": {"token_file_path": str(token_file)}}
            }
        tree["template"] = templates
        _run_once(_write_config(workdir, tree), env, value)
        _assert_output(workdir / "password", value)
        _assert_output(workdir / "username", "kv2render\n")
    finally:
        try:
            client.secrets.kv.v2.delete_metadata_and_all_versions(path, mount_point=mount)
        except hvac.exceptions.VaultError:
            pass  # a token without delete on metadata leaves the secret behind; not a failure
        client.adapter.close()


def _ovh_expected(live: Mapping[str, str], mode: str) -> str:
    """The pre-created secret's password, read with hvac the way OVHcloud documents it."""
    import hvac
    import requests

    session = requests.Session()
    session.verify = live.get("CACERT", True)  # hvac's session quirk (kv2-wire §6.1)
    if mode == "mtls":
        session.cert = (live["CERT"], live["KEY"])
    else:
        session.headers["Authorization"] = f"Bearer {live['TOKEN']}"
    # token="": no X-Vault-Token and no fallback to VAULT_TOKEN / ~/.vault-token.
    client = hvac.Client(url=live["ADDR"], token="", session=session, timeout=30)
    try:
        reply = client.secrets.kv.v2.read_secret_version(
            live["PATH"].strip("/"), mount_point="secret", raise_on_deleted_version=True
        )
    finally:
        session.close()
    value = reply["data"]["data"][PASSWORD_KEY]
    assert isinstance(value, str), "the OVHcloud secret's `password` must be a string"
    return value


def ovh_scenario(workdir: Path, live: Mapping[str, str], mode: str) -> None:
    """Render the pre-created secret's `password` through mtls or bearer_token_file."""
    expected = _ovh_expected(live, mode)
    vault: dict[str, Any] = {"address": live["ADDR"]}
    if "CACERT" in live:
        vault["ca_cert"] = live["CACERT"]
    if mode == "mtls":
        vault["client_cert"] = live["CERT"]
        vault["client_key"] = live["KEY"]
        method: dict[str, Any] = {"type": "mtls"}
    else:
        token_file = _private_file(workdir / "okms-token", live["TOKEN"])
        method = {"type": "bearer_token_file", "config": {"token_file_path": str(token_file)}}
    path = live["PATH"].strip("/")
    tree = {
        "vault": vault,
        "auto_auth": {"method": method},
        "template": [
            {
                "ref": f"vault+kv2:///secret/data/{path}#{PASSWORD_KEY}",
                "destination": str(workdir / "password"),
            }
        ],
    }
    _run_once(_write_config(workdir, tree), {}, expected)
    _assert_output(workdir / "password", expected)


# --------------------------------------------------------------------------- live tests


@pytest.mark.live
def test_live_vault(workdir: Path) -> None:
    """KV2-AC-203: HashiCorp Vault, token_file auth, optional CA and namespace."""
    live = _required(os.environ, "VAULT", "ADDR", "TOKEN")
    vault_like_scenario(workdir, live, openbao=False)


@pytest.mark.live
def test_live_openbao(workdir: Path) -> None:
    """KV2-AC-203 KV2-AC-197: OpenBao, configured through BAO_* variables only."""
    live = _required(os.environ, "OPENBAO", "ADDR", "TOKEN", label="openbao")
    vault_like_scenario(workdir, live, openbao=True)


@pytest.mark.live
def test_live_ovhcloud_mtls(workdir: Path) -> None:
    """KV2-AC-203 KV2-AC-198: OVHcloud Secret Manager with the OKMS access certificate."""
    live = _required(os.environ, "OVH", "ADDR", "PATH", "CERT", "KEY", label="ovhcloud mtls")
    ovh_scenario(workdir, live, "mtls")


@pytest.mark.live
def test_live_ovhcloud_bearer_token(workdir: Path) -> None:
    """KV2-AC-203 KV2-AC-199: OVHcloud Secret Manager with a personal access token."""
    live = _required(os.environ, "OVH", "ADDR", "PATH", "TOKEN", label="ovhcloud bearer")
    ovh_scenario(workdir, live, "bearer")


# --------------------------------------------------------------------------- self-test


def _dev_vault_like(flavor: str) -> Callable[[Path], None]:
    def run(workdir: Path) -> None:
        from kv2render.devserver import DevServer

        with DevServer(flavor=flavor, tls=True) as srv:
            srv.add_mount("kv", namespace="team-a")
            live = {
                "ADDR": srv.url,
                "TOKEN": srv.root_token,
                "CACERT": str(srv.ca_file),
                "NAMESPACE": "team-a",
                "MOUNT": "kv",
            }
            vault_like_scenario(workdir, live, openbao=flavor == "openbao")
            assert srv.request_count("DELETE", "/v1/kv/metadata/kv2render-live/") == 1

    return run


def _dev_ovh(mode: str) -> Callable[[Path], None]:
    def run(workdir: Path) -> None:
        from kv2render.devserver import DevServer

        with DevServer(flavor="ovh", tls=True, require_client_cert=mode == "mtls") as srv:
            srv.put("kv2render/live", {PASSWORD_KEY: "okms-live-value:é", "other": "x"})
            live = {"ADDR": srv.url, "PATH": "kv2render/live", "CACERT": str(srv.ca_file)}
            if mode == "mtls":
                live |= {"CERT": str(srv.client_cert_file), "KEY": str(srv.client_key_file)}
            else:
                live["TOKEN"] = srv.create_token(["root"])
            ovh_scenario(workdir, live, mode)
            assert srv.request_count("GET", "/v1/secret/data/kv2render/live") == 2

    return run


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(_dev_vault_like("vault"), id="vault"),
        pytest.param(_dev_vault_like("openbao"), id="openbao"),
        pytest.param(_dev_ovh("mtls"), id="ovh-mtls"),
        pytest.param(_dev_ovh("bearer"), id="ovh-bearer"),
    ],
)
def test_live_scenarios_against_the_dev_server(
    workdir: Path, scenario: Callable[[Path], None]
) -> None:
    """KV2-AC-203: the live scenarios themselves work (run here against the dev server)."""
    scenario(workdir)


@pytest.mark.openbao
@pytest.mark.parametrize(
    ("flavor", "tls"),
    [
        pytest.param("openbao", False, id="openbao"),
        pytest.param("vault", False, id="vault"),
        pytest.param("openbao", True, id="openbao-tls-namespace"),
        pytest.param("vault", True, id="vault-tls-namespace"),
    ],
)
def test_live_scenarios_against_the_real_openbao_server(
    workdir: Path, request: pytest.FixtureRequest, flavor: str, tls: bool
) -> None:
    """KV2-AC-203 KV2-AC-310: the Vault and OpenBao live scenarios, unchanged, against the real
    OpenBao server of the test tier (``bao server -dev``; root token), so they run in every CI
    run: plain HTTP on ``secret/``, and over TLS with its CA in a namespace of their own."""
    from tests.realbao import BaoServer, unique

    server: BaoServer = request.getfixturevalue("bao_tls_server" if tls else "bao_server")
    live = {"ADDR": server.address, "TOKEN": server.root_token}
    if tls:
        namespace = unique("live-ns")
        server.create_namespace(namespace)
        server.enable_kv2("kv", namespace=namespace)
        live |= {"CACERT": str(server.ca_cert), "NAMESPACE": namespace, "MOUNT": "kv"}
    vault_like_scenario(workdir, live, openbao=flavor == "openbao")


def test_skip_reason_names_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """KV2-AC-203: without the variables the skip says which ones to set."""
    monkeypatch.setenv("KV2RENDER_LIVE_OVH_ADDR", "https://eu-west-rbx.okms.ovh.net/api/x")
    with pytest.raises(pytest.skip.Exception) as skipped:
        _required(os.environ, "OVH", "ADDR", "PATH", "TOKEN")
    reason = str(skipped.value)
    assert "KV2RENDER_LIVE_OVH_PATH" in reason and "KV2RENDER_LIVE_OVH_TOKEN" in reason
    assert "KV2RENDER_LIVE_OVH_ADDR" not in reason
    assert "docs/live-tests.md" in reason
