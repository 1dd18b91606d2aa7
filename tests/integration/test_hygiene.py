"""Secret hygiene, end to end (KV2-INV-001, KV2-AC-116, KV2-AC-181).

Every credential and secret value is a random sentinel (``hygiene_util``). The real CLI
runs at ``--log-level trace`` in both log formats, in-process and as a subprocess,
through every auth method and every failure path the --once issue names; the test then
looks for every sentinel in stdout, stderr, every file left in the work directory other
than the intended destination (hidden temp files and ``.bak`` included), a command's
environment dump, and the dev server's request log. Internal APIs (``config.load``,
``runner.prepare``/``run_pass``, the hvac store) are driven directly to check exception
text and reprs, and the daemon runs as a subprocess with a status file.

A known leak is fixed, not marked: no scenario passes ``xfail=`` to ``scenario()`` and a
daemon that crashes is a failure (KV2-AC-457). tests/test_honesty.py fails when a
scenario uses the ``xfail`` parameter.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kv2render.devserver import DevServer

from .cli_helpers import CliResult, cli_env, run_cli, run_cli_subprocess, write_config
from .hygiene_util import Sentinels, exception_texts, report, scan_tree, snapshot

DB = "secret/data/app/db"
NESTED = "secret/data/app/nested"


def ref(path: str, key: str = "") -> str:
    return f"vault+kv2:///{path}" + (f"#{key}" if key else "")


# --------------------------------------------------------------------------------------------
# World: sentinels, a seeded dev server, credential files


def make_sentinels() -> Sentinels:
    s = Sentinels()
    for name, prefix in [
        ("password", "SENTINEL-SECRET-pw"),
        ("api_key", "SENTINEL-SECRET-apikey"),
        ("pointer", "SENTINEL-SECRET-ptr"),
        ("nested", "SENTINEL-SECRET-deep"),
        ("old", "SENTINEL-SECRET-oldversion"),
        ("rotated", "SENTINEL-SECRET-rotated"),
        ("root_token", "hvs.SENTINEL-TOKEN-root"),
        ("narrow_token", "hvs.SENTINEL-TOKEN-narrow"),
        ("file_token", "hvs.SENTINEL-TOKEN-file"),
        ("bad_token", "hvs.SENTINEL-TOKEN-bad"),
        ("role_id", "SENTINEL-ROLEID"),
        ("secret_id", "SENTINEL-SECRETID"),
        ("bad_secret_id", "SENTINEL-SECRETID-bad"),
        ("k8s_jwt", "SENTINEL-JWT-k8s"),
        ("jwt", "SENTINEL-JWT-oidc"),
        ("bad_jwt", "SENTINEL-JWT-bad"),
        ("inline", "SENTINEL-INLINE"),
        ("yaml_line", "SENTINEL-YAMLLINE"),
    ]:
        s.make(name, prefix)
    s.add_number("count")
    return s


def seed(srv: DevServer, s: Sentinels) -> None:
    srv.put("app/db", {"username": "app", "password": s["password"], "api_key": s["api_key"]})
    srv.put(
        "app/nested",
        {
            "conn": {"host": "db.internal", "password": s["pointer"]},
            "list": [1, {"deep": s["nested"]}],
            "count": int(s["count"]),
            "enabled": True,
        },
    )
    for path in ("app/deleted", "app/destroyed"):
        srv.put(path, {"password": s["old"]})
        srv.put(path, {"password": s["password"]})
    srv.delete("app/deleted")
    srv.destroy("app/destroyed", [2])
    srv.add_policy("app-read", {"secret/data/app/*": ["read"]})
    srv.add_policy("narrow", {"secret/data/other/*": ["read"]})
    srv.create_token(["narrow"], ttl=600, token_id=s["narrow_token"])
    srv.create_token(["app-read"], ttl=600, token_id=s["file_token"])
    if srv.flavor != "ovh":
        srv.add_approle("web", s["role_id"], s["secret_id"], ["app-read"], token_ttl=600)
        srv.add_jwt(s["k8s_jwt"], "app", ["app-read"], method="kubernetes")
        srv.add_jwt(s["jwt"], "app", ["app-read"], method="jwt")


SERVERS: dict[str, dict[str, Any]] = {
    "vault": {},
    "mtls": {"tls": True, "require_client_cert": True},
    "ovh": {"flavor": "ovh"},
    "ovh-mtls": {"flavor": "ovh", "tls": True, "require_client_cert": True},
}


@dataclass
class Ctx:
    srv: DevServer
    s: Sentinels
    wd: Path

    def cred(self, name: str, text: str) -> Path:
        path = self.wd / "creds" / name
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(text + "\n")
        path.chmod(0o600)
        return path

    def cred_bytes(self, name: str, data: bytes) -> Path:
        path = self.wd / "creds" / name
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def out(self, name: str, old: str | None = "old-good-content") -> Path:
        path = self.wd / "out" / name
        path.parent.mkdir(mode=0o700, exist_ok=True)
        if old is not None:
            path.write_text(old)
        return path

    def vault(self, num_retries: int = -1) -> dict[str, Any]:
        block: dict[str, Any] = {"address": self.srv.url, "retry": {"num_retries": num_retries}}
        if self.srv.tls:
            block["ca_cert"] = str(self.srv.ca_file)
            block["client_cert"] = str(self.srv.client_cert_file)
            block["client_key"] = str(self.srv.client_key_file)
        return block

    def root_env(self) -> dict[str, str]:
        return {"VAULT_TOKEN": self.s["root_token"]}


@dataclass
class Plan:
    """What one scenario runs and what it must observe (so the path really ran)."""

    config: dict[str, Any] | tuple[str, str]  # a YAML tree, or (file name, raw text)
    code: int
    words: tuple[str, ...] = ()  # must appear in stdout+stderr
    env: dict[str, str] = field(default_factory=dict)
    destinations: tuple[Path, ...] = ()  # files allowed to hold secrets
    command: str = "run"  # run (--once), check, status
    after: Callable[[Ctx], None] | None = None  # extra assertions on the world
    max_seconds: float | None = None  # the run must end this fast (no retries, KV2-AC-350)


Builder = Callable[[Ctx], Plan]
SCENARIOS: dict[str, tuple[str, Builder]] = {}
XFAIL: dict[str, str] = {}


def scenario(name: str, server: str = "vault", xfail: str | None = None) -> Any:
    def register(fn: Builder) -> Builder:
        SCENARIOS[name] = (server, fn)
        if xfail:
            XFAIL[name] = xfail
        return fn

    return register


def single(c: Ctx, entry: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"vault": c.vault(), "template": [entry], **extra}


# --------------------------------------------------------------------------------------------
# Success paths, one per auth method


@scenario("ok-ref-token-env")
def _ok_ref(c: Ctx) -> Plan:
    dest = c.out("pw", old=None)
    return Plan(
        single(c, {"ref": ref(DB, "password"), "destination": str(dest)}),
        0,
        ("rendered",),
        c.root_env(),
        (dest,),
        after=lambda c: _assert_bytes(dest, c.s["password"]),
    )


def _assert_bytes(path: Path, expected: str) -> None:
    assert path.read_text() == expected


@scenario("ok-contents-backup-command-env")
def _ok_contents(c: Ctx) -> Plan:
    dest = c.out("app.conf", old="previous content, kept in .bak")
    pw = c.out("pw-argv", old=None)
    contents = (
        f'password={{{{ kv2("{ref(DB, "password")}") }}}}\n'
        f'api={{{{ secret("{DB}").Data.data.api_key }}}}\n'
        f'ptr={{{{ kv2("{ref(NESTED, "/conn/password")}") }}}}\n'
        f'deep={{{{ kv2("{ref(NESTED, "/list/1/deep")}") }}}}\n'
        f'whole={{{{ kv2("{ref(NESTED)}") | toJSON }}}}\n'
        f'count={{{{ kv2("{ref(NESTED, "count")}") }}}} '
        f'enabled={{{{ kv2("{ref(NESTED, "enabled")}") }}}}\n'
        f'pretty={{{{ secret("{NESTED}").Data.data | toJSONPretty }}}}\n'
    )
    envdump = c.wd / "envdump.txt"
    tree = {
        "vault": c.vault(),
        "template": [
            {
                "contents": contents,
                "destination": str(dest),
                "backup": True,
                # KV2-AC-102: the environment a command sees, dumped to a file and to stdout.
                "command": f"env > {envdump}; env",
            },
            {
                "ref": ref(DB, "password"),
                "destination": str(pw),
                "command": ["sh", "-c", 'echo "argv: $0 $*"', "x"],
            },
        ],
    }

    def after(c: Ctx) -> None:
        text = dest.read_text()
        assert c.s["pointer"] in text and c.s["nested"] in text and c.s["count"] in text
        assert envdump.read_text().strip(), "the command did not run"
        assert Path(str(dest) + ".bak").read_text() == "previous content, kept in .bak"

    return Plan(tree, 0, ("rendered",), c.root_env(), (dest, pw), after=after)


@scenario("ok-consul-template")
def _ok_ctmpl(c: Ctx) -> Plan:
    dest = c.out("ct.env", old=None)
    contents = (
        f'{{{{ with secret "{DB}" }}}}PASSWORD={{{{ .Data.data.password }}}}\n'
        "API={{ .Data.data.api_key }}{{ end }}\n"
        f'{{{{ with secret "{NESTED}" }}}}{{{{ .Data.data.conn.password }}}} '
        "{{ .Data.data.count }} {{ .Data.data | toJSON }}{{ end }}\n"
    )
    entry = {"contents": contents, "destination": str(dest), "syntax": "consul-template"}
    return Plan(single(c, entry), 0, ("rendered",), c.root_env(), (dest,))


def _auth_ok(c: Ctx, method: dict[str, Any], env: dict[str, str] | None = None) -> Plan:
    dest = c.out("pw", old=None)
    tree = single(
        c, {"ref": ref(DB, "password"), "destination": str(dest)}, auto_auth={"method": method}
    )
    # A token in the environment must be ignored when auto_auth is configured (KV2-AC-038).
    return Plan(tree, 0, ("rendered",), {"VAULT_TOKEN": c.s["bad_token"], **(env or {})}, (dest,))


@scenario("ok-token-file")
def _ok_token_file(c: Ctx) -> Plan:
    path = c.cred("token", c.s["file_token"])
    return _auth_ok(c, {"type": "token_file", "config": {"token_file_path": str(path)}})


@scenario("ok-approle")
def _ok_approle(c: Ctx) -> Plan:
    config = {
        "role_id_file_path": str(c.cred("role_id", c.s["role_id"])),
        "secret_id_file_path": str(c.cred("secret_id", c.s["secret_id"])),
        "remove_secret_id_file_after_reading": False,
    }
    return _auth_ok(c, {"type": "approle", "config": config})


@scenario("ok-approle-removes-secret-id")
def _ok_approle_remove(c: Ctx) -> Plan:
    sid = c.cred("secret_id", c.s["secret_id"])
    config = {
        "role_id_file_path": str(c.cred("role_id", c.s["role_id"])),
        "secret_id_file_path": str(sid),
    }
    plan = _auth_ok(c, {"type": "approle", "config": config})
    plan.after = lambda c: _assert_gone(sid)
    return plan


def _assert_gone(path: Path) -> None:
    assert not path.exists(), f"{path} should have been removed after reading"


@scenario("ok-kubernetes")
def _ok_k8s(c: Ctx) -> Plan:
    jwt = c.cred("sa-token", c.s["k8s_jwt"])
    return _auth_ok(c, {"type": "kubernetes", "config": {"role": "app", "token_path": str(jwt)}})


@scenario("ok-jwt")
def _ok_jwt(c: Ctx) -> Plan:
    jwt = c.cred("jwt", c.s["jwt"])
    return _auth_ok(c, {"type": "jwt", "config": {"role": "app", "path": str(jwt)}})


@scenario("ok-cert", server="mtls")
def _ok_cert(c: Ctx) -> Plan:
    c.srv.add_cert_role("web", ["app-read"])
    return _auth_ok(c, {"type": "cert", "config": {"name": "web"}})


@scenario("ok-bearer-token-file", server="ovh")
def _ok_bearer(c: Ctx) -> Plan:
    path = c.cred("pat", c.s["file_token"])
    return _auth_ok(c, {"type": "bearer_token_file", "config": {"token_file_path": str(path)}})


@scenario("ok-mtls", server="ovh-mtls")
def _ok_mtls(c: Ctx) -> Plan:
    return _auth_ok(c, {"type": "mtls"})


# --------------------------------------------------------------------------------------------
# Read failures


def _failing(c: Ctx, entries: list[dict[str, Any]], code: int, *words: str) -> Plan:
    """Several failing templates in one pass (each keeps its old file, KV2-FC-090)."""
    templates = []
    for i, entry in enumerate(entries):
        templates.append({**entry, "destination": str(c.out(f"bad{i}"))})
    good = c.out("good", old=None)
    templates.append({"ref": ref(DB, "username"), "destination": str(good)})

    def after(c: Ctx) -> None:
        for i in range(len(entries)):
            assert (c.wd / "out" / f"bad{i}").read_text() == "old-good-content"
        assert good.read_text() == "app"

    return Plan(
        {"vault": c.vault(), "template": templates}, code, words, c.root_env(), (good,), after=after
    )


@scenario("fail-missing-keys")
def _missing_keys(c: Ctx) -> Plan:
    return _failing(
        c,
        [
            {"ref": ref(DB, "nope")},
            {"ref": ref(NESTED, "/conn/nope")},
            {"contents": f'{{{{ kv2("{ref(DB, "nope")}") }}}}'},
            {"contents": f'{{{{ secret("{DB}").Data.data.nope }}}}'},
            {
                "contents": f'{{{{ with secret "{DB}" }}}}{{{{ .Data.data.nope }}}}{{{{ end }}}}',
                "syntax": "consul-template",
                "error_on_missing_key": True,
            },
        ],
        5,
        "nope",
    )


@scenario("fail-404-deleted-destroyed")
def _not_found(c: Ctx) -> Plan:
    return _failing(
        c,
        [
            {"ref": ref("secret/data/app/missing", "password")},
            {"ref": ref("secret/data/app/deleted", "password")},
            {"ref": ref("secret/data/app/destroyed", "password")},
            {"ref": ref("secret/data/app/db?version=9", "password")},
        ],
        4,
        "deleted",
        "destroyed",
    )


@scenario("fail-403-narrow-token")
def _forbidden(c: Ctx) -> Plan:
    plan = _failing(c, [{"ref": ref(DB, "password")}], 4, "denied")
    plan.env = {"VAULT_TOKEN": c.s["narrow_token"]}
    plan.destinations = ()
    plan.after = None  # the good template is denied too
    return plan


# --------------------------------------------------------------------------------------------
# Template runtime errors that would naturally quote a value (KV2-FC-072, KV2-AC-083)

PW = ref(DB, "password")

JINJA_ERRORS = [
    f'{{{{ {{}}[kv2("{PW}")] }}}}',  # a missing key named by the secret value
    f'{{{{ kv2("{ref(DB)}")[kv2("{PW}")] }}}}',
    f'{{{{ {{}}[kv2("{ref(NESTED, "/conn/password")}")] }}}}',  # a JSON-pointer selection
    f'{{{{ {{}}[kv2("{ref(NESTED)}")["list"][1]["deep"]] }}}}',  # a nested value
    f'{{{{ {{}}[kv2("{ref(NESTED)}")["count"]] }}}}',  # a number
    f'{{{{ kv2("{ref(NESTED)}")["enabled"].nope }}}}',  # a bool
    f'{{{{ ("{{" ~ kv2("{PW}") ~ "}}").format() }}}}',  # KeyError quoting the value
    f'{{{{ range(kv2("{PW}")) }}}}',
    f'{{{{ kv2("{PW}") ~ 1 / 0 }}}}',
    f'{{{{ secret("{DB}").Data.data.password.nope }}}}',
    f'{{{{ kv2("{PW}") | base64Decode }}}}',
    f'{{{{ "%d" % kv2("{PW}") }}}}',
    f'{{{{ kv2("{PW}").__class__ }}}}',  # the sandbox refusal
]

JINJA_DERIVED = [
    f'{{{{ {{}}[kv2("{PW}") | upper] }}}}',  # the value, upper-cased
    f'{{{{ {{}}[kv2("{PW}")[3:]] }}}}',  # a slice
    f'{{{{ {{}}[kv2("{PW}") | base64Encode] }}}}',  # an encoding
]

CTMPL_ERRORS = [
    "{{ .Data.data.password | parseInt }}",
    "{{ .Data.data.password | parseBool }}",
    "{{ .Data.data.password | base64Decode }}",
    "{{ .Data.data.password.nope }}",
]


@scenario("fail-jinja-runtime-errors")
def _jinja_errors(c: Ctx) -> Plan:
    return _failing(c, [{"contents": t} for t in JINJA_ERRORS], 5, "[redacted]")


@scenario("fail-jinja-derived-values")
def _jinja_derived(c: Ctx) -> Plan:
    return _failing(c, [{"contents": t} for t in JINJA_DERIVED], 5, "template[")


@scenario("fail-ctmpl-runtime-errors")
def _ctmpl_errors(c: Ctx) -> Plan:
    entries = [
        {
            "contents": f'{{{{ with secret "{DB}" }}}}{body}{{{{ end }}}}',
            "syntax": "consul-template",
            "error_on_missing_key": True,
        }
        for body in CTMPL_ERRORS
    ]
    return _failing(c, entries, 5, "template[")


# --------------------------------------------------------------------------------------------
# Login failures (KV2-AC-062)


def _login_fails(c: Ctx, method: dict[str, Any], env: dict[str, str] | None = None) -> Plan:
    dest = c.out("pw")
    tree = {"vault": c.vault(), "template": [{"ref": PW, "destination": str(dest)}]}
    if method:
        tree["auto_auth"] = {"method": method}
    plan = Plan(tree, 3, (), env or {})
    plan.after = lambda c: _assert_bytes(dest, "old-good-content")
    return plan


@scenario("login-bad-secret-id")
def _bad_secret_id(c: Ctx) -> Plan:
    config = {
        "role_id_file_path": str(c.cred("role_id", c.s["role_id"])),
        "secret_id_file_path": str(c.cred("secret_id", c.s["bad_secret_id"])),
        "remove_secret_id_file_after_reading": False,
    }
    return _login_fails(c, {"type": "approle", "config": config})


@scenario("login-bad-role-id")
def _bad_role_id(c: Ctx) -> Plan:
    config = {
        "role_id_file_path": str(c.cred("role_id", c.s["bad_secret_id"])),
        "secret_id_file_path": str(c.cred("secret_id", c.s["secret_id"])),
        "remove_secret_id_file_after_reading": False,
    }
    return _login_fails(c, {"type": "approle", "config": config})


@scenario("login-bad-k8s-jwt")
def _bad_k8s(c: Ctx) -> Plan:
    jwt = c.cred("sa-token", c.s["bad_jwt"])
    return _login_fails(
        c, {"type": "kubernetes", "config": {"role": "app", "token_path": str(jwt)}}
    )


@scenario("login-jwt-wrong-role")
def _bad_jwt_role(c: Ctx) -> Plan:
    jwt = c.cred("jwt", c.s["jwt"])
    return _login_fails(c, {"type": "jwt", "config": {"role": "nope", "path": str(jwt)}})


@scenario("login-bad-token-env")
def _bad_token_env(c: Ctx) -> Plan:
    return _login_fails(c, {}, {"VAULT_TOKEN": c.s["bad_token"]})


@scenario("login-bad-token-file")
def _bad_token_file(c: Ctx) -> Plan:
    path = c.cred("token", c.s["bad_token"])
    return _login_fails(c, {"type": "token_file", "config": {"token_file_path": str(path)}})


@scenario("login-bad-bearer", server="ovh")
def _bad_bearer(c: Ctx) -> Plan:
    path = c.cred("pat", c.s["bad_token"])
    plan = _login_fails(c, {"type": "bearer_token_file", "config": {"token_file_path": str(path)}})
    return plan


# --------------------------------------------------------------------------------------------
# Malformed credentials (KV2-AC-350, KV2-AC-351): refused before any request, never retried,
# never quoted. vault.retry.num_retries stays at its default (12): a retried failure would
# take minutes, and the no-request check would fail on the first one.

LINE_BREAK = "\nX-Evil: 1"


def _malformed(c: Ctx, method: dict[str, Any], env: dict[str, str] | None, *words: str) -> Plan:
    dest = c.out("pw")
    tree: dict[str, Any] = {
        "vault": c.vault(num_retries=12),
        "pid_file": str(c.wd / "kv2render.pid"),
        "template": [{"ref": PW, "destination": str(dest)}],
    }
    if method:
        tree["auto_auth"] = {"method": method}

    def after(c: Ctx) -> None:
        assert c.srv.request_count() == 0, "a malformed credential reached the server"
        _assert_bytes(dest, "old-good-content")
        assert not (c.wd / "kv2render.pid").exists(), "the pid file outlived the run"

    return Plan(tree, 3, words, env or {}, after=after, max_seconds=8.0)


@scenario("cred-token-line-break-env")
def _cred_env_break(c: Ctx) -> Plan:
    env = {"VAULT_TOKEN": c.s["bad_token"] + LINE_BREAK}
    return _malformed(c, {}, env, "VAULT_TOKEN from the environment", "line break")


@scenario("cred-token-non-latin1-env")
def _cred_env_latin(c: Ctx) -> Plan:
    env = {"VAULT_TOKEN": c.s["bad_token"] + "\u20ac\u00e9"}
    return _malformed(c, {}, env, "VAULT_TOKEN from the environment", "printable ASCII")


@scenario("cred-token-line-break-token-file")
def _cred_file_break(c: Ctx) -> Plan:
    path = c.cred("token", c.s["bad_token"] + LINE_BREAK)
    method = {"type": "token_file", "config": {"token_file_path": str(path)}}
    return _malformed(c, method, None, str(path), "line break")


@scenario("cred-bearer-line-break", server="ovh")
def _cred_bearer_break(c: Ctx) -> Plan:
    path = c.cred("pat", c.s["bad_token"] + LINE_BREAK)
    method = {"type": "bearer_token_file", "config": {"token_file_path": str(path)}}
    return _malformed(c, method, None, str(path), "line break")


@scenario("cred-bearer-prefix-written-in-file", server="ovh")
def _cred_bearer_prefix(c: Ctx) -> Plan:
    path = c.cred("pat", "Bearer " + c.s["bad_token"])
    method = {"type": "bearer_token_file", "config": {"token_file_path": str(path)}}
    return _malformed(c, method, None, str(path), "space")


def _approle_files(c: Ctx, role: bytes, secret: bytes) -> dict[str, Any]:
    config = {
        "role_id_file_path": str(c.cred_bytes("role_id", role)),
        "secret_id_file_path": str(c.cred_bytes("secret_id", secret)),
    }
    return {"type": "approle", "config": config}


@scenario("cred-secret-id-nul")
def _cred_secret_nul(c: Ctx) -> Plan:
    method = _approle_files(c, c.s["role_id"].encode(), c.s["secret_id"].encode() + b"\0x")
    return _malformed(c, method, None, "secret_id file", "NUL")


@scenario("cred-role-id-not-utf8")
def _cred_role_utf8(c: Ctx) -> Plan:
    method = _approle_files(c, c.s["role_id"].encode() + b"\xff\xfe", c.s["secret_id"].encode())
    return _malformed(c, method, None, "role_id file", "UTF-8")


@scenario("cred-jwt-control-character")
def _cred_jwt_control(c: Ctx) -> Plan:
    jwt = c.cred_bytes("jwt", c.s["jwt"].encode() + b"\x1b[2J")
    method = {"type": "jwt", "config": {"role": "app", "path": str(jwt)}}
    return _malformed(c, method, None, str(jwt), "control character")


# --------------------------------------------------------------------------------------------
# Configuration errors holding a credential (KV2-AC-032, KV2-AC-112)


def _config_error(c: Ctx, config: dict[str, Any] | tuple[str, str]) -> Plan:
    # A valid root token in the environment: a config error must stop before any request.
    def after(c: Ctx) -> None:
        assert c.srv.request_count() == 0

    return Plan(config, 2, (), c.root_env(), after=after)


def _inline_tree(c: Ctx, key: str, method: str = "approle") -> dict[str, Any]:
    return {
        "vault": c.vault(),
        "auto_auth": {"method": {"type": method, "config": {key: c.s["inline"]}}},
        "template": [{"ref": PW, "destination": str(c.out("pw"))}],
    }


for _key in ("token", "secret_id", "role_id", "jwt", "password"):

    @scenario(f"config-inline-{_key}")
    def _inline(c: Ctx, key: str = _key) -> Plan:
        return _config_error(c, _inline_tree(c, key))


@scenario("config-inline-in-vault-block")
def _inline_vault(c: Ctx) -> Plan:
    tree = _inline_tree(c, "role")
    tree["vault"]["token"] = c.s["inline"]
    return _config_error(c, tree)


@scenario("config-inline-json")
def _inline_json(c: Ctx) -> Plan:
    text = json.dumps(_inline_tree(c, "secret_id"), indent=2)
    return _config_error(c, ("kv2render.json", text))


@scenario("config-inline-hcl")
def _inline_hcl(c: Ctx) -> Plan:
    text = (
        f'vault {{\n  address = "{c.srv.url}"\n}}\n'
        'auto_auth {\n  method {\n    type = "approle"\n    config = {\n'
        f'      role_id_file_path = "/nonexistent"\n      secret_id = "{c.s["inline"]}"\n'
        "    }\n  }\n}\n"
        f'template {{\n  contents = "x"\n  destination = "{c.out("pw")}"\n}}\n'
    )
    return _config_error(c, ("agent.hcl", text))


YAML_SYNTAX = {
    "mapping": "  - ref: {v}: nope\n",
    "quote": '  - ref: "{v}\n    destination: x\n',
    "tab": "  - ref: {v}\n\tdestination: x\n",
    "flow": "  - {{ref: {v}, destination: [x\n",
}
# PyYAML's `problem` text quotes the offending token for these two.
YAML_QUOTING = {
    "alias": "  - ref: *{v}\n",
    "tag": "  - ref: !{v} x\n",
}


for _kind, _line in {**YAML_SYNTAX, **YAML_QUOTING}.items():

    @scenario(f"config-yaml-syntax-{_kind}")
    def _yaml_syntax(c: Ctx, line: str = _line) -> Plan:
        text = f"vault:\n  address: {c.srv.url}\ntemplate:\n" + line.format(v=c.s["yaml_line"])
        return _config_error(c, ("kv2render.yaml", text))


@scenario("config-json-syntax")
def _json_syntax(c: Ctx) -> Plan:
    text = (
        f'{{\n  "vault": {{"address": "{c.srv.url}"}},\n'
        f'  "template": [{{"ref": {c.s["yaml_line"]}}}]\n}}\n'
    )
    return _config_error(c, ("kv2render.json", text))


@scenario("config-hcl-syntax")
def _hcl_syntax(c: Ctx) -> Plan:
    text = (
        f'vault {{\n  address = "{c.srv.url}"\n}}\n'
        f"template {{\n  contents = {c.s['yaml_line']} !\n}}\n"
    )
    return _config_error(c, ("agent.hcl", text))


@scenario("config-template-syntax-error")
def _template_syntax(c: Ctx) -> Plan:
    # A template syntax error on a line that also holds a reference (metadata) and text.
    entry = {"contents": f'ok\n{{{{ kv2("{PW}") }}\n', "destination": str(c.out("pw"))}
    return _config_error(c, single(c, entry))


# --------------------------------------------------------------------------------------------
# Writes, commands, server faults


@scenario("fail-write-missing-dir")
def _write_failure(c: Ctx) -> Plan:
    dest = c.wd / "out" / "no-such-dir" / "pw"
    c.out("unused", old=None)
    return Plan(single(c, {"ref": PW, "destination": str(dest)}), 6, ("no-such-dir",), c.root_env())


@scenario("fail-write-dest-is-directory")
def _write_dir(c: Ctx) -> Plan:
    dest = c.wd / "out" / "adir"
    dest.mkdir(parents=True, mode=0o700)
    contents = f'{{{{ kv2("{PW}") }}}} {{{{ kv2("{ref(NESTED)}") | toJSON }}}}'
    return Plan(single(c, {"contents": contents, "destination": str(dest)}), 6, (), c.root_env())


@scenario("fail-command")
def _failing_command(c: Ctx) -> Plan:
    dest = c.out("pw", old=None)
    entry = {"ref": PW, "destination": str(dest), "command": ["sh", "-c", "env; exit 3"]}
    return Plan(single(c, entry), 7, ("status 3",), c.root_env(), (dest,))


@scenario("fail-command-timeout")
def _command_timeout(c: Ctx) -> Plan:
    dest = c.out("pw", old=None)
    entry = {
        "ref": PW,
        "destination": str(dest),
        # exec: output/commands.run_command kills only the shell on timeout, and a grandchild
        # holding stdout would keep a subprocess run waiting (see KV2-AC-103).
        "command": "env; exec sleep 5",
        "command_timeout": "300ms",
    }
    return Plan(single(c, entry), 7, ("timed out",), c.root_env(), (dest,))


def _fault(c: Ctx, retries: int, **faults: Any) -> Plan:
    for name, value in faults.items():
        setattr(c.srv.faults, name, value)
    dest = c.out("pw")
    tree = {"vault": c.vault(retries), "template": [{"ref": PW, "destination": str(dest)}]}
    plan = Plan(tree, 4, (), c.root_env())

    def after(c: Ctx) -> None:
        assert dest.read_text() == "old-good-content"

    plan.after = after
    return plan


@scenario("fault-500-retried")
def _fault_500(c: Ctx) -> Plan:
    plan = _fault(c, 1, status=500)
    plan.code = -1  # login or read: 3 or 4, checked in the runner as "not 0 and not 2"
    return plan


@scenario("fault-503-sealed")
def _fault_sealed(c: Ctx) -> Plan:
    plan = _fault(c, -1, sealed=True)
    plan.code = -1
    return plan


@scenario("fault-429")
def _fault_429(c: Ctx) -> Plan:
    plan = _fault(c, -1, status=429, retry_after=0)
    plan.code = -1
    return plan


@scenario("fault-dropped-connection")
def _fault_drop(c: Ctx) -> Plan:
    plan = _fault(c, -1, drop=True)
    plan.code = -1
    return plan


@scenario("fault-500-on-read-after-login")
def _fault_read(c: Ctx) -> Plan:
    # Token login succeeds (lookup-self), then exactly the read fails.
    config = {
        "role_id_file_path": str(c.cred("role_id", c.s["role_id"])),
        "secret_id_file_path": str(c.cred("secret_id", c.s["secret_id"])),
        "remove_secret_id_file_after_reading": False,
    }
    dest = c.out("pw")
    tree = {
        "vault": c.vault(),
        "auto_auth": {"method": {"type": "approle", "config": config}},
        "template": [{"ref": PW, "destination": str(dest)}],
    }
    original = c.srv.on_request

    def arm(method: str, path: str, status: int) -> None:
        if path.startswith("/v1/auth/approle/login"):
            c.srv.faults.status = 500
            c.srv.faults.fail_next = 1
        if original is not None:
            original(method, path, status)

    c.srv.on_request = arm
    return Plan(tree, 4, ("500",), {})


# --------------------------------------------------------------------------------------------
# check and status


@scenario("check-valid")
def _check_valid(c: Ctx) -> Plan:
    tree = {
        "vault": c.vault(),
        "status_file": str(c.wd / "status.json"),
        "template": [
            {"ref": PW, "destination": str(c.out("pw"))},
            {"contents": f'{{{{ kv2("{ref(NESTED, "/conn/password")}") }}}}', "destination": "x"},
        ],
    }
    plan = Plan(tree, 0, ("unique",), c.root_env(), command="check")
    return plan


@scenario("check-inline-credential")
def _check_inline(c: Ctx) -> Plan:
    plan = _config_error(c, _inline_tree(c, "secret_id"))
    plan.command = "check"
    return plan


@scenario("status-without-status-file")
def _status_missing(c: Ctx) -> Plan:
    plan = Plan(single(c, {"ref": PW, "destination": str(c.out("pw"))}), 2, ("status_file",))
    plan.env = c.root_env()
    plan.command = "status"
    return plan


# --------------------------------------------------------------------------------------------
# The CLI runs


MODES = ["inproc-text", "inproc-json", "subproc-text", "subproc-json"]
# A subprocess costs ~0.5 s. Every scenario runs in-process in both formats, and as a
# subprocess in JSON; the success paths and the failing commands (a command's output on the
# real stdout) also run as a subprocess in text, to keep the module near a minute.
_SUBPROC_TEXT = ("ok-", "fail-command")


@dataclass
class World:
    srv: DevServer
    s: Sentinels
    wd: Path


@pytest.fixture
def world(request: pytest.FixtureRequest, workdir: Path) -> Iterator[World]:
    server = getattr(request, "param", "vault")
    s = make_sentinels()
    srv = DevServer(root_token=s["root_token"], **SERVERS[server]).start()
    try:
        seed(srv, s)
        yield World(srv, s, workdir)
    finally:
        srv.stop()


def _write_plan_config(c: Ctx, plan: Plan) -> Path:
    if isinstance(plan.config, tuple):
        name, text = plan.config
        path = c.wd / name
        path.write_text(text)
        return path
    return write_config(c.wd, plan.config)


def _argv(plan: Plan, cfg: Path, fmt: str) -> list[str]:
    common = ["--config", str(cfg), "--log-level", "trace", "--log-format", fmt]
    if plan.command == "run":
        return [*common, "--once"]
    return [plan.command, *common]


def _leaks_in_result(s: Sentinels, result: CliResult, label: str) -> list[str]:
    return s.leaks(f"{label} stdout", result.out) + s.leaks(f"{label} stderr", result.err)


def _server_log_leaks(s: Sentinels, srv: DevServer) -> list[str]:
    lines = "\n".join(f"{m} {p} {st}" for m, p, st in list(srv.requests))
    return s.leaks("dev server request log", lines)


def _cases() -> list[Any]:
    cases = []
    for name, (server, _) in SCENARIOS.items():
        for mode in MODES:
            if mode == "subproc-text" and not name.startswith(_SUBPROC_TEXT):
                continue
            marks = []
            if name in XFAIL:
                marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[name]))
            cases.append(pytest.param(name, mode, server, id=f"{name}-{mode}", marks=marks))
    return cases


@pytest.mark.parametrize(("name", "mode", "world"), _cases(), indirect=["world"])
def test_cli_leaks_no_sentinel(name: str, mode: str, world: World) -> None:
    """KV2-INV-001 KV2-AC-116 KV2-AC-102 KV2-AC-032 KV2-AC-062 KV2-AC-083 KV2-FC-072
    KV2-AC-350 KV2-AC-351 KV2-INV-133 KV2-INV-081: at --log-level trace, in text and JSON,
    in-process and as a subprocess, on success and on every failure path, no sentinel secret,
    token, secret_id, role_id or JWT appears in stdout, stderr, any file left in the work
    directory other than the intended destination (and its .bak), a command's environment, or
    the server's log."""
    c = Ctx(world.srv, world.s, world.wd)
    plan = SCENARIOS[name][1](c)
    cfg = _write_plan_config(c, plan)
    before = snapshot(c.wd)
    world.srv.reset_counters()
    runner, fmt = mode.split("-")
    argv = _argv(plan, cfg, fmt)
    started = time.monotonic()
    result = (run_cli if runner == "inproc" else run_cli_subprocess)(argv, plan.env)
    elapsed = time.monotonic() - started

    # The path really ran: exit code and the words that prove it.
    if plan.code == -1:
        assert result.code not in (0, 2), result.err[-2000:]
    else:
        assert result.code == plan.code, result.err[-2000:]
    for word in plan.words:
        assert word in result.text, f"{word!r} not in output: {result.err[-2000:]}"
    assert result.text.strip(), "trace level printed nothing"
    if fmt == "json":
        for line in result.err.splitlines():
            if line.startswith("{"):
                assert isinstance(json.loads(line), dict)
    if plan.after is not None:
        plan.after(c)
    if plan.max_seconds is not None:
        # KV2-AC-350: refused at once, never retried.
        assert elapsed < plan.max_seconds, f"took {elapsed:.1f}s: {result.err[-1000:]}"
        assert "retry" not in result.err, result.err[-2000:]

    leaks = _leaks_in_result(c.s, result, mode)
    leaks += scan_tree(c.s, c.wd, before, plan.destinations)
    leaks += _server_log_leaks(c.s, world.srv)
    assert not leaks, report(leaks)


def test_every_auth_method_has_a_hygiene_scenario() -> None:
    """KV2-AC-116: the scenario list covers every auth type the config accepts."""
    from typing import get_args

    from kv2render.config import AuthType

    covered = {"token_env", "token_file", "approle", "kubernetes", "jwt", "cert"}
    covered |= {"bearer_token_file", "mtls"}
    assert set(get_args(AuthType)) <= covered
    for method in ("token-file", "approle", "kubernetes", "jwt", "cert", "bearer-token-file"):
        assert f"ok-{method}" in SCENARIOS
    assert "ok-mtls" in SCENARIOS and "ok-ref-token-env" in SCENARIOS


# --------------------------------------------------------------------------------------------
# Internal APIs: exception text and reprs


def _texts_of(exc: BaseException) -> str:
    return "\n".join(f"{label}: {text}" for label, text in exception_texts(exc))


def test_config_load_errors_and_reprs(workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """KV2-INV-001 KV2-AC-032 KV2-AC-116: config.load's errors (inline credentials in YAML,
    JSON and HCL, syntax errors on a line holding a sentinel) and the reprs of a loaded
    Config/AuthSettings never show a sentinel."""
    from kv2render import config as config_mod
    from kv2render.errors import ConfigError

    caplog.set_level(1)
    s = make_sentinels()
    leaks: list[str] = []
    bad: list[tuple[str, str]] = [
        ("a.yaml", f"vault:\n  address: http://127.0.0.1:1\n  token: {s['inline']}\n"),
        (
            "b.yaml",
            f"auto_auth:\n  method:\n    type: approle\n    config:\n"
            f"      secret_id: {s['inline']}\n",
        ),
        ("c.json", json.dumps({"auto_auth": {"method": {"config": {"jwt": s["inline"]}}}})),
        (
            "d.hcl",
            f'auto_auth {{\n  method {{\n    config = {{\n      token = "{s["inline"]}"\n'
            "    }\n  }\n}\n",
        ),
        ("e.json", '{"vault": {"address": ' + s["yaml_line"] + "}}"),
    ]
    for kind, line in YAML_SYNTAX.items():
        bad.append((f"syntax-{kind}.yaml", "template:\n" + line.format(v=s["yaml_line"])))
    raised = 0
    for name, text in bad:
        path = workdir / name
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            config_mod.load(path, env={})
        raised += 1
        leaks += s.leaks(f"config.load({name}) exception", _texts_of(err.value))
    assert raised == len(bad)

    env = {"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": s["root_token"]}
    cfg_path = write_config(
        workdir, {"template": [{"ref": PW, "destination": "out", "command": "true"}]}
    )
    cfg = config_mod.load(cfg_path, env=env)
    assert cfg.auth.config.token == s["root_token"]  # type: ignore[union-attr]  # the token is there, just not shown
    for label, obj in [
        ("Config", cfg),
        ("AuthSettings", cfg.auth),
        ("TemplateSpec", cfg.templates[0]),
        ("SecretRef", cfg.templates[0].ref),
        ("describe()", config_mod.describe(cfg)),
    ]:
        leaks += s.leaks(f"repr({label})", repr(obj))
        leaks += s.leaks(f"str({label})", str(obj))
    leaks += s.leaks("captured logs", caplog.text)
    assert not leaks, report(leaks)


@pytest.mark.parametrize("kind", sorted(YAML_QUOTING))
def test_config_load_yaml_error_does_not_quote_the_token(workdir: Path, kind: str) -> None:
    """KV2-INV-001 KV2-AC-116: a YAML syntax error on a line holding a credential never
    repeats the line's text, even where PyYAML's own complaint quotes the token."""
    from kv2render import config as config_mod
    from kv2render.errors import ConfigError

    s = make_sentinels()
    path = workdir / "kv2render.yaml"
    path.write_text("template:\n" + YAML_QUOTING[kind].format(v=s["yaml_line"]))
    with pytest.raises(ConfigError) as err:
        config_mod.load(path, env={})
    assert "kv2render.yaml:2" in str(err.value)
    leaks = s.leaks("config.load exception", _texts_of(err.value))
    assert not leaks, report(leaks)


def test_store_runner_and_auth_reprs_and_errors(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-INV-001 KV2-AC-116 KV2-INV-051: hvac store reads against the dev server (success,
    403, 404, deleted, destroyed, 503, refused logins), runner.prepare/run_pass with render
    errors: no sentinel in any exception text, repr of SecretVersion, SecretRef, LoginResult,
    TokenInfo, the store, the prepared templates and the pass report, or the logs."""
    from kv2render import runner
    from kv2render.config import AuthSettings, VaultSettings
    from kv2render.config import load as load_config
    from kv2render.config.auth import TokenEnvSettings
    from kv2render.config.methods import parse_method
    from kv2render.errors import Kv2RenderError
    from kv2render.refs import SecretLocation, parse_ref
    from kv2render.store.auth import LoginResult, build_authenticator
    from kv2render.store.client import HvacSecretStore

    caplog.set_level(1)
    s = make_sentinels()
    texts: list[tuple[str, str]] = []
    with DevServer(root_token=s["root_token"]) as srv:
        seed(srv, s)
        settings = VaultSettings(address=srv.url, num_retries=-1, timeout=5.0)
        role = workdir / "role"
        role.write_text(s["role_id"])
        sid = workdir / "sid"
        sid.write_text(s["secret_id"])
        bad_sid = workdir / "bad-sid"
        bad_sid.write_text(s["bad_secret_id"])
        jwt = workdir / "jwt"
        jwt.write_text(s["k8s_jwt"])

        def store(kind: str = "token_env", token: str | None = None, **config: Any) -> Any:
            if kind == "token_env":
                auth = AuthSettings(type="token_env", config=TokenEnvSettings(token))
            else:
                parsed = parse_method({"type": kind, "config": config}, workdir, None)
                assert parsed is not None
                auth = parsed
            texts.append((f"repr(AuthSettings {kind})", repr(auth)))
            return HvacSecretStore(settings, build_authenticator(auth))

        stores = [
            store(token=s["root_token"]),
            store(token=s["narrow_token"]),
            store(token=s["bad_token"]),
            store(
                "approle",
                role_id_file_path=role,
                secret_id_file_path=sid,
                remove_secret_id_file_after_reading=False,
            ),
            store(
                "approle",
                role_id_file_path=role,
                secret_id_file_path=bad_sid,
                remove_secret_id_file_after_reading=False,
            ),
            store("kubernetes", role="app", token_path=jwt),
            store("kubernetes", role="nope", token_path=jwt),
        ]
        locations = [
            SecretLocation("secret", "app/db"),
            SecretLocation("secret", "app/nested"),
            SecretLocation("secret", "app/missing"),
            SecretLocation("secret", "app/deleted"),
            SecretLocation("secret", "app/destroyed"),
        ]
        failures = 0
        for st in stores:
            texts.append(("repr(store)", repr(st)))
            texts.append(("repr(authenticator)", repr(st.authenticator)))
            for loc in locations:
                try:
                    version = st.read(loc)
                except Kv2RenderError as exc:
                    failures += 1
                    texts.extend(exception_texts(exc))
                else:
                    texts.append(("repr(SecretVersion)", repr(version)))
                    texts.append(("str(SecretVersion)", str(version)))
                    texts.append(("repr(metadata)", repr(version.metadata)))
            texts.append(("repr(token_info)", repr(st.token_info)))
        # A sealed server, on the store that works.
        srv.faults.sealed = True
        try:
            stores[0].read(locations[0])
        except Kv2RenderError as exc:
            failures += 1
            texts.extend(exception_texts(exc))
        srv.faults.sealed = False

        # runner.prepare + run_pass with render errors, through the real store.
        entries = [{"ref": PW, "destination": str(workdir / "o-ref")}]
        entries += [
            {"contents": t, "destination": str(workdir / f"o{i}")}
            for i, t in enumerate(JINJA_ERRORS)
        ]
        cfg = load_config(
            write_config(workdir, {"template": entries}),
            env={"VAULT_ADDR": srv.url, "VAULT_TOKEN": s["root_token"]},
        )
        prepared = runner.prepare(cfg)
        texts.extend(("repr(PreparedTemplate)", repr(p)) for p in prepared)
        pass_report = runner.run_pass(prepared, stores[0])
        texts.append(("repr(PassReport)", repr(pass_report)))
        for result in pass_report.results:
            if result.error is not None:
                failures += 1
                texts.extend(exception_texts(result.error))
        for st in stores:
            st.close()
        texts.append(("dev server request log", repr(srv.requests)))

    login = LoginResult(token=s["root_token"], ttl=60.0, renewable=True)  # type: ignore[call-arg]
    texts.append(("repr(LoginResult)", repr(login)))
    texts.append(("repr(SecretRef)", repr(parse_ref(ref(NESTED, "/conn/password")))))
    texts.append(("captured logs", caplog.text))
    texts.extend(("log record", r.getMessage()) for r in caplog.records)

    # The failure paths really ran: 3 failing locations x 7 stores at least, and every
    # Jinja runtime-error template.
    assert failures >= 20 + len(JINJA_ERRORS)
    joined = "\n".join(t for _, t in texts)
    assert "denied" in joined and "deleted" in joined and "destroyed" in joined
    assert "sealed" in joined.lower() or "503" in joined
    leaks = [leak for label, text in texts for leak in s.leaks(label, text)]
    assert not leaks, report(leaks)


def test_login_result_fields() -> None:
    """KV2-INV-001: LoginResult keeps the token out of its repr (checked against the real
    dataclass fields, so the test above cannot pass by constructing it wrongly)."""
    import dataclasses

    from kv2render.store.auth import LoginResult

    fields = {f.name: f for f in dataclasses.fields(LoginResult)}
    assert "token" in fields and fields["token"].repr is False


# --------------------------------------------------------------------------------------------
# The dev server as a subprocess: its stderr request log


def test_dev_server_cli_request_log_has_no_sentinel(workdir: Path) -> None:
    """KV2-INV-133 KV2-AC-146 KV2-INV-001: the dev-server CLI's request log (stderr) shows
    no token, secret_id, JWT or secret value while kv2render renders through it."""
    s = make_sentinels()
    token_file = workdir / "root-token"
    token_file.write_text(s["root_token"])
    seed_file = workdir / "seed.yaml"
    seed_file.write_text(
        yaml.safe_dump(
            {
                "secrets": {"secret/app/db": {"password": s["password"], "username": "app"}},
            }
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kv2render",
            "dev-server",
            "--listen",
            "127.0.0.1:0",
            "--seed",
            str(seed_file),
            "--root-token-file",
            str(token_file),
        ],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not address:
            line = proc.stdout.readline()
            if line.startswith("VAULT_ADDR="):
                address = line.split("=", 1)[1].strip()
        assert address, "the dev server did not print VAULT_ADDR"
        dest = workdir / "pw"
        cfg = write_config(
            workdir,
            {
                "vault": {"address": address, "retry": {"num_retries": -1}},
                "template": [
                    {"ref": PW, "destination": str(dest)},
                    {"ref": ref(DB, "nope"), "destination": str(workdir / "x")},
                ],
            },
        )
        result = run_cli(
            ["--config", str(cfg), "--once", "--log-level", "trace"],
            {"VAULT_TOKEN": s["root_token"]},
        )
        bad = run_cli(["--config", str(cfg), "--once"], {"VAULT_TOKEN": s["bad_token"]})
        assert result.code == 5, result.err[-2000:]
        assert bad.code == 3, bad.err[-2000:]
        assert dest.read_text() == s["password"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert "/v1/secret/data/app/db" in err, err[-2000:]  # the request log really is there
    leaks = s.leaks("dev-server stderr", err) + _leaks_in_result(s, result, "kv2render")
    leaks += _leaks_in_result(s, bad, "kv2render (bad token)")
    assert not leaks, report(leaks)


# --------------------------------------------------------------------------------------------
# The daemon: log lines and the status file (issue 5, KV2-AC-181)


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_daemon_logs_and_status_file_have_no_sentinel(workdir: Path, fmt: str) -> None:
    """KV2-AC-181 KV2-INV-001 KV2-AC-116: the daemon at trace level (approle login with a
    short, renewable token so that renew-self runs), a rotation, a failing template, a
    server outage and SIGTERM: no sentinel in its stdout, stderr, status file, `kv2render
    status` output, or any file other than the destinations."""
    s = make_sentinels()
    with DevServer(root_token=s["root_token"]) as srv:
        seed(srv, s)
        role_id = s.make("short_role_id", "SENTINEL-ROLEID-short")
        srv.add_approle("short", role_id, s["secret_id"], ["app-read"], token_ttl=3)
        c = Ctx(srv, s, workdir)
        dest = c.out("pw", old=None)
        conf = c.out("app.conf", old=None)
        status = workdir / "state" / "status.json"
        status.parent.mkdir(mode=0o700)
        envdump = workdir / "envdump.txt"
        tree = {
            "vault": c.vault(),
            "auto_auth": {
                "method": {
                    "type": "approle",
                    "config": {
                        "role_id_file_path": str(c.cred("role_id", role_id)),
                        "secret_id_file_path": str(c.cred("secret_id", s["secret_id"])),
                        "remove_secret_id_file_after_reading": False,
                    },
                }
            },
            "template_config": {"static_secret_render_interval": "1s"},
            "status_file": str(status),
            "template": [
                {"ref": PW, "destination": str(dest), "command": f"env > {envdump}"},
                {
                    "contents": f'{{{{ kv2("{ref(NESTED, "/conn/password")}") }}}}\n'
                    f'{{{{ secret("{DB}").Data.data.api_key }}}}\n',
                    "destination": str(conf),
                    "backup": True,
                },
                {"contents": f'{{{{ {{}}[kv2("{PW}")] }}}}', "destination": str(c.out("bad"))},
                {"ref": ref(DB, "nope"), "destination": str(c.out("bad2"))},
            ],
        }
        cfg = write_config(workdir, tree)
        before = snapshot(workdir)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kv2render",
                "--config",
                str(cfg),
                "--log-level",
                "trace",
                "--log-format",
                fmt,
            ],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            try:
                _wait_for(lambda: dest.exists() and status.exists(), 15, "the first render")
            except AssertionError:
                if proc.poll() is not None:
                    # A crash before the first render is a failure, never an xfail
                    # (KV2-AC-457); what it printed is still checked for sentinels.
                    out, err = proc.communicate()
                    leaks = s.leaks("daemon stdout", out) + s.leaks("daemon stderr", err)
                    assert not leaks, report(leaks)
                    pytest.fail(f"daemon exited {proc.returncode} before its first render")
                raise
            srv.put(
                "app/db",
                {"username": "app", "password": s["rotated"], "api_key": s["api_key"]},
            )
            _wait_for(lambda: dest.read_text() == s["rotated"], 10, "the rotated secret")
            # An outage: the daemon keeps serving and must log it without secrets.
            srv.faults.status = 503
            time.sleep(1.5)
            srv.faults.status = None
            _wait_for(lambda: '"last_error"' in status.read_text(), 5, "a status with errors")
            # A renewal or re-login must have happened with the 3 s token.
            _wait_for(
                lambda: (
                    srv.request_count("POST", "/v1/auth/token/renew-self")
                    + srv.request_count("POST", "/v1/auth/approle/login")
                    >= 2
                ),
                10,
                "token renewal or re-login",
            )
            status_text = status.read_text()
            shown = [
                run_cli_subprocess(["status", "--config", str(cfg), "--log-format", f])
                for f in ("text", "json")
            ]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
        assert proc.returncode == 0, err[-2000:]
        final_status = status.read_text()
        request_log = "\n".join(f"{m} {p} {st}" for m, p, st in srv.requests)

    assert "rendered" in err and "template[2]" in err and "nope" in err, err[-2000:]
    # Two templates fail: `kv2render status` says degraded, exit 10 (KV2-INV-422).
    assert all(r.code == 10 for r in shown), [r.err[-500:] for r in shown]
    assert str(dest) in status_text
    assert envdump.read_text().strip()
    leaks = s.leaks("daemon stdout", out) + s.leaks("daemon stderr", err)
    leaks += s.leaks("status file (running)", status_text)
    leaks += s.leaks("status file (stopped)", final_status)
    for i, r in enumerate(shown):
        leaks += _leaks_in_result(s, r, f"kv2render status #{i}")
    leaks += s.leaks("dev server request log", request_log)
    leaks += scan_tree(s, workdir, before, [dest, conf])
    assert not leaks, report(leaks)


def _daemon(cfg: Path, fmt: str, log: Path, env: dict[str, str] | None = None) -> Any:
    with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "kv2render", "--config", str(cfg), "--log-level", "trace",
             "--log-format", fmt],
            env=cli_env(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def _stop(proc: Any) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_daemon_malformed_token_never_logged(workdir: Path, fmt: str) -> None:
    """KV2-AC-352 KV2-INV-351 KV2-INV-350 KV2-INV-001: the daemon at trace level with a
    token_file holding a line break: the refusal is logged and the status says login-failed,
    with no part of the token in its output or its status file and no request sent; once the
    file is fixed it renders. With such a token in VAULT_TOKEN it exits 3 at once."""
    s = make_sentinels()
    with DevServer(root_token=s["root_token"]) as srv:
        seed(srv, s)
        c = Ctx(srv, s, workdir)
        dest = c.out("pw", old=None)
        status = workdir / "status.json"
        token = c.cred("token", s["bad_token"] + LINE_BREAK)
        tree = {
            "vault": c.vault(num_retries=12),
            "auto_auth": {
                "method": {
                    "type": "token_file",
                    "min_backoff": "250ms",
                    "max_backoff": "1s",
                    "config": {"token_file_path": str(token)},
                }
            },
            "status_file": str(status),
            "template": [{"ref": PW, "destination": str(dest)}],
        }
        cfg = write_config(workdir, tree)
        before = snapshot(workdir)
        log = workdir / f"daemon-{fmt}.log"
        proc = _daemon(cfg, fmt, log)
        try:
            _wait_for(
                lambda: status.exists() and "login-failed" in status.read_text(),
                15,
                "a login-failed status",
            )
            time.sleep(1.0)  # a few login attempts with the bad file
            failed_status = status.read_text()
            assert srv.request_count() == 0, "a malformed token reached the server"
            token.write_text(s["file_token"] + "\n")
            _wait_for(lambda: dest.exists(), 15, "the render after the fix")
        finally:
            code = _stop(proc)
        final_status = status.read_text()
        out = log.read_text(errors="replace")

        env_log = workdir / f"daemon-env-{fmt}.log"
        env_cfg = write_config(
            workdir,
            {"vault": c.vault(num_retries=12), "template": [{"ref": PW, "destination": str(dest)}]},
            name="env.yaml",
        )
        started = time.monotonic()
        env_proc = _daemon(env_cfg, fmt, env_log, {"VAULT_TOKEN": s["bad_token"] + LINE_BREAK})
        try:
            env_proc.wait(timeout=15)
        finally:
            env_code = _stop(env_proc)
        env_elapsed = time.monotonic() - started
        env_out = env_log.read_text(errors="replace")

    assert code == 0, out[-2000:]
    assert dest.read_text() == s["password"]
    assert "line break" in out and str(token) in out, out[-2000:]
    assert env_code == 3 and env_elapsed < 10, env_out[-2000:]
    assert "VAULT_TOKEN from the environment" in env_out, env_out[-2000:]
    leaks = s.leaks("daemon output", out) + s.leaks("daemon output (env)", env_out)
    leaks += s.leaks("status file (login failed)", failed_status)
    leaks += s.leaks("status file (stopped)", final_status)
    leaks += scan_tree(s, workdir, before, [dest, token])  # the token file is the test's input
    assert not leaks, report(leaks)


# --------------------------------------------------------------------------------------------
# The hygiene scanner itself must be able to fail


def test_scanner_finds_plain_transformed_and_encoded_sentinels(tmp_path: Path) -> None:
    """The checks above are not tautologies: each spelling of a sentinel is found."""
    import base64

    s = Sentinels()
    value = s.make("x", "SENTINEL-SECRET")
    assert s.leaks("t", f"a {value} b")
    assert s.leaks("t", value.upper())
    assert s.leaks("t", value[3:])
    assert s.leaks("t", base64.b64encode(value.encode()).decode())
    assert not s.leaks("t", "SENTINEL-SECRET-[redacted]")
    n = s.add_number("n")
    assert s.leaks("t", f"count={n}")
    (tmp_path / ".hidden.tmp").write_text(value)
    (tmp_path / "dest").write_text(value)
    (tmp_path / "dest.bak").write_text(value)
    found = scan_tree(s, tmp_path, {}, [tmp_path / "dest"])
    assert len(found) == 1 and ".hidden.tmp" in found[0]
    logging.getLogger(__name__).debug("scanner ok")
    assert os.path.exists(tmp_path / "dest")
