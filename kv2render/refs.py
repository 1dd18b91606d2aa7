"""The KV2 reference grammar (spec: "Resolved decision 1", KV2-INV-01x).

CONTRACT STUB: the value objects and signatures below are fixed; the bodies are
being implemented. Other modules import only these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

RefForm = Literal["vault+kv2", "https", "path"]


@dataclass(frozen=True, order=True)
class SecretLocation:
    """What one KV2 read fetches: the de-duplication key of a render pass."""

    mount: str
    path: str
    version: int | None = None  # None: follow the latest version

    def __str__(self) -> str:  # metadata only: "secret/app/db" or "secret/app/db?version=3"
        base = f"{self.mount}/{self.path}"
        return base if self.version is None else f"{base}?version={self.version}"


@dataclass(frozen=True)
class SecretRef:
    """One parsed reference: where the secret lives, and which part of it is wanted."""

    mount: str
    path: str
    version: int | None = None
    key: str | None = None  # '#password': a top-level key of data.data
    pointer: str | None = None  # '#/a/b': an RFC 6901 JSON pointer, leading '/' kept
    host: str | None = None  # 'host[:port]' authority, when the reference names one
    prefix: str = ""  # https form: base path before '/v1', e.g. '/api/<okms-id>'
    form: RefForm = "vault+kv2"

    @property
    def location(self) -> SecretLocation:
        return SecretLocation(self.mount, self.path, self.version)

    def select(self, data: Mapping[str, Any]) -> Any:
        """Apply ``key``/``pointer`` to a secret's ``data.data``; the whole object when neither.

        Raises MissingKeyError naming the key or pointer (never a value).
        """
        raise NotImplementedError

    def __str__(self) -> str:
        return format_ref(self)


def parse_ref(text: str, *, where: str | None = None, allow_path_form: bool = False) -> SecretRef:
    """Parse one reference, or raise ReferenceSyntaxError naming the accepted forms."""
    raise NotImplementedError


def format_ref(ref: SecretRef) -> str:
    """The canonical text of a reference; ``parse_ref(format_ref(r)) == r``."""
    raise NotImplementedError


def check_authority(ref: SecretRef, address: str, *, where: str | None = None) -> None:
    """Raise ConfigError when a reference names a host (or base path) other than ``address``."""
    raise NotImplementedError


def value_to_text(value: Any) -> str:
    """A selected value as output text: a string raw, anything else compact JSON."""
    raise NotImplementedError
