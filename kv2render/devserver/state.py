"""Everything the dev server knows: mounts, namespaces, tokens, policies, logins.

One lock guards it all; the router and the Python API both take it. The lock is
coarse on purpose: a dev server needs correctness, and even coarse it serves
thousands of reads per second (benchmarks/devserver_throughput.py).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

from kv2render.devserver._time import Clock, WallClock
from kv2render.devserver.auth import AuthMounts, Policies, TokenStore
from kv2render.devserver.kv import KvV1, KvV2
from kv2render.devserver.protocol import OPENBAO, OVH, VAULT, Wire

Mount = KvV1 | KvV2


@dataclass
class Faults:
    """Mutable fault switches read on every request (tests flip them freely).

    sealed: 503 "Vault is sealed" (health endpoints still answer).
    status: answer every request with this status (e.g. 500, 429), retry_after adds
        a Retry-After header; with fail_next > 0 only that many requests fail, then
        status is cleared.
    latency: seconds added before each answer. drop: close the connection without
        answering. hang: accept and never answer until stop().
    """

    sealed: bool = False
    status: int | None = None
    retry_after: int | None = None
    latency: float = 0.0
    drop: bool = False
    fail_next: int = 0
    hang: bool = False


def norm_namespace(ns: str | None) -> str:
    """'ns1/ns2' -> 'ns1/ns2/'; '', 'root' and '/' -> '' (OpenBao maps 'root' to root)."""
    text = (ns or "").strip().strip("/")
    if text in ("", "root"):
        return ""
    return text + "/"


def norm_mount(path: str) -> str:
    text = path.strip().strip("/")
    if not text:
        raise ValueError("mount path must not be empty")
    return text + "/"


class State:
    def __init__(self, flavor: str, clock: Clock) -> None:
        self.wire = Wire(flavor)
        self.flavor = flavor
        self.lock = threading.RLock()
        self.clock = clock
        self.wall = WallClock(clock)
        self.tokens = TokenStore(clock, openbao=flavor == OPENBAO)
        self.policies = Policies()
        self.auth = AuthMounts()
        self.namespaces: set[str] = {""}
        self.mounts: dict[str, Mount] = {}
        self.mount_ids: dict[str, tuple[str, str]] = {}  # mount -> (accessor, uuid)
        self.add_mount("secret", 2)  # like `vault server -dev` (issue 3)
        self.faults = Faults()

    @property
    def sealed(self) -> bool:
        return self.faults.sealed

    # -- mounts and namespaces ----------------------------------------------------------

    def add_namespace(self, path: str) -> str:
        ns = norm_namespace(path)
        if not ns:
            return ns
        parts = ns.rstrip("/").split("/")
        for i in range(1, len(parts) + 1):  # parents exist implicitly, as in Vault
            self.namespaces.add("/".join(parts[:i]) + "/")
        return ns

    def add_mount(self, path: str, version: int = 2, namespace: str = "") -> Mount:
        ns = norm_namespace(namespace)
        if ns:
            self.add_namespace(ns)
        full = ns + norm_mount(path)
        if self.flavor == OVH and full != "secret/":
            raise ValueError(
                f"mount {path!r}: the ovh flavour serves only the fixed 'secret' mount"
            )
        if full in self.mounts:
            existing = self.mounts[full]
            if existing.version != version:
                raise ValueError(f"mount {full!r} already exists as KV v{existing.version}")
            return existing
        mount: Mount
        if version == 2:
            mount = KvV2(
                full,
                self.wall,
                attribution=self.flavor == VAULT,
                openbao=self.flavor == OPENBAO,
            )
        elif version == 1:
            mount = KvV1(full)
        else:
            raise ValueError(f"mount {path!r}: version must be 1 or 2, got {version!r}")
        self.mounts[full] = mount
        self.mount_ids[full] = (f"kv_{uuid.uuid4().hex[:8]}", str(uuid.uuid4()))
        return mount

    def mount(self, mount: str) -> Mount:
        """The mount for a Python-API call; 'ns1/secret' addresses a namespaced mount."""
        key = norm_mount(mount)
        found = self.mounts.get(key)
        if found is None:
            raise KeyError(f"mount {mount!r} does not exist; add it with add_mount() or the seed")
        return found

    def kv2(self, mount: str) -> KvV2:
        found = self.mount(mount)
        if not isinstance(found, KvV2):
            raise ValueError(f"mount {mount!r} is KV v1; this call needs a KV v2 mount")
        return found

    def resolve_namespace(self, full_path: str) -> str:
        """The longest known namespace that prefixes a namespace-qualified path."""
        best = ""
        for ns in self.namespaces:
            if ns and full_path.startswith(ns) and len(ns) > len(best):
                best = ns
        return best

    def find_mount(self, full_path: str) -> Mount | None:
        best: Mount | None = None
        probe = full_path if full_path.endswith("/") else full_path + "/"
        for path, mount in self.mounts.items():
            if probe.startswith(path) and (best is None or len(path) > len(best.path)):
                best = mount
        return best

    def mount_info(self, mount: Mount, relative_to: str) -> dict[str, Any]:
        """A mount entry as sys/internal/ui/mounts and sys/mounts show it (§3.1, §3.2)."""
        accessor, mount_uuid = self.mount_ids[mount.path]
        path = mount.path[len(relative_to) :] if mount.path.startswith(relative_to) else mount.path
        return {
            "accessor": accessor,
            "config": {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0},
            "deprecation_status": "supported",
            "description": "key/value secret storage (kv2render dev server)",
            "external_entropy_access": False,
            "local": False,
            "options": {"version": str(mount.version)},
            "path": path,
            "plugin_version": "",
            "running_plugin_version": "v0.20.0+builtin",
            "running_sha256": "",
            "seal_wrap": False,
            "type": "kv",
            "uuid": mount_uuid,
        }

    def auth_mount_key(self, mount: str, namespace: str = "") -> str:
        return norm_namespace(namespace) + "auth/" + norm_mount(mount)
