"""OpenBao namespaces (``sys/namespaces``), chosen by ``vault.namespace``, ``--namespace``,
``BAO_NAMESPACE`` and ``VAULT_NAMESPACE``, against the real server.

Every namespace gets its own KV v2 mount at ``secret/`` and the same secret path holds a
different value in the root namespace, so a render proves which namespace answered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.openbao.kvreal import (
    assert_no_leak,
    assert_one_line_errors,
    assert_rendered,
    config,
    once,
    once_subprocess,
    ref_template,
    sentinel,
    token_file,
)
from tests.realbao import BaoServer, unique

pytestmark = pytest.mark.openbao


def _namespace(server: BaoServer, parent: str | None = None) -> str:
    """A new namespace (inside ``parent`` when given) with KV v2 at ``secret/``; its full path."""
    name = unique("ns")
    server.api("POST", f"sys/namespaces/{name}", {}, namespace=parent)
    full = name if parent is None else f"{parent}/{name}"
    server.enable_kv2("secret", namespace=full)
    return full


def _two_values(server: BaoServer, namespace: str) -> tuple[str, str, str]:
    """The same path in the root namespace and in ``namespace``: (path, root value, ns value)."""
    path = unique("app")
    root_value, ns_value = sentinel("root-ns"), sentinel("in-ns")
    server.kv_put(path, {"password": root_value})
    server.kv_put(path, {"password": ns_value}, namespace=namespace)
    return path, root_value, ns_value


def _ref(path: str) -> str:
    return f"vault+kv2:///secret/data/{path}#password"


def test_vault_namespace_in_the_config_selects_the_namespace(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-321 KV2-AC-196 KV2-INV-192: ``vault.namespace`` reads the namespace's secret;
    the same config without it reads the root namespace's."""
    ns = _namespace(bao_server)
    path, root_value, ns_value = _two_values(bao_server, ns)
    dest = workdir / "pw"
    inside = once(
        workdir, config(bao_server, workdir, [ref_template(_ref(path), dest)], namespace=ns)
    )
    assert inside.code == 0, inside.err
    assert_rendered(dest, ns_value)
    outside = once(workdir, config(bao_server, workdir, [ref_template(_ref(path), dest)]))
    assert outside.code == 0, outside.err
    assert_rendered(dest, root_value)
    for result in (inside, outside):
        assert_no_leak(result.text, root_value, ns_value)


@pytest.mark.parametrize(
    ("ns_var", "token_var"),
    [("BAO_NAMESPACE", "BAO_TOKEN"), ("VAULT_NAMESPACE", "VAULT_TOKEN")],
)
def test_the_namespace_variable_selects_the_namespace(
    bao_server: BaoServer, workdir: Path, ns_var: str, token_var: str
) -> None:
    """KV2-AC-321 KV2-AC-196 KV2-AC-197: a process started with ``BAO_NAMESPACE`` (or
    ``VAULT_NAMESPACE``) and the token in ``BAO_TOKEN`` (or ``VAULT_TOKEN``), no auto_auth,
    reads the namespace's secret."""
    ns = _namespace(bao_server)
    path, root_value, ns_value = _two_values(bao_server, ns)
    dest = workdir / "pw"
    tree = config(bao_server, workdir, [ref_template(_ref(path), dest)], auth={})
    result = once_subprocess(workdir, tree, {ns_var: ns, token_var: bao_server.root_token})
    assert result.code == 0, result.err
    assert_rendered(dest, ns_value)
    assert_no_leak(result.text, root_value, ns_value)


def test_bao_namespace_beats_vault_namespace_and_the_file(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-321 KV2-INV-031: environment over file, ``BAO_*`` over ``VAULT_*``: the file
    names a namespace that does not exist and ``VAULT_NAMESPACE`` another one; the secret comes
    from ``BAO_NAMESPACE``'s."""
    ns, other = _namespace(bao_server), _namespace(bao_server)
    path, root_value, ns_value = _two_values(bao_server, ns)
    other_value = sentinel("other-ns")
    bao_server.kv_put(path, {"password": other_value}, namespace=other)
    dest = workdir / "pw"
    tree = config(bao_server, workdir, [ref_template(_ref(path), dest)], namespace=unique("nope"))
    env = {"BAO_NAMESPACE": ns, "VAULT_NAMESPACE": other}
    result = once_subprocess(workdir, tree, env)
    assert result.code == 0, result.err
    assert_rendered(dest, ns_value)
    assert_no_leak(result.text, root_value, ns_value, other_value)


def test_the_namespace_option_beats_the_environment(bao_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-321: ``--namespace`` over ``BAO_NAMESPACE`` (command line > environment)."""
    ns, other = _namespace(bao_server), _namespace(bao_server)
    path, root_value, ns_value = _two_values(bao_server, ns)
    dest = workdir / "pw"
    tree = config(bao_server, workdir, [ref_template(_ref(path), dest)])
    result = once_subprocess(workdir, tree, {"BAO_NAMESPACE": other}, ["--namespace", ns])
    assert result.code == 0, result.err
    assert_rendered(dest, ns_value)
    assert_no_leak(result.text, root_value, ns_value)


def test_a_nested_namespace_by_its_full_path(bao_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-321: ``vault.namespace: parent/child`` reaches a namespace created inside
    another one."""
    parent = _namespace(bao_server)
    child = _namespace(bao_server, parent)
    path, root_value, ns_value = _two_values(bao_server, child)
    dest = workdir / "pw"
    result = once(
        workdir, config(bao_server, workdir, [ref_template(_ref(path), dest)], namespace=child)
    )
    assert result.code == 0, result.err
    assert_rendered(dest, ns_value)
    assert_no_leak(result.text, root_value, ns_value)


def test_a_namespace_that_does_not_exist_exits_3_naming_the_setting(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-322: OpenBao answers 404 ``namespace not found`` on every path, the token lookup
    first: exit 3, "namespace not found (404)", the fix names ``vault.namespace`` and its
    variables (not a ``mount_path``, which ``token_file`` has none of); nothing is written."""
    path = unique("app")
    value = sentinel("no-ns")
    bao_server.kv_put(path, {"password": value})
    dest = workdir / "pw"
    tree = config(bao_server, workdir, [ref_template(_ref(path), dest)], namespace=unique("nope"))
    result = once(workdir, tree)
    assert result.code == 3, result.err
    assert "auth/token/lookup-self: namespace not found (404)" in result.err
    assert "check vault.namespace (--namespace, BAO_NAMESPACE, VAULT_NAMESPACE)" in result.err
    assert "mount_path" not in result.err
    assert not dest.exists()
    assert_one_line_errors(result.err)
    assert_no_leak(result.text, value)


def test_a_namespace_without_the_mount_exits_4_naming_the_namespace_setting(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-322 KV2-AC-058: the namespace exists but has no ``secret/`` mount: the real
    server answers 404 "no handler for route"; exit 4 naming the path, with the hint to check
    the mount and ``vault.namespace``."""
    ns = unique("ns")
    bao_server.create_namespace(ns)
    path = unique("app")
    bao_server.kv_put(path, {"password": sentinel("root-only")})
    dest = workdir / "pw"
    result = once(
        workdir, config(bao_server, workdir, [ref_template(_ref(path), dest)], namespace=ns)
    )
    assert result.code == 4, result.err
    assert f"secret/{path}: no secret at this path" in result.err
    assert "no handler for route" in result.err
    assert "vault.namespace" in result.err
    assert not dest.exists()
    assert_one_line_errors(result.err)
    assert_no_leak(result.text)


def test_a_token_issued_in_a_namespace_needs_that_namespace(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-321: a token created inside a namespace, with a policy written there, renders
    with ``vault.namespace`` set. Without it the token still looks itself up (the token store
    knows it), but its policy does not apply in the root namespace: exit 4, permission denied
    naming the grant, the file from the first run kept."""
    ns = _namespace(bao_server)
    path, root_value, ns_value = _two_values(bao_server, ns)
    bao_server.put_policy(
        "read-app", f'path "secret/data/{path}" {{ capabilities = ["read"] }}', namespace=ns
    )
    out = bao_server.api("POST", "auth/token/create", {"policies": ["read-app"]}, namespace=ns)
    token = out["auth"]["client_token"]
    dest = workdir / "pw"
    inside = once(
        workdir,
        config(bao_server, workdir, [ref_template(_ref(path), dest)], token=token, namespace=ns),
    )
    assert inside.code == 0, inside.err
    assert_rendered(dest, ns_value)
    outside = once(
        workdir, config(bao_server, workdir, [ref_template(_ref(path), dest)], token=token)
    )
    assert outside.code == 4, outside.err
    assert f'secret/{path}: permission denied (403): permission denied; grant "read"' in outside.err
    assert_rendered(dest, ns_value)  # the failed run kept the file
    for result in (inside, outside):
        assert_no_leak(result.text, root_value, ns_value, token)
        assert_one_line_errors(result.err)


def _approle(server: BaoServer, namespace: str, policy: str, workdir: Path) -> dict[str, Any]:
    """AppRole enabled in ``namespace``; the auto_auth block with its id files."""
    server.enable_auth("approle", namespace=namespace)
    role = unique("role")
    server.api(
        "POST",
        f"auth/approle/role/{role}",
        {"token_policies": [policy], "token_ttl": "1h"},
        namespace=namespace,
    )
    role_id = server.api("GET", f"auth/approle/role/{role}/role-id", namespace=namespace)
    secret_id = server.api("POST", f"auth/approle/role/{role}/secret-id", {}, namespace=namespace)
    return {
        "method": {
            "type": "approle",
            "namespace": namespace,
            "config": {
                "role_id_file_path": str(
                    token_file(workdir, role_id["data"]["role_id"], "role_id")
                ),
                "secret_id_file_path": str(
                    token_file(workdir, secret_id["data"]["secret_id"], "secret_id")
                ),
            },
        }
    }


def test_login_in_a_parent_namespace_reads_in_a_child_one(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-323 KV2-INV-192: the layout of ``docs/targets/vault.md`` §5 on OpenBao:
    AppRole in ``parent`` (``auto_auth.method.namespace``), the secret in ``parent/child``
    (``vault.namespace``), and the policy written in ``parent`` with the path relative to it
    (``child/secret/data/...``), as the doc says."""
    parent = _namespace(bao_server)
    child = _namespace(bao_server, parent)
    path, root_value, ns_value = _two_values(bao_server, child)
    child_name = child.rsplit("/", 1)[1]
    bao_server.put_policy(
        "child-app",
        f'path "{child_name}/secret/data/{path}" {{\n  capabilities = ["read"]\n}}\n',
        namespace=parent,
    )
    auth = _approle(bao_server, parent, "child-app", workdir)
    secret_id = (workdir / "secret_id").read_text().strip()
    dest = workdir / "pw"
    tree = config(bao_server, workdir, [ref_template(_ref(path), dest)], auth=auth, namespace=child)
    result = once(workdir, tree)
    assert result.code == 0, result.err
    assert_rendered(dest, ns_value)
    assert_no_leak(result.text, root_value, ns_value, secret_id)
