"""The KV2 reference grammar (spec: "Resolved decision 1" and "3", KV2-INV/FC/AC-001..029).

A reference names one secret read over the KV2 protocol and, optionally, the part of its
``data.data`` object that is wanted. Three spellings are accepted::

    vault+kv2://[HOST[:PORT]]/MOUNT/PATH[?version=N][#KEY | #/json/pointer]
    https://HOST[:PORT][/PREFIX]/v1/MOUNT/data/PATH[?version=N][#KEY | #/json/pointer]
    MOUNT/data/PATH[?version=N]        (templates only: consul-template's secret "..." form)
    MOUNT/PATH                         (templates only: legacy, the first segment is the mount)

Routing is total and deterministic: :func:`parse_ref` turns a string into exactly one
:class:`SecretRef` or raises :class:`~kv2render.errors.ReferenceSyntaxError` (a ConfigError) that
names the accepted forms. It never raises anything else, whatever the input (property-tested).

Decisions made here (each one a rule in docs/spec):

* The raw text is split before anything is decoded: the fragment starts at the first ``#``, the
  query at the first ``?`` before it, and segments are separated by raw ``/``. Each part is then
  percent-decoded exactly once, so ``%252F`` becomes the two-character text ``%2F``, and ``%23``,
  ``%3F`` are ordinary path characters. A decoded segment may not contain ``/`` (``%2F``): it
  would silently change the segment structure the reference was checked with.
* Mount and path: if a segment after the first one is ``data``, everything before the first such
  segment is the mount (multi-segment mounts such as ``team/kv``); otherwise the first segment is
  the mount. A mount named ``data`` therefore works (``data/data/x``), and a path may contain
  ``data`` segments of its own. In the https form the same rule applies after ``/v1/``, and the
  ``data`` marker is required.
* Empty, ``.`` and ``..`` segments are refused after decoding (``%2E%2E`` too), as are control
  characters anywhere, userinfo (``user:pass@``) in an authority, and any query parameter other
  than one ``version=N`` with N a positive integer.
* ``http://`` is accepted like ``https://`` (dev servers); the scheme is kept for round-tripping
  (the added ``SecretRef.scheme`` field). The read always goes to ``vault.address``; a named
  authority must match it (:func:`check_authority`, KV2-INV-006): host case-insensitively, an
  omitted port being the scheme's default (the address's scheme for vault+kv2), and in the https
  form the base path too.
* Refused with a message naming what they are: bare ``vault://`` (reserved by the connector), Azure
  Key Vault URLs, AWS ARNs, GCP ``projects/.../secrets/...`` names, other schemes.
* Error messages echo the reference (it is metadata, never a secret value) truncated to 200
  characters, with any userinfo replaced by ``***``.

Two neighbours below this module hold what is not grammar: payload.py selects the key or
pointer from a secret's data and writes a value as text (decision 3, ``SecretRef.select``
calls it), authority.py checks a named host against ``vault.address`` and holds the loopback
test. ``check_authority``, ``value_to_text`` and ``is_loopback_host`` are re-exported here:
``kv2render.refs`` is a fixed contract (docs/spec, "Python contracts").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote

from kv2render import payload, shown
from kv2render.authority import check_authority, is_loopback_host
from kv2render.errors import ReferenceSyntaxError
from kv2render.payload import value_to_text
from kv2render.shown import hide_marked

__all__ = [
    "RefForm",
    "SecretLocation",
    "SecretRef",
    "check_authority",
    "format_ref",
    "hide_marked",
    "is_loopback_host",
    "mark_derived",
    "parse_ref",
    "value_to_text",
]

RefForm = Literal["vault+kv2", "https", "path"]


@dataclass(frozen=True)
class SecretLocation:
    """What one KV2 read fetches: the de-duplication key of a render pass."""

    mount: str
    path: str
    version: int | None = None  # None: follow the latest version

    def _key(self) -> tuple[str, str, int]:
        return (self.mount, self.path, self.version or 0)

    # A total order (a dataclass's generated one fails comparing None with an int), so
    # that reads and log lines come out in a stable order. The latest sorts first.
    def __lt__(self, other: SecretLocation) -> bool:
        return self._key() < other._key()

    def __le__(self, other: SecretLocation) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: SecretLocation) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: SecretLocation) -> bool:
        return self._key() >= other._key()

    # A location whose path was computed from a secret's value (KV2-INV-394) is shown by
    # these, never by mount/path: every log line, error text, status file and metrics label
    # formats a location through them.
    @property
    def shown_mount(self) -> str:
        marked = shown.lookup(self.mount, self.path)
        return self.mount if marked is None else marked[0]

    @property
    def shown_path(self) -> str:
        marked = shown.lookup(self.mount, self.path)
        return self.path if marked is None else marked[1]

    def __str__(self) -> str:  # metadata only: "secret/app/db" or "secret/app/db?version=3"
        base = f"{self.shown_mount}/{self.shown_path}"
        return base if self.version is None else f"{base}?version={self.version}"

    def __repr__(self) -> str:  # the dataclass's repr would show a marked path
        return (
            f"SecretLocation(mount={self.shown_mount!r}, path={self.shown_path!r}, "
            f"version={self.version!r})"
        )


def mark_derived(location: SecretLocation, where: str, *, mount_too: bool = False) -> None:
    """Show ``location`` as computed from a secret value, at ``where`` (``name:line``), from
    now on in this process (KV2-INV-394, KV2-INV-497; the marks live in shown.py)."""
    request = f"{_enc_path(location.mount)}/data/{_enc_path(location.path)}"
    wire = (request, _enc_path(location.path))
    shown.mark(location.mount, location.path, where, mount_too=mount_too, wire=wire)


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
    # Added field: the https form's URL scheme ('http' for dev servers), kept so that
    # parse_ref(format_ref(r)) == r. Meaningless for the other forms, where it stays 'https'.
    scheme: Literal["https", "http"] = "https"

    @property
    def location(self) -> SecretLocation:
        return SecretLocation(self.mount, self.path, self.version)

    def select(self, data: Mapping[str, Any]) -> Any:
        """Apply ``key``/``pointer`` to a secret's ``data.data``; the whole object when neither.

        Raises MissingKeyError naming the key or pointer (never a value); payload.py.
        """
        return payload.select(data, self.key, self.pointer, self.location)

    def __str__(self) -> str:
        return format_ref(self)


# --------------------------------------------------------------------------------------------
# Messages

_MAX_SHOWN = 200
_FORMS_URL = (
    "vault+kv2://[HOST[:PORT]]/MOUNT/PATH[?version=N][#KEY|#/json/pointer] or "
    "https://HOST[:PORT][/PREFIX]/v1/MOUNT/data/PATH[?version=N][#KEY]"
)
_FORMS_PATH = f"{_FORMS_URL}, or in templates MOUNT/data/PATH[?version=N]"


class _Reject(Exception):
    """Internal: one reason a text is not a reference (turned into ReferenceSyntaxError)."""

    def __init__(self, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def _shown(text: str) -> str:
    """The input as echoed in an error: userinfo masked, at most ~200 characters, repr-quoted."""
    masked = re.sub(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#]*@", r"\1***@", text)
    if len(masked) > _MAX_SHOWN:
        masked = masked[:_MAX_SHOWN] + "..."
    return repr(masked)


# --------------------------------------------------------------------------------------------
# Parsing

# Patterns as text: re compiles each on first use (and caches it), so a run that never
# needs one, like a consul-template path, does not compile it at import (KV2-NFR-520).
_SCHEME = r"([A-Za-z][A-Za-z0-9+.\-]*):"
_BAD_PERCENT = r"%(?![0-9A-Fa-f]{2})"
_VERSION = r"[0-9]{1,18}"
_REG_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._\-]*[A-Za-z0-9])?"
_IPV6 = r"\[[0-9A-Fa-f:.]+\]"
_PORT = r"[0-9]{1,5}"
_GCP = r"projects/[^/]+/(?:locations/[^/]+/)?secrets/[^/]+(?:/versions/[^/]+)?/?"
# Azure Key Vault and Managed HSM host suffixes, public and sovereign clouds.
_AZURE_SUFFIXES = (
    ".vault.azure.net",
    ".vault.azure.cn",
    ".vault.usgovcloudapi.net",
    ".vault.microsoftazure.de",
    ".managedhsm.azure.net",
)


def _bad_char(text: str) -> int | None:
    """Index of the first control character or lone surrogate, if any."""
    for i, ch in enumerate(text):
        o = ord(ch)
        if o < 0x20 or 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xDFFF:
            return i
    return None


def _decode(raw: str, what: str) -> str:
    """Percent-decode ``raw`` exactly once (strict UTF-8), refusing control characters."""
    if re.search(_BAD_PERCENT, raw):
        raise _Reject(
            f"bad percent-encoding in the {what} ('%' must be followed by two hex digits)"
        )
    try:
        text = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise _Reject(f"the {what} percent-decodes to invalid UTF-8") from None
    if _bad_char(text) is not None:
        raise _Reject(f"the {what} contains an encoded control character")
    return text


def _segments(raw_path: str) -> list[str]:
    """Split on raw '/', decode each segment once, refuse empty, '.', '..' and encoded '/'."""
    out: list[str] = []
    for raw in raw_path.split("/"):
        if raw == "":
            raise _Reject("empty path segment ('//', or a leading or trailing '/')")
        seg = _decode(raw, "path")
        if seg in (".", ".."):
            raise _Reject(f"'{seg}' path segments are not allowed")
        if seg == "":
            raise _Reject("empty path segment")
        if "/" in seg:
            raise _Reject("an encoded '/' (%2F) inside a path segment is not allowed; write '/'")
        out.append(seg)
    return out


def _split_at_data(segs: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """Mount and path around the first ``data`` segment after the first one, if there is one."""
    for i in range(1, len(segs)):
        if segs[i] == "data":
            path = list(segs[i + 1 :])
            if not path:
                raise _Reject("no secret path after the 'data' segment")
            return list(segs[:i]), path
    return None


def _mount_and_path(segs: Sequence[str]) -> tuple[str, str]:
    """The mount/path rule of the vault+kv2 and path forms (module docstring)."""
    split = _split_at_data(segs)
    if split is None:
        if len(segs) < 2:
            raise _Reject("a reference needs a mount and a secret path (MOUNT/data/PATH)")
        split = [segs[0]], list(segs[1:])
    return "/".join(split[0]), "/".join(split[1])


def _parse_version(raw_query: str) -> int:
    if raw_query == "":
        raise _Reject("empty query after '?': write ?version=N or leave out the '?'")
    version: int | None = None
    for param in raw_query.split("&"):
        name, eq, value = param.partition("=")
        if name != "version":
            shown = name if len(name) <= 40 else name[:40] + "..."
            raise _Reject(f"unknown query parameter {shown!r}; only ?version=N is accepted")
        if version is not None:
            raise _Reject("'version' is given more than once")
        if not eq or not re.fullmatch(_VERSION, value) or int(value) == 0:
            raise _Reject("version must be a positive integer (?version=N, N >= 1)")
        version = int(value)
    assert version is not None  # split() yields at least one parameter
    return version


def _parse_fragment(raw: str) -> tuple[str | None, str | None]:
    """``(key, pointer)`` from a raw fragment: a leading raw '/' makes an RFC 6901 pointer."""
    if raw == "":
        raise _Reject("empty fragment: write #KEY or #/json/pointer, or leave out the '#'")
    if raw.startswith("/"):
        pointer = _decode(raw, "JSON pointer")
        if re.search(r"~(?![01])", pointer):
            raise _Reject("bad JSON pointer: '~' must be followed by 0 or 1 (RFC 6901)")
        return None, pointer
    return _decode(raw, "key"), None


def _parse_host(authority: str, *, required: bool) -> str | None:
    """Validate ``host[:port]``; lower-cased (DNS names are case-insensitive)."""
    if "@" in authority:
        raise _Reject("a reference must not carry user information (user:password@)")
    if authority == "":
        if required:
            raise _Reject("an https reference needs a host")
        return None
    if authority.startswith("["):
        close = authority.find("]")
        host, rest = authority[: close + 1], authority[close + 1 :]
        if close < 0 or not re.fullmatch(_IPV6, host):
            raise _Reject("bad IPv6 host (write [addr])")
    else:
        host, colon, port = authority.partition(":")
        rest = colon + port
        if not re.fullmatch(_REG_NAME, host):
            raise _Reject("bad host name")
    if rest:
        port = rest[1:]
        if not rest.startswith(":") or not re.fullmatch(_PORT, port) or not 0 < int(port) < 65536:
            raise _Reject("bad port (1-65535)")
    return authority.lower()


def _split_authority(rest: str) -> tuple[str, str]:
    """``(authority, raw path without its leading '/')`` from what follows ``scheme://``."""
    authority, slash, raw_path = rest.partition("/")
    if not slash or raw_path == "":
        raise _Reject("no mount and secret path after the host")
    return authority, raw_path


def _parse_vault_kv2(rest: str) -> dict[str, Any]:
    authority, raw_path = _split_authority(rest)
    host = _parse_host(authority, required=False)
    mount, path = _mount_and_path(_segments(raw_path))
    return {"mount": mount, "path": path, "host": host, "form": "vault+kv2"}


def _parse_https(scheme: str, rest: str) -> dict[str, Any]:
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    hostname = authority.rsplit("@", 1)[-1].split(":", 1)[0].lower().rstrip(".")
    if hostname.endswith(_AZURE_SUFFIXES):
        raise _Reject(
            "this is an Azure Key Vault URL, not a KV2 reference; kv2render reads only "
            "servers speaking the KV2 protocol"
        )
    authority, raw_path = _split_authority(rest)
    host = _parse_host(authority, required=True)
    segs = _segments(raw_path)
    if "v1" not in segs:
        raise _Reject("an https reference must be a KV2 API URL with /v1/ and /data/ markers")
    v1 = segs.index("v1")
    split = _split_at_data(segs[v1 + 1 :])
    if split is None:
        raise _Reject(
            "an https reference must be a KV2 API URL with a /data/ marker after /v1/MOUNT "
            "(a KV v1 or metadata URL is not a secret read)"
        )
    prefix = "".join("/" + s for s in segs[:v1])
    return {
        "mount": "/".join(split[0]),
        "path": "/".join(split[1]),
        "host": host,
        "prefix": prefix,
        "form": "https",
        "scheme": scheme,
    }


def _route(text: str, allow_path_form: bool) -> dict[str, Any]:
    """Everything but query and fragment: which form, and its mount/path/host/prefix."""
    match = re.match(_SCHEME, text)
    if match is None:
        if re.fullmatch(_GCP, text):
            # A legacy template path 'projects/p/secrets/s' would be mount 'projects'; the GCP
            # shape is refused anyway so that a connector reference never routes to KV2.
            raise _Reject("this is a GCP Secret Manager name, not a KV2 reference")
        if not allow_path_form:
            raise _Reject("not a KV2 reference (MOUNT/data/PATH is accepted only in templates)")
        if text.startswith("/"):
            raise _Reject("a template path must not start with '/': write MOUNT/data/PATH")
        mount, path = _mount_and_path(_segments(text))
        return {"mount": mount, "path": path, "form": "path"}
    scheme = match.group(1).lower()
    after = text[match.end() :]
    if scheme == "arn":
        raise _Reject("this is an AWS ARN, not a KV2 reference")
    if scheme == "vault":
        raise _Reject("a bare vault:// reference is not accepted (the connector reserves it)")
    if scheme not in ("vault+kv2", "https", "http"):
        raise _Reject(f"unknown scheme {scheme[:40]!r}")
    if not after.startswith("//"):
        raise _Reject(f"a {scheme} reference starts with {scheme}://")
    if scheme == "vault+kv2":
        return _parse_vault_kv2(after[2:])
    return _parse_https(scheme, after[2:])


def _parse(text: str, allow_path_form: bool) -> SecretRef:
    if text == "":
        raise _Reject("empty reference")
    if text != text.strip():
        raise _Reject("leading or trailing whitespace")
    bad = _bad_char(text)
    if bad is not None:
        raise _Reject(f"control character at position {bad}")
    before_fragment, hash_sign, raw_fragment = text.partition("#")
    before_query, question, raw_query = before_fragment.partition("?")
    fields = _route(before_query, allow_path_form)
    if question:
        fields["version"] = _parse_version(raw_query)
    if hash_sign:
        if fields["form"] == "path":
            raise _Reject(
                "the template path form takes no #fragment; select the key in the template "
                "(.Data.data.KEY) or use a vault+kv2:// reference"
            )
        fields["key"], fields["pointer"] = _parse_fragment(raw_fragment)
    return SecretRef(**fields)


def parse_ref(text: str, *, where: str | None = None, allow_path_form: bool = False) -> SecretRef:
    """Parse one reference, or raise ReferenceSyntaxError naming the accepted forms."""
    forms = _FORMS_PATH if allow_path_form else _FORMS_URL
    if not isinstance(text, str):
        raise ReferenceSyntaxError(
            f"a reference must be a string, got {type(text).__name__}",
            where=where,
            hint=f"accepted forms: {forms}",
        )
    try:
        return _parse(text, allow_path_form)
    except _Reject as exc:
        raise ReferenceSyntaxError(
            f"{exc.reason}: {_shown(text)}",
            where=where,
            hint=exc.hint or f"accepted forms: {forms}",
        ) from None


# --------------------------------------------------------------------------------------------
# Formatting

# RFC 3986 sub-delims and '@' stay readable; '/', '?', '#', '%', ':' and spaces are encoded so
# the text re-parses to the same reference (':' would look like a scheme in the path form).
_SAFE = "!$&'()*+,;=@"


def _enc(segment: str, safe: str = _SAFE) -> str:
    return quote(segment, safe=safe, errors="surrogatepass")


def _enc_path(path: str) -> str:
    return "/".join(_enc(seg) for seg in path.split("/"))


def format_ref(ref: SecretRef) -> str:
    """The canonical text of a reference; ``parse_ref(format_ref(r)) == r``.

    Canonical means: the reference's own form, the ``data`` marker always written, host
    lower-cased, each segment percent-encoded where it must be (see ``_SAFE``), ``?version=N``
    without leading zeros, then ``#KEY`` (with every '/' encoded, so it cannot read as a
    pointer) or ``#/json/pointer``. A path-form reference carrying a key, pointer or host
    (which parse_ref never produces) is written in the vault+kv2 form instead.
    """
    body = f"{_enc_path(ref.mount)}/data/{_enc_path(ref.path)}"
    selection = ref.key is not None or ref.pointer is not None
    if ref.form == "https":
        prefix = "".join("/" + _enc(s) for s in ref.prefix.split("/") if s)
        text = f"{ref.scheme}://{ref.host or ''}{prefix}/v1/{body}"
    elif ref.form == "path" and not selection and ref.host is None:
        text = body
    else:
        text = f"vault+kv2://{ref.host or ''}/{body}"
    if ref.version is not None:
        text += f"?version={ref.version}"
    if ref.pointer is not None:
        text += "#" + _enc(ref.pointer, safe=_SAFE + "/~")
    elif ref.key is not None:
        text += "#" + _enc(ref.key)
    return text
