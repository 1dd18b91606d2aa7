"""A folder's current versions in one request: the KV2 ``detailed-metadata/`` listing (issue 18).

    HvacSecretStore.list_folder(mount, folder, names, max_requests)
      -> FolderVersions{name: KeyState(current_version, plain, created_time, custom)}
      -> NotOffered(reason)                                        the server or policy says no

Some KV2 protocol servers answer ``GET /v1/<mount>/detailed-metadata/<folder>/?list=true``
with ``data.keys`` and ``data.key_info[name]``, the full metadata of each key (the real
OpenBao server since 2.2; kv2-wire.md §2.4, §7). Others answer 404 "unsupported path"
(HashiCorp Vault), and a policy may grant ``read`` on data paths only (403). Those answers
are :class:`NotOffered`: the daemon polls each secret instead (KV2-INV-501).

The listing carries metadata only (versions, times, ``custom_metadata``); nothing here logs
or keeps ``custom_metadata`` (only a digest of it, compared with the cached read's,
KV2-INV-504) or the names of keys nobody watches (KV2-INV-503).
Pages: ``limit`` keys from ``after`` (exclusive), in the server's sorted order; the listing
starts just before the first watched name and stops after the last, and gives up (NotOffered)
rather than list more keys (``page_limit``, ``max_pages``) or send more requests than the
reads it replaces would cost the server (KV2-INV-502).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kv2render.errors import BadResponseError

__all__ = [
    "PAGE_LIMIT",
    "FolderVersions",
    "KeyState",
    "NotOffered",
    "max_pages",
    "metadata_digest",
    "page_after",
    "page_limit",
    "parse_page",
    "refusal",
]

# Keys per page at most. 500 entries of about 1.3 KB each (ten versions) stay far below the
# store's 4 MiB body bound (transport.MAX_BODY_BYTES).
PAGE_LIMIT = 500


def page_limit(watched: int) -> int:
    """Keys per page for ``watched`` names: twice as many, plus a few. The server reads one
    metadata entry per key it lists, and a data read costs it a metadata and a version
    entry, so listing at most ``2 * watched + 8`` keys costs the server no more than the
    reads it replaces (KV2-INV-502). 100 watched secrets: pages of 208 keys."""
    return min(PAGE_LIMIT, 2 * watched + 8)


def max_pages(watched: int) -> int:
    """The pages a listing of ``watched`` names may take: as many as ``2 * watched + 8``
    keys need (one page up to 246 names), and always fewer requests than the reads. A folder
    whose watched names lie further apart among other keys is not listed."""
    return min(max(1, -(-(2 * watched + 8) // page_limit(watched))), max(1, watched - 1))


@dataclass(frozen=True)
class KeyState:
    """What the listing says of one key: its current version, and whether that version is
    plainly readable (neither deleted, nor scheduled for deletion, nor destroyed)."""

    current_version: int
    plain: bool
    # The current version's created_time, "" when the entry has none: a secret deleted and
    # re-created at the same version number differs here only (KV2-FC-501). A server's
    # clock reading, so left out of equality.
    created_time: str = field(default="", compare=False)
    # A digest of the key's custom_metadata (metadata_digest), None when the entry does not
    # carry the field. custom_metadata changes without a new version, and a read returns it
    # in data.metadata, so a differing digest means "read it" (KV2-INV-504). Never the text.
    custom: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class FolderVersions:
    """The watched names found in a folder (absent: not in the folder) and the requests spent."""

    keys: Mapping[str, KeyState]
    requests: int


@dataclass(frozen=True)
class NotOffered:
    """The server or the token's policy does not offer this folder's listing; ``reason`` is
    metadata (a status and the server's short error text), shown in one INFO line."""

    reason: str


def metadata_digest(value: object) -> str:
    """A short digest of a ``custom_metadata`` value, equal for equal contents whatever the
    key order; no metadata (``null`` or ``{}``) gives "". Compared, never shown or logged
    (KV2-INV-503, KV2-INV-504)."""
    if not value:
        return ""
    import hashlib
    import json

    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def refusal(status: int, body: Any, _problem: str | None) -> NotOffered | None | Literal[False]:
    """A non-200 page: None for an empty folder (OpenBao's 404 ``{"errors":[]}``, kv2-wire.md
    §2.4), NotOffered for a path or a policy that does not offer the listing (KV2-INV-501):
    404 with text or a warning (Vault's "Invalid path for a versioned K/V secrets engine",
    no such mount), 405, 400, 403 permission denied; False for anything else (mapped and
    raised as a read's error would be: 5xx retried)."""
    from kv2render.store.responses import errors_text

    text = errors_text(body)
    if status == 404 and isinstance(body, Mapping) and body.get("errors") == []:
        return None
    if status in (400, 404, 405) or (status == 403 and "permission denied" in text.lower()):
        return NotOffered(f"{status} {text or 'not offered by this server'}")
    return False


def page_after(names: Collection[str]) -> str | None:
    """Where the first page starts (``after`` is exclusive): just before the smallest watched
    name, that name with its last character stepped back one (``s0042`` -> ``s0041``).
    Every key from the name on follows it; a few keys between may too (``s0041x``), which
    costs page space, never correctness. ``None``: from the start."""
    first = min(names)
    if first and ord(first[-1]) > 0x21:
        return first[:-1] + chr(ord(first[-1]) - 1)
    return first[:-1] or None


def _key_state(info: Any) -> KeyState | None:
    """A key's metadata -> its state; None when the entry does not say (then it is read)."""
    if not isinstance(info, Mapping):
        return None
    current = info.get("current_version")
    versions = info.get("versions")
    if isinstance(current, bool) or not isinstance(current, int) or current < 1:
        return None
    entry = versions.get(str(current)) if isinstance(versions, Mapping) else None
    if not isinstance(entry, Mapping):
        return None
    # Any deletion_time, even one in the future (delete_version_after), is "not plain": the
    # secret is read, and the read says what read mode would say (KV2-INV-500).
    plain = entry.get("deletion_time") in ("", None) and entry.get("destroyed") is False
    created = entry.get("created_time")
    custom = metadata_digest(info["custom_metadata"]) if "custom_metadata" in info else None
    return KeyState(int(current), plain, created if isinstance(created, str) else "", custom)


def parse_page(
    where: str, body: Mapping[str, Any], watched: Collection[str]
) -> tuple[list[str], dict[str, KeyState]]:
    """A 200 page -> (all its key names in order, the states of the watched ones)."""
    data = body.get("data")
    keys = data.get("keys") if isinstance(data, Mapping) else None
    info = data.get("key_info") if isinstance(data, Mapping) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BadResponseError("the folder listing has no data.keys list", where=where)
    if not isinstance(info, Mapping):
        raise BadResponseError("the folder listing has no data.key_info object", where=where)
    states: dict[str, KeyState] = {}
    for name in keys:
        if name in watched:
            state = _key_state(info.get(name))
            if state is not None:
                states[name] = state
    return keys, states
