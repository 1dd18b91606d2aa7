"""The least-privilege policies of ``docs/targets/openbao.md`` and ``docs/targets/vault.md``,
applied to the real OpenBao server: the docs are what is tested.

The ```hcl blocks are read from the docs, written with ``sys/policies/acl``, and given to a
token that holds nothing else. They must be enough for ``--once`` and for the daemon's polling
(token lookup and renewal included); each policy with one grant less must fail with the
documented exit code and a message naming the path.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import read_text, wait_for
from tests.integration.cli_helpers import REPO
from tests.openbao.kvreal import (
    assert_no_leak,
    assert_one_line_errors,
    assert_rendered,
    config,
    file_state,
    once,
    ref_template,
    running_daemon,
    sentinel,
    stop_cleanly,
    token_file,
)
from tests.realbao import BaoServer

pytestmark = pytest.mark.openbao

DOCS = {name: REPO / "docs" / "targets" / f"{name}.md" for name in ("openbao", "vault")}
_HCL_BLOCK = re.compile(r"^```hcl\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# The docs' example secret: the policies name it, so the tests use it as it is written.
DOC_PATH = "myapp/db"
DOC_REF = "vault+kv2:///secret/data/myapp/db#password"


def doc_policies(doc: str) -> dict[str, str]:
    """The ```hcl blocks of a doc, by the file name on their first comment line."""
    text = DOCS[doc].read_text(encoding="utf-8")
    blocks: dict[str, str] = {}
    for body in _HCL_BLOCK.findall(text):
        first = body.splitlines()[0]
        match = re.match(r"#\s*([\w.-]+\.hcl)\b", first)
        assert match, f"{doc}.md: a ```hcl block must open with '# NAME.hcl', got {first!r}"
        blocks[match.group(1)] = body
    return blocks


def _drop_stanza(hcl: str, path: str) -> str:
    """``hcl`` without its ``path "PATH" { ... }`` stanza (which must be there)."""
    pattern = re.compile(r'^path "' + re.escape(path) + r'" \{\n.*?^\}\n', re.MULTILINE | re.DOTALL)
    out, count = pattern.subn("", hcl)
    assert count == 1, f"no stanza for {path!r} in:\n{hcl}"
    return out


def _replace(hcl: str, old: str, new: str) -> str:
    assert old in hcl, f"{old!r} not in:\n{hcl}"
    return hcl.replace(old, new)


def _token(server: BaoServer, policies: dict[str, str], **params: Any) -> str:
    """A token holding exactly ``policies`` (name -> HCL), without the default policy."""
    for name, hcl in policies.items():
        server.put_policy(name, hcl)
    params.setdefault("no_default_policy", True)
    return server.create_token(policies=sorted(policies), **params)


@pytest.fixture
def seeded(bao_fresh_server: BaoServer) -> Iterator[tuple[BaoServer, str]]:
    """A private server holding the docs' secret (``secret/myapp/db``); its password."""
    password = sentinel("doc-db")
    bao_fresh_server.kv_put(DOC_PATH, {"username": "myapp", "password": password})
    yield bao_fresh_server, password


def test_the_docs_state_the_same_policies() -> None:
    """KV2-AC-324: both target docs carry the read policy and the token-self policy, the same
    text in each (one ACL language), and the read policy grants only ``read`` on the data path."""
    openbao, vault = doc_policies("openbao"), doc_policies("vault")
    # KV2-AC-502: openbao.md adds the optional listing grant (Vault has no such path).
    listing = openbao.pop("myapp-list.hcl")
    assert re.findall(r'path "([^"]+)"', listing) == ["secret/detailed-metadata/myapp/*"]
    assert re.findall(r"capabilities = \[(.*)\]", listing) == ['"list"']
    assert set(openbao) == set(vault) == {"myapp-read.hcl", "token-self.hcl"}
    assert openbao == vault
    read = openbao["myapp-read.hcl"]
    assert re.findall(r'path "([^"]+)"', read) == ["secret/data/myapp/db"]
    assert re.findall(r"capabilities = \[(.*)\]", read) == ['"read"']


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_the_read_policy_with_the_default_policy_is_enough_for_once(
    seeded: tuple[BaoServer, str], workdir: Path, doc: str
) -> None:
    """KV2-AC-324: a token with the doc's ``myapp-read`` (and the built-in ``default``, as
    every token gets unless told otherwise) renders the doc's reference: exit 0, 0600."""
    server, password = seeded
    token = _token(
        server, {"myapp-read": doc_policies(doc)["myapp-read.hcl"]}, no_default_policy=False
    )
    dest = workdir / "db-password"
    result = once(workdir, config(server, workdir, [ref_template(DOC_REF, dest)], token=token))
    assert result.code == 0, result.err
    assert_rendered(dest, password)
    assert_no_leak(result.text, password, token)


def test_both_doc_policies_are_enough_without_the_default_policy(
    seeded: tuple[BaoServer, str], workdir: Path
) -> None:
    """KV2-AC-324: with ``-no-default-policy``, ``myapp-read`` plus ``token-self`` render."""
    server, password = seeded
    policies = doc_policies("openbao")
    token = _token(
        server,
        {"myapp-read": policies["myapp-read.hcl"], "token-self": policies["token-self.hcl"]},
    )
    dest = workdir / "db-password"
    result = once(workdir, config(server, workdir, [ref_template(DOC_REF, dest)], token=token))
    assert result.code == 0, result.err
    assert_rendered(dest, password)
    assert_no_leak(result.text, password, token)


def _approle_per_doc(server: BaoServer, workdir: Path, ttl: str) -> dict[str, Any]:
    """The doc's AppRole recipe (``token_policies=myapp-read``), with a short TTL."""
    server.put_policy("myapp-read", doc_policies("openbao")["myapp-read.hcl"])
    server.enable_auth("approle")
    server.api(
        "POST",
        "auth/approle/role/myapp",
        {"token_policies": ["myapp-read"], "token_ttl": ttl, "token_num_uses": 0},
    )
    role_id = server.api("GET", "auth/approle/role/myapp/role-id")["data"]["role_id"]
    secret_id = server.api("POST", "auth/approle/role/myapp/secret-id", {})["data"]["secret_id"]
    return {
        "method": {
            "type": "approle",
            "config": {
                "role_id_file_path": str(token_file(workdir, role_id, "role_id")),
                "secret_id_file_path": str(token_file(workdir, secret_id, "secret_id")),
            },
        }
    }


@pytest.mark.parametrize("auth", ["token-file-no-default-policy", "approle-doc-recipe"])
def test_the_doc_policies_are_enough_for_the_daemon(
    seeded: tuple[BaoServer, str], workdir: Path, auth: str
) -> None:
    """KV2-AC-325 KV2-AC-171 KV2-AC-160: the daemon polls, renews its 6 s token (renew-self
    at about 2/3 of the TTL) and renders a new version, with nothing but the doc policies: a
    ``token_file`` token with ``myapp-read`` + ``token-self`` and no default policy, or the
    doc's AppRole role. No error, no denial in the log."""
    server, password = seeded
    dest = workdir / "db-password"
    template = [ref_template(DOC_REF, dest)]
    if auth == "approle-doc-recipe":
        tree = config(
            server, workdir, template, auth=_approle_per_doc(server, workdir, "6s"), interval="1s"
        )
        secret_id = (workdir / "secret_id").read_text().strip()
    else:
        policies = doc_policies("openbao")
        token = _token(
            server,
            {"myapp-read": policies["myapp-read.hcl"], "token-self": policies["token-self.hcl"]},
            ttl="6s",
            renewable=True,
        )
        tree = config(server, workdir, template, token=token, interval="1s")
        secret_id = token
    with running_daemon(workdir, tree) as daemon:
        wait_for(lambda: read_text(dest) == password, 15, "first render", proc=daemon)
        wait_for(lambda: "token renewed" in daemon.log(), 15, "a renewal", proc=daemon)
        new_password = sentinel("doc-db-2")
        server.kv_put(DOC_PATH, {"username": "myapp", "password": new_password})
        wait_for(lambda: read_text(dest) == new_password, 10, "the new version", proc=daemon)
        log = stop_cleanly(daemon)
    assert_rendered(dest, new_password)
    assert "[ERROR]" not in log and "(403)" not in log and "denied" not in log, log[-3000:]
    assert_no_leak(log, password, new_password, secret_id)


def _read_less(policies: dict[str, str], how: str) -> dict[str, str]:
    read, token_self = policies["myapp-read.hcl"], policies["token-self.hcl"]
    if how == "read-stanza-removed":
        return {"token-self": token_self}
    if how == "list-instead-of-read":
        return {"token-self": token_self, "myapp-read": _replace(read, '"read"', '"list"')}
    if how == "metadata-instead-of-data":
        changed = _replace(read, "secret/data/", "secret/metadata/")
        return {"token-self": token_self, "myapp-read": changed}
    assert how == "kv1-style-path"
    return {"token-self": token_self, "myapp-read": _replace(read, "secret/data/", "secret/")}


@pytest.mark.parametrize(
    "how",
    ["read-stanza-removed", "list-instead-of-read", "metadata-instead-of-data", "kv1-style-path"],
)
def test_one_read_grant_less_exits_4_naming_the_grant(
    seeded: tuple[BaoServer, str], workdir: Path, how: str
) -> None:
    """KV2-AC-326 KV2-AC-057 KV2-FC-050: the doc policies with the data read taken away (the
    stanza, its capability, or its path spelled for ``metadata/`` or KV v1): exit 4, the
    one-line message names ``secret/myapp/db`` and the grant the doc gives, the file stays."""
    server, password = seeded
    token = _token(server, _read_less(doc_policies("openbao"), how))
    dest = workdir / "db-password"
    dest.write_text("previous", encoding="utf-8")
    dest.chmod(0o600)
    before = file_state(dest)
    result = once(workdir, config(server, workdir, [ref_template(DOC_REF, dest)], token=token))
    assert result.code == 4, result.err
    assert (
        'secret/myapp/db: permission denied (403): permission denied; grant "read" on '
        '"secret/data/myapp/db"'
    ) in result.err
    assert file_state(dest) == before
    assert_one_line_errors(result.err)
    assert_no_leak(result.text, password, token)


def test_without_lookup_self_the_login_exits_3_naming_the_path(
    seeded: tuple[BaoServer, str], workdir: Path
) -> None:
    """KV2-AC-326 KV2-AC-062: ``token-self`` without its ``auth/token/lookup-self`` stanza, no
    default policy: ``token_file`` login fails, exit 3, naming ``auth/token/lookup-self`` and
    the token file; nothing is read or written."""
    server, password = seeded
    policies = doc_policies("openbao")
    token = _token(
        server,
        {
            "myapp-read": policies["myapp-read.hcl"],
            "token-self": _drop_stanza(policies["token-self.hcl"], "auth/token/lookup-self"),
        },
    )
    dest = workdir / "db-password"
    result = once(workdir, config(server, workdir, [ref_template(DOC_REF, dest)], token=token))
    assert result.code == 3, result.err
    assert "auth/token/lookup-self: login refused (403): permission denied" in result.err
    assert str(workdir / "token") in result.err
    assert not dest.exists()
    assert_one_line_errors(result.err)
    assert_no_leak(result.text, password, token)


def test_without_renew_self_the_daemon_reports_the_refused_renewal(
    seeded: tuple[BaoServer, str], workdir: Path
) -> None:
    """KV2-AC-326: ``token-self`` without ``auth/token/renew-self``: the daemon renders, then
    at about 2/3 of the 6 s TTL logs "token renewal refused" naming ``auth/token/renew-self``
    and the 403, keeps the file and keeps running."""
    server, password = seeded
    policies = doc_policies("openbao")
    token = _token(
        server,
        {
            "myapp-read": policies["myapp-read.hcl"],
            "token-self": _drop_stanza(policies["token-self.hcl"], "auth/token/renew-self"),
        },
        ttl="6s",
        renewable=True,
    )
    dest = workdir / "db-password"
    tree = config(server, workdir, [ref_template(DOC_REF, dest)], token=token, interval="1s")
    with running_daemon(workdir, tree) as daemon:
        wait_for(lambda: read_text(dest) == password, 15, "first render", proc=daemon)
        started = time.monotonic()
        wait_for(lambda: "token renewal refused" in daemon.log(), 10, "the refusal", proc=daemon)
        assert time.monotonic() - started < 8
        log = stop_cleanly(daemon)
    refusal = next(line for line in log.splitlines() if "token renewal refused" in line)
    assert "auth/token/renew-self" in refusal and "(403)" in refusal and "denied" in refusal
    assert_rendered(dest, password)
    assert_one_line_errors(log)
    assert_no_leak(log, password, token)


def test_the_optional_list_grant_lets_the_daemon_list_the_folder(
    seeded: tuple[BaoServer, str], workdir: Path
) -> None:
    """KV2-AC-502 KV2-INV-500: with openbao.md's optional ``myapp-list.hcl`` beside
    ``myapp-read.hcl``, the store lists the doc's folder instead of being refused."""
    from kv2render.config import load
    from kv2render.store.client import open_store
    from kv2render.store.listing import FolderVersions, KeyState
    from tests.daemon.conftest import write_yaml

    server, _password = seeded
    policies = doc_policies("openbao")
    token = _token(
        server,
        {"myapp-read": policies["myapp-read.hcl"], "myapp-list": policies["myapp-list.hcl"]},
        no_default_policy=False,
    )
    tree = config(server, workdir, [ref_template(DOC_REF, workdir / "out")], token=token)
    store = open_store(load(write_yaml(workdir / "kv2render.yaml", tree)))
    try:
        got = store.list_folder("secret", "myapp/", ["db", "other"], max_requests=1)
    finally:
        store.close()
    assert got == FolderVersions({"db": KeyState(1, True)}, 1)
