"""Scenario 5: Hypothesis fuzzing of the three parsers that take untrusted input, plus the
regression tests for what the coverage-guided atheris runs found (tools/fuzz/).

Only the documented error tree (Kv2RenderError subclasses) may come out (KV2-AC-291).
~200 examples per test by default; 10,000 with KV2RENDER_FULL_FAULTS=1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kv2render.config import load
from kv2render.errors import ConfigError, Kv2RenderError, ReferenceSyntaxError
from kv2render.model import SecretVersion
from kv2render.refs import SecretLocation, format_ref, parse_ref
from kv2render.store.responses import secret_version as _secret_version
from tests.integration.cli_helpers import REPO

from .helpers import record, sized

EXAMPLES = sized(200, 10_000)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # CI runs are independent; a found example is printed to re-run
)
SLOW = pytest.mark.timeout(sized(120, 3600))  # 10,000 config loads take minutes
_COUNTS: dict[str, list[int]] = {}  # parser -> [examples begun, ended cleanly, refused]


def _begin(name: str) -> None:
    """One example starts (counted before the parser runs, so a crash is a try that failed)."""
    _COUNTS.setdefault(name, [0, 0, 0])[0] += 1


def _count(name: str, refused: bool) -> None:
    """The example ended in a value or a documented error and passed its checks."""
    tally = _COUNTS.setdefault(name, [0, 0, 0])
    tally[1] += 1
    tally[2] += int(refused)


@pytest.fixture(scope="module", autouse=True)
def _fuzz_summary() -> Iterator[None]:
    """KV2-AC-294 KV2-AC-456: the module's FAULTS-SUMMARY line, written after its last test
    from the examples the fuzz tests in this run began and finished; no test has to run
    last, and a crashed example counts as a try that did not survive."""
    _COUNTS.clear()
    yield
    if _COUNTS:
        record(
            "hypothesis-fuzzing",
            tries=sum(v[0] for v in _COUNTS.values()),
            survived=sum(v[1] for v in _COUNTS.values()),
            examples_per_test=EXAMPLES,
            per_parser={
                k: {"examples": v[0], "survived": v[1], "refused": v[2]}
                for k, v in sorted(_COUNTS.items())
            },
        )


# -- values shared by the strategies ----------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "0", "-1", "1s", "200ms", "5m", "0600", "0o600", "true", "/", "~", "%"]),
)


def trees(keys: st.SearchStrategy[str], leaves: st.SearchStrategy[Any] = _SCALARS) -> Any:
    """Nested dict/list/scalar trees, as a YAML or JSON document becomes (st.recursive)."""
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)
        ),
        max_leaves=25,
    )


# -- 1. the reference parser -------------------------------------------------------------------

_REF_PIECES = st.sampled_from(
    [
        "vault+kv2://", "vault+kv2:///", "https://", "http://", "kv2://", "vault://",
        "azurekeyvault://", "h.vault.azure.net", "[::1]", "[::1", "127.0.0.1:8200", ":", ":99999",
        "/", "//", "/v1/", "/data/", "data", "metadata", "secret", "?version=", "?version=0",
        "?version=3", "?version=-1", "?v=1&version=2", "#", "#/", "#key", "#/a/0", "~0", "~1",
        "%", "%2F", "%00", "%ff", "%C3%A9", "\x00", "\n", " ", "\ud800", "é", "..", ".", "@",
        "user:pw@", "9" * 30,
    ]
)  # fmt: skip
_SEG = st.one_of(
    st.sampled_from(["a", "app", "db", "%2F", "é", "a b", "x.y"]),
    st.text(alphabet="abcxyz019-_.~é%2F", min_size=1, max_size=6),
    st.text(min_size=1, max_size=4),
)
_NEAR_VALID = st.builds(
    lambda scheme, host, prefix, mount, path, version, frag: (
        f"{scheme}{host}{prefix if scheme.startswith('http') else ''}"
        f"{'/v1' if scheme.startswith('http') else ''}/{mount}/data/{'/'.join(path)}"
        f"{version}{frag}"
    ).removeprefix("/" if not scheme else ""),
    st.sampled_from(["vault+kv2://", "https://", "http://", ""]),
    st.sampled_from(["", "h.example", "127.0.0.1:8200", "[::1]:8200", "H.Example."]),
    st.sampled_from(["", "/api/okms-1", "/x/y"]),
    _SEG,
    st.lists(_SEG, min_size=1, max_size=3),
    st.sampled_from(["", "?version=1", "?version=007", "?version=0", "?version=x"]),
    st.one_of(st.sampled_from(["", "#password", "#/a/0", "#/~1~0", "#"]), _SEG.map("#".__add__)),
)
_REF_TEXT = st.one_of(
    st.text(),
    st.lists(st.one_of(_REF_PIECES, st.text(max_size=3)), max_size=16).map("".join),
    _NEAR_VALID,
)


@SLOW
@FUZZ
@given(text=_REF_TEXT, allow_path_form=st.booleans())
def test_reference_parser_raises_only_reference_errors(text: str, allow_path_form: bool) -> None:
    """KV2-AC-291 KV2-INV-002: parse_ref fails only with ReferenceSyntaxError; what parses
    round-trips through format_ref and selects without leaving the error tree."""
    _begin("refs")
    try:
        ref = parse_ref(text, where="fuzz", allow_path_form=allow_path_form)
    except ReferenceSyntaxError:
        _count("refs", True)
        return
    assert parse_ref(format_ref(ref), allow_path_form=True) == ref
    try:
        ref.select({"password": "x", "a": {"b": [1, {"~/": 2}]}, "": 0})
    except Kv2RenderError:
        pass  # a documented error is the property (KV2-AC-291); anything else fails
    _count("refs", False)


# -- 2. the config loader over YAML and JSON trees ---------------------------------------------

_CONFIG_KEYS = st.one_of(
    st.sampled_from(
        [
            "vault", "address", "timeout", "retry", "num_retries", "namespace", "ca_cert",
            "tls_skip_verify", "tls_server_name", "client_cert", "client_key", "auto_auth",
            "method", "type", "config", "mount_path", "role_id_file_path",
            "secret_id_file_path", "token_file_path", "token", "secret_id", "template",
            "template_config", "static_secret_render_interval", "max_output_bytes",
            "concurrency", "exit_on_retry_failure", "contents", "source", "ref",
            "destination", "perms", "user", "group", "command", "command_timeout",
            "create_dest_dirs", "error_on_missing_key", "backup", "syntax",
            "left_delimiter", "right_delimiter", "render_interval", "status_file",
            "pid_file", "exit_after_auth", "listener", "cache", "sink", "exec",
        ]
    ),
    st.text(max_size=8),
)  # fmt: skip
_CONFIG_LEAVES = st.one_of(
    _SCALARS,
    st.sampled_from(
        [
            "http://127.0.0.1:8200", "https://v.example:8200/prefix", "ftp://x", "approle",
            "token_file", "kubernetes", "jwt", "cert", "token_env", "consul-template", "jinja2",
            "vault+kv2:///secret/data/app/db#password", "{{ kv2('vault+kv2:///secret/data/a#b') }}",
            '{{ with secret "secret/data/a" }}{{ .Data.data.b }}{{ end }}', "out.txt", "/tmp/x",
            "relative/dir/x", "0644", "4755", "root", "65534",
        ]
    ),
)  # fmt: skip
_SKELETON = {
    "vault": {"address": "http://127.0.0.1:8200"},
    "template": [{"contents": "x", "destination": "out.txt"}],
}
_ENV = {"VAULT_TOKEN": "fuzz-token", "VAULT_ADDR": "http://127.0.0.1:8200"}
_DIR = Path(tempfile.mkdtemp(prefix="kv2render-faults-config-"))


def _grafted(tree: Any, path: list[str], value: Any) -> Any:
    """The valid skeleton with ``value`` written at ``path``: fuzzing past the first check."""
    out: Any = json.loads(json.dumps(_SKELETON))
    node = out
    for key in path[:-1]:
        nxt = node.get(key) if isinstance(node, dict) else None
        if not isinstance(nxt, dict):
            nxt = {}
            node[key] = nxt
        node = nxt
    node[path[-1]] = value
    return out if tree is None else {**out, **tree} if isinstance(tree, dict) else out


_CONFIGS = st.one_of(
    trees(_CONFIG_KEYS, _CONFIG_LEAVES),
    st.builds(
        _grafted,
        st.one_of(
            st.none(),
            st.dictionaries(_CONFIG_KEYS, trees(_CONFIG_KEYS, _CONFIG_LEAVES), max_size=3),
        ),
        st.lists(_CONFIG_KEYS, min_size=1, max_size=3),
        trees(_CONFIG_KEYS, _CONFIG_LEAVES),
    ),
)


def _load_text(text: str, suffix: str) -> None:
    _begin(f"config{suffix}")
    path = _DIR / f"kv2render{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load(path, env=_ENV)
    except Kv2RenderError:
        _count(f"config{suffix}", True)
        return
    _count(f"config{suffix}", False)


@SLOW
@FUZZ
@given(tree=_CONFIGS, flow=st.booleans())
def test_config_loader_yaml_raises_only_config_errors(tree: Any, flow: bool) -> None:
    """KV2-AC-291 KV2-AC-030: any YAML tree loads or fails with a documented error."""
    _load_text(yaml.safe_dump(tree, default_flow_style=flow, allow_unicode=True), ".yaml")


@SLOW
@FUZZ
@given(tree=_CONFIGS)
def test_config_loader_json_raises_only_config_errors(tree: Any) -> None:
    """KV2-AC-291: any JSON tree (kv2render's or a Vault Agent's shape) loads or fails cleanly."""
    _load_text(json.dumps(tree, ensure_ascii=False), ".json")


@SLOW
@FUZZ
@given(text=st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_config_loader_text_raises_only_config_errors(text: str) -> None:
    """KV2-AC-291: arbitrary text as a config file."""
    for suffix in (".yaml", ".json"):
        _load_text(text, suffix)


# -- 3. the response parser ----------------------------------------------------------------------

_LOCATIONS = st.builds(
    SecretLocation,
    st.sampled_from(["secret", "kv"]),
    st.sampled_from(["app/db", "a"]),
    st.one_of(st.none(), st.integers(min_value=1, max_value=5)),
)
_KV2_KEYS = st.one_of(
    st.sampled_from(
        ["data", "metadata", "version", "created_time", "deletion_time", "destroyed",
         "custom_metadata", "errors", "warnings", "auth", "lease_id"]
    ),
    st.text(max_size=6),
)  # fmt: skip
_VERSIONS = st.one_of(
    st.integers(min_value=-3, max_value=2**64), st.booleans(), st.text(max_size=3), st.none(),
    st.floats(allow_nan=False),
)  # fmt: skip
_BODIES = st.one_of(
    trees(_KV2_KEYS),
    st.builds(
        lambda data, meta, version, extra: {
            "data": {"data": data, "metadata": {**meta, "version": version}},
            **extra,
        },
        trees(_KV2_KEYS),
        st.dictionaries(_KV2_KEYS, _SCALARS, max_size=4),
        _VERSIONS,
        st.dictionaries(_KV2_KEYS, trees(_KV2_KEYS), max_size=2),
    ),
)


@SLOW
@FUZZ
@given(location=_LOCATIONS, body=_BODIES)
def test_response_parser_raises_only_documented_errors(location: SecretLocation, body: Any) -> None:
    """KV2-AC-291 KV2-AC-287: vault._secret_version turns any body into a SecretVersion or a
    BadResponseError; what it returns has an int version and object data."""
    _begin("response")
    if not isinstance(body, dict):
        body = {"data": body}
    try:
        got = _secret_version("fuzz", location, body)
    except Kv2RenderError:
        _count("response", True)
        return
    assert isinstance(got, SecretVersion)
    assert isinstance(got.version, int) and not isinstance(got.version, bool)
    assert isinstance(got.data, dict)
    assert location.version is None or got.version == location.version
    _count("response", False)


# -- regressions for atheris and hand-found crashes ---------------------------------------------


def _load_file(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    load(path, env=_ENV)


@pytest.mark.parametrize(
    "text", ["? [1]\n: 2\n", "vault:\n  ? {a: 1}\n  : 2\n"], ids=["list-key", "map-key"]
)
def test_yaml_complex_key_is_a_config_error(tmp_path: Path, text: str) -> None:
    """KV2-AC-291 KV2-AC-044 KV2-FC-040: found by atheris: a YAML complex key must be a
    ConfigError."""
    with pytest.raises(ConfigError):
        _load_file(tmp_path, "c.yaml", text)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.json", '{"vault": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        ("c.yaml", "vault: " + "[" * 5000 + "]" * 5000 + "\n"),
    ],
    ids=["json", "yaml"],
)
def test_deeply_nested_config_is_a_config_error(tmp_path: Path, name: str, text: str) -> None:
    """KV2-AC-291 KV2-AC-044 KV2-FC-040: a deeply nested config is a ConfigError, not an
    internal error."""
    with pytest.raises(ConfigError):
        _load_file(tmp_path, name, text)


_LAUGHS = (
    "".join(
        f"{a}: &{a} [" + ", ".join([f"*{p}"] * 9 if p else ["x"] * 9) + "]\n"
        for p, a in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
    )
    + "vault: *i\n"
)


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    """KV2-AC-291 KV2-AC-044 KV2-FC-040: a 'billion laughs' config is refused within seconds."""
    path = tmp_path / "c.yaml"
    path.write_text(_LAUGHS, encoding="utf-8")
    code = (
        "import sys\nfrom kv2render.config import load\nfrom kv2render.errors import ConfigError\n"
        f"try:\n    load({str(path)!r}, env={{'VAULT_TOKEN': 'x'}})\n"
        "except ConfigError:\n    sys.exit(0)\nsys.exit(3)\n"
    )
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, timeout=5, capture_output=True, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still loading after {time.monotonic() - started:.0f}s")
    assert proc.returncode == 0, proc.stderr.decode()[-500:]
