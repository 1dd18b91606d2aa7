"""The target recipes run: every config in examples/targets and docs/targets passes `check`,
the docs show exactly the example files, and each example renders against the dev server.

Spec KV2-AC-204 (every recipe config passes ``kv2render check``); STYLE.md convention 14
("docs that run").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kv2render.devserver import DevServer

from .cli_helpers import REPO, run_cli

EXAMPLES = sorted((REPO / "examples" / "targets").glob("*.yaml"))
DOCS = sorted((REPO / "docs" / "targets").glob("*.md"))
YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)
FIRST_COMMENT = re.compile(r"\A# (examples/targets/[\w.-]+\.yaml)\n")
DB = {"username": "myapp", "password": "recipe-pw:é\\"}


def _config_blocks(doc: Path) -> list[str]:
    """The ```yaml blocks of a doc that are kv2render configs (a mapping with `template`)."""
    blocks = []
    for block in YAML_BLOCK.findall(doc.read_text(encoding="utf-8")):
        tree = yaml.safe_load(block)
        if isinstance(tree, dict) and "template" in tree:
            blocks.append(block)
    return blocks


def _check(path: Path) -> None:
    result = run_cli(["check", "--config", str(path)])
    assert result.code == 0, result.text
    assert "config OK" in result.text


def test_there_is_a_recipe_per_target() -> None:
    """KV2-AC-204: three targets, each with its recipe and example configs."""
    assert {d.name for d in DOCS} == {"vault.md", "openbao.md", "ovhcloud.md"}
    prefixes = {p.name.split("-")[0] for p in EXAMPLES}
    assert prefixes == {"vault", "openbao", "ovhcloud"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_config_passes_check(example: Path) -> None:
    """KV2-AC-204: `kv2render check` accepts every examples/targets config."""
    _check(example)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_configs_pass_check_and_match_the_examples(doc: Path, tmp_path: Path) -> None:
    """KV2-AC-204: every kv2render config block in docs/targets passes check, and is the exact
    text of the example file its first line names (so docs and examples cannot drift)."""
    blocks = _config_blocks(doc)
    assert blocks, f"{doc.name}: no kv2render config block"
    for i, block in enumerate(blocks):
        named = FIRST_COMMENT.match(block)
        assert named, f"{doc.name} block {i}: first line must be '# examples/targets/<file>'"
        assert (REPO / named.group(1)).read_text(encoding="utf-8") == block
        path = tmp_path / f"block{i}.yaml"
        path.write_text(block, encoding="utf-8")
        _check(path)


def test_every_example_is_shown_in_a_recipe() -> None:
    """KV2-AC-204: no example config exists that a recipe does not show."""
    shown = {
        FIRST_COMMENT.match(block).group(1)  # type: ignore[union-attr]
        for doc in DOCS
        for block in _config_blocks(doc)
    }
    assert {f"examples/targets/{p.name}" for p in EXAMPLES} == shown


@pytest.mark.parametrize(
    ("doc", "needed"),
    [
        ("vault.md", ("approle", "kubernetes")),
        ("openbao.md", ("approle", "kubernetes")),
        ("ovhcloud.md", ("mtls", "bearer_token_file")),
    ],
)
def test_recipe_covers_its_auth_methods_and_sections(doc: str, needed: tuple[str, ...]) -> None:
    """KV2-AC-204: each recipe shows a config per required auth method and covers the KV2
    protocol framing, least privilege, CA trust and the systemd/Kubernetes variants."""
    path = REPO / "docs" / "targets" / doc
    methods = {yaml.safe_load(b)["auto_auth"]["method"]["type"] for b in _config_blocks(path)}
    assert set(needed) <= methods
    text = path.read_text(encoding="utf-8")
    for phrase in ("KV2 protocol", "examples/systemd", "examples/kubernetes", "least-privilege"):
        assert phrase in text, f"{doc}: missing {phrase!r}"
    if doc == "ovhcloud.md":
        assert "okms:apikms:secret/version/getData" in text
    else:
        assert 'capabilities = ["read"]' in text and "namespace" in text.lower()
        assert "ca_cert" in text


# --------------------------------------------------------------------------- run them


def _flavor(example: Path) -> str:
    return {"vault": "vault", "openbao": "openbao", "ovhcloud": "ovh"}[example.name.split("-")[0]]


def _prepare(srv: DevServer, tree: dict[str, Any], workdir: Path) -> None:
    """Point an example at the dev server: its TLS files, credential files it can accept,
    outputs into workdir. Server-side setup mirrors the recipe (policy read on data/ only)."""
    vault = tree["vault"]
    vault["ca_cert"] = str(srv.ca_file)
    if "client_cert" in vault:
        vault["client_cert"] = str(srv.client_cert_file)
        vault["client_key"] = str(srv.client_key_file)
    namespace = vault.get("namespace", "")
    method = tree["auto_auth"]["method"]
    login_ns = method.get("namespace", namespace)
    mount = f"{namespace}/secret" if namespace else "secret"
    if namespace:
        srv.add_mount("secret", namespace=namespace)
    for path in ("myapp/db", "prod/myapp/db"):
        srv.put(path, DB, mount=mount)
    # Policy paths are relative to the token's namespace (the login's).
    relative = namespace[len(login_ns) :].strip("/") if namespace.startswith(login_ns) else ""
    prefix = f"{relative}/" if relative else ""
    srv.add_policy(
        "myapp-read",
        {f"{prefix}secret/data/+/db": ["read"], f"{prefix}secret/data/prod/myapp/db": ["read"]},
    )
    config = method.get("config", {})
    kind = method["type"]
    if kind == "approle":
        (workdir / "role_id").write_text("role-1\n")
        (workdir / "secret_id").write_text("secret-1\n")
        config["role_id_file_path"] = str(workdir / "role_id")
        config["secret_id_file_path"] = str(workdir / "secret_id")
        srv.add_approle("myapp", "role-1", "secret-1", ["myapp-read"], namespace=login_ns)
    elif kind == "kubernetes":
        jwt = "eyJhbGciOiJSUzI1NiJ9.recipe.sig"
        (workdir / "sa-token").write_text(jwt)
        config["token_path"] = str(workdir / "sa-token")
        mount_path = method.get("mount_path", "auth/kubernetes").removeprefix("auth/")
        srv.add_jwt(jwt, config["role"], ["myapp-read"], mount=mount_path, namespace=login_ns)
    elif kind == "bearer_token_file":
        (workdir / "pat").write_text(srv.create_token(["myapp-read"]) + "\n")
        config["token_file_path"] = str(workdir / "pat")
    elif kind == "mtls":
        srv.add_cert_role("okms-identity", ["myapp-read"])
    for template in tree["template"]:
        template["destination"] = str(workdir / Path(template["destination"]).name)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_renders_against_the_dev_server(example: Path, workdir: Path) -> None:
    """KV2-AC-204 KV2-AC-190 KV2-AC-196 KV2-AC-198 KV2-AC-199 KV2-AC-201: each recipe config,
    pointed at a dev server of its target's flavour over TLS, renders the password."""
    text = example.read_text(encoding="utf-8")
    original = yaml.safe_load(text)["vault"]["address"]
    is_mtls = yaml.safe_load(text)["auto_auth"]["method"]["type"] == "mtls"
    with DevServer(flavor=_flavor(example), tls=True, require_client_cert=is_mtls) as srv:
        # The address (and any https-form reference naming it) now names the dev server.
        tree = yaml.safe_load(text.replace(original, srv.url))
        _prepare(srv, tree, workdir)
        cfg = workdir / "kv2render.yaml"
        cfg.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
        result = run_cli(["--config", str(cfg), "--once"])
        assert result.code == 0, result.text
        assert (workdir / "db-password").read_text(encoding="utf-8") == DB["password"]
        assert srv.request_count(path_prefix="/v1/sys/internal/ui/mounts") == 0
