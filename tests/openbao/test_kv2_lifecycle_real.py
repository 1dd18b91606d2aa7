"""A secret's whole KV2 life on the real OpenBao server, seen through ``kv2render --once``.

New versions, pinned versions in the three reference forms, soft delete (latest and one
version), undelete, destroy, metadata delete, ``max_versions`` pruning, ``cas_required``, and
JSON numbers as the real server stores them. Every case checks the exit code, the message
(mount, path, version; never a value), the file's bytes and mode, and that a failure keeps the
last good file untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.openbao.kvreal import (
    assert_no_leak,
    assert_one_line_errors,
    assert_rendered,
    config,
    file_state,
    kv_metadata,
    leftovers,
    once,
    ref_template,
    sentinel,
)
from tests.realbao import BaoServer, unique

pytestmark = pytest.mark.openbao


def _out(workdir: Path) -> Path:
    out = workdir / "out"
    out.mkdir(exist_ok=True)
    return out


def _ref(path: str, key: str = "password", version: int | None = None) -> str:
    query = "" if version is None else f"?version={version}"
    return f"vault+kv2:///secret/data/{path}{query}#{key}"


def test_new_versions_render_and_an_unchanged_one_is_not_rewritten(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-315 KV2-AC-090 KV2-AC-092 KV2-AC-110: v1, then v2, then v2 again."""
    path, dest = unique("life"), _out(workdir) / "pw"
    v1, v2 = sentinel("v1"), sentinel("v2")
    tree = config(bao_server, workdir, [ref_template(_ref(path), dest)])
    bao_server.kv_put(path, {"password": v1})
    first = once(workdir, tree)
    assert first.code == 0, first.err
    assert_rendered(dest, v1)
    assert f"secret/{path}@v1" in first.err
    bao_server.kv_put(path, {"password": v2})
    second = once(workdir, tree)
    assert second.code == 0, second.err
    assert_rendered(dest, v2)
    assert f"secret/{path}@v2" in second.err
    before = file_state(dest)
    third = once(workdir, tree)
    assert third.code == 0, third.err
    assert file_state(dest) == before  # same bytes: no write, same inode and mtime
    assert leftovers(dest.parent) == []
    for result in (first, second, third):
        assert_no_leak(result.text, v1, v2)


@pytest.mark.parametrize("form", ["ref", "jinja2", "consul-template"])
def test_a_pinned_version_renders_while_a_newer_one_exists(
    bao_server: BaoServer, workdir: Path, form: str
) -> None:
    """KV2-AC-316 KV2-AC-008: ``?version=2`` in a ``ref:``, a Jinja2 ``kv2()`` and a
    consul-template ``secret "secret/data/x?version=2"`` reads version 2, not the latest (3)."""
    path, dest = unique("pin"), _out(workdir) / "pw"
    values = [sentinel(f"pin{n}") for n in (1, 2, 3)]
    for value in values:
        bao_server.kv_put(path, {"password": value})
    if form == "ref":
        template = ref_template(_ref(path, version=2), dest)
    elif form == "jinja2":
        template = {
            "contents": f'{{{{ kv2("vault+kv2:///secret/data/{path}?version=2#password") }}}}',
            "destination": str(dest),
        }
    else:
        template = {
            "contents": (
                f'{{{{ with secret "secret/data/{path}?version=2" }}}}'
                "{{ .Data.data.password }}@{{ .Data.metadata.version }}{{ end }}"
            ),
            "destination": str(dest),
            "syntax": "consul-template",
        }
    result = once(workdir, config(bao_server, workdir, [template]))
    assert result.code == 0, result.err
    expected = values[1] + ("@2" if form == "consul-template" else "")
    assert_rendered(dest, expected)
    assert f"secret/{path}?version=2@v2" in result.err or f"secret/{path}@v2" in result.err
    assert_no_leak(result.text, *values)


def test_a_soft_deleted_latest_version_exits_4_and_undelete_recovers(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-317 KV2-AC-059 KV2-FC-051: ``kv delete`` of the latest version: exit 4, the
    message names mount, path and version and says how to fix it; the file is untouched.
    ``kv undelete`` brings the same version back and ``--once`` exits 0 again."""
    path, dest = unique("del"), _out(workdir) / "pw"
    v1, v2 = sentinel("d1"), sentinel("d2")
    bao_server.kv_put(path, {"password": v1})
    bao_server.kv_put(path, {"password": v2})
    tree = config(bao_server, workdir, [ref_template(_ref(path), dest)])
    assert once(workdir, tree).code == 0
    good = file_state(dest)
    bao_server.api("DELETE", f"secret/data/{path}")  # soft-deletes the latest version (2)
    failed = once(workdir, tree)
    assert failed.code == 4, failed.err
    assert f"secret/{path}: version 2 is deleted" in failed.err
    assert "undelete" in failed.err
    assert file_state(dest) == good
    assert leftovers(dest.parent) == []
    bao_server.api("POST", f"secret/undelete/{path}", {"versions": [2]})
    back = once(workdir, tree)
    assert back.code == 0, back.err
    assert file_state(dest) == good  # the same version 2: same bytes, nothing rewritten
    for result in (failed, back):
        assert_no_leak(result.text, v1, v2)


def test_deleting_one_pinned_version_fails_only_the_template_pinning_it(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-317 KV2-AC-099: ``kv delete -versions=1``; the template pinned to v1 fails
    (exit 4, "version 1 is deleted"), the one following the latest still renders v2."""
    path, out = unique("delv"), _out(workdir)
    v1, v2 = sentinel("dv1"), sentinel("dv2")
    bao_server.kv_put(path, {"password": v1})
    bao_server.kv_put(path, {"password": v2})
    bao_server.api("POST", f"secret/delete/{path}", {"versions": [1]})
    tree = config(
        bao_server,
        workdir,
        [
            ref_template(_ref(path, version=1), out / "pinned"),
            ref_template(_ref(path), out / "latest"),
        ],
    )
    result = once(workdir, tree)
    assert result.code == 4, result.err
    assert f"secret/{path}?version=1: version 1 is deleted" in result.err
    assert not (out / "pinned").exists()
    assert_rendered(out / "latest", v2)
    assert_no_leak(result.text, v1, v2)


def test_a_destroyed_version_exits_4_and_a_new_version_recovers(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-317 KV2-AC-059: ``kv destroy`` of the latest version: exit 4 saying its data is
    gone (distinct from deleted), file untouched; a new version renders."""
    path, dest = unique("destroy"), _out(workdir) / "pw"
    v1, v2 = sentinel("x1"), sentinel("x2")
    bao_server.kv_put(path, {"password": v1})
    tree = config(bao_server, workdir, [ref_template(_ref(path), dest)])
    assert once(workdir, tree).code == 0
    good = file_state(dest)
    bao_server.api("POST", f"secret/destroy/{path}", {"versions": [1]})
    failed = once(workdir, tree)
    assert failed.code == 4, failed.err
    assert f"secret/{path}: version 1 is destroyed; its data is gone" in failed.err
    assert "is deleted" not in failed.err
    assert file_state(dest) == good
    bao_server.kv_put(path, {"password": v2})
    back = once(workdir, tree)
    assert back.code == 0, back.err
    assert_rendered(dest, v2)
    for result in (failed, back):
        assert_no_leak(result.text, v1, v2)


def test_metadata_delete_is_a_missing_secret(bao_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-317 KV2-AC-058: ``kv metadata delete`` removes every version: the real server
    answers 404 ``{"errors":[]}``; exit 4, "no secret at this path", file untouched."""
    path, dest = unique("meta"), _out(workdir) / "pw"
    v1 = sentinel("m1")
    bao_server.kv_put(path, {"password": v1})
    tree = config(bao_server, workdir, [ref_template(_ref(path), dest)])
    assert once(workdir, tree).code == 0
    good = file_state(dest)
    bao_server.api("DELETE", f"secret/metadata/{path}")
    failed = once(workdir, tree)
    assert failed.code == 4, failed.err
    assert f"secret/{path}: no secret at this path" in failed.err
    assert "check the mount ('secret'), the path and vault.namespace" in failed.err
    assert file_state(dest) == good
    assert_no_leak(failed.text, v1)


def test_a_pinned_version_pruned_by_max_versions_exits_4(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-317: ``max_versions=2`` and three writes: version 1 is gone (404
    ``{"errors":[]}``); a reference pinned to it exits 4 with "no version 1 at this path" and the
    hint to check ``?version=``; version 2 still renders."""
    path, out = unique("maxv"), _out(workdir)
    bao_server.api("POST", f"secret/metadata/{path}", {"max_versions": 2})
    values = [sentinel(f"mv{n}") for n in (1, 2, 3)]
    for value in values:
        bao_server.kv_put(path, {"password": value})
    assert sorted(kv_metadata(bao_server, path)["versions"]) == ["2", "3"]
    gone = once(
        workdir, config(bao_server, workdir, [ref_template(_ref(path, version=1), out / "a")])
    )
    assert gone.code == 4, gone.err
    assert f"secret/{path}?version=1: no version 1 at this path" in gone.err
    assert "check the ?version= of the reference" in gone.err
    assert not (out / "a").exists()
    kept = once(
        workdir, config(bao_server, workdir, [ref_template(_ref(path, version=2), out / "b")])
    )
    assert kept.code == 0, kept.err
    assert_rendered(out / "b", values[1])
    for result in (gone, kept):
        assert_no_leak(result.text, *values)


def test_cas_required_reads_work_and_kv2render_never_writes(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-319: with ``cas_required`` on the secret, reading needs no ``cas``; after a
    render the secret's metadata is unchanged (kv2render only reads: no new version, no
    metadata write)."""
    path, dest = unique("cas"), _out(workdir) / "pw"
    bao_server.api("POST", f"secret/metadata/{path}", {"cas_required": True})
    value = sentinel("cas")
    assert bao_server.kv_put(path, {"password": value}, cas=0) == 1
    before = kv_metadata(bao_server, path)
    assert before["cas_required"] is True
    result = once(workdir, config(bao_server, workdir, [ref_template(_ref(path), dest)]))
    assert result.code == 0, result.err
    assert_rendered(dest, value)
    after = kv_metadata(bao_server, path)
    assert after == before  # same current_version, updated_time, versions
    assert_no_leak(result.text, value)


# The real server decodes a write's JSON into float64 and re-encodes it (openbao-real.md):
# `1.50` is stored as `1.5`, `1e3` as `1000`, and a 20-digit integer loses its tail. kv2render
# writes what the server answers, byte for byte (KV2-INV-061); it never "fixes" a number.
_RAW_NUMBERS = (
    '{"data": {"price": 1.50, "kilo": 1e3, "kilo5": 1.5e3, "big": 12345678901234567890,'
    ' "tiny": 1E-7, "neg_zero": -0, "list": [1.0, 2.50], "text": "1.50"}}'
)
_SERVER_NUMBERS = {
    "price": "1.5",
    "kilo": "1000",
    "kilo5": "1500",
    "big": "12345678901234567000",
    "tiny": "1e-7",
    "neg_zero": "-0",
    "list": "[1,2.5]",
    "text": "1.50",
}
_SERVER_OBJECT = (  # toJSON: compact, keys sorted, each number as the server sent it
    '{"big":12345678901234567000,"kilo":1000,"kilo5":1500,"list":[1,2.5],"neg_zero":-0,'
    '"price":1.5,"text":"1.50","tiny":1e-7}'
)


def test_json_numbers_are_written_as_the_real_server_stores_them(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-320 KV2-INV-061: numbers written as ``1.50``/``1e3``/a 20-digit integer come back
    from the real server as ``1.5``/``1000``/``12345678901234567000``; ``ref:`` outputs, a Jinja2
    mapping and consul-template's ``.Data.data`` and ``toJSON`` write exactly those bytes."""
    path, out = unique("num"), _out(workdir)
    bao_server.kv_put_raw(path, _RAW_NUMBERS)
    templates = [
        ref_template(f"vault+kv2:///secret/data/{path}#{key}", out / key) for key in _SERVER_NUMBERS
    ]
    templates.append(
        {
            "contents": f'{{{{ kv2("vault+kv2:///secret/data/{path}") | toJSON }}}}\n'
            f'{{{{ kv2("vault+kv2:///secret/data/{path}#price") }}}}',
            "destination": str(out / "jinja"),
        }
    )
    templates.append(
        {
            "contents": f'{{{{ with secret "secret/data/{path}" }}}}{{{{ .Data.data.price }}}} '
            "{{ .Data.data.kilo }} {{ .Data.data.big }} {{ .Data.data.list | toJSON }}{{ end }}",
            "destination": str(out / "ctmpl"),
            "syntax": "consul-template",
        }
    )
    result = once(workdir, config(bao_server, workdir, templates))
    assert result.code == 0, result.err
    for key, text in _SERVER_NUMBERS.items():
        assert_rendered(out / key, text)
    assert_rendered(out / "jinja", _SERVER_OBJECT + "\n1.5")
    assert_rendered(out / "ctmpl", "1.5 1000 12345678901234567000 [1,2.5]")


def test_a_pinned_version_beyond_the_current_one_exits_4(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-317 KV2-AC-058: ``?version=9`` of a secret with one version: exit 4, "no version 9
    at this path"; the message is one line (KV2-AC-318) and names no value."""
    path, dest = unique("ver9"), _out(workdir) / "pw"
    value = sentinel("v9")
    bao_server.kv_put(path, {"password": value})
    result = once(workdir, config(bao_server, workdir, [ref_template(_ref(path, version=9), dest)]))
    assert result.code == 4, result.err
    assert f"secret/{path}?version=9: no version 9 at this path" in result.err
    assert not dest.exists()
    assert_one_line_errors(result.err)
    assert_no_leak(result.text, value)
