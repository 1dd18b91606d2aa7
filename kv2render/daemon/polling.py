"""What a poll learned, and when each secret is read next: the loop's polling decisions.

    runner.read_secrets -> absorb(cache, fetched) -> (new versions, errors); cache updated
    each latest-version secret -> next_poll(...) -> its next read time (KV2-INV-160, KV2-INV-172)
    a failed template -> retry_delay(...) -> its restart backoff (KV2-FC-161, KV2-FC-163)
    due secrets -> by_folder(...) -> one listing per folder -> unchanged(...) -> not read
                   (issue 18, KV2-INV-500; the listing itself: daemon/listing.py)

The loop (:mod:`kv2render.daemon.loop`) owns the cache and the due times; these functions
hold the rules, so polling bugs are fixed here and tested through the loop's scripted
clock (tests/unit/test_loop.py).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping

from kv2render.errors import AccessDeniedError, BadResponseError, Kv2RenderError
from kv2render.model import SecretVersion
from kv2render.refs import SecretLocation
from kv2render.store.backoff import backoff
from kv2render.store.listing import FolderVersions, metadata_digest

log = logging.getLogger(__name__)

TEMPLATE_BACKOFF = (1.0, 300.0)  # KV2-FC-161: a failed template's restart backoff

Fetched = Mapping[SecretLocation, SecretVersion | Kv2RenderError]
Folder = tuple[str, str]  # (mount, folder): the folder ends in "/" or is "" (the mount's root)
Outcome = tuple[set[SecretLocation], dict[SecretLocation, Kv2RenderError]]


def absorb(cache: MutableMapping[SecretLocation, SecretVersion], fetched: Fetched) -> Outcome:
    """Cache what was read; return the locations with a new version and the errors."""
    changed: set[SecretLocation] = set()
    errors: dict[SecretLocation, Kv2RenderError] = {}
    for loc, got in fetched.items():
        if isinstance(got, Kv2RenderError):
            errors[loc] = got
            continue
        old = cache.get(loc)
        if old is not None and loc.version is None and got.version < old.version:
            # issue 10: a version going backwards is refused; the last good file stays.
            errors[loc] = BadResponseError(
                f"the server reported version {got.version} after version {old.version}",
                where=str(loc),
                hint="if the secret was deleted and re-created, reload kv2render (SIGHUP)",
            )
            continue
        if old is not None and loc.version is None and recreated(old, got.version, got.metadata):
            # KV2-FC-501: the same number with another creation time is another secret: it
            # was deleted (metadata and all) and written again. Refused as FC-280 refuses a
            # lower number, and for the same reason the file is kept: the daemon cannot tell
            # a re-creation from a restore, and the operator can (one SIGHUP).
            errors[loc] = BadResponseError(
                f"the server reported version {got.version} again, created at another time: "
                "the secret was deleted and re-created",
                where=str(loc),
                hint="reload kv2render (SIGHUP) to follow the re-created secret",
            )
            continue
        if old is None or old.version != got.version:
            changed.add(loc)
            if old is not None:
                log.info("%s: new version %d (was %d)", loc, got.version, old.version)
        cache[loc] = got
    return changed, errors


def recreated(old: SecretVersion, version: int, metadata: Mapping[str, object]) -> bool:
    """True when ``version`` is ``old``'s number but its ``created_time`` differs: a secret
    deleted and re-created between two polls (KV2-FC-501). A server that sends no
    ``created_time`` cannot tell, and is trusted as before."""
    before, now = old.metadata.get("created_time"), metadata.get("created_time")
    return (
        version == old.version
        and isinstance(before, str)
        and isinstance(now, str)
        and before != ""
        and now != ""
        and not same_instant(before, now)
    )


# RFC 3339 as KV2 servers write it: seconds, an optional fraction, Z or an offset.
_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)\Z")


def same_instant(a: str, b: str) -> bool:
    """Whether two RFC 3339 times name the same instant at the precision both carry.

    One secret's ``created_time`` can change spelling without changing: OpenBao 2.4.3 went
    from Go's RFC3339 (whole seconds, truncated) to RFC3339Nano for KV timestamps (GH-1872),
    so a server upgraded under a running daemon reports ``...T10:00:00Z`` as
    ``...T10:00:00.123456789Z``, and RFC3339Nano drops trailing zeros. Texts that do not
    parse are compared as they are."""
    if a == b:
        return True
    ma, mb = _STAMP.match(a), _STAMP.match(b)
    if ma is None or mb is None:
        return False
    from datetime import datetime

    try:
        if datetime.fromisoformat(ma[1] + ma[3]) != datetime.fromisoformat(mb[1] + mb[3]):
            return False
    except ValueError:
        return False
    fa, fb = (ma[2] or "").rstrip("0"), (mb[2] or "").rstrip("0")
    if not fa or not fb:
        return True  # whole seconds on one side: the other was truncated to them
    n = min(len(fa), len(fb))
    return fa[:n] == fb[:n]


def next_poll(
    due: Mapping[SecretLocation, float],
    loc: SecretLocation,
    *,
    base: float,
    now: float,
    interval_of: Callable[[SecretLocation], float],
    jitter: Callable[[float], float],
) -> float:
    """Next poll of ``loc`` at ``base`` (when this pass started) + interval +-10 %,
    joining another secret's poll when that time is also in range: secrets read together
    stay together (one wake-up, not N). A pass that overran the interval polls again at
    once rather than in a burst of catch-up polls."""
    interval = interval_of(loc)
    low, high = base + 0.9 * interval, base + 1.1 * interval
    for other, when in due.items():
        if other != loc and low <= when <= high and interval_of(other) == interval:
            return max(when, now)
    return max(base + jitter(interval), now)


def retry_delay(
    err: Kv2RenderError, failures: int, *, next_poll: Callable[[], float], rng: random.Random
) -> float:
    """How long a failed template waits before it renders again (unless a good poll of
    all its secrets ends the failure first, KV2-INV-162)."""
    if isinstance(err, AccessDeniedError):
        # KV2-FC-163: denied after the store's fresh login is a real denial; look
        # again at the next poll only, never in a login loop.
        return next_poll()
    return backoff(
        failures,
        base=TEMPLATE_BACKOFF[0],
        cap=TEMPLATE_BACKOFF[1],
        rng=rng,
        retry_after=err.retry_after,
    )


def by_folder(locations: Iterable[SecretLocation]) -> dict[Folder, dict[str, SecretLocation]]:
    """Latest-version locations grouped by folder: {(mount, folder): {name: location}}.

    A location whose path was computed from a secret value is left out (KV2-INV-497): its
    folder would name the value in a log line, so it is read as before."""
    groups: dict[Folder, dict[str, SecretLocation]] = {}
    for loc in locations:
        if loc.version is not None or (loc.shown_mount, loc.shown_path) != (loc.mount, loc.path):
            continue
        head, sep, name = loc.path.rpartition("/")
        groups.setdefault((loc.mount, head + sep), {})[name] = loc
    return groups


def unchanged(
    listing: FolderVersions,
    members: Mapping[str, SecretLocation],
    cache: Mapping[SecretLocation, SecretVersion],
) -> set[SecretLocation]:
    """The members a folder listing shows unchanged: present, current version equal to the
    cached one, and that version neither deleted nor destroyed (KV2-INV-500). A KV2 version's
    data never changes, so these need no read; every other member is read as in read mode."""
    same: set[SecretLocation] = set()
    for name, loc in members.items():
        state = listing.keys.get(name)
        cached = cache.get(loc)
        if state is not None and state.plain and cached is not None:
            # Another created_time at the same number: read it, so absorb refuses it as in
            # read mode (KV2-FC-501).
            stamp = {"created_time": state.created_time}
            if (
                state.current_version == cached.version
                and not recreated(cached, state.current_version, stamp)
                # custom_metadata changes without a version; a read brings the new one into
                # the cache, as read mode does at every poll (KV2-INV-504).
                and (
                    state.custom is None
                    or state.custom == metadata_digest(cached.metadata.get("custom_metadata"))
                )
            ):
                same.add(loc)
    return same
