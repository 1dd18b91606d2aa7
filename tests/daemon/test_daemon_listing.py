"""Change detection by folder listing with the dev server (issue 18): the daemon process.

Real CLI subprocess -> real hvac -> dev server over a socket. The openbao flavour offers the
``detailed-metadata/`` listing; the vault flavour answers 404, as HashiCorp Vault does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kv2render.devserver import DevServer
from kv2render.store import listing
from kv2render.store.listing import FolderVersions, NotOffered
from tests.daemon.conftest import INTERVAL, Daemon, make_config, read_text, reads, wait_for

SENTINEL = "s3ntinel-LISTED-5e1d"
NAMES = ("a", "b", "c")


def _templates(workdir: Path) -> list[dict[str, object]]:
    return [
        {
            "ref": f"vault+kv2:///secret/app/{n}#password",
            "destination": str(workdir / "out" / n),
            "create_dest_dirs": True,
        }
        for n in NAMES
    ]


def _root_auth(srv: DevServer, workdir: Path) -> dict[str, object]:
    token = workdir / "token"
    token.write_text(srv.root_token + "\n")
    token.chmod(0o600)
    return {"method": {"type": "token_file", "config": {"token_file_path": str(token)}}}


def _listings(srv: DevServer) -> int:
    return srv.request_count("GET", "/v1/secret/detailed-metadata/")


def _rendered(workdir: Path) -> bool:
    return all(read_text(workdir / "out" / n) == f"{SENTINEL}-{n}" for n in NAMES)


def _seed(srv: DevServer) -> None:
    for n in NAMES:
        srv.put(f"app/{n}", {"password": f"{SENTINEL}-{n}"})
        srv.write_metadata(f"app/{n}", custom_metadata={"note": f"{SENTINEL}-custom"})


def test_vault_flavour_falls_back_to_reads_and_never_retries_the_listing_each_poll(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-505 KV2-INV-501: a server without the listing (404, as HashiCorp Vault):
    one probe, one INFO line, then each poll reads every secret; no listing per poll."""
    _seed(dev_server)
    tree = make_config(
        dev_server, workdir, _templates(workdir), auto_auth=_root_auth(dev_server, workdir)
    )
    daemon = start_daemon(tree)
    wait_for(lambda: _rendered(workdir), 15, "first render", proc=daemon)
    time.sleep(4.2 * INTERVAL)
    assert _listings(dev_server) == 1
    assert reads(dev_server, "app/a") >= 4  # the first pass and each poll
    code, _ = daemon.terminate()
    log = daemon.log()
    assert code == 0
    said = "cannot list secret/detailed-metadata/app/ (404 "
    assert log.count(said) == 1, log[-2000:]
    assert "polling each secret instead" in log
    assert SENTINEL not in log


def test_openbao_flavour_lists_and_logs_no_value_or_custom_metadata(
    workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-503 KV2-INV-503 KV2-AC-504: the openbao flavour offers the listing: polls are
    listings, a change is read once and lands; at debug level the log holds no secret value
    and no custom_metadata."""
    with DevServer(flavor="openbao") as srv:
        _seed(srv)
        tree = make_config(srv, workdir, _templates(workdir), auto_auth=_root_auth(srv, workdir))
        daemon = start_daemon(tree)
        wait_for(lambda: _rendered(workdir), 15, "first render", proc=daemon)
        time.sleep(3.2 * INTERVAL)
        assert reads(srv, "app/a") == 1  # the first pass only
        assert _listings(srv) >= 2
        srv.put("app/b", {"password": f"{SENTINEL}-b2"})
        wait_for(
            lambda: read_text(workdir / "out" / "b") == f"{SENTINEL}-b2",
            INTERVAL * 1.1 + 2,
            "the change",
            proc=daemon,
        )
        assert reads(srv, "app/b") == 2 and reads(srv, "app/a") == 1
        code, _ = daemon.terminate()
    log = daemon.log()
    assert code == 0
    assert "listed in 1 request" in log  # debug level: the listing is logged, as metadata
    assert SENTINEL not in log


def test_pages_are_bounded_by_the_reads_they_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    """KV2-AC-504 KV2-INV-502: pages start just before the first watched name and stop after
    the last; a listing that would need as many requests as the reads it replaces gives up."""
    from kv2render.config import AuthSettings, Config, TemplateConfig, VaultSettings
    from kv2render.config.auth import TokenEnvSettings
    from kv2render.store.client import open_store

    monkeypatch.setattr(listing, "PAGE_LIMIT", 2)
    with DevServer(flavor="openbao") as srv:
        for n in range(1, 8):
            srv.put(f"big/k{n}", {"k": n})
        cfg = Config(
            path=None,
            vault=VaultSettings(address=srv.url, num_retries=0),
            auth=AuthSettings(
                type="token_env",
                config=TokenEnvSettings(token=srv.root_token, variable="VAULT_TOKEN"),
            ),
            template_config=TemplateConfig(),
            templates=(),
        )
        store = open_store(cfg)
        try:
            srv.reset_counters()
            near = store.list_folder("secret", "big/", ["k3", "k4"], max_requests=1)
            assert near == FolderVersions(
                {"k3": listing.KeyState(1, True), "k4": listing.KeyState(1, True)}, 1
            )
            # One page: it started after "k2" and stopped at "k4".
            assert srv.request_count("GET", "/v1/secret/detailed-metadata/") == 1
            spread = store.list_folder("secret", "big/", ["k1", "k7", "k4"], max_requests=2)
            assert isinstance(spread, NotOffered) and "too many keys" in spread.reason
            wide = store.list_folder("secret", "big/", ["k1", "k7", "k4"], max_requests=4)
            assert isinstance(wide, FolderVersions) and wide.requests == 4
            assert set(wide.keys) == {"k1", "k4", "k7"}
        finally:
            store.close()


def test_a_failing_listing_is_not_retried_and_the_reads_are_not_delayed() -> None:
    """KV2-AC-514 KV2-FC-502: a listing page answered 500 raises at once, after one request
    and no backoff wait, where a read would use the whole retry budget (12 retries, up to a
    minute apart): the daemon reads the folder's secrets in the same pass instead."""
    from kv2render.config import AuthSettings, Config, TemplateConfig, VaultSettings
    from kv2render.config.auth import TokenEnvSettings
    from kv2render.errors import TransientError
    from kv2render.refs import SecretLocation
    from kv2render.store.client import open_store

    waits: list[float] = []
    with DevServer(flavor="openbao") as srv:
        srv.put("app/a", {"password": f"{SENTINEL}-a"})
        srv.put("app/b", {"password": f"{SENTINEL}-b"})
        cfg = Config(
            path=None,
            vault=VaultSettings(address=srv.url),  # the default retry budget: 12
            auth=AuthSettings(
                type="token_env",
                config=TokenEnvSettings(token=srv.root_token, variable="VAULT_TOKEN"),
            ),
            template_config=TemplateConfig(),
            templates=(),
        )
        store = open_store(cfg, sleep=waits.append)
        try:
            store.login()
            srv.reset_counters()
            srv.faults.status, srv.faults.fail_next = 500, 1
            started = time.monotonic()
            with pytest.raises(TransientError) as caught:
                store.list_folder("secret", "app/", ["a", "b"], max_requests=1)
            assert time.monotonic() - started < 2.0 and waits == []
            assert _listings(srv) == 1
            assert SENTINEL not in str(caught.value)
            # A read still has its retries: the same fault once more is retried and read.
            srv.faults.status, srv.faults.fail_next = 500, 1
            got = store.read(SecretLocation("secret", "app/a"))
            assert got.version == 1 and len(waits) == 1
        finally:
            store.close()
