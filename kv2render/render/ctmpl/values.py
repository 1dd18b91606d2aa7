"""The Go data model a consul-template template sees, expressed in Python.

Go's ``text/template`` behaviour depends on Go types (truthiness, printing,
``eq``, argument checking), so every value handed to the interpreter is one of:

    str            Go ``string``
    JsonNumber     ``json.Number``: the Vault API client decodes with ``UseNumber()``,
                   so KV2 numbers keep their literal text (``1.50``, ``1e3``)
    bool, int, float   Go ``bool``, ``int``, ``float64`` (template constants)
    None           a nil ``interface{}`` (JSON ``null``, a missing key under missingkey=zero)
    INVALID        the zero ``reflect.Value`` (prints ``<no value>``)
    dict           ``map[string]interface {}``
    list           ``[]interface {}``
    StringSlice    ``[]string`` (``split``'s result, ``Secret.Warnings``)
    GoSecret       ``*dependency.Secret`` (what ``secret "p"`` returns)
    TypedNil       a nil pointer of a named type (``Secret.Auth``, ``Secret.WrapInfo``)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final


class _Invalid:
    """The zero reflect.Value: what a nil interface becomes after a pipeline stage."""

    _instance: _Invalid | None = None

    def __new__(cls) -> _Invalid:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Final = _Invalid()


class JsonNumber(str):
    """Go's ``json.Number``: a string kind whose text is the JSON literal."""

    __slots__ = ()


class StringSlice(list[str]):
    """Go ``[]string``; ``is_nil`` marks a nil slice (toJSON ``null``, prints ``[]``)."""

    is_nil: bool = False

    @classmethod
    def nil(cls) -> StringSlice:
        s = cls()
        s.is_nil = True
        return s


@dataclass(frozen=True)
class TypedNil:
    """A nil pointer of a named type, e.g. ``*dependency.SecretAuth``."""

    type_name: str


@dataclass(frozen=True)
class GoSecret:
    """consul-template's ``dependency.Secret`` (dependency/vault_common.go), field order kept.

    For a KV2 read, ``Data`` is the HTTP ``data`` object: ``{"data": ..., "metadata": ...}``.
    kv2render does not keep the server's request_id, so ``RequestID`` is empty.
    """

    Data: dict[str, Any] = field(repr=False)
    RequestID: str = ""
    LeaseID: str = ""
    LeaseDuration: int = 0
    Renewable: bool = False
    Warnings: StringSlice = field(default_factory=StringSlice.nil)
    Auth: TypedNil = TypedNil("*dependency.SecretAuth")
    WrapInfo: TypedNil = TypedNil("*dependency.SecretWrapInfo")

    FIELDS: tuple[str, ...] = (
        "RequestID",
        "LeaseID",
        "LeaseDuration",
        "Renewable",
        "Data",
        "Warnings",
        "Auth",
        "WrapInfo",
    )

    def field_values(self) -> list[tuple[str, Any]]:
        return [(name, getattr(self, name)) for name in self.FIELDS]


SECRET_TYPE = "*dependency.Secret"


def go_number_text(value: int | float) -> str:
    """Best-effort JSON text for a number that reached us already decoded."""
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def from_json(value: Any) -> Any:
    """Turn decoded JSON (possibly with Python numbers) into the Go data model."""
    if isinstance(value, bool) or value is None or isinstance(value, JsonNumber):
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        # The store keeps the server's text (jsonnum): 1.50 stays 1.50, as with UseNumber.
        text = getattr(value, "json_text", None)
        return JsonNumber(text if isinstance(text, str) else go_number_text(value))
    if isinstance(value, Mapping):
        return {str(k): from_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [from_json(v) for v in value]
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def loads_json(text: str) -> Any:
    """Decode JSON the way the Vault API client does (``UseNumber``): numbers keep their text."""
    return json.loads(text, parse_int=JsonNumber, parse_float=JsonNumber)


def make_secret(data: Mapping[str, Any], metadata: Mapping[str, Any]) -> GoSecret:
    return GoSecret(Data={"data": from_json(data), "metadata": from_json(metadata)})


# Go's type names by Python class, in match order: json.Number before string (JsonNumber is
# a str), bool before int, []string before []interface {} (StringSlice is a list).
_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (JsonNumber, "json.Number"),
    (str, "string"),
    (bool, "bool"),
    (int, "int"),
    (float, "float64"),
    (StringSlice, "[]string"),
    (list, "[]interface {}"),
    (dict, "map[string]interface {}"),
    (GoSecret, SECRET_TYPE),
)


def type_name(v: Any) -> str:
    """Go's ``%T``/reflect type name of a model value."""
    if v is INVALID:
        return "<nil>"
    if v is None:
        return "interface {}"
    if isinstance(v, TypedNil):
        return v.type_name
    for cls, name in _TYPE_NAMES:
        if isinstance(v, cls):
            return name
    return type(v).__name__


def kind(v: Any) -> str:
    """reflect.Kind of a value (after unwrapping the interface)."""
    if v is INVALID or v is None:
        return "invalid"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, list):
        return "slice"
    if isinstance(v, dict):
        return "map"
    if isinstance(v, GoSecret | TypedNil):
        return "ptr"
    return "invalid"


def is_true(v: Any) -> bool:
    """Go text/template ``isTrue``: a json.Number is a non-empty string, so ``0`` is true."""
    if v is INVALID or v is None:
        return False
    if isinstance(v, StringSlice):
        return len(v) > 0
    if isinstance(v, str | list | dict):
        return len(v) > 0
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, TypedNil):
        return False
    return True
