"""Fakes shared by the test modules: kv2render's own protocols, in memory (STYLE.md convention 6).

``FakeSecretStore`` is the one fake of ``vault.SecretStore`` plus the daemon's token lifecycle
(``loop.DaemonStore``). It is not free to invent behaviour: ``tests/contract/
test_secret_store_contract.py`` runs the same cases against it, against ``HvacSecretStore`` on
the embedded dev server and against ``HvacSecretStore`` on the real OpenBao server
(KV2-AC-450..375). Where the fake and the real store differ, the fake is wrong.

What it models from the real server (measured, ../shared/reference/openbao-real.md):

* every read returns a fresh copy of the version's data, decoded the way the real store decodes
  a response: numbers are ``jsonnum`` numbers carrying the server's text, and that text is what
  OpenBao sends back (it stores numbers as float64: ``1.50`` reads back ``1.5``, ``1e3`` as
  ``1000``, ``1e-7`` as ``1e-7``; KV2-AC-454);
* ``data.metadata`` has the five KV v2 keys (``created_time``, ``custom_metadata``,
  ``deletion_time``, ``destroyed``, ``version``);
* a missing path or version is ``SecretNotFoundError``, a soft-deleted version
  ``SecretDeletedError``, a destroyed one ``SecretDestroyedError``, a path the token's policy
  does not cover ``AccessDeniedError`` (configured with :meth:`FakeSecretStore.deny`);
* ``list_folder`` (issue 18) answers as ``HvacSecretStore.list_folder`` does on the real
  server when built with ``listing=True`` (each watched key's current version, deleted or
  destroyed as not plain, pages of ``listing.page_limit``); by default it answers NotOffered,
  as a HashiCorp Vault server does, so that read-mode tests count reads as before;
* login returns a ``TokenInfo`` for every token (root: ``ttl=None, renewable=False``); renewing
  a root or non-renewable token is refused with ``AuthError`` (the server answers 400 "lease is
  not renewable").
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kv2render import jsonnum
from kv2render.devserver.numbers import float64_text
from kv2render.errors import (
    AccessDeniedError,
    AuthError,
    Kv2RenderError,
    SecretDeletedError,
    SecretDestroyedError,
    SecretNotFoundError,
)
from kv2render.model import SecretVersion, TokenInfo
from kv2render.refs import SecretLocation
from kv2render.store import listing

__all__ = [
    "FakeAuthenticator",
    "FakeClock",
    "FakeSecretStore",
    "openbao_number_text",
]

_EPOCH = 1_700_000_000.0  # the fake's wall clock: this plus the fake monotonic clock


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class FakeAuthenticator:
    """What loop.py asks of a store's authenticator: the credential files to watch."""

    def __init__(self) -> None:
        self.files: tuple[Path, ...] = ()

    def credential_files(self) -> tuple[Path, ...]:
        return self.files


# -- numbers as the real OpenBao server returns them -------------------------------------------


def openbao_number_text(text: str) -> str:
    """The JSON text OpenBao sends back for a number written as ``text``.

    KV v2 decodes a write into Go ``float64`` values and re-encodes them with Go's
    ``encoding/json``. Measured on the real server: ``1.50`` -> ``1.5``, ``1e3`` -> ``1000``,
    ``-0`` -> ``-0``, ``12345678901234567890`` -> ``12345678901234567000`` (openbao-real.md).
    The dev server's openbao flavour models the same, so both use its ``float64_text``;
    tests/contract checks the pair against the real server on the hard cases (KV2-AC-454).
    """
    return float64_text(float(text))


def _as_openbao_stores(value: Any) -> Any:
    """``value`` (decoded by jsonnum) with every number replaced by what OpenBao returns."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        text = jsonnum.number_text(value) or json.dumps(value)
        canonical = openbao_number_text(text)
        is_int = all(ch in "-0123456789" for ch in canonical)
        return jsonnum.JsonInt(canonical) if is_int else jsonnum.JsonFloat(canonical)
    if isinstance(value, Mapping):
        return {key: _as_openbao_stores(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_openbao_stores(item) for item in value]
    raise TypeError(f"not a JSON value: {type(value).__name__}")


# -- the store ----------------------------------------------------------------------------------


def _stamp(created: float) -> str:
    """A fake wall-clock second as KV2 metadata writes it (RFC 3339, UTC, ``Z``)."""
    return datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class _Version:
    body: str  # data.data as the server would send it (JSON text): each read decodes a copy
    created: float  # fake wall-clock seconds
    deleted: bool = False
    destroyed: bool = False


class FakeSecretStore:
    """kv2render's SecretStore and token lifecycle, in memory, counting every call.

    ``put``/``put_json``/``delete``/``undelete``/``destroy``/``deny`` are the operator's side
    (what ``bao kv put``/``delete``/``destroy`` and a policy do); ``read``/``login``/``renew``/
    ``token_info``/``close`` are the protocol the package uses. ``fail`` injects any error
    (``None`` as the key: every read); ``rollback`` forgets the newest version, as a server
    restored from an older backup would.
    """

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        secrets: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        ttl: float | None = None,
        renewable: bool = False,
        listing: bool = False,
    ) -> None:
        self.clock: Any = clock if clock is not None else FakeClock()
        self.lock = threading.Lock()  # the runner reads from a thread pool
        self.data: dict[tuple[str, str], list[_Version]] = {}
        self.reads: dict[SecretLocation, int] = {}
        self.fail: dict[SecretLocation | None, Kv2RenderError] = {}  # None: every read
        self.denied: set[tuple[str, str]] = set()
        # Folder listings (issue 18). ``listing`` False: the server does not offer them, as
        # HashiCorp Vault (404 unsupported path), so a test of read mode counts reads as
        # before; True: as the real OpenBao server. `unlistable` folders ((mount, folder))
        # answer NotOffered as a policy without `list` would (403).
        self.listing_refused: str | None = None if listing else "404 unsupported path"
        self.unlistable: set[tuple[str, str]] = set()
        self.listings: dict[tuple[str, str], int] = {}
        self.list_fail: Kv2RenderError | None = None
        # Key-level custom_metadata ((mount, path) -> value): it changes without a new
        # version (`kv metadata put -custom-metadata`); reads and listings both carry it.
        self.custom_metadata: dict[tuple[str, str], Any] = {}
        self.logins = 0
        self.renewals = 0
        self.login_errors: list[Kv2RenderError] = []
        self.renew_errors: list[Kv2RenderError] = []
        self.ttl = ttl  # None: a root token (no expiry)
        self.renewable = renewable
        self.max_expiry: float | None = None  # absolute fake time a renewal cannot pass
        self._token_info: TokenInfo | None = None
        self.authenticator = FakeAuthenticator()
        self.closed = False
        for mount_path, values in (secrets or {}).items():
            self.put(mount_path, **values)

    # -- the operator's side -------------------------------------------------------------------

    @staticmethod
    def _key(mount_path: str) -> tuple[str, str]:
        mount, path = mount_path.split("/", 1)
        return mount, path

    def put(self, mount_path: str, **values: Any) -> int:
        """Write a new version of ``mount/path``; returns its number (1, 2, ...)."""
        return self.put_json(mount_path, json.dumps(values))

    def put_json(self, mount_path: str, text: str) -> int:
        """Write ``text`` (a JSON object, numbers written as they appear) as a new version."""
        decoded = jsonnum.loads(text)
        if not isinstance(decoded, dict):
            raise TypeError("a KV2 secret is a JSON object")
        body = jsonnum.dumps(_as_openbao_stores(decoded))
        with self.lock:
            versions = self.data.setdefault(self._key(mount_path), [])
            versions.append(_Version(body, _EPOCH + self.clock()))
            return len(versions)

    def delete(self, mount_path: str, versions: tuple[int, ...] = ()) -> None:
        """Soft-delete ``versions`` (default: the latest), as ``DELETE .../data/<path>``."""
        with self.lock:
            stored = self.data[self._key(mount_path)]
            for number in versions or (len(stored),):
                stored[number - 1].deleted = True

    def undelete(self, mount_path: str, versions: tuple[int, ...]) -> None:
        with self.lock:
            stored = self.data[self._key(mount_path)]
            for number in versions:
                stored[number - 1].deleted = False

    def destroy(self, mount_path: str, versions: tuple[int, ...]) -> None:
        """Destroy ``versions``: their data is gone for good."""
        with self.lock:
            stored = self.data[self._key(mount_path)]
            for number in versions:
                stored[number - 1].destroyed = True
                stored[number - 1].body = "{}"

    def set_custom_metadata(self, mount_path: str, value: Mapping[str, str] | None) -> None:
        """``kv metadata put -custom-metadata``: the key's metadata, no new version."""
        with self.lock:
            self.custom_metadata[self._key(mount_path)] = dict(value) if value else None

    def deny(self, mount_path: str) -> None:
        """The token's policy does not cover ``mount/path``: reads get a 403."""
        self.denied.add(self._key(mount_path))

    def recreate(self, mount_path: str, **values: Any) -> int:
        """Delete ``mount/path`` with its metadata and write ``values`` again: version 1
        once more, with a later created_time (``vault kv metadata delete`` then ``put``)."""
        with self.lock:
            old = self.data.pop(self._key(mount_path), [])
            self.custom_metadata.pop(self._key(mount_path), None)
            newest = max((v.created for v in old), default=0.0)
            body = jsonnum.dumps(_as_openbao_stores(values))
            created = max(_EPOCH + self.clock(), newest + 0.001)
            self.data[self._key(mount_path)] = [_Version(body, created)]
            return 1

    def rollback(self, mount_path: str) -> None:
        """Forget the newest version (a server restored from an older backup)."""
        with self.lock:
            self.data[self._key(mount_path)].pop()

    # -- the SecretStore protocol ----------------------------------------------------------------

    def read(self, location: SecretLocation) -> SecretVersion:
        where = str(location)
        with self.lock:
            self.reads[location] = self.reads.get(location, 0) + 1
            for key in (location, None):
                if key in self.fail:
                    raise self.fail[key]
            if (location.mount, location.path) in self.denied:
                raise AccessDeniedError(
                    "permission denied (403): permission denied",
                    where=where,
                    hint=f'grant "read" on "{location.mount}/data/{location.path}"',
                )
            versions = self.data.get((location.mount, location.path), [])
            number = location.version or len(versions)
            if not 1 <= number <= len(versions):
                if location.version is not None:
                    raise SecretNotFoundError(
                        f"no version {location.version} at this path", where=where
                    )
                raise SecretNotFoundError("no secret at this path", where=where)
            stored = versions[number - 1]
            if stored.destroyed:
                raise SecretDestroyedError(
                    f"version {number} is destroyed; its data is gone", where=where
                )
            if stored.deleted:
                raise SecretDeletedError(f"version {number} is deleted", where=where)
            metadata = {
                "created_time": _stamp(stored.created),
                "custom_metadata": self.custom_metadata.get((location.mount, location.path)),
                "deletion_time": "",
                "destroyed": False,
                "version": jsonnum.JsonInt(str(number)),
            }
            return SecretVersion(location, number, jsonnum.loads(stored.body), metadata)

    def list_folder(
        self, mount: str, folder: str, names: Any, *, max_requests: int
    ) -> listing.FolderVersions | listing.NotOffered:
        """What HvacSecretStore.list_folder answers, from the versions in memory: the
        watched names' current versions, pages of listing.page_limit keys from just before the
        first watched name (KV2-INV-502)."""
        with self.lock:
            self.listings[(mount, folder)] = self.listings.get((mount, folder), 0) + 1
            if self.list_fail is not None:
                raise self.list_fail
            if self.listing_refused is not None:
                return listing.NotOffered(self.listing_refused)
            if (mount, folder) in self.unlistable:
                return listing.NotOffered("403 permission denied")
            keys: set[str] = set()
            states: dict[str, listing.KeyState] = {}
            for (m, path), versions in self.data.items():
                if m != mount or not path.startswith(folder) or not versions:
                    continue
                rest = path[len(folder) :]
                head, sep, _ = rest.partition("/")
                keys.add(head + sep)
                if not sep and rest in names:
                    top = versions[-1]
                    states[rest] = listing.KeyState(
                        len(versions),
                        not top.deleted and not top.destroyed,
                        _stamp(top.created),
                        listing.metadata_digest(self.custom_metadata.get((m, path))),
                    )
        after = listing.page_after(names) or ""
        ordered = sorted(k for k in keys if k > after)
        last = max(names)
        pages = 1
        limit = listing.page_limit(len(names))
        while len(ordered) > limit and ordered[limit - 1] < last:
            ordered = ordered[limit:]
            pages += 1
            if pages > max_requests:
                return listing.NotOffered("it holds too many keys to list")
        return listing.FolderVersions(states, pages)

    def close(self) -> None:
        self.closed = True

    # -- the token lifecycle (loop.DaemonStore) --------------------------------------------------

    def login(self) -> TokenInfo:
        self.logins += 1
        if self.login_errors:
            raise self.login_errors.pop(0)
        if self.ttl is None:  # a root token: lookup-self says ttl 0, not renewable
            self._token_info = TokenInfo(None, False, self.clock())
        else:
            self._token_info = TokenInfo(self.ttl, self.renewable, self.clock())
        return self._token_info

    def renew(self) -> TokenInfo:
        self.renewals += 1
        if self.renew_errors:
            raise self.renew_errors.pop(0)
        if self.ttl is None or not self.renewable:
            # The real server answers 400 {"errors": ["lease is not renewable"]}.
            raise AuthError("renew refused (400): lease is not renewable", where="renew-self")
        ttl = self.ttl
        if self.max_expiry is not None:
            ttl = max(0.0, min(ttl, self.max_expiry - self.clock()))
        self._token_info = TokenInfo(ttl, self.renewable, self.clock())
        return self._token_info

    @property
    def token_info(self) -> TokenInfo | None:
        return self._token_info
