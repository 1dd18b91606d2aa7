"""Change detection by folder listing: which due secrets need no read this poll (issue 18).

    Daemon._pass -> FolderLister.unchanged(store, due, cache, now) -> the secrets not to read
                 -> FolderLister.after_reads(fetched, now, store)   (a listing that lied,
                                                                     a token that was bad)
    Daemon.reload -> FolderLister.reset()                           (probe every folder again)

For each folder with at least two due latest-version secrets, one ``detailed-metadata/``
listing (store/listing.py) replaces their reads when it shows each unchanged
(polling.unchanged, KV2-INV-500). A folder whose listing is not offered (a server without
the path, a policy without ``list``, too many keys) is remembered and its secrets are read
as before: said once at INFO, probed again after :data:`RECHECK` seconds or on a reload
(KV2-INV-501). A listing that fails otherwise (network, 5xx, a timeout) is not retried:
the group is read this poll, and its listing rests for a minute, doubling at each failure
in a row up to :data:`RECHECK` (KV2-FC-502), so a failing path never delays the reads.
Listings show a secret unchanged for at most :data:`REREAD` seconds: after that it is read
anyway, so a read permission the policy lost shows within the hour, as in read mode
(KV2-INV-505).

Log lines name the mount and the folder only: never a key the config does not watch, never
``custom_metadata`` (KV2-INV-503).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import Protocol

from kv2render.daemon import polling
from kv2render.daemon.polling import Fetched, Folder
from kv2render.errors import Kv2RenderError
from kv2render.model import SecretVersion
from kv2render.refs import SecretLocation
from kv2render.store.backoff import backoff
from kv2render.store.listing import FolderVersions, NotOffered, max_pages

log = logging.getLogger(__name__)

# A folder whose listing was not offered is probed again after an hour: a policy that gains
# `list`, or a server upgraded to offer the path, pays off without a restart, for one request
# per folder per hour (the daemon's idle wake-up is hourly too, loop.MAX_WAIT).
RECHECK = 3600.0
# A listing that failed rests this long, doubled for each failure in a row (KV2-FC-502).
FAILED_REST = 60.0
# A secret the listings show unchanged is read at least this often (KV2-INV-505).
REREAD = 3600.0
_EXACT = random.Random(0)  # backoff's rng; with jitter 0 it draws 1.0 whatever its state


class _Lister(Protocol):
    """A store's ``list_folder`` (store.client.ListingStore)."""

    def __call__(
        self, mount: str, folder: str, names: list[str], *, max_requests: int
    ) -> FolderVersions | NotOffered: ...


class FolderLister:
    """Remembers the folders not to list, and counts what listing did (metrics)."""

    def __init__(self, *, on_listing: Callable[[str, str], None] | None = None) -> None:
        self._skip: dict[Folder, float] = {}  # folder -> when to probe it again
        self._failures: dict[Folder, int] = {}  # folder -> listings failed in a row
        self._told: set[Folder] = set()  # folders whose fallback was logged at INFO
        self._empty: dict[Folder, dict[str, SecretLocation]] = {}  # listed empty this pass
        self._denied: set[Folder] = set()  # refused with a 403 this pass
        self._token: object = None  # the store's token_info when this pass's listings began
        self._on_listing = on_listing or (lambda mount, result: None)
        self.listings = 0  # listing requests, all passes (tests, benchmarks)

    def reset(self) -> None:
        """A reload: every folder is probed again, and a refusal said again."""
        self._skip.clear()
        self._told.clear()
        self._failures.clear()

    def unchanged(
        self,
        store: object,
        due: set[SecretLocation],
        cache: Mapping[SecretLocation, SecretVersion],
        now: float,
    ) -> set[SecretLocation]:
        """The secrets of ``due`` a folder listing shows unchanged (not to be read)."""
        self._empty, self._denied = {}, set()
        self._token = getattr(store, "token_info", None)
        lister = getattr(store, "list_folder", None)
        if lister is None:
            return set()
        same: set[SecretLocation] = set()
        for key, members in sorted(polling.by_folder(due).items()):
            # One listing must cost fewer requests than the reads it replaces (KV2-INV-502).
            if len(members) < 2 or self._skip.get(key, now) > now:
                continue
            got = self._list(lister, key, members, now)
            if isinstance(got, FolderVersions):
                if not got.keys:
                    self._empty[key] = members
                same |= polling.unchanged(got, members, cache)
        return same

    def _list(
        self, lister: _Lister, key: Folder, members: dict[str, SecretLocation], now: float
    ) -> FolderVersions | NotOffered | None:
        mount, folder = key
        where = f"{mount}/detailed-metadata/{folder}"
        try:
            pages = max_pages(len(members))
            got = lister(mount, folder, sorted(members), max_requests=pages)
        except Kv2RenderError as exc:
            self.listings += 1
            self._on_listing(mount, "failed")
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            # The one backoff, unjittered: the rest is exact (KV2-FC-502), so rng is unused.
            rest = backoff(failures, base=FAILED_REST, cap=RECHECK, rng=_EXACT, jitter=0.0)
            self._skip[key] = now + rest
            # The class only: the text may quote a server's words; the reads say the rest.
            log.debug(
                "%s: listing failed (%s, %d in a row); reading its secrets, listing again in %d s",
                where,
                type(exc).__name__,
                failures,
                rest,
            )
            return None
        self._failures.pop(key, None)
        if isinstance(got, NotOffered):
            self.listings += 1
            self._on_listing(mount, "not_offered")
            self._refuse(key, where, got.reason, now)
            if got.reason.startswith("403"):
                self._denied.add(key)
            return got
        self.listings += got.requests
        self._on_listing(mount, "ok")
        log.debug("%s: listed in %d request(s)", where, got.requests)
        return got

    def _refuse(self, key: Folder, where: str, reason: str, now: float) -> None:
        self._skip[key] = now + RECHECK
        level = logging.DEBUG if key in self._told else logging.INFO
        self._told.add(key)
        log.log(
            level,
            "cannot list %s (%s); polling each secret instead (probed again in %d min or on "
            "reload)",
            where,
            reason,
            RECHECK // 60,
        )

    def after_reads(self, fetched: Fetched, now: float, store: object = None) -> None:
        """After the pass's reads. A folder listed as empty whose secrets then read fine does
        not list what it holds (a server answering 404 to a path it does not offer): not
        offered. A 403 on a listing while the token was bad (OpenBao answers a bare
        "permission denied" to an expired or revoked token too; the reads logged in again)
        says nothing of the policy: that folder is listed again at the next poll."""
        for key, members in self._empty.items():
            if any(isinstance(fetched.get(loc), SecretVersion) for loc in members.values()):
                mount, folder = key
                where = f"{mount}/detailed-metadata/{folder}"
                self._refuse(key, where, "its answer omits existing secrets", now)
        if self._denied and getattr(store, "token_info", None) is not self._token:
            for key in self._denied:
                self._skip.pop(key, None)
        self._empty, self._denied = {}, set()
