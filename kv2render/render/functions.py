"""What a Jinja2 template can call and what it gets back: ``kv2()``, ``secret()``, ``range()``.

``kv2(REF)`` gives a key's value as text (``#key``, ``#/pointer``) or the whole data object,
``secret(PATH_OR_REF)`` consul-template's shape (``.Data.data``, ``.Data.metadata``). Server
data reaches the template as :class:`SecretData`, a read-only view whose attribute and item
lookups are key lookups and whose repr shows metadata only (KV2-INV-001).

A constant reference was parsed at compile time (``discover.py``) and its secret read before
the render; a reference computed while rendering is parsed here, looked up in every secret
read so far this pass, and when it is not there recorded as missing with its line, while the
render goes on (KV2-INV-390). The state they read and record is ``budget.RenderState``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from jinja2 import ChainableUndefined, StrictUndefined, Undefined

from kv2render.errors import MissingKeyError, ReferenceSyntaxError, RenderError
from kv2render.refs import SecretRef, parse_ref, value_to_text
from kv2render.render.budget import MAX_RANGE, STATE, RenderState, current_state
from kv2render.render.filters import plain

if TYPE_CHECKING:
    from kv2render.model import SecretVersion

__all__ = ["FUNCTIONS", "MAPPING_METHODS", "SecretData"]

# -- the data handed to templates ----------------------------------------------------------

MAPPING_METHODS = frozenset({"items", "keys", "values", "get"})


class SecretData(Mapping[str, Any]):
    """A read-only view of (part of) a secret. Attribute and item lookups are key lookups.

    ``.x`` looks up the key ``x`` first, like consul-template's ``.Data.data.x``; the mapping
    methods ``items``/``keys``/``values``/``get`` are reachable only when no key has that name.
    A missing key is a StrictUndefined that raises MissingKeyError naming the key and the secret
    (never a value); with ``error_on_missing_key: false`` it prints as an empty string.
    The repr shows metadata only (KV2-INV-001).
    """

    __slots__ = ("_items", "_label", "_path", "_weight")

    def __init__(self, items: dict[str, Any], label: str, path: str) -> None:
        self._items = items
        self._label = label  # 'secret/app/db' (with ?version=N when pinned)
        self._path = path  # '.Data.data' or '' for kv2()'s top level
        self._weight: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<secret {self._label}{self._path} ({len(self._items)} keys)>"

    def __str__(self) -> str:  # '~' and the string filters: compact JSON, as {{ }} prints it
        return value_to_text(plain(self))

    def _missing(self, key: Any) -> Undefined:
        where = f" at {self._path}" if self._path else ""
        state = STATE.get()
        # KV2-INV-366: the key is named only when the template spells it as a constant
        # (.nope, ["nope"]); a computed key may be derived from a secret (| lower, a slice).
        constants = state.constants if state is not None else frozenset()
        literal = isinstance(key, str | int) and not isinstance(key, bool)
        if literal and str(key) in constants:
            message = f"key {key!r} not found{where} in secret {self._label}"
        else:
            message = f"a computed key was not found{where} in secret {self._label}"
        strict = state.strict if state is not None else True
        cls = StrictUndefined if strict else Undefined
        return cls(hint=message, obj=self, name=str(key), exc=MissingKeyError)  # type: ignore[arg-type]

    def lookup_attr(self, name: str) -> Any:
        if name in self._items:
            return self._items[name]
        if name in MAPPING_METHODS:
            return getattr(self, name)
        return self._missing(name)

    def lookup_item(self, key: Any) -> Any:
        if isinstance(key, str) and key in self._items:
            return self._items[key]
        return self._missing(key)


def _child_path(path: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def _freeze(value: Any, label: str, path: str) -> Any:
    """Server data as templates see it: objects become SecretData, arrays tuples."""
    if isinstance(value, Mapping):
        items = {str(k): _freeze(v, label, _child_path(path, k)) for k, v in value.items()}
        return SecretData(items, label, path)
    if isinstance(value, list | tuple):
        return tuple(_freeze(v, label, _child_path(path, i)) for i, v in enumerate(value))
    return value


# -- kv2() and secret() --------------------------------------------------------------------


def _resolve(state: RenderState, func: str, text: Any) -> SecretRef:
    """A reference computed while rendering (KV2-INV-390); never quoted in an error, since
    it may be derived from a secret value (KV2-INV-366, KV2-FC-390)."""
    if not isinstance(text, str):
        raise RenderError(
            f"{func}() needs a reference string; it was given a value of type "
            f"{type(text).__name__}",
            hint=f'pass {func}() one string, e.g. {func}("vault+kv2:///secret/data/app")',
        )
    ref = state.resolved.get((func, text))
    if ref is not None:
        return ref
    try:
        ref = parse_ref(text, allow_path_form=func == "secret")
    except ReferenceSyntaxError:
        raise RenderError(
            f"{func}() was given a reference computed while rendering that is not a valid "
            "KV2 reference (its text is not shown: it may be derived from a secret)",
            hint="build MOUNT/data/PATH (secret()) or vault+kv2:///MOUNT/data/PATH#KEY (kv2())",
        ) from None
    if func == "secret" and (ref.key is not None or ref.pointer is not None):
        raise RenderError(
            "secret() returns the whole secret and takes no #key or #/pointer",
            hint='select with .Data.data.KEY, or use kv2("...#KEY")',
        )
    state.resolved[(func, text)] = ref
    return ref


def _call_site(state: RenderState) -> str:
    """``name:line`` of the template line running now (a live frame of the compiled code)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == state.name and state.template is not None:
            return f"{state.name}:{state.template.get_corresponding_lineno(frame.f_lineno)}"
        frame = frame.f_back  # type: ignore[assignment]
    return state.name


# What a computed reference gives while its secret is not read yet: it prints as nothing and
# chains (.Data.data.x), so the render goes on and finds every other missing secret in the
# same round; the output is discarded (KV2-INV-390, consul-template returns nil the same way).
_PENDING = ChainableUndefined(name="a secret not read yet")


def _lookup(func: str, text: Any) -> tuple[RenderState, SecretRef, SecretVersion | None]:
    state = current_state()
    ref = state.calls.get((func, text)) if isinstance(text, str) else None
    if ref is not None:
        return state, ref, state.secrets[ref.location]
    ref = _resolve(state, func, text)
    version = state.secrets.get(ref.location) or state.pool.get(ref.location)
    if version is None:
        state.missing.setdefault(ref.location, _call_site(state))
        return state, ref, None
    state.used.add(ref.location)
    return state, ref, version


def _kv2(text: Any) -> Any:
    """kv2(REF): with #key or #/pointer the value as text, else the whole data object."""
    state, ref, version = _lookup("kv2", text)
    if version is None:
        return _PENDING
    if ref.key is None and ref.pointer is None:
        view = state.views.get(("kv2", ref.location))
        if view is None:
            view = _freeze(version.data, str(ref.location), "")
            state.views[("kv2", ref.location)] = view
        return view
    try:
        value = ref.select(version.data)
    except MissingKeyError as exc:
        if state.strict:
            raise
        return Undefined(hint=exc.message, name=ref.key or ref.pointer, exc=MissingKeyError)  # type: ignore[arg-type]
    return value_to_text(value)  # KV2 decision 3: a string raw, anything else compact JSON


def _secret(text: Any) -> Any:
    """secret(PATH_OR_REF): consul-template's shape, ``.Data.data`` and ``.Data.metadata``."""
    state, ref, version = _lookup("secret", text)
    if version is None:
        return _PENDING
    view = state.views.get(("secret", ref.location))
    if view is None:
        metadata: dict[str, Any] = {
            "created_time": "",
            "custom_metadata": None,
            "deletion_time": "",
            "destroyed": False,
        }
        metadata.update(version.metadata)
        metadata["version"] = version.version
        shape = {"Data": {"data": version.data, "metadata": metadata}}
        view = _freeze(shape, str(ref.location), "")
        state.views[("secret", ref.location)] = view
    return view


def _range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        # Not its length: the bounds may be computed from a secret number (KV2-INV-366).
        raise RenderError(f"range() is limited to {MAX_RANGE} items, this one has more")
    return rng


# The template's globals besides ``dict``, in the order the environment lists them. The
# functions keep their own names: an error message may name one (``the result of _kv2()``).
FUNCTIONS: Mapping[str, Callable[..., Any]] = {"kv2": _kv2, "secret": _secret, "range": _range}
