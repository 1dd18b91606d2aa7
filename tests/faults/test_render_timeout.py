"""A wall-clock limit per render (issue 14 item 9, KV2-INV-367, KV2-FC-370, KV2-AC-374).

The step budget counts loop iterations and calls, not the work inside one call: a template
sorting a 500,000-character string fifty times took 57 s, ten thousand times hours. Now each
filter that iterates its input refuses more than MAX_FILTER_ITEMS items (KV2-INV-368), and
both engines check the clock at every step against ``template_config.render_timeout``.
Measured numbers are in the module's tests (elapsed bounds) and in the branch report.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kv2render.devserver import DevServer
from kv2render.errors import RenderError
from kv2render.render import ctmpl, jinja

from ..integration.cli_helpers import run_cli, write_config

SENTINEL = "S3NTINEL-render-timeout-5e1d"
OLD = b"old-good-content\n"

# Each iteration stays under every bound (99,999 items, ~0.05 s), but 10,000 of them would
# run for minutes: only the clock stops it.
JINJA_SLOW = (
    '{{ kv2("vault+kv2:///secret/data/app/db#password")|length }}'
    "{% set x = 'a' * 99999 %}{% for i in range(10000) %}{% set l = x|list|sort %}{% endfor %}"
)
_ITEMS = ",".join(["x"] * 1000)
CT_SLOW = (
    '{{ with secret "secret/data/app/db" }}{{ len .Data.data.password }}{{ end }}'
    f'{{{{ range $i := split "," "{_ITEMS}" }}}}{{{{ range $j := split "," "{_ITEMS}" }}}}'
    '{{ $s := printf "%900000s" "a" }}{{ end }}{{ end }}'
)


@pytest.fixture
def seeded(dev_server: DevServer) -> DevServer:
    dev_server.put("app/db", {"password": SENTINEL})
    return dev_server


@pytest.mark.parametrize(("syntax", "text"), [("jinja2", JINJA_SLOW), ("consul-template", CT_SLOW)])
def test_render_timeout_stops_a_long_render(
    seeded: DevServer, workdir: Path, syntax: str, text: str
) -> None:
    """KV2-AC-374 KV2-FC-370 KV2-INV-367 KV2-NFR-376: with render_timeout: 1s, a render that
    would run for minutes exits 5 within about a second, naming the template and
    render_timeout; the last good file is kept and the next template is still written."""
    dest = workdir / "slow.txt"
    dest.write_bytes(OLD)
    dest.chmod(0o600)
    good = workdir / "good.txt"
    cfg = write_config(
        workdir,
        {
            "template_config": {"render_timeout": "1s", "concurrency": 2},
            "template": [
                {"contents": text, "destination": str(dest), "syntax": syntax},
                {"ref": "vault+kv2:///secret/data/app/db#password", "destination": str(good)},
            ],
        },
    )
    started = time.monotonic()
    result = run_cli(
        ["--config", str(cfg), "--once"],
        {"VAULT_ADDR": seeded.url, "VAULT_TOKEN": seeded.root_token},
    )
    elapsed = time.monotonic() - started
    assert result.code == 5, result.text
    assert "render stopped after 1s" in result.text and "render_timeout" in result.text
    assert "template[0]" in result.text
    assert SENTINEL not in result.text
    assert dest.read_bytes() == OLD
    assert good.read_text() == SENTINEL
    assert elapsed < 5, f"stopped after {elapsed:.1f}s"


def test_render_timeout_api_both_engines() -> None:
    """KV2-AC-374 KV2-INV-367: the API takes the limit too; the stop comes soon after it."""
    compiled = jinja.compile_template(JINJA_SLOW.split("}}", 1)[1], name="t", render_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"t:1: render stopped after 0.5s"):
        jinja.render(compiled, {})
    assert time.monotonic() - started < 2.5  # 0.5 s + one call, on a loaded machine
    ct = ctmpl.compile_ctmpl(CT_SLOW.split("{{ end }}", 1)[1], name="c")
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"render stopped after 0.5s"):
        ctmpl.render_ctmpl(ct, {}, env={}, render_timeout=0.5)
    assert time.monotonic() - started < 2.5  # 0.5 s + one call, on a loaded machine


@pytest.mark.parametrize("value", [0, "0s", "soon", -1, True])
def test_render_timeout_must_be_a_positive_duration(workdir: Path, value: object) -> None:
    """KV2-AC-374: render_timeout that is zero, negative or not a duration is a config error."""
    cfg = write_config(
        workdir,
        {
            "template_config": {"render_timeout": value},
            "template": [{"contents": "x", "destination": str(workdir / "o")}],
        },
    )
    result = run_cli(["check", "--config", str(cfg)], {"VAULT_ADDR": "http://127.0.0.1:1"})
    assert result.code == 2, result.text
    assert "template_config.render_timeout" in result.text


def test_iterating_filters_refuse_huge_inputs() -> None:
    """KV2-AC-375 KV2-INV-368: each filter that iterates or sorts its input refuses more than
    MAX_FILTER_ITEMS items at once, without showing the input's length."""
    big = jinja.MAX_FILTER_ITEMS + 1
    for expr in (
        "x|list",
        "x|sort",
        "x|unique|list",
        "x|reverse|list",
        "x|join",
        "x|map('upper')|list",
        "x|select|list",
        "x|sum",
        "x|max",
        "range(10)|list",
    ):
        src = f"{{% set x = 'a' * {big} %}}{{{{ {expr} }}}}"
        compiled = jinja.compile_template(src, name="f")
        if expr.startswith("range"):
            assert jinja.render(compiled, {}).startswith("[0,")
            continue
        with pytest.raises(RenderError, match="MAX_FILTER_ITEMS") as info:
            jinja.render(compiled, {})
        assert str(big) not in str(info.value)


def test_cpu_attack_stops_fast() -> None:
    """KV2-AC-375 KV2-NFR-376: the issue's attack (57 s; range(10000): hours) stops at once."""
    for n in (50, 10000):
        src = f"{{% set x='a'*500000 %}}{{% for i in range({n}) %}}{{% set l = x|list|sort %}}"
        src += "{% endfor %}"
        compiled = jinja.compile_template(src, name="attack")
        started = time.monotonic()
        with pytest.raises(RenderError, match="the list filter takes at most"):
            jinja.render(compiled, {})
        assert time.monotonic() - started < 2.0
