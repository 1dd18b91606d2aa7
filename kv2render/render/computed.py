"""Secret paths computed while rendering: the check that keeps secret values out of them.

Both template languages may build a secret's path while rendering (KV2-INV-390). A resolved
path is metadata: logged and shown in the status file. A path built from a secret's value
would carry that value there, so it is refused before it is read (KV2-INV-394).
"""

from __future__ import annotations

from collections.abc import Sequence

from kv2render.errors import Kv2RenderError, RenderError, SecretsMissing
from kv2render.model import SecretVersion
from kv2render.redact import secret_texts

__all__ = ["path_from_a_value"]

_MIN_SECRET_TEXT = 4  # as the redaction's: shorter values are too common to judge by


def path_from_a_value(
    exc: SecretsMissing, read: Sequence[SecretVersion | Kv2RenderError]
) -> RenderError | None:
    """A computed path that holds a value of a secret the template read is refused, unread
    (KV2-INV-394): paths are metadata, logged and shown in the status file, so a path built
    from a secret's value would carry that value there. Nothing of the path is shown."""
    texts = {
        t
        for t in secret_texts(v for v in read if isinstance(v, SecretVersion))
        if len(t) >= _MIN_SECRET_TEXT
    }
    for location, where in sorted(exc.locations.items()):
        path = f"{location.mount}/{location.path}"
        if any(text in path for text in texts):
            return RenderError(
                "a secret path computed while rendering contains a value of a secret this "
                "template read; paths are logged and shown in the status file as metadata",
                where=where,
                hint="build secret paths from names (env, constants), never from secret values",
            )
    return None
