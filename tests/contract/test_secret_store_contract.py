"""One contract for kv2render's SecretStore (+ the daemon's token lifecycle), three stores.

Every case runs, unchanged, against:

* ``fake``: ``tests.fakes.FakeSecretStore``, the fake the unit tests build the daemon on;
* ``devserver``: ``HvacSecretStore`` built by ``vault.open_store`` from a ``Config`` (as
  ``app.render_once`` builds it), on the embedded dev server (openbao flavour) with a fake
  clock shared by the server and the store;
* ``openbao``: the same ``HvacSecretStore`` on the REAL OpenBao server (``bao server -dev``,
  the session's ``bao_server``; marked ``openbao``).

The fake is not allowed to drift: where it differs from the real store the fake is fixed, not
the contract (KV2-AC-450). A property is in the contract only when all three share it. The
text of a number is OpenBao's for all three (the real server stores float64; the fake and the
dev server's openbao flavour model it, KV2-AC-454); a HashiCorp Vault server keeps the literal
instead, so that part is OpenBao-specific, and the value itself is what every KV2 server keeps.

Contract properties (each case cites its rule):
  read latest / pinned -> SecretVersion(location, version, data, metadata with the KV v2 keys);
  missing path or version -> SecretNotFoundError; soft-deleted -> SecretDeletedError; destroyed
  -> SecretDestroyedError; policy denial -> AccessDeniedError naming the path to grant; all exit
  4; a write makes the version number grow; each read is a fresh copy; login -> TokenInfo (a
  TTL token: its ttl, renewable; root: no expiry, not renewable); token_info is the login's
  answer; renew extends a renewable token's expiry and refuses root with AuthError (exit 3);
  close twice is fine; list_folder -> the watched names' current versions (deleted or
  destroyed: not plain; absent: not in the folder), an empty folder has none, a policy
  without ``list`` is NotOffered (KV2-AC-507).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest
import requests

from kv2render import jsonnum
from kv2render.config import AuthSettings, Config, TemplateConfig, VaultSettings
from kv2render.config.methods import TokenFileSettings
from kv2render.daemon.ports import DaemonStore
from kv2render.errors import (
    AccessDeniedError,
    AuthError,
    SecretDeletedError,
    SecretDestroyedError,
    SecretNotFoundError,
)
from kv2render.model import SecretVersion, TokenInfo
from kv2render.refs import SecretLocation
from kv2render.store.client import open_store
from tests.fakes import FakeClock, FakeSecretStore
from tests.realbao import unique

if TYPE_CHECKING:
    from kv2render.devserver import DevServer
    from tests.realbao import BaoServer

TTL = 600  # seconds: a token with a lifetime, renewable
JSON = "application/json"
KV2_METADATA_KEYS = {"created_time", "custom_metadata", "deletion_time", "destroyed", "version"}


class Backend(Protocol):
    """The operator's side of one store under test: write, delete, grant, and build stores."""

    name: str

    def put(self, path: str, data: Mapping[str, Any]) -> int: ...

    def put_json(self, path: str, text: str) -> int: ...

    def delete_latest(self, path: str) -> None: ...

    def destroy(self, path: str, version: int) -> None: ...

    def set_custom_metadata(self, path: str, value: Mapping[str, str]) -> None:
        """``kv metadata put -custom-metadata``: key-level metadata, no new version."""
        ...

    def store(self, token: str) -> DaemonStore:
        """A store logged in with ``token``: 'root', 'ttl' (TTL s, renewable) or 'limited'
        (may read only ``secret/<allowed>``, see :meth:`limit`)."""
        ...

    def limit(self, allowed: str, denied: str) -> None: ...

    def advance(self, seconds: float) -> None: ...


# -- the three backends --------------------------------------------------------------------------


class FakeBackend:
    name = "fake"

    def __init__(self) -> None:
        self.clock = FakeClock()
        self._shared = FakeSecretStore(self.clock)

    def put(self, path: str, data: Mapping[str, Any]) -> int:
        return self._shared.put(f"secret/{path}", **data)

    def put_json(self, path: str, text: str) -> int:
        return self._shared.put_json(f"secret/{path}", text)

    def delete_latest(self, path: str) -> None:
        self._shared.delete(f"secret/{path}")

    def destroy(self, path: str, version: int) -> None:
        self._shared.destroy(f"secret/{path}", (version,))

    def set_custom_metadata(self, path: str, value: Mapping[str, str]) -> None:
        self._shared.set_custom_metadata(f"secret/{path}", value)

    def store(self, token: str) -> DaemonStore:
        # One data set, many clients: each store shares the written versions (as several
        # clients of one server do) and has its own token.
        # listing=True: the contract's servers offer folder listings (OpenBao, issue 18).
        store = FakeSecretStore(self.clock, listing=True)
        store.data = self._shared.data
        store.lock = self._shared.lock
        store.custom_metadata = self._shared.custom_metadata
        if token == "ttl":
            store.ttl, store.renewable = float(TTL), True
        if token == "limited":
            store.denied = self._shared.denied
            store.listing_refused = "403 permission denied"  # a policy without `list`
        return store

    def limit(self, allowed: str, denied: str) -> None:
        self._shared.deny(f"secret/{denied}")

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


def _store_from_config(address: str, token_file: Path, clock: Callable[[], float]) -> DaemonStore:
    """``vault.open_store`` on a Config, as app.render_once builds the real store."""
    cfg = Config(
        path=None,
        vault=VaultSettings(address=address, num_retries=0, timeout=10.0),
        auth=AuthSettings(type="token_file", config=TokenFileSettings(token_file)),
        template_config=TemplateConfig(),
        templates=(),
    )
    return open_store(cfg, clock=clock)


@dataclass
class _Tokens:
    directory: Path

    def file(self, token: str) -> Path:
        path = self.directory / f"token-{len(list(self.directory.iterdir()))}"
        path.write_text(token, encoding="utf-8")
        path.chmod(0o600)
        return path


class DevServerBackend:
    name = "devserver"

    def __init__(self, server: DevServer, clock: FakeClock, tokens: Path) -> None:
        self.server = server
        self.clock = clock
        self.tokens = _Tokens(tokens)
        self.prefix = unique("contract")
        self._limited = server.root_token

    def put(self, path: str, data: Mapping[str, Any]) -> int:
        return self.server.put(f"{self.prefix}/{path}", data)

    def put_json(self, path: str, text: str) -> int:
        # Over HTTP, as an operator's client writes it: the number literals as written.
        resp = requests.post(
            f"{self.server.url}/v1/secret/data/{self.prefix}/{path}",
            data=f'{{"data": {text}}}'.encode(),
            headers={"X-Vault-Token": self.server.root_token, "Content-Type": JSON},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        return int(resp.json()["data"]["version"])

    def delete_latest(self, path: str) -> None:
        self.server.delete(f"{self.prefix}/{path}")

    def destroy(self, path: str, version: int) -> None:
        self.server.destroy(f"{self.prefix}/{path}", [version])

    def set_custom_metadata(self, path: str, value: Mapping[str, str]) -> None:
        self.server.write_metadata(f"{self.prefix}/{path}", custom_metadata=dict(value))

    def location(self, path: str) -> str:
        return f"{self.prefix}/{path}"

    def store(self, token: str) -> DaemonStore:
        value = {
            "root": self.server.root_token,
            "ttl": self.server.create_token(["default"], ttl=TTL, renewable=True),
            "limited": self._limited,
        }[token]
        return _store_from_config(self.server.url, self.tokens.file(value), self.clock)

    def limit(self, allowed: str, denied: str) -> None:
        name = unique("policy")
        self.server.add_policy(name, {f"secret/data/{self.prefix}/{allowed}": ["read"]})
        self._limited = self.server.create_token([name], ttl=TTL)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


class OpenBaoBackend:
    name = "openbao"

    def __init__(self, server: BaoServer, tokens: Path) -> None:
        self.server = server
        self.tokens = _Tokens(tokens)
        self.prefix = unique("contract")
        self._limited = server.root_token

    def put(self, path: str, data: Mapping[str, Any]) -> int:
        return self.server.kv_put(f"{self.prefix}/{path}", data)

    def put_json(self, path: str, text: str) -> int:
        return self.server.kv_put_raw(f"{self.prefix}/{path}", f'{{"data": {text}}}')

    def delete_latest(self, path: str) -> None:
        self.server.api("DELETE", f"secret/data/{self.prefix}/{path}")

    def destroy(self, path: str, version: int) -> None:
        self.server.api("PUT", f"secret/destroy/{self.prefix}/{path}", {"versions": [version]})

    def set_custom_metadata(self, path: str, value: Mapping[str, str]) -> None:
        body = {"custom_metadata": dict(value)}
        self.server.api("POST", f"secret/metadata/{self.prefix}/{path}", body)

    def store(self, token: str) -> DaemonStore:
        value = {
            "root": self.server.root_token,
            "ttl": self.server.create_token(ttl=f"{TTL}s", renewable=True),
            "limited": self._limited,
        }[token]
        return _store_from_config(self.server.address, self.tokens.file(value), time.monotonic)

    def limit(self, allowed: str, denied: str) -> None:
        name = unique("policy")
        rule = f'path "secret/data/{self.prefix}/{allowed}" {{ capabilities = ["read"] }}\n'
        self.server.put_policy(name, rule)
        self._limited = self.server.create_token(policies=[name], ttl=f"{TTL}s")

    def advance(self, seconds: float) -> None:
        # The real server's clock cannot be faked (openbao-real.md "Clock"): let time pass.
        # Its TTLs are whole seconds, so a renewal shows after a little over one second.
        time.sleep(min(seconds, 2.1))


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(
    params=[
        "fake",
        "devserver",
        pytest.param("openbao", marks=pytest.mark.openbao),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    tokens = tmp_path / "tokens"
    tokens.mkdir(mode=0o700)
    if request.param == "fake":
        yield FakeBackend()
    elif request.param == "devserver":
        from kv2render.devserver import DevServer

        clock = FakeClock()
        server = DevServer(flavor="openbao", clock=clock).start()
        try:
            yield DevServerBackend(server, clock, tokens)
        finally:
            server.stop()
    else:
        yield OpenBaoBackend(request.getfixturevalue("bao_server"), tokens)


def loc(backend: Backend, path: str, version: int | None = None) -> SecretLocation:
    """Where ``path`` (relative to the backend's own prefix) lives on its server."""
    prefix = getattr(backend, "prefix", None)
    return SecretLocation("secret", f"{prefix}/{path}" if prefix else path, version)


@pytest.fixture
def store(backend: Backend) -> Iterator[DaemonStore]:
    opened = backend.store("root")
    try:
        yield opened
    finally:
        opened.close()


# -- reads ---------------------------------------------------------------------------------------


def test_read_latest_returns_data_version_and_kv2_metadata(
    backend: Backend, store: DaemonStore
) -> None:
    """KV2-AC-451: the latest version: its data, its number, and data.metadata with the five
    KV v2 keys (what the consul-template engine's ``.Data.metadata`` shows)."""
    backend.put("app/db", {"password": "pw-1", "user": "app"})
    backend.put("app/db", {"password": "pw-2", "user": "app"})
    where = loc(backend, "app/db")
    got = store.read(where)
    assert isinstance(got, SecretVersion)
    assert got.location == where
    assert got.version == 2
    assert dict(got.data) == {"password": "pw-2", "user": "app"}
    assert set(got.metadata) == KV2_METADATA_KEYS
    assert got.metadata["version"] == 2
    assert got.metadata["destroyed"] is False
    assert got.metadata["deletion_time"] == ""
    assert got.metadata["custom_metadata"] is None
    created = got.metadata["created_time"]
    assert isinstance(created, str) and created.endswith("Z") and "T" in created
    assert "pw-2" not in repr(got)  # KV2-INV-001: data never in a repr


def test_read_pinned_version(backend: Backend, store: DaemonStore) -> None:
    """KV2-AC-451: ``?version=N`` returns that version, not the latest."""
    backend.put("app/pin", {"k": "one"})
    backend.put("app/pin", {"k": "two"})
    got = store.read(loc(backend, "app/pin", 1))
    assert got.version == 1 and dict(got.data) == {"k": "one"}


def test_a_write_makes_the_version_number_grow(backend: Backend, store: DaemonStore) -> None:
    """KV2-AC-451: a new write is a higher version on the next read (what the daemon's
    change detection relies on, KV2-INV-163)."""
    first = backend.put("app/grow", {"k": "a"})
    before = store.read(loc(backend, "app/grow"))
    second = backend.put("app/grow", {"k": "b"})
    after = store.read(loc(backend, "app/grow"))
    assert (first, second) == (1, 2)
    assert before.version == 1 and after.version == 2 and dict(after.data) == {"k": "b"}


def test_each_read_is_a_fresh_copy(backend: Backend, store: DaemonStore) -> None:
    """KV2-AC-451: changing what a read returned changes nothing stored."""
    backend.put("app/copy", {"k": "v", "nested": {"a": [1, 2]}})
    first = store.read(loc(backend, "app/copy"))
    first.data["k"] = "changed"  # type: ignore[index]
    first.data["nested"]["a"].append(3)
    again = store.read(loc(backend, "app/copy"))
    assert dict(again.data) == {"k": "v", "nested": {"a": [1, 2]}}


def test_missing_path_and_missing_version_are_not_found(
    backend: Backend, store: DaemonStore
) -> None:
    """KV2-AC-452: nothing at the path, or no such version: SecretNotFoundError (exit 4),
    neither the deleted nor the destroyed subclass, naming the location."""
    backend.put("app/exists", {"k": "v"})
    for where in (loc(backend, "app/nothing-here"), loc(backend, "app/exists", 9)):
        with pytest.raises(SecretNotFoundError) as caught:
            store.read(where)
        assert type(caught.value) is SecretNotFoundError
        assert caught.value.exit_code == 4
        assert caught.value.where == str(where)


def test_soft_deleted_latest_is_deleted_and_older_versions_still_read(
    backend: Backend, store: DaemonStore
) -> None:
    """KV2-AC-452: a soft-deleted latest version is SecretDeletedError (exit 4); a pinned
    older version still reads."""
    backend.put("app/del", {"k": "old"})
    backend.put("app/del", {"k": "s3ntinel-deleted"})
    backend.delete_latest("app/del")
    with pytest.raises(SecretDeletedError) as caught:
        store.read(loc(backend, "app/del"))
    assert caught.value.exit_code == 4 and "s3ntinel" not in str(caught.value)
    assert dict(store.read(loc(backend, "app/del", 1)).data) == {"k": "old"}


def test_destroyed_version_is_destroyed(backend: Backend, store: DaemonStore) -> None:
    """KV2-AC-452: a destroyed version is SecretDestroyedError (exit 4), latest or pinned."""
    backend.put("app/gone", {"k": "secret-gone"})
    backend.destroy("app/gone", 1)
    for where in (loc(backend, "app/gone"), loc(backend, "app/gone", 1)):
        with pytest.raises(SecretDestroyedError) as caught:
            store.read(where)
        assert caught.value.exit_code == 4 and "secret-gone" not in str(caught.value)


def test_policy_denial_is_access_denied_naming_what_to_grant(backend: Backend) -> None:
    """KV2-AC-452: a path the token's policy does not cover: AccessDeniedError (exit 4) whose
    hint names the KV2 data path to grant; the allowed path still reads."""
    backend.put("app/allowed", {"k": "yes"})
    backend.put("app/denied", {"k": "no-such-luck"})
    backend.limit("app/allowed", "app/denied")
    limited = backend.store("limited")
    try:
        assert dict(limited.read(loc(backend, "app/allowed")).data) == {"k": "yes"}
        where = loc(backend, "app/denied")
        with pytest.raises(AccessDeniedError) as caught:
            limited.read(where)
    finally:
        limited.close()
    error = caught.value
    assert error.exit_code == 4 and error.where == str(where)
    assert error.hint is not None and f"secret/data/{where.path}" in error.hint
    assert "no-such-luck" not in str(error)


# -- numbers -------------------------------------------------------------------------------------

NUMBERS = '{"a": 1.50, "b": 1e3, "c": 42, "d": 1e-7, "e": -0, "f": 0.25}'
# What the real OpenBao server sends back for NUMBERS (measured, openbao-real.md): it stores
# float64 values. The fake models it, and so does the dev server's openbao flavour; a HashiCorp
# Vault server (the dev server's vault flavour) keeps the literal, which is outside this contract.
OPENBAO_TEXT = {"a": "1.5", "b": "1000", "c": "42", "d": "1e-7", "e": "-0", "f": "0.25"}


def test_numbers_keep_the_text_their_server_sends(backend: Backend, store: DaemonStore) -> None:
    """KV2-AC-454: every number comes back as a number carrying a JSON text that decodes to
    the value written, sign of zero included (templates print the server's text,
    KV2-AC-258), and that text is OpenBao's: ``1.50`` -> ``1.5``, ``1e3`` -> ``1000``. A
    server that keeps literals (HashiCorp Vault) would pass the first part, not the second."""
    backend.put_json("app/numbers", NUMBERS)
    got = store.read(loc(backend, "app/numbers"))
    written = jsonnum.loads(NUMBERS)
    texts = {}
    for key, value in got.data.items():
        text = jsonnum.number_text(value)
        assert text is not None, f"{key}: a number without its server text"
        literal = float(str(jsonnum.number_text(written[key])))
        assert float(text) == literal
        assert math.copysign(1, float(text)) == math.copysign(1, literal)
        texts[key] = text
    assert texts == OPENBAO_TEXT


@pytest.mark.openbao
def test_fake_number_text_matches_openbao_on_hard_cases(
    bao_server: BaoServer, tmp_path: Path
) -> None:
    """KV2-AC-454: the fake's model of OpenBao's number text, checked against the real server
    on the cases where Go and Python print floats differently (exponent ranges, -0, float64
    rounding of a big integer)."""
    cases = [
        "1.50", "1e3", "1.5e3", "1e-7", "1.5e-7", "1e-6", "0.000001", "1e20", "1e21", "1e22",
        "-0", "-0.0", "12345678901234567890", "9007199254740993", "3.14159265358979323846",
        "5e-324", "1.7976931348623157e308", "100", "-12.50",
    ]  # fmt: skip
    body = "{" + ", ".join(f'"k{i}": {text}' for i, text in enumerate(cases)) + "}"
    path = unique("contract-numbers")
    bao_server.kv_put_raw(path, f'{{"data": {body}}}')
    token = _Tokens(tmp_path).file(bao_server.root_token)
    store = _store_from_config(bao_server.address, token, time.monotonic)
    try:
        real = store.read(SecretLocation("secret", path)).data
    finally:
        store.close()
    fake = FakeSecretStore()
    fake.put_json("secret/n", body)
    modelled = fake.read(SecretLocation("secret", "n")).data
    assert {k: jsonnum.number_text(v) for k, v in modelled.items()} == {
        k: jsonnum.number_text(v) for k, v in real.items()
    }


# -- tokens --------------------------------------------------------------------------------------


def test_login_with_a_ttl_token_returns_its_ttl_and_renewability(backend: Backend) -> None:
    """KV2-AC-453: login -> TokenInfo(ttl ~ the token's TTL, renewable=True, learned_at now);
    token_info is None before the first login and the login's answer after it."""
    store = backend.store("ttl")
    try:
        assert store.token_info is None
        info = store.login()
        assert isinstance(info, TokenInfo)
        assert info.ttl is not None and TTL - 5 <= info.ttl <= TTL
        assert info.renewable is True
        assert store.token_info == info
    finally:
        store.close()


def test_login_with_root_has_no_expiry(backend: Backend, store: DaemonStore) -> None:
    """KV2-AC-453: a root token: TokenInfo(ttl=None, renewable=False): nothing to renew, no
    re-login scheduled (KV2-INV-164)."""
    info = store.login()
    assert isinstance(info, TokenInfo)
    assert info.ttl is None and info.renewable is False
    assert store.token_info == info


def test_renew_extends_a_renewable_token(backend: Backend) -> None:
    """KV2-AC-453: renew-self on a renewable token moves its expiry later (learned_at + ttl
    grows) and keeps it renewable."""
    store = backend.store("ttl")
    try:
        first = store.login()
        assert first is not None and first.ttl is not None
        backend.advance(30.0)
        renewed = store.renew()
        assert renewed.renewable is True and renewed.ttl is not None
        assert renewed.learned_at + renewed.ttl > first.learned_at + first.ttl
        assert store.token_info == renewed
    finally:
        store.close()


def test_renewing_root_is_refused(backend: Backend, store: DaemonStore) -> None:
    """KV2-AC-453: a root token cannot be renewed: the server answers 400 "lease is not
    renewable", an AuthError (exit 3) the daemon answers with a new login (KV2-AC-170)."""
    store.login()
    with pytest.raises(AuthError) as caught:
        store.renew()
    assert caught.value.exit_code == 3


def test_close_is_idempotent(backend: Backend) -> None:
    """KV2-AC-451: close() twice raises nothing."""
    store = backend.store("root")
    store.close()
    store.close()


# -- folder listings (issue 18) ---------------------------------------------------------------


def _folder(backend: Backend) -> tuple[str, str]:
    where = loc(backend, "lst/x")
    return where.mount, where.path.rpartition("/")[0] + "/"


def test_list_folder_tells_each_watched_current_version(
    backend: Backend, store: DaemonStore
) -> None:
    """KV2-AC-507 KV2-INV-500: one request tells each watched key's current version and
    whether it is plainly readable; a name not in the folder is absent."""
    from kv2render.store.listing import FolderVersions, KeyState

    backend.put("lst/x", {"k": "1"})
    backend.put("lst/x", {"k": "2"})
    backend.put("lst/y", {"k": "1"})
    backend.put("lst/z", {"k": "s3ntinel-listed"})
    backend.delete_latest("lst/z")
    backend.put("lst/w", {"k": "1"})
    backend.destroy("lst/w", 1)
    backend.put("lst/sub/deep", {"k": "1"})
    mount, folder = _folder(backend)
    names = ["x", "y", "z", "w", "missing"]
    got = store.list_folder(mount, folder, names, max_requests=4)  # type: ignore[attr-defined]
    assert got == FolderVersions(
        {
            "x": KeyState(2, True),
            "y": KeyState(1, True),
            "z": KeyState(1, False),
            "w": KeyState(1, False),
        },
        1,
    )
    assert "s3ntinel" not in repr(got)


def test_list_folder_custom_metadata_digest_matches_the_read(
    backend: Backend, store: DaemonStore
) -> None:
    """KV2-AC-512 KV2-INV-504: a listed key's custom_metadata digest equals the digest of
    what a read of it returns in data.metadata, before and after `kv metadata put`, and
    differs once the metadata changed; the listing's repr shows no metadata text."""
    from kv2render.store.listing import metadata_digest

    backend.put("cm/a", {"k": "1"})
    backend.put("cm/b", {"k": "1"})
    where = loc(backend, "cm/a")
    mount, folder = where.mount, where.path.rpartition("/")[0] + "/"

    def listed_and_read() -> tuple[str | None, str]:
        got = store.list_folder(mount, folder, ["a", "b"], max_requests=2)  # type: ignore[attr-defined]
        read = store.read(where).metadata.get("custom_metadata")
        assert "s3ntinel" not in repr(got)
        return got.keys["a"].custom, metadata_digest(read)

    assert listed_and_read() == ("", "")
    backend.set_custom_metadata("cm/a", {"owner": "s3ntinel-team"})
    listed, read = listed_and_read()
    assert listed == read != ""
    backend.set_custom_metadata("cm/a", {"owner": "s3ntinel-other"})
    assert listed_and_read()[0] not in ("", listed)


def test_list_folder_of_an_empty_folder_has_no_keys(backend: Backend, store: DaemonStore) -> None:
    """KV2-AC-507 KV2-INV-501: an empty folder (404 with no error text) is not a refusal."""
    from kv2render.store.listing import FolderVersions

    mount, folder = _folder(backend)
    got = store.list_folder(  # type: ignore[attr-defined]
        mount, folder.replace("lst/", "nothing-here/"), ["a", "b"], max_requests=1
    )
    assert got == FolderVersions({}, 1)


def test_list_folder_without_list_in_the_policy_is_not_offered(backend: Backend) -> None:
    """KV2-AC-507 KV2-INV-501: a token whose policy grants ``read`` on data paths only gets
    NotOffered (403 permission denied), not an error."""
    from kv2render.store.listing import NotOffered

    backend.put("lst/allowed", {"k": "yes"})
    backend.limit("lst/allowed", "lst/other")
    limited = backend.store("limited")
    try:
        mount, folder = _folder(backend)
        got = limited.list_folder(  # type: ignore[attr-defined]
            mount, folder, ["allowed", "other"], max_requests=1
        )
    finally:
        limited.close()
    assert isinstance(got, NotOffered) and got.reason.startswith("403 permission denied")
