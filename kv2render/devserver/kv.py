"""In-memory KV engines: the versioned KV v2 state model and a tiny KV v1.

Semantics follow hashicorp/vault-plugin-secrets-kv as summarised in kv2-wire.md
§2.1-2.8: per-key versions with soft delete (``deletion_time``), destroy, CAS,
``max_versions`` pruning and ``delete_version_after``. Operations return plain
data (None means 204) or raise ApiError / RawNotFound; HTTP lives elsewhere.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from kv2render.devserver import fields, gofields
from kv2render.devserver._time import WallClock, format_duration, rfc3339
from kv2render.devserver.numbers import go_float64
from kv2render.devserver.protocol import ApiError, RawNotFound

DEFAULT_MAX_VERSIONS = 10


@dataclass
class Version:
    created_ns: int
    data: dict[str, Any] | None = field(repr=False)  # None once destroyed
    deletion_ns: int | None = None
    destroyed: bool = False
    created_by: dict[str, str] | None = None
    deleted_by: dict[str, str] | None = None


@dataclass
class Key:
    created_ns: int
    updated_ns: int
    current_version: int = 0
    oldest_version: int = 0
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0
    custom_metadata: dict[str, str] | None = None
    metadata_version: int = 0  # OpenBao's current_metadata_version
    last_updated_by: dict[str, str] | None = None
    versions: dict[int, Version] = field(default_factory=dict)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _subkeys(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _subkeys(v) for k, v in data.items()}
    return None


class KvV2:
    """One KV v2 mount."""

    version = 2

    def __init__(
        self, path: str, wall: WallClock, attribution: bool, openbao: bool = False
    ) -> None:
        self.path = path  # with trailing "/", namespace-qualified
        self.wall = wall
        self.attribution = attribution  # Vault flavour: created_by/deleted_by/last_updated_by
        # OpenBao flavour: data numbers round-trip through float64 (numbers.py, KV2-INV-340),
        # fields convert and fail as measured on OpenBao (gofields.py, KV2-AC-342).
        self.openbao = openbao
        self.max_versions = 0
        self.cas_required = False
        self.delete_version_after = 0
        self.keys: dict[str, Key] = {}

    # -- helpers -----------------------------------------------------------------------

    def _deleted(self, ver: Version, now: int) -> bool:
        return ver.deletion_ns is not None and ver.deletion_ns <= now

    def _meta(self, key: Key, number: int, ver: Version) -> dict[str, Any]:
        return {
            "created_time": rfc3339(ver.created_ns),
            "custom_metadata": key.custom_metadata,
            "deletion_time": rfc3339(ver.deletion_ns),
            "destroyed": ver.destroyed,
            "version": number,
        }

    def _dva(self, key: Key) -> int:
        return key.delete_version_after or self.delete_version_after

    def exists(self, name: str) -> bool:
        return name in self.keys

    # -- data/ -------------------------------------------------------------------------

    def read(self, name: str, version: int = 0) -> dict[str, Any]:
        key = self.keys.get(name)
        if key is None:
            raise ApiError(404)
        number = version if version > 0 else key.current_version
        ver = key.versions.get(number)
        if ver is None:
            raise ApiError(404)
        meta = self._meta(key, number, ver)
        if ver.destroyed or self._deleted(ver, self.wall.now_ns()):
            raise RawNotFound({"data": None, "metadata": meta})
        return {"data": copy.deepcopy(ver.data), "metadata": meta}

    def write(
        self, name: str, data: Any, options: Any = None, actor: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if name == "":
            raise ApiError(400, "missing path")
        if self.openbao and data is not gofields.NO_DATA:
            data = gofields.data_value(data)  # measured conversions (KV2-AC-342)
        elif not isinstance(data, dict):
            raise ApiError(400, "no data provided")
        key = self.keys.get(name)
        current = key.current_version if key is not None else 0
        required = self.cas_required or (key is not None and key.cas_required)
        opts = options if isinstance(options, dict) else {}
        if "cas" in opts and (self.openbao or opts["cas"] is not None):
            cas = self._cas(opts["cas"])
            if cas != current:
                raise ApiError(400, "check-and-set parameter did not match the current version")
        elif required:
            raise ApiError(400, "check-and-set parameter required for this call")
        now = self.wall.now_ns()
        if key is None:
            key = Key(created_ns=now, updated_ns=now)
            self.keys[name] = key
        operation = "create" if key.current_version == 0 else "update"
        key.current_version += 1
        key.updated_ns = now
        stamp = dict(actor, operation=operation) if actor and self.attribution else None
        key.last_updated_by = stamp
        stored = go_float64(data) if self.openbao else copy.deepcopy(data)
        ver = Version(created_ns=now, data=stored, created_by=stamp)
        if self._dva(key):
            ver.deletion_ns = now + self._dva(key) * 1_000_000_000
        key.versions[key.current_version] = ver
        self._prune(key)
        return self._meta(key, key.current_version, ver)

    def _cas(self, raw: Any) -> int:
        if self.openbao:
            return gofields.cas_value(raw)
        try:
            return int(raw)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "error parsing check-and-set parameter") from exc

    def _prune(self, key: Key) -> None:
        limit = key.max_versions or self.max_versions or DEFAULT_MAX_VERSIONS
        if key.current_version - key.oldest_version >= limit:
            new_oldest = key.current_version - limit + 1
            for number in range(key.oldest_version, new_oldest):
                key.versions.pop(number, None)
            key.oldest_version = new_oldest

    def patch(
        self, name: str, body: dict[str, Any], actor: dict[str, str] | None
    ) -> dict[str, Any]:
        key = self.keys.get(name)
        if key is None or key.current_version not in key.versions:
            raise ApiError(404)
        ver = key.versions[key.current_version]
        if ver.destroyed or self._deleted(ver, self.wall.now_ns()):
            raise ApiError(404)
        if not isinstance(body.get("data"), dict):
            raise ApiError(400, "no data provided")
        merged = merge_patch(ver.data or {}, body["data"])
        return self.write(name, merged, body.get("options"), actor)

    def delete_latest(self, name: str, actor: dict[str, str] | None = None) -> None:
        key = self.keys.get(name)
        if key is None:
            return
        ver = key.versions.get(key.current_version)
        now = self.wall.now_ns()
        if ver is None or ver.destroyed or self._deleted(ver, now):
            return
        ver.deletion_ns = now
        ver.deleted_by = dict(actor, operation="delete") if actor and self.attribution else None

    def delete_versions(
        self, name: str, body: dict[str, Any], actor: dict[str, str] | None
    ) -> None:
        numbers = fields.versions_arg(body, "No version number provided")
        key = self.keys.get(name)
        if key is None:
            return
        now = self.wall.now_ns()
        for number in numbers:
            ver = key.versions.get(number)
            if ver is None or ver.destroyed or self._deleted(ver, now):
                continue
            ver.deletion_ns = now
            ver.deleted_by = dict(actor, operation="delete") if actor and self.attribution else None

    def undelete_versions(self, name: str, body: dict[str, Any]) -> None:
        numbers = fields.versions_arg(body, "No version number provided")
        key = self.keys.get(name)
        if key is None:
            return
        now = self.wall.now_ns()
        for number in numbers:
            ver = key.versions.get(number)
            if ver is None or ver.destroyed:
                continue
            dva = self._dva(key)
            ver.deletion_ns = now + dva * 1_000_000_000 if dva else None
            ver.deleted_by = None

    def destroy_versions(self, name: str, body: dict[str, Any]) -> None:
        numbers = fields.versions_arg(body, "no version number provided")
        key = self.keys.get(name)
        if key is None:
            return
        for number in numbers:
            ver = key.versions.get(number)
            if ver is not None:
                ver.destroyed = True
                ver.data = None

    def subkeys(self, name: str, version: int = 0) -> dict[str, Any]:
        result = self.read(name, version)
        return {"subkeys": _subkeys(result["data"]), "metadata": result["metadata"]}

    # -- metadata/ ---------------------------------------------------------------------

    def read_metadata(self, name: str, openbao: bool) -> dict[str, Any]:
        key = self.keys.get(name)
        if key is None:
            raise ApiError(404)
        versions: dict[str, Any] = {}
        for number, ver in key.versions.items():
            entry: dict[str, Any] = {
                "created_time": rfc3339(ver.created_ns),
                "deletion_time": rfc3339(ver.deletion_ns),
                "destroyed": ver.destroyed,
            }
            if self.attribution:
                entry["created_by"] = ver.created_by
                entry["deleted_by"] = ver.deleted_by
            versions[str(number)] = entry
        data: dict[str, Any] = {
            "cas_required": key.cas_required,
            "created_time": rfc3339(key.created_ns),
            "current_version": key.current_version,
            "custom_metadata": key.custom_metadata,
            "delete_version_after": format_duration(key.delete_version_after),
            "max_versions": key.max_versions,
            "oldest_version": key.oldest_version,
            "updated_time": rfc3339(key.updated_ns),
            "versions": versions,
        }
        if self.attribution:
            data["last_updated_by"] = key.last_updated_by
        if openbao:
            data["current_metadata_version"] = key.metadata_version
            data["metadata_cas_required"] = False
        return data

    def write_metadata(self, name: str, body: dict[str, Any]) -> None:
        if name == "" or name.endswith("/"):
            raise ApiError(
                400, "missing path" if name == "" else "cannot write to a path ending in '/'"
            )
        if self.openbao:
            max_versions = gofields.int_field(body, "max_versions")
            dva = gofields.duration_field(body, "delete_version_after")
        else:
            max_versions = fields.int_field(body, "max_versions")
            dva = fields.duration_field(body, "delete_version_after")
        cas_required = fields.bool_field(body, "cas_required")
        custom = body.get("custom_metadata")
        custom_md: dict[str, str] | None = None
        if custom is not None:
            check = gofields.custom_metadata if self.openbao else fields.validate_custom_metadata
            custom_md = check(custom)
        now = self.wall.now_ns()
        key = self.keys.get(name)
        if key is None:
            key = Key(created_ns=now, updated_ns=now)
            self.keys[name] = key
        if max_versions is not None:
            key.max_versions = max_versions
        if cas_required is not None:
            key.cas_required = cas_required
        if dva is not None:
            key.delete_version_after = dva
        if custom_md is not None:
            key.custom_metadata = custom_md
        key.updated_ns = now
        key.metadata_version += 1

    def delete_metadata(self, name: str) -> None:
        self.keys.pop(name, None)

    def list(self, prefix: str) -> list[str]:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        found: set[str] = set()
        for name in self.keys:
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            head, sep, _ = rest.partition("/")
            found.add(head + "/" if sep else head)
        found.discard("")
        if not found:
            raise ApiError(404)  # empty list -> 404 {"errors":[]} (§2.4)
        return sorted(found)

    def list_detailed(self, prefix: str, after: str, limit: int) -> dict[str, Any]:
        """OpenBao's ``detailed-metadata/`` listing (measured on 2.7, KV2-AC-504): the keys
        after ``after`` (exclusive), ``limit`` of them (<= 0: all), and ``key_info`` with each
        key's metadata (``{}`` for a folder); nothing left -> 404 {"errors":[]}."""
        names = [name for name in self.list(prefix) if not after or name > after]
        if limit > 0:
            names = names[:limit]
        if not names:
            raise ApiError(404)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        info = {
            name: {} if name.endswith("/") else self.read_metadata(prefix + name, openbao=True)
            for name in names
        }
        return {"keys": names, "key_info": info}

    # -- config ------------------------------------------------------------------------

    def read_config(self) -> dict[str, Any]:
        return {
            "cas_required": self.cas_required,
            "delete_version_after": format_duration(self.delete_version_after),
            "max_versions": self.max_versions,
        }

    def write_config(self, body: dict[str, Any]) -> None:
        max_versions = fields.int_field(body, "max_versions")
        cas_required = fields.bool_field(body, "cas_required")
        dva = fields.duration_field(body, "delete_version_after")
        if max_versions is not None:
            self.max_versions = max_versions
        if cas_required is not None:
            self.cas_required = cas_required
        if dva is not None:
            self.delete_version_after = dva


class KvV1:
    """One KV v1 mount: unversioned key -> object (kv2-wire.md §2.8)."""

    version = 1

    def __init__(self, path: str) -> None:
        self.path = path
        self.keys: dict[str, dict[str, Any]] = {}

    def exists(self, name: str) -> bool:
        return name in self.keys

    def read(self, name: str) -> dict[str, Any]:
        if name not in self.keys:
            raise ApiError(404)
        return copy.deepcopy(self.keys[name])

    def write(self, name: str, data: dict[str, Any]) -> None:
        if name == "":
            raise ApiError(400, "missing path")
        self.keys[name] = copy.deepcopy(data)

    def delete(self, name: str) -> None:
        self.keys.pop(name, None)

    def list(self, prefix: str) -> list[str]:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        found = set()
        for name in self.keys:
            if name.startswith(prefix):
                head, sep, _ = name[len(prefix) :].partition("/")
                found.add(head + "/" if sep else head)
        found.discard("")
        if not found:
            raise ApiError(404)
        return sorted(found)
