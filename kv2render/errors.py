"""The one exception tree of kv2render.

Every error kv2render raises on purpose derives from :class:`Kv2RenderError`.
Only ``vault.py`` catches hvac and requests exceptions; it re-raises these
``from exc``. Only ``cli.main`` turns an exception into a process exit, using
the ``exit_code`` class attribute (spec KV2-FC-*, exit codes in the spec's
"Failure taxonomy" decision).

    Kv2RenderError                    exit 1  unexpected / internal
    ├── ConfigError                   exit 2  config, usage, reference, template syntax
    │   ├── ConfigErrors                      several of these, found in one pass
    │   ├── ReferenceSyntaxError              a string that is not one KV2 reference
    │   ├── InlineCredentialError             a credential written into config
    │   └── TemplateSyntaxError               a template that does not parse / bad secret() arg
    ├── AuthError                     exit 3  login failed, token invalid, 401
    ├── SecretReadError               exit 4  a secret could not be read
    │   ├── AccessDeniedError                 403 permission denied
    │   ├── SecretNotFoundError               404, no such path or version
    │   │   ├── SecretDeletedError            404 with metadata, deletion_time set
    │   │   └── SecretDestroyedError          404 with metadata, destroyed=true
    │   ├── BadResponseError                  non-JSON, wrong Content-Type, missing data.data, ...
    │   └── TransientError                    network, timeout, 5xx, 429, 503 sealed: retried
    ├── RenderError                   exit 5  template runtime error, missing key, empty ref value
    │   ├── MissingKeyError
    │   └── SecretsMissing                    a path computed while rendering names unread secrets
    ├── WriteError                    exit 6  the destination could not be written
    └── CommandError                  exit 7  a post-render command failed or timed out

Messages carry metadata only (mount, path, version, destination, key name,
config key path, file:line). They never carry a secret value, token,
secret_id or JWT (KV2-INV-001). ``where`` names the place (a config key
path such as ``template[1].destination`` or ``file:line``) and ``hint`` the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "AccessDeniedError",
    "AuthError",
    "BadResponseError",
    "CommandError",
    "ConfigError",
    "ConfigErrors",
    "InlineCredentialError",
    "Kv2RenderError",
    "MissingKeyError",
    "ReferenceSyntaxError",
    "RenderError",
    "SecretsMissing",
    "SecretDeletedError",
    "SecretDestroyedError",
    "SecretNotFoundError",
    "SecretReadError",
    "TemplateSyntaxError",
    "TransientError",
    "WriteError",
    "flatten",
    "raise_all",
]


class Kv2RenderError(Exception):
    """Root of every error kv2render raises on purpose.

    ``str(err)`` is ``"<where>: <message> (<hint>)"`` with the parts that are set.
    """

    exit_code: int = 1
    # The HTTP status of the server answer this error maps, when it maps one: the store
    # tells a 403 (worth one fresh login) from other AuthErrors by it. Set by the store's
    # response mapping; None for every error that is not an HTTP answer.
    http_status: int | None = None
    # A server's Retry-After in seconds, when it sent one: a floor for the next wait
    # (kv2render.store.backoff). Only TransientError sets it; declared here so that a
    # caller holding any Kv2RenderError reads it without a getattr.
    retry_after: float | None = None

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text = f"{text}; {self.hint}"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__str__()!r})"


class ConfigError(Kv2RenderError):
    """The configuration, a command-line argument, a reference or a template is wrong."""

    exit_code = 2


class ConfigErrors(ConfigError):
    """Several problems found in one validation pass, each its own ConfigError, so that one
    ``check`` (or one failed start) names all of them, not only the first (KV2-INV-398).

    ``str()`` is one line holding every problem; ``cli.main`` logs each on its own line.
    A single problem is never wrapped: it is raised as itself (see :func:`raise_all`).
    """

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors: tuple[ConfigError, ...] = tuple(errors)
        super().__init__(f"{len(self.errors)} problems: " + " | ".join(str(e) for e in self.errors))


def flatten(errors: Iterable[ConfigError]) -> list[ConfigError]:
    """``errors`` with every ConfigErrors replaced by the problems it holds, in order."""
    out: list[ConfigError] = []
    for error in errors:
        out.extend(flatten(error.errors) if isinstance(error, ConfigErrors) else (error,))
    return out


def raise_all(errors: Iterable[ConfigError]) -> None:
    """Raise nothing for no problem, the problem itself for one, ConfigErrors for several."""
    found = flatten(errors)
    if len(found) == 1:
        raise found[0]
    if found:
        raise ConfigErrors(found)


class ReferenceSyntaxError(ConfigError):
    """A string is not exactly one KV2 reference (spec: reference grammar)."""


class InlineCredentialError(ConfigError):
    """A credential was written into the config; it must come from a file or the environment."""


class TemplateSyntaxError(ConfigError):
    """A template does not parse, or calls secret()/kv2() with something other than a constant."""


class AuthError(Kv2RenderError):
    """Authentication failed: a login was refused, a token is invalid, or the server said 401."""

    exit_code = 3


class SecretReadError(Kv2RenderError):
    """A secret could not be read."""

    exit_code = 4


class AccessDeniedError(SecretReadError):
    """The server answered 403 permission denied."""


class SecretNotFoundError(SecretReadError):
    """The server answered 404: no secret at that path, or no such version."""


class SecretDeletedError(SecretNotFoundError):
    """The requested version is soft-deleted (it may be undeleted)."""


class SecretDestroyedError(SecretNotFoundError):
    """The requested version is destroyed (its data is gone for good)."""


class BadResponseError(SecretReadError):
    """The server's answer is not a KV2 response (non-JSON, wrong shape, ...)."""


class TransientError(SecretReadError):
    """A failure worth retrying: network error, timeout, 5xx, 429 or a sealed server.

    ``retry_after`` carries a server's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        hint: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, where=where, hint=hint)


class RenderError(Kv2RenderError):
    """A template failed while rendering, or a ``ref:`` value is empty."""

    exit_code = 5


class MissingKeyError(RenderError):
    """A key selected by ``#key``, a JSON pointer or ``.Data.data.key`` is not in the secret."""


class SecretsMissing(RenderError):
    """A render met secrets whose paths it computed and that were not read yet (KV2-INV-390).

    The runner reads ``locations`` and renders again (consul-template's ``missing`` set); the
    render's output is discarded, never written. Only when the rounds run out
    (KV2-INV-391) does it reach the user, naming the template line of the first such call.
    ``locations`` maps each location to the ``name:line`` of the call that computed it.
    """

    def __init__(self, locations: Mapping[Any, str], *, where: str | None = None) -> None:
        # The keys are kv2render.refs.SecretLocation; errors.py sits below refs in the layers
        # (docs/architecture.md), so the type is not named here.
        self.locations = dict(locations)
        first = min(self.locations) if self.locations else None
        at = where or (self.locations[first] if first is not None else None)
        super().__init__("", where=at)
        self.args = ()  # no text fixed now: see message

    # Built when shown, not when raised: the runner may mark a location as computed from a
    # secret value after this was raised, and its text must show the mark (KV2-INV-394).
    @property
    def message(self) -> str:
        first = min(self.locations) if self.locations else None
        return (
            f"{len(self.locations)} secret(s) named by paths computed while rendering are not "
            f"read yet (first: {first})"
        )

    @message.setter
    def message(self, value: str) -> None:
        pass  # Kv2RenderError.__init__ sets it; the property computes it


class WriteError(Kv2RenderError):
    """The destination file could not be written; the previous file is untouched."""

    exit_code = 6


class CommandError(Kv2RenderError):
    """A template's command failed, timed out or could not be started."""

    exit_code = 7
