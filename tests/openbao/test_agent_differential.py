"""kv2render against the real OpenBao Agent, on the same real OpenBao server (issue 13).

KV2-AC-330, KV2-AC-331, KV2-AC-332, KV2-AC-333: every template of the consul-template corpus
(``tests/ctmpl/corpus``, in both ``error_on_missing_key`` modes), every agent config in
``examples/vault-agent/`` and a few probes of documented differences is rendered twice from ONE
agent config file:

* by ``bao agent -config=FILE`` (OpenBao 2.7.2, consul-template inside) with
  ``exit_after_auth = true`` and ``template_config { exit_on_retry_failure = true }``;
* by ``python -m kv2render --config FILE --once``.

Both read the same private ``bao server -dev`` through an ``auto_auth`` ``token_file`` method.
The corpus secrets are seeded at the corpus paths (``secret/data/app/db`` holds the corpus
values, at the corpus version numbers), so corpus cases whose paths collide with different
values get separate servers ("worlds"). Both tools must succeed with byte-identical files, or
both fail. What differs on purpose is listed in :data:`DIVERGENCES`, each with its reason;
anything else is a kv2render bug (docs/migrating-from-vault-agent.md, "Measured against the
real OpenBao Agent").

Each process gets a clean environment (PATH, a private HOME, the case's own variables; no
VAULT_*/BAO_*) and a 30 s timeout; the cases run on a small thread pool so the module stays
well under two minutes on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.ctmpl.corpus_util import CORPUS, MODES
from tests.realbao import BaoServer, BaoUnavailable, bao_binary

# The module fixture renders every case inside the first test's time budget: 40-70 s measured
# on a loaded 2-core machine, so the budget leaves headroom over the suite's 120 s default.
pytestmark = [pytest.mark.openbao, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "vault-agent"
RUN_TIMEOUT = 30.0
WORKERS = 3

# --------------------------------------------------------------------------------------------
# The divergences kept on purpose (KV2-AC-332). A key is the divergence's name; ``cases`` names
# the case ids it covers ("" = every case). With a ``mask``, both outputs must be equal after
# it; without one, the case must still diverge (so a fixed bug cannot hide behind its entry).

Mask = Callable[[bytes], bytes]

_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _mask_request_id(data: bytes) -> bytes:
    return _UUID.sub(b"", data)


@dataclass(frozen=True)
class Divergence:
    reason: str
    cases: tuple[str, ...]
    mask: Mask | None = field(default=None, compare=False)


DIVERGENCES: dict[str, Divergence] = {
    "default file mode 0600": Divergence(
        "a template without perms is written 0600 by kv2render and 0644 by the agent: rendered "
        "files hold secrets, so they stay owner-only unless perms says otherwise "
        "(KV2-INV-253, KV2-AC-265); the bytes are compared, the modes asserted separately",
        ("",),
    ),
    "empty RequestID": Divergence(
        "kv2render serves a whole secret with an empty RequestID: the server's request id is "
        "per-request noise, different on every read and on every poll, so a template printing "
        "the whole secret would change (and be rewritten) on every render",
        tuple(
            f"{name}/{mode}"
            for name in ("06-whole-secret-json", "33-whole-secret-print")
            for mode in MODES
        ),
        _mask_request_id,
    ),
    "created directories 0700": Divergence(
        "a destination directory that create_dest_dirs creates is 0700 with kv2render and "
        "0755 with the agent: it holds secret files, and nobody else needs to list it",
        ("",),
    ),
    "relative paths from the config's directory": Divergence(
        "kv2render resolves a relative source and destination against the config file's "
        "directory, the agent against its working directory: a config means the same files "
        "wherever it is started from. Run from elsewhere, the agent finds no source",
        ("probes/relative-paths",),
    ),
    "auto_auth.method as a plain JSON object": Divergence(
        "kv2render reads a JSON method block written as an object as well as a one-item "
        "list; the agent refuses the object ('one and only one \"method\" block is required')",
        ("probes/method-json-object",),
    ),
    "Go 1.19 comparison error text": Divergence(
        "kv2render says 'incompatible types for comparison' as Go 1.19 does (the Go that "
        "recorded the corpus, KV2-AC-261); the agent's newer Go appends the operand types "
        "(': json.Number and int'). Same failure, same position and action",
        tuple(f"28-eq-number-error/{mode}" for mode in MODES),
        lambda data: re.sub(rb"(incompatible types for comparison): \S+ and \S+$", rb"\1", data),
    ),
    "no byte offsets computed from a secret": Divergence(
        "Go's base64 error names the byte offset where a secret's value stopped decoding; "
        "kv2render gives the kind of error only, since the offset is derived from the value "
        "(KV2-INV-366). Same failure, same position and action",
        tuple(f"36-base64-invalid/{mode}" for mode in MODES),
        lambda data: re.sub(rb"(illegal base64 data) at input byte \d+", rb"\1", data),
    ),
    "secrets read before rendering": Divergence(
        "kv2render reads every secret a template names before rendering it. consul-template "
        "renders in passes: its first pass runs before any secret is fetched, with `secret` "
        "returning nil, and a template that reaches into a secret outside `with` (a variable, "
        "a parenthesised call) fails there: `$db.Data` with error_on_missing_key, `len` of "
        "nil always (hashicorp/consul-template#1418). With exit_on_retry_failure the agent "
        "exits 1; kv2render renders the bytes Go writes when the data is there (the corpus's "
        "expected output, KV2-AC-261)",
        ("09-variables/error", "38-parenthesized-chain/zero", "38-parenthesized-chain/error"),
    ),
}

# Not a divergence: the static Go binary ignores libfaketime, so the two runs read two clocks.
# Each format is masked by its own shape, so a format difference still fails the case.
_TIME_MASKS = (
    (re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"), b"<rfc3339>"),
    (re.compile(rb"unix \d{10}"), b"unix <unix>"),
    (re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), b"<datetime>"),
    (re.compile(rb"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{1,2}:\d\d[AP]M"), b"<kitchen>"),
    (re.compile(rb"\b20\d{6}\b"), b"<yyyymmdd>"),
)
TIMESTAMP_CASES = frozenset(f"30-timestamp/{mode}" for mode in MODES)


def _mask_times(data: bytes) -> bytes:
    for pattern, repl in _TIME_MASKS:
        data = pattern.sub(repl, data)
    return data


# --------------------------------------------------------------------------------------------
# Secrets: the corpus's secrets.json, number literals kept exactly as written for the write.


class _Literal(str):
    """A JSON number literal, written back verbatim (the server then normalises it)."""


def _literal_json(text: str) -> Any:
    return json.loads(text, parse_int=_Literal, parse_float=_Literal, parse_constant=_Literal)


def _dump(value: Any) -> str:
    if isinstance(value, _Literal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value)


@dataclass
class SecretSpec:
    """One KV2 path: its data per version, the latest version, its custom metadata."""

    versions: dict[int, str]  # version -> data as JSON text (literals kept)
    latest: int
    custom: str  # custom_metadata as JSON text, "null" when none

    def compatible(self, other: SecretSpec) -> bool:
        return (
            self.latest == other.latest
            and self.custom == other.custom
            and all(
                self.versions[v] == text for v, text in other.versions.items() if v in self.versions
            )
        )

    def merge(self, other: SecretSpec) -> None:
        self.versions.update(other.versions)


def parse_secrets(text: str) -> dict[tuple[str, str], SecretSpec]:
    """``{"mount/data/path[?version=N]": {"data", "metadata"}}`` -> spec per (mount, path)."""
    out: dict[tuple[str, str], SecretSpec] = {}
    for key, body in _literal_json(text).items():
        ref, _, pinned = key.partition("?version=")
        mount, _, rest = ref.partition("/")
        path = rest.removeprefix("data/")
        metadata = body.get("metadata") or {}
        version = int(pinned or metadata.get("version") or 1)
        spec = SecretSpec({version: _dump(body["data"])}, 0, "null")
        if not pinned:
            spec.latest = version
            spec.custom = _dump(metadata.get("custom_metadata"))
        if (mount, path) in out:
            out[(mount, path)].versions.update(spec.versions)
            if not pinned:
                out[(mount, path)].latest, out[(mount, path)].custom = spec.latest, spec.custom
        else:
            out[(mount, path)] = spec
    return out


@dataclass
class World:
    """One private server's contents: corpus cases agreeing on every shared path."""

    secrets: dict[tuple[str, str], SecretSpec] = field(default_factory=dict)

    def accepts(self, wanted: Mapping[tuple[str, str], SecretSpec]) -> bool:
        return all(
            self.secrets[key].compatible(spec) and spec.compatible(self.secrets[key])
            for key, spec in wanted.items()
            if key in self.secrets
        )

    def add(self, wanted: Mapping[tuple[str, str], SecretSpec]) -> None:
        for key, spec in wanted.items():
            if key in self.secrets:
                self.secrets[key].merge(spec)
            else:
                self.secrets[key] = SecretSpec(dict(spec.versions), spec.latest, spec.custom)


def seed(server: BaoServer, world: World) -> None:
    """Write every path version by version: version N holds the pinned data given for N, else
    the latest data (so ``metadata.version`` reads as in the corpus)."""
    for mount in sorted({mount for mount, _ in world.secrets} - {"secret"}):
        server.enable_kv2(mount)
    for (mount, path), spec in sorted(world.secrets.items()):
        latest = spec.versions[spec.latest]
        for version in range(1, spec.latest + 1):
            text = spec.versions.get(version, latest)
            assert server.kv_put_raw(path, f'{{"data":{text}}}', mount=mount) == version
        if spec.custom != "null":
            server.api(
                "POST", f"{mount}/metadata/{path}", {"custom_metadata": json.loads(spec.custom)}
            )


# --------------------------------------------------------------------------------------------
# The cases: one agent config file each, written into the case's directory.


@dataclass
class DiffCase:
    id: str
    world: int
    secrets: dict[tuple[str, str], SecretSpec]
    write_config: Callable[[Path, str, Path], Path]  # (case dir, server address, token file)
    env: dict[str, str] = field(default_factory=dict)


def _hcl_str(value: str) -> str:
    return json.dumps(value)  # an HCL string literal is a JSON one for these paths


def _corpus_case(path: Path, mode: str) -> DiffCase:
    cfg: dict[str, Any] = {}
    if (path / "case.json").exists():
        cfg = json.loads((path / "case.json").read_text(encoding="utf-8"))
    template = path / "template.ctmpl"

    def write(case_dir: Path, address: str, token: Path) -> Path:
        delims = ""
        if cfg.get("left_delim"):
            delims = (
                f"  left_delimiter  = {_hcl_str(cfg['left_delim'])}\n"
                f"  right_delimiter = {_hcl_str(cfg['right_delim'])}\n"
            )
        config = case_dir / "agent.hcl"
        config.write_text(
            _agent_head(address, token) + "template {\n"
            f"  source               = {_hcl_str(str(template))}\n"
            f"  destination          = {_hcl_str(str(case_dir / 'out' / 'rendered.txt'))}\n"
            f"  error_on_missing_key = {'true' if mode == 'error' else 'false'}\n" + delims + "}\n",
            encoding="utf-8",
        )
        return config

    return DiffCase(
        id=f"{path.name}/{mode}",
        world=-1,
        secrets=parse_secrets((path / "secrets.json").read_text(encoding="utf-8")),
        write_config=write,
        env=dict(cfg.get("env", {})),
    )


def _agent_head(address: str, token: Path) -> str:
    return (
        "exit_after_auth = true\n"
        f"vault {{\n  address = {_hcl_str(address)}\n}}\n"
        + _AUTO_AUTH.format(token=_hcl_str(str(token)))
        + "template_config {\n  exit_on_retry_failure = true\n}\n"
    )


_AUTO_AUTH = """auto_auth {{
  method "token_file" {{
    config {{
      token_file_path = {token}
    }}
  }}
}}
"""

# The examples' secrets: values with quotes, spaces and markup, a sentinel password that must
# never reach kv2render's log, and a number literal the server normalises.
EXAMPLE_PASSWORD = 'sentinel-Pw "q" <&> 1'
EXAMPLE_SECRETS = json.dumps(
    {
        "secret/data/app/db": {
            "data": {"host": "db.internal", "username": "app", "password": EXAMPLE_PASSWORD},
            "metadata": {"version": 3, "custom_metadata": None},
        },
        "secret/data/foo": {"data": {"password": EXAMPLE_PASSWORD}, "metadata": {"version": 1}},
        "secret/data/app/config": {
            "data": {"url": "https://x/?a=1&b=<2>", "ratio": 1.5, "b": [1, {"c": None}], "a": {}},
            "metadata": {"version": 2},
        },
    }
)


def _derive_hcl(text: str, case_dir: Path, address: str, token: Path) -> str:
    """The example with the fixture's address, a token_file auto_auth, outputs and pid file
    under the case directory, a harmless exec command, and the one-shot settings."""
    out = case_dir / "out"
    text = re.sub(r'(?m)^(\s*address\s*=\s*)"https://[^"]*"', rf"\g<1>{_hcl_str(address)}", text)
    text = re.sub(r"(?m)^\s*ca_cert\s*=.*\n", "", text)
    text = re.sub(
        r'(?m)^(\s*destination\s*=\s*)"/([^"]*)"',
        lambda m: f"{m.group(1)}{_hcl_str(str(out / m.group(2)))}",
        text,
    )
    text = re.sub(
        r'(?m)^(\s*pid_file\s*=\s*)"/([^"]*)"',
        lambda m: f"{m.group(1)}{_hcl_str(str(case_dir / Path(m.group(2)).name))}",
        text,
    )
    text = re.sub(
        r'(?m)^(\s*address\s*=\s*)"127\.0\.0\.1:\d+"',
        lambda m: f'{m.group(1)}"127.0.0.1:{_free_port()}"',
        text,
    )
    text = re.sub(
        r"(?m)^(\s*command\s*=\s*)\[.*\]$",
        lambda m: m.group(1) + json.dumps(_exec_command(out)),
        text,
    )
    start = re.search(r"(?m)^auto_auth\s*\{", text)
    assert start is not None
    end = _block_end(text, start.end() - 1)
    text = text[: start.start()] + _AUTO_AUTH.format(token=_hcl_str(str(token))) + text[end:]
    if not re.search(r"(?m)^exit_after_auth\s*=\s*true", text):
        text = "exit_after_auth = true\n" + text
    if not re.search(r"(?m)^\s*exit_on_retry_failure\s*=\s*true", text):
        text += "\ntemplate_config {\n  exit_on_retry_failure = true\n}\n"
    # A new example with another shape must be derived on purpose, not run half-derived.
    assert _hcl_str(address) in text and "https://" not in text, "address not replaced"
    assert all(d.startswith(str(out)) for d in re.findall(r'destination\s*=\s*"([^"]*)"', text))
    return text


def _block_end(text: str, brace: int) -> int:
    """Index after the ``}`` closing the block opened at ``brace`` (no strings with braces in
    the blocks this is used on: auto_auth)."""
    depth = 0
    for index in range(brace, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    raise AssertionError("unbalanced block")


def _derive_json(tree: Any, case_dir: Path, address: str, token: Path) -> Any:
    """The JSON example with the same changes as :func:`_derive_hcl`, in the file's own shape
    (block lists stay lists)."""
    out = case_dir / "out"
    tree = dict(tree)
    tree["exit_after_auth"] = True
    if "pid_file" in tree:
        tree["pid_file"] = str(case_dir / Path(tree["pid_file"]).name)
    vault = tree["vault"]
    block = vault[0] if isinstance(vault, list) else vault
    block["address"] = address
    block.pop("ca_cert", None)
    # Only the method changes; each block keeps the example's shape (a one-item list or an
    # object), so the agent parses the shape the example shows.
    auto_auth = tree["auto_auth"][0] if isinstance(tree["auto_auth"], list) else tree["auto_auth"]
    method: Any = {"type": "token_file", "config": {"token_file_path": str(token)}}
    if isinstance(auto_auth["method"], list):
        method = [method]
    auto_auth["method"] = method
    tc = tree.get("template_config")
    if isinstance(tc, list):
        tc[0]["exit_on_retry_failure"] = True
    else:
        tree["template_config"] = {**(tc or {}), "exit_on_retry_failure": True}
    templates = tree["template"] if isinstance(tree["template"], list) else [tree["template"]]
    for item in templates:
        item["destination"] = str(out / item["destination"].lstrip("/"))
        for exec_block in item.get("exec", ()):
            exec_block["command"] = _exec_command(out)
    return tree


def _exec_command(out: Path) -> list[str]:
    # Runs after a render on both sides: its file is compared like the rendered ones.
    return ["/bin/sh", "-c", f"echo reloaded >> {out / 'exec.log'}"]


def _free_port() -> int:
    from tests.realbao import free_port

    return free_port()


def _example_case(path: Path) -> DiffCase:
    def write(case_dir: Path, address: str, token: Path) -> Path:
        shutil.copytree(EXAMPLES / "templates", case_dir / "templates", dirs_exist_ok=True)
        config = case_dir / path.name
        if path.suffix == ".hcl":
            derived = _derive_hcl(path.read_text(encoding="utf-8"), case_dir, address, token)
            config.write_text(derived, encoding="utf-8")
        else:
            tree = json.loads(path.read_text(encoding="utf-8"))
            derived_tree = _derive_json(tree, case_dir, address, token)
            config.write_text(json.dumps(derived_tree, indent=2), encoding="utf-8")
        return config

    return DiffCase(
        id=f"examples/{path.name}",
        world=-1,
        secrets=parse_secrets(EXAMPLE_SECRETS),
        write_config=write,
    )


# Probes: small configs showing the documented differences that neither input set exercises,
# so each entry of DIVERGENCES is measured, and goes stale (and fails) once it no longer holds.
_PROBE_TEMPLATE = "{{ with secret %s }}{{ .Data.data.password }}{{ end }}"


def _probe_hcl(
    name: str, template: str, *, env: Mapping[str, str] | None = None, subdir: str = ""
) -> DiffCase:
    """An HCL agent config rendering ``template`` (inline, or as a relative ``source`` next to
    the config when ``subdir`` puts the config in a sub-directory of the working directory)."""

    def write(case_dir: Path, address: str, token: Path) -> Path:
        if subdir:
            conf = case_dir / subdir
            conf.mkdir()
            (conf / "probe.ctmpl").write_text(template, encoding="utf-8")
            body = '  source      = "probe.ctmpl"\n  destination = "out/rendered.txt"\n'
        else:
            conf = case_dir
            dest = _hcl_str(str(case_dir / "out" / "rendered.txt"))
            body = f"  contents    = {_hcl_str(template)}\n  destination = {dest}\n"
        config = conf / "agent.hcl"
        config.write_text(
            _agent_head(address, token) + "template {\n" + body + "}\n", encoding="utf-8"
        )
        return config

    return DiffCase(f"probes/{name}", -1, parse_secrets(EXAMPLE_SECRETS), write, dict(env or {}))


def _probe_json_method_object() -> DiffCase:
    def write(case_dir: Path, address: str, token: Path) -> Path:
        tree = {
            "exit_after_auth": True,
            "vault": {"address": address},
            "auto_auth": {
                "method": {"type": "token_file", "config": {"token_file_path": str(token)}}
            },
            "template_config": {"exit_on_retry_failure": True},
            "template": [
                {
                    "contents": _PROBE_TEMPLATE % '"secret/data/foo"',
                    "destination": str(case_dir / "out" / "rendered.txt"),
                }
            ],
        }
        config = case_dir / "probe.agent.json"
        config.write_text(json.dumps(tree, indent=2), encoding="utf-8")
        return config

    return DiffCase("probes/method-json-object", -1, parse_secrets(EXAMPLE_SECRETS), write)


def _probes() -> list[DiffCase]:
    return [
        _probe_hcl("dynamic-path-printf", _PROBE_TEMPLATE % '(printf "secret/data/%s" "foo")'),
        _probe_hcl(
            "dynamic-path-env",
            _PROBE_TEMPLATE % '(env "PROBE_SECRET_PATH")',
            env={"PROBE_SECRET_PATH": "secret/data/foo"},
        ),
        _probe_hcl("relative-paths", _PROBE_TEMPLATE % '"secret/data/foo"', subdir="conf"),
        _probe_json_method_object(),
    ]


def _plan() -> tuple[list[DiffCase], list[World]]:
    cases = [
        _corpus_case(path, mode)
        for path in sorted(p for p in CORPUS.iterdir() if p.is_dir())
        for mode in MODES
    ]
    cases += [
        _example_case(path)
        for path in sorted(EXAMPLES.iterdir())
        if path.suffix in (".hcl", ".json")
    ]
    cases += _probes()
    worlds: list[World] = []
    for case in cases:
        fits = [i for i, world in enumerate(worlds) if world.accepts(case.secrets)]
        if not fits:
            worlds.append(World())
        case.world = fits[0] if fits else len(worlds) - 1
        worlds[case.world].add(case.secrets)
    return cases, worlds


CASES, WORLDS = _plan()


# --------------------------------------------------------------------------------------------
# Running one side


@dataclass(frozen=True)
class SideResult:
    code: int | None  # None: timed out
    files: dict[str, tuple[bytes, int]]  # path under out/ -> (bytes, mode)
    dirs: dict[str, int]  # directory under out/ ("." for out/ itself) -> mode
    log: str = field(repr=False)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.code == 0


def _clean_env(home: Path, extra: Mapping[str, str]) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    env.update(extra)
    return env


def _snapshot(out: Path) -> tuple[dict[str, tuple[bytes, int]], dict[str, int]]:
    """Files under ``out`` (bytes, mode), and the directories the tool created (mode)."""
    files: dict[str, tuple[bytes, int]] = {}
    dirs: dict[str, int] = {}
    for path in sorted(out.rglob("*")) if out.exists() else ():
        mode = path.stat().st_mode & 0o777
        if path.is_file():
            files[str(path.relative_to(out))] = (path.read_bytes(), mode)
        elif path.is_dir():
            dirs[str(path.relative_to(out))] = mode
    if out.exists():
        dirs["."] = out.stat().st_mode & 0o777
    return files, dirs


def _run(argv: list[str], case_dir: Path, env: dict[str, str]) -> SideResult:
    start = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            cwd=case_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        code: int | None = proc.returncode
        log = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    except subprocess.TimeoutExpired as exc:
        code, log = None, f"timed out after {RUN_TIMEOUT}s: {exc.stderr!r}"
    seconds = time.monotonic() - start
    out = case_dir / "out"
    files, dirs = _snapshot(out)
    shutil.rmtree(out, ignore_errors=True)
    return SideResult(code, files, dirs, log, seconds)


@dataclass(frozen=True)
class Pair:
    case: DiffCase
    agent: SideResult
    kv2render: SideResult


def _run_case(case: DiffCase, root: Path, address: str, token: Path) -> Pair:
    case_dir = root / case.id.replace("/", "__")
    case_dir.mkdir(parents=True)
    config = case.write_config(case_dir, address, token)
    home = case_dir / "home"
    home.mkdir()
    agent = _run(
        [str(bao_binary()), "agent", f"-config={config}"], case_dir, _clean_env(home, case.env)
    )
    kv2 = _run(
        [sys.executable, "-m", "kv2render", "--config", str(config), "--once"],
        case_dir,
        _clean_env(home, {"PYTHONPATH": str(REPO), **case.env}),
    )
    return Pair(case, agent, kv2)


def _require_bao() -> None:
    try:
        path = bao_binary()
    except BaoUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the real OpenBao tier must run in CI: {exc}")
        pytest.skip(f"real OpenBao agent unavailable: {exc}")
    if not path.is_file():
        pytest.fail(f"no bao binary at {path}")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Pair]]:
    """Every case rendered by both tools, against one private server per world."""
    _require_bao()
    root = tmp_path_factory.mktemp("agent-diff")
    servers: list[BaoServer] = []
    try:
        with ThreadPoolExecutor(max_workers=len(WORLDS)) as pool:
            servers = list(
                pool.map(lambda i: BaoServer.dev_server(root / f"server-{i}"), range(len(WORLDS)))
            )
        for server, world in zip(servers, WORLDS, strict=True):
            seed(server, world)
        token = root / "token"
        token.write_text(servers[0].root_token, encoding="utf-8")
        token.chmod(0o600)
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            done = pool.map(
                lambda c: _run_case(c, root / "cases", servers[c.world].address, token), CASES
            )
            yield {pair.case.id: pair for pair in done}
    finally:
        for server in servers:
            server.close()


# --------------------------------------------------------------------------------------------
# Comparing


def _divergences_for(case_id: str) -> dict[str, Divergence]:
    return {
        name: div
        for name, div in DIVERGENCES.items()
        if "" not in div.cases and case_id in div.cases
    }


def compare(pair: Pair, *, use_masks: bool = True) -> list[str]:
    """What differs between the two sides after the listed masks; [] when they agree."""
    agent, kv2 = pair.agent, pair.kv2render
    if agent.ok != kv2.ok:
        return [
            f"agent exit {agent.code}, kv2render exit {kv2.code}\n"
            f"--- agent log tail:\n{agent.log[-1500:]}\n--- kv2render log tail:\n{kv2.log[-1500:]}"
        ]
    problems: list[str] = []
    if sorted(agent.files) != sorted(kv2.files):
        problems.append(f"files: agent {sorted(agent.files)}, kv2render {sorted(kv2.files)}")
    if sorted(agent.dirs) != sorted(kv2.dirs):
        problems.append(f"directories: agent {sorted(agent.dirs)}, kv2render {sorted(kv2.dirs)}")
    masks = [d.mask for d in _divergences_for(pair.case.id).values() if d.mask is not None]
    if not use_masks:
        masks = []
    if pair.case.id in TIMESTAMP_CASES:
        masks.append(_mask_times)
    for name in sorted(set(agent.files) & set(kv2.files)):
        want, got = agent.files[name][0], kv2.files[name][0]
        for mask in masks:
            want, got = mask(want), mask(got)
        if want != got:
            problems.append(f"{name}: bytes differ\n agent:     {want!r}\n kv2render: {got!r}")
    if not agent.ok:
        want_err, got_err = _go_error(agent.log, agent=True), _go_error(kv2.log, agent=False)
        for mask in masks:
            want_err, got_err = mask(want_err), mask(got_err)
        if want_err != got_err:
            problems.append(f"errors differ\n agent:     {want_err!r}\n kv2render: {got_err!r}")
    return problems


# Go's execution error: "L:C: executing "NAME" at <ACTION>: MESSAGE". The template NAME differs
# (the agent's is empty, kv2render's the file), so position, action and message are compared.
_GO_EXEC_ERROR = re.compile(r'(\d+:\d+): executing "[^"]*" at <(.*?)>: (.*)$')


def _go_error(log: str, *, agent: bool) -> bytes:
    """``L:C <ACTION>: MESSAGE`` of the template execution error in a log, or b"" for none."""
    for line in log.splitlines():
        if agent:
            if "runtime error encountered" not in line:
                continue
            line = re.sub(r'" exitCode=\d+$', "", line.replace('\\"', '"'))
        elif "[ERROR]" not in line:
            continue
        match = _GO_EXEC_ERROR.search(line)
        if match:
            return f"{match[1]} <{match[2]}>: {match[3]}".encode()
    return b""


def test_plan_covers_every_input() -> None:
    """KV2-AC-330: every corpus case in both modes and every example agent config is a case,
    and the corpus secrets sit at the corpus paths (worlds only split colliding values)."""
    corpus = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
    examples = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".hcl", ".json"))
    ids = {case.id for case in CASES}
    probes = {case.id for case in CASES if case.id.startswith("probes/")}
    assert (
        ids
        == {f"{n}/{m}" for n in corpus for m in MODES}
        | {f"examples/{n}" for n in examples}
        | probes
    )
    assert len(examples) >= 5
    assert 1 <= len(WORLDS) <= 6
    for name in DIVERGENCES:
        for case_id in DIVERGENCES[name].cases:
            assert case_id == "" or case_id in ids, f"{name}: unknown case {case_id}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_same_outcome_and_bytes_as_bao_agent(case: DiffCase, pairs: dict[str, Pair]) -> None:
    """KV2-AC-330, KV2-AC-331: both succeed with byte-identical files, or both fail with the
    same Go execution error (position, action, message); a failure is an exit 2..7 from
    kv2render (never 1) and no file from either side."""
    pair = pairs[case.id]
    problems = compare(pair)
    unmasked = {n: d for n, d in _divergences_for(case.id).items() if d.mask is None}
    if unmasked:
        assert problems, f"{case.id} now agrees with bao agent: remove it from {sorted(unmasked)}"
        name, _, mode = case.id.partition("/")
        expected = CORPUS / name / f"expected.{mode}.txt"
        if pair.kv2render.ok and expected.is_file():
            # Where kv2render renders and the agent does not, it writes what Go's text/template
            # wrote with the data present (KV2-AC-261).
            assert pair.kv2render.files["rendered.txt"][0] == expected.read_bytes()
        return
    assert not problems, f"{case.id}: kv2render differs from bao agent:\n" + "\n".join(problems)
    masked = sorted(n for n, d in _divergences_for(case.id).items() if d.mask is not None)
    if masked:
        assert compare(pair, use_masks=False), f"{case.id}: {masked} no longer needed: remove it"
    if not pair.kv2render.ok:
        assert pair.kv2render.code in range(2, 8), pair.kv2render.log[-2000:]
        assert pair.agent.code == 1, pair.agent.log[-2000:]
        # Every both-failing case is a template execution error, so the errors were compared.
        assert _go_error(pair.agent.log, agent=True), pair.agent.log[-2000:]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_file_modes(case: DiffCase, pairs: dict[str, Pair]) -> None:
    """KV2-AC-332 (the listed 'default file mode 0600' and 'created directories 0700'
    divergences), KV2-AC-265: where the agent writes its default 0644, kv2render writes 0600; a
    mode set with perms is the same on both; a directory the agent creates 0755 is 0700."""
    pair = pairs[case.id]
    for name in set(pair.agent.dirs) & set(pair.kv2render.dirs):
        agent_mode, kv2_mode = pair.agent.dirs[name], pair.kv2render.dirs[name]
        assert (agent_mode, kv2_mode) == (0o755, 0o700), (
            f"{name}/: {oct(agent_mode)}, {oct(kv2_mode)}"
        )
    for name in set(pair.agent.files) & set(pair.kv2render.files):
        agent_mode, kv2_mode = pair.agent.files[name][1], pair.kv2render.files[name][1]
        if name == "exec.log":
            continue  # written by the test's shell command, not by either tool
        if agent_mode == 0o644:
            assert kv2_mode == 0o600, f"{name}: {oct(kv2_mode)}"
        else:
            assert kv2_mode == agent_mode, f"{name}: agent {oct(agent_mode)}, {oct(kv2_mode)}"


def test_examples_keep_the_password_out_of_logs(pairs: dict[str, Pair]) -> None:
    """KV2-INV-001 on this path: the examples' sentinel password reaches rendered files and
    never kv2render's log."""
    examples = [pairs[c.id] for c in CASES if c.id.startswith("examples/")]
    for pair in examples:
        assert "sentinel-Pw" not in pair.kv2render.log, pair.case.id
    rendered = [data for pair in examples for data, _ in pair.kv2render.files.values()]
    assert sum(b"sentinel-Pw" in data for data in rendered) >= 4


def test_tally_has_no_accidental_difference(
    pairs: dict[str, Pair], capsys: pytest.CaptureFixture[str]
) -> None:
    """KV2-AC-333: the tally (cases compared, agreeing, divergent by divergence) and the time:
    no process comes near its timeout."""
    tally: dict[str, int] = {}
    for case in CASES:
        pair = pairs[case.id]
        kept = sorted(n for n, d in _divergences_for(case.id).items() if d.mask is None)
        masked = sorted(n for n, d in _divergences_for(case.id).items() if d.mask is not None)
        if kept:
            key = "divergent: " + ", ".join(kept)
        elif compare(pair):
            key = "DIFFERENT (a bug)"
        elif not pair.agent.ok:
            key = "agree: both fail, same error"
            key += f" after masking {', '.join(masked)}" if masked else ""
        elif masked or case.id in TIMESTAMP_CASES:
            key = "agree: identical after masking " + ", ".join(masked or ["clock times"])
        else:
            key = "agree: byte-identical"
        tally[key] = tally.get(key, 0) + 1
    agree = sum(n for key, n in tally.items() if key.startswith("agree"))
    agent_times = sorted(p.agent.seconds for p in pairs.values())
    kv2_times = sorted(p.kv2render.seconds for p in pairs.values())
    with capsys.disabled():
        print(f"\nagent differential: {len(CASES)} cases on {len(WORLDS)} servers, {agree} agree")
        for key, count in sorted(tally.items()):
            print(f"  {count:3d}  {key}")
        print(
            f"  median run: bao agent {agent_times[len(agent_times) // 2]:.2f}s, "
            f"kv2render {kv2_times[len(kv2_times) // 2]:.2f}s (concurrent, {WORKERS} workers)"
        )
    assert "DIFFERENT (a bug)" not in tally
    assert max(agent_times[-1], kv2_times[-1]) < RUN_TIMEOUT / 2
