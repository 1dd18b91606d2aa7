"""Request fields of the KV v2 engine as our reading of Vault converts them (vault and ovh).

Vault's TypeCommaIntSlice, int, bool and duration fields, and the custom_metadata limits of
KVP path_metadata.go (kv2-wire.md §2.6). The openbao flavour converts the same fields as
measured on OpenBao instead (gofields.py).
"""

from __future__ import annotations

from typing import Any

from kv2render.devserver._time import parse_duration
from kv2render.devserver.protocol import ApiError

__all__ = [
    "bool_field",
    "duration_field",
    "int_field",
    "validate_custom_metadata",
    "versions_arg",
]


def versions_arg(body: dict[str, Any], message: str) -> list[int]:
    """Vault's TypeCommaIntSlice: a list of ints, numeric strings, or '1,2'."""
    raw = body.get("versions")
    items: list[Any]
    if raw is None:
        items = []
    elif isinstance(raw, str):
        items = [p for p in raw.split(",") if p.strip()]
    elif isinstance(raw, list):
        items = raw
    else:
        items = [raw]
    out: list[int] = []
    for item in items:
        try:
            out.append(int(item))
        except (TypeError, ValueError) as exc:
            raise ApiError(400, f"invalid version number {item!r}") from exc
    if not out:
        raise ApiError(400, message)
    return out


def int_field(body: dict[str, Any], name: str) -> int | None:
    if name not in body or body[name] is None:
        return None
    value = body[name]
    if isinstance(value, bool):
        raise ApiError(400, f"error converting input for field {name!r}: expected an integer")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ApiError(
            400, f"error converting input for field {name!r}: expected an integer"
        ) from exc


def bool_field(body: dict[str, Any], name: str) -> bool | None:
    if name not in body or body[name] is None:
        return None
    value = body[name]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ApiError(400, f"error converting input for field {name!r}: expected a boolean")


def duration_field(body: dict[str, Any], name: str) -> int | None:
    if name not in body or body[name] is None:
        return None
    try:
        return parse_duration(body[name], name)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc


def validate_custom_metadata(raw: Any) -> dict[str, str]:
    # Limits from KVP path_metadata.go (kv2-wire.md §2.6).
    if not isinstance(raw, dict):
        raise ApiError(400, "custom_metadata validation failed: expected a map of strings")
    problems = []
    if len(raw) > 64:
        problems.append(f"payload must contain at most 64 keys, provided {len(raw)}")
    for key, value in raw.items():
        if not 1 <= len(key) <= 128:
            problems.append(f"length of key {key!r} is {len(key)} but must be 0 < len(key) <= 128")
        if not isinstance(value, str) or not 1 <= len(value) <= 512:
            problems.append(f"value of key {key!r} must be a string of 1 to 512 characters")
    if problems:
        raise ApiError(400, "custom_metadata validation failed: " + "; ".join(problems))
    return {str(k): str(v) for k, v in raw.items()}
