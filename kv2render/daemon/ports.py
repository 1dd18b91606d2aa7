"""What the daemon loop needs from the world around it, as types.

    store_factory(cfg) -> DaemonStore   reads and the token (store.client.HvacSecretStore)
    DaemonHooks                         where the loop's results go: files, commands,
                                        systemd, the status file, metrics, the watcher,
                                        the process supervisor's PassHook

:class:`kv2render.daemon.loop.Daemon` takes these as arguments, so its unit tests pass
fakes (tests/fakes.py, tests/unit/test_loop.py) and :mod:`kv2render.daemon.service` the
real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kv2render.daemon.metrics import NullRecorder
from kv2render.daemon.notify import Notifier
from kv2render.errors import Kv2RenderError
from kv2render.model import SecretVersion, TokenInfo
from kv2render.output.status import StatusFile
from kv2render.refs import SecretLocation
from kv2render.runner import CommandResult, RenderResult
from kv2render.store.auth import Authenticator


class DaemonStore(Protocol):
    """SecretStore plus the token lifecycle (vault.HvacSecretStore; FakeSecretStore in tests).

    A store that also has ``list_folder`` (store.client.ListingStore) lets the loop check a
    folder's secrets with one listing (daemon/listing.py, KV2-INV-500); without it, every due
    secret is read."""

    def read(self, location: SecretLocation) -> SecretVersion: ...

    def close(self) -> None: ...

    def login(self) -> TokenInfo | None: ...

    def renew(self) -> TokenInfo: ...

    @property
    def token_info(self) -> TokenInfo | None: ...

    @property
    def authenticator(self) -> Authenticator:
        """Its auth method: the credential files a change of which means a new login."""
        ...


RunCommands = Callable[[Sequence[RenderResult]], tuple[CommandResult, ...]]


class PassHook(Protocol):
    """More secrets to poll, and what to do with them after each pass (the process
    supervisor, daemon/supervisor.py, KV2-INV-471). The loop reads and caches them as its
    templates' secrets; the hook gets the cache and this pass's read errors."""

    @property
    def locations(self) -> frozenset[SecretLocation]: ...

    def after_pass(
        self,
        secrets: Mapping[SecretLocation, SecretVersion],
        errors: Mapping[SecretLocation, Kv2RenderError],
    ) -> None: ...


@dataclass(frozen=True)
class DaemonHooks:
    """Where the loop's results go; ``None`` means the production default."""

    # runner.render_rounds's writer; None: output.writer.write_atomic.
    write: Callable[..., bool] | None = None
    # None: runner.run_changed_commands with the daemon's secrets redacted (KV2-INV-397).
    run_commands: RunCommands | None = None
    # None: a Notifier with no socket (sends nothing).
    notifier: Notifier | None = None
    # None: the status file of the config (cfg.status_file), replaced on a reload.
    status_file: StatusFile | None = None
    # Told the files to watch at start and after each reload (service.Watcher.update).
    on_watch: Callable[[frozenset[Path]], None] | None = None
    # Issue 17: None is a no-op recorder, the metrics listener off (KV2-NFR-420).
    metrics: NullRecorder | None = None
    # The process supervisor (KV2-INV-471).
    pass_hook: PassHook | None = None
