"""Secret paths computed while rendering: the mark that keeps secret values out of metadata.

Both template languages may build a secret's path while rendering (KV2-INV-390). A resolved
path is metadata: logged, put in error texts, the status file and metrics labels. A path
built from a secret's value would carry that value there, so such a path is read (the
template renders as the agent renders it) but marked, and shown redacted everywhere
(KV2-INV-394, KV2-INV-497).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kv2render.model import SecretVersion
from kv2render.redact import secret_texts
from kv2render.refs import SecretLocation, mark_derived

__all__ = ["mark_paths_from_values"]

_MIN_SECRET_TEXT = 4  # as the redaction's: shorter values are too common to judge by


def mark_paths_from_values(
    missing: Mapping[SecretLocation, str], read: Iterable[SecretVersion]
) -> list[SecretLocation]:
    """Mark each computed location of ``missing`` (location -> ``name:line``) whose
    ``mount/path`` holds a text of a secret of ``read`` (every secret the template read so
    far this render, constant and computed) as computed from a secret value (KV2-INV-394):
    it is still read, and shown as ``mount/[path computed from a secret value at name:line]``
    from now on in this process. Returns the marked locations."""
    texts = {t for t in secret_texts(read) if len(t) >= _MIN_SECRET_TEXT}
    marked: list[SecretLocation] = []
    if not texts:
        return marked
    for location, where in sorted(missing.items()):
        path = f"{location.mount}/{location.path}"
        if any(text in path for text in texts):
            mount_too = any(text in location.mount for text in texts)
            mark_derived(location, where, mount_too=mount_too)
            marked.append(location)
    return marked
