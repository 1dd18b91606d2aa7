"""The shipped systemd unit and Kubernetes manifests say what issue 5 asks them to say."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import yaml

from kv2render import config
from tests.integration.cli_helpers import REPO

EXAMPLES = REPO / "examples"


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(EXAMPLES / "systemd" / "kv2render.service", encoding="utf-8")
    return parser


def test_systemd_unit_is_notify_hardened_and_dedicated() -> None:
    """KV2-AC-182: Type=notify, a dedicated user, ProtectSystem=strict, NoNewPrivileges=yes,
    ReadWritePaths= for the output directory."""
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert service["User"] not in ("", "root")
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    outputs = service["ReadWritePaths"].split()
    cfg = config.load(EXAMPLES / "systemd" / "kv2render.yaml", env={}, require_credentials=False)
    for spec in cfg.templates:
        assert any(str(spec.destination).startswith(p.rstrip("/") + "/") for p in outputs)
    assert cfg.status_file is not None
    assert any(str(cfg.status_file).startswith(p.rstrip("/") + "/") for p in outputs)
    assert "--once" not in service["ExecStart"]


def _docs(name: str) -> list[dict[str, Any]]:
    text = (EXAMPLES / "kubernetes" / name).read_text(encoding="utf-8")
    return [d for d in yaml.safe_load_all(text) if d]


def test_kubernetes_pod_has_init_once_native_sidecar_and_memory_volume(tmp_path: Path) -> None:
    """KV2-AC-182: an init container running --once, a native sidecar (restartPolicy: Always),
    a shared in-memory emptyDir, and Kubernetes auth."""
    deployment = next(d for d in _docs("deployment.yaml") if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    init = pod["initContainers"]
    once = [c for c in init if "--once" in c.get("args", [])]
    sidecars = [c for c in init if c.get("restartPolicy") == "Always"]
    assert len(once) == 1 and len(sidecars) == 1
    assert init.index(once[0]) < init.index(sidecars[0])  # render first, then keep current
    assert "--once" not in sidecars[0]["args"]
    memory = [v["name"] for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
    assert len(memory) == 1
    for container in [*once, *sidecars, *pod["containers"]]:
        assert memory[0] in {m["name"] for m in container["volumeMounts"]}

    configmap = next(d for d in _docs("configmap.yaml") if d["kind"] == "ConfigMap")
    path = tmp_path / "kv2render.yaml"
    path.write_text(configmap["data"]["kv2render.yaml"], encoding="utf-8")
    cfg = config.load(path, env={}, require_credentials=False)
    assert cfg.auth.type == "kubernetes"
    token_path = str(cfg.auth.config.token_path)  # type: ignore[union-attr]
    mounts = {m["mountPath"] for m in sidecars[0]["volumeMounts"]}
    assert any(token_path.startswith(m + "/") for m in mounts)
    secrets_mount = next(
        m["mountPath"] for m in sidecars[0]["volumeMounts"] if m["name"] == memory[0]
    )
    assert all(str(t.destination).startswith(secrets_mount + "/") for t in cfg.templates)


def _pod_config(tmp_path: Path, text: str, volume: Path, address: str) -> Path:
    """The example's kv2render.yaml with the pod's paths under ``volume`` and token auth."""
    tree = yaml.safe_load(text)
    tree.pop("auto_auth", None)  # VAULT_TOKEN instead of the pod's Kubernetes login
    tree["vault"] = {"address": address}
    tree["status_file"] = tree["status_file"].replace("/run/kv2render", str(volume))
    for template in tree["template"]:
        template["destination"] = template["destination"].replace("/run/kv2render", str(volume))
    path = tmp_path / "kv2render.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def test_kubernetes_examples_render_into_a_0777_emptydir(tmp_path: Path, dev_server: Any) -> None:
    """KV2-AC-415: Kubernetes creates an emptyDir 0777, a folder kv2render refuses to write
    into; the examples' outputs and status file live in folders kv2render creates 0700 inside
    the volume, so the init container's --once and the sidecar's status file work there."""
    from tests.integration.cli_helpers import run_cli

    configs = [
        next(d for d in _docs("configmap.yaml") if d["kind"] == "ConfigMap")["data"],
        next(
            d
            for d in yaml.safe_load_all((EXAMPLES / "connector" / "kubernetes.yaml").read_text())
            if d and d["kind"] == "ConfigMap"
        )["data"],
    ]
    dev_server.put("myapp/db", {"username": "u", "password": "pw-k8s"})
    dev_server.put("signals/pg-monitor", {"password": "pw-signals"})
    for n, data in enumerate(configs):
        volume = tmp_path / f"volume{n}"
        volume.mkdir()
        volume.chmod(0o777)  # what the kubelet makes of an emptyDir
        cfg = _pod_config(tmp_path, data["kv2render.yaml"], volume, dev_server.url)
        result = run_cli(["--config", str(cfg), "--once"], {"VAULT_TOKEN": dev_server.root_token})
        assert result.code == 0, result.text
        loaded = config.load(cfg, env={"VAULT_TOKEN": "t"})
        for spec in loaded.templates:
            assert spec.destination.stat().st_mode & 0o777 == 0o600
            assert spec.destination.parent.stat().st_mode & 0o777 == 0o700
        assert loaded.status_file is not None
        assert loaded.status_file.parent.parent == volume
