"""Request fields as OpenBao converts them, with its Go-worded errors (openbao flavour only).

Measured against OpenBao 2.7.2 by tests/devserver/test_conformance_real.py (KV2-AC-340,
KV2-AC-342). OpenBao's framework converts fields with mapstructure's weak decoding, so a
``custom_metadata`` value ``true`` becomes ``"1"`` and ``1.50`` becomes ``"1.50"``, a ``cas`` of
``"1"`` counts as 1 while ``1.0`` is refused, and a bad field says
``error converting input for field "max_versions": '' cannot parse value as 'int': ...``.
The vault flavour keeps its own texts (kv.py): no Vault binary runs here to measure it.
"""

from __future__ import annotations

from typing import Any

from kv2render.devserver._time import parse_duration
from kv2render.devserver.protocol import ApiError
from kv2render.jsonnum import number_text

__all__ = [
    "NO_DATA",
    "cas_value",
    "custom_metadata",
    "data_value",
    "duration_field",
    "go_type",
    "int_field",
    "version_error",
]

_MAP = "map[string]interface {}"


def go_type(value: Any) -> str:
    """The Go type a UseNumber decode gives a JSON value, as mapstructure names it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "json.Number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return _MAP


# The router passes this when the body has no "data" key at all ("no data provided");
# an explicit null is stored as a version whose data reads back as null.
NO_DATA: Any = object()


def _unconvertible(field: str, want: str, value: Any, where: str = "") -> str:
    return (
        f"error converting input for field \"{field}\": '{where}' expected type '{want}', "
        f"got unconvertible type '{go_type(value)}'"
    )


def data_value(value: Any) -> dict[str, Any] | None:
    """``data`` as mapstructure decodes it: null stays null, an array of objects (nested at
    any depth) merges into one object, anything else is refused naming the element."""
    if value is None or isinstance(value, dict):
        return value
    if not isinstance(value, list):
        raise ApiError(400, _unconvertible("data", _MAP, value))
    merged: dict[str, Any] = {}
    _merge(value, "", merged)
    return merged


def _merge(items: list[Any], where: str, merged: dict[str, Any]) -> None:
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        if isinstance(item, dict):
            merged.update(item)
        elif isinstance(item, list):
            _merge(item, here, merged)
        else:
            raise ApiError(400, _unconvertible("data", _MAP, item, here))


def version_error(name: str = "version") -> ApiError:
    """A ``?version=`` (or ``?limit=``) query that is not an integer."""
    return ApiError(
        400,
        f"Field validation failed: error converting input for field \"{name}\": '' cannot "
        "parse value as 'int': strconv.ParseInt: invalid syntax",
    )


def _go_int(value: Any) -> int | None:
    """strconv.ParseInt(s, 0, 64) on what mapstructure hands it; None when it fails."""
    if isinstance(value, bool):
        return int(value)
    text = number_text(value)
    if text is None and isinstance(value, int):
        return value
    if text is None:
        text = value if isinstance(value, str) else None
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def int_field(body: dict[str, Any], name: str) -> int | None:
    if body.get(name) is None:
        return None
    number = _go_int(body[name])
    if number is None:
        raise ApiError(
            400,
            f"error converting input for field \"{name}\": '' cannot parse value as 'int': "
            "strconv.ParseInt: invalid syntax",
        )
    return number


def duration_field(body: dict[str, Any], name: str) -> int | None:
    if body.get(name) is None:
        return None
    value = body[name]
    try:
        return parse_duration(value, name)
    except ValueError as exc:
        shown = f'"{value}"' if isinstance(value, str) else str(value)
        raise ApiError(
            400, f'error converting input for field "{name}": time: invalid duration {shown}'
        ) from exc


def cas_value(raw: Any) -> int:
    """options.cas: null is 0, "1" and true count, a number written with a fraction or an
    exponent (even 1.0) does not."""
    if raw is None:
        return 0
    number = _go_int(raw)
    if number is None:
        raise ApiError(400, "error parsing check-and-set parameter")
    return number


def _as_string(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return ""
    text = number_text(value)
    return text if text is not None else str(value)


def custom_metadata(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ApiError(400, _unconvertible("custom_metadata", _MAP, raw))
    for value in raw.values():
        if isinstance(value, dict | list):
            raise ApiError(
                400,
                "custom_metadata validation failed: '' expected type 'string', "
                f"got unconvertible type '{go_type(value)}'",
            )
    converted = {str(k): _as_string(v) for k, v in raw.items()}
    problems = []
    if len(converted) > 64:
        problems.append(f"payload must contain at most 64 keys, provided {len(converted)}")
    for key, value in converted.items():
        if not 0 < len(key) <= 128:
            problems.append(f'length of key "{key}" is {len(key)} but must be 0 < len(key) <= 128')
        if not 0 < len(value) <= 512:
            problems.append(
                f'length of value for key "{key}" is {len(value)} but must be 0 < len(value) <= 512'
            )
    if problems:
        items = "".join(f"\t* custom_metadata validation failed: {p}\n" for p in problems)
        count = "1 error" if len(problems) == 1 else f"{len(problems)} errors"
        raise ApiError(400, f"{count} occurred:\n{items}\n")
    return converted
