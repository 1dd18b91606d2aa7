"""Process hardening for ``--once`` and the daemon, and the one test of "loopback".

* :func:`disable_core_dumps` (KV2-INV-380): a core dump of kv2render holds whatever was in
  memory: tokens, ``secret_id``s, rendered files. ``RLIMIT_CORE`` goes to 0 and, on Linux,
  ``PR_SET_DUMPABLE`` to 0, which also keeps processes of the same user (without
  ``CAP_SYS_PTRACE``) from reading ``/proc/<pid>/environ``, ``mem`` or ``fd``. Only the soft
  limit is lowered, so a command kv2render runs may raise its own limit again; the dumpable
  flag is reset by ``execve``, so commands are not affected by it.
  ``KV2RENDER_ALLOW_CORE_DUMPS=1`` leaves both alone, for debugging a crash.
* the loopback test of KV2-INV-381 is :func:`kv2render.authority.is_loopback_host`
  (``localhost``, 127.0.0.0/8 in any ``inet_aton`` spelling such as ``127.1``, ``::1`` and
  IPv4-mapped loopback ``::ffff:127.0.0.1``; a name such as ``127.example.com`` is not
  loopback).
* :func:`command_environment` (KV2-INV-096, KV2-INV-101): the environment a child sees, a
  ``command`` run after a write (``output/commands.py``) and a consul-template ``env`` call
  (``render/prepare.py``) alike: kv2render's own, minus every credential it was given
  through the environment and hvac's own fallbacks (``VAULT_TOKEN``, ``BAO_TOKEN``, ...).

Standard library only, so that every part of kv2render (the dev server included) may use it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping

__all__ = [
    "ALLOW_CORE_DUMPS",
    "LazyCommandEnvironment",
    "command_environment",
    "disable_core_dumps",
]

log = logging.getLogger(__name__)

ALLOW_CORE_DUMPS = "KV2RENDER_ALLOW_CORE_DUMPS"
_PR_SET_DUMPABLE = 4  # <linux/prctl.h>

# Names a command's environment never inherits (KV2-INV-096): any credential
# kv2render was given through the environment, and hvac's own fallbacks.
_COMMAND_ENV_DENY_PREFIXES = ("VAULT_", "BAO_", "KV2RENDER_LIVE_")
_COMMAND_ENV_ALLOW = frozenset(
    {"VAULT_ADDR", "BAO_ADDR", "VAULT_NAMESPACE", "BAO_NAMESPACE", "VAULT_CACERT", "BAO_CACERT"}
)


def disable_core_dumps(env: Mapping[str, str] | None = None) -> bool:
    """Turn core dumps off for this process (KV2-INV-380); False when the operator kept them.

    Called at the start of ``--once`` and of the daemon, before the first login. Never raises:
    a platform without ``resource`` or ``prctl`` gets a log line and runs on.
    """
    environ = os.environ if env is None else env
    if environ.get(ALLOW_CORE_DUMPS, "") == "1":
        log.warning(
            "%s=1: core dumps stay enabled; a core file of this process may hold tokens and "
            "secret values: keep it as secret as they are",
            ALLOW_CORE_DUMPS,
        )
        return False
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    except (ImportError, OSError, ValueError) as exc:
        log.warning("could not set RLIMIT_CORE to 0 (%s): core dumps may stay on", exc)
    if sys.platform.startswith("linux"):
        _not_dumpable()
    log.debug(
        "core dumps disabled (RLIMIT_CORE 0, not dumpable); %s=1 keeps them", ALLOW_CORE_DUMPS
    )
    return True


def _not_dumpable() -> None:
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        zero = ctypes.c_ulong(0)
        failed = libc.prctl(_PR_SET_DUMPABLE, zero, zero, zero, zero) != 0
        err = ctypes.get_errno()
    except (OSError, AttributeError) as exc:
        log.warning("prctl(PR_SET_DUMPABLE) is not available (%s)", type(exc).__name__)
        return
    if failed:
        log.warning("prctl(PR_SET_DUMPABLE, 0) failed: %s", os.strerror(err))


def command_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a command runs with: kv2render's own, minus credentials (KV2-INV-096)."""
    source = os.environ if base is None else base
    return {
        name: value
        for name, value in source.items()
        if name in _COMMAND_ENV_ALLOW or not name.startswith(_COMMAND_ENV_DENY_PREFIXES)
    }


class LazyCommandEnvironment(Mapping[str, str]):
    """:func:`command_environment`, taken on first use: a template that never calls
    ``env`` does not copy the environment at each render (100 templates: ~12 ms of a
    pass, KV2-NFR-240)."""

    def __init__(self) -> None:
        self._env: dict[str, str] | None = None

    def _get(self) -> dict[str, str]:
        if self._env is None:
            self._env = command_environment()
        return self._env

    def __getitem__(self, name: str) -> str:
        return self._get()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())
