"""Vault Agent's ``listener`` and ``telemetry`` stanzas, as kv2render reads them (issue 17).

``listener "tcp" { role = "metrics_only" }`` becomes ``metrics: {address}`` (KV2-INV-426).
A listener with another role is the agent's API proxy, which kv2render has not: ignored with
a warning as before (KV2-FC-251), since it changes nothing rendered. ``telemetry``'s
Prometheus settings go with a metrics listener: the metrics are always Prometheus, kept for
the process's life.
"""

from __future__ import annotations

from typing import Any

from kv2render.config.sources import unwrap_block
from kv2render.errors import ConfigError

__all__ = ["metrics_listener"]

_LISTENER_KEYS = ("address", "tls_disable", "role", "telemetry")
_TELEMETRY_KEYS = ("prometheus_retention_time", "disable_hostname")
_NO_PROXY = (
    "kv2render has no listener for the API proxy or cache; one with role = "
    '"metrics_only" serves metrics and health'
)
# Vault's listener address when none is given.
_DEFAULT_ADDRESS = "127.0.0.1:8200"


def metrics_listener(
    out: dict[str, Any], changes: list[tuple[str, str]], ignored: list[str]
) -> None:
    """Pop ``listener``/``telemetry`` from the agent tree ``out``; set ``out["metrics"]`` when
    a metrics_only listener asks for one. ``changes`` and ``ignored`` gather the notices."""
    listeners = _listeners(out.pop("listener", None))
    telemetry = unwrap_block(out.pop("telemetry", None))
    metrics = [
        (k, b) for k, b in listeners if isinstance(b, dict) and b.get("role") == "metrics_only"
    ]
    if len(metrics) < len(listeners):
        ignored.append(f"ignoring the agent 'listener' stanza ({_NO_PROXY})")
        if not metrics:
            changes.append(("listener", f"dropped: {_NO_PROXY}"))
    if telemetry is not None:
        _telemetry(telemetry, bool(metrics), changes, ignored)
    if not metrics:
        return
    if len(metrics) > 1:
        raise ConfigError(
            'more than one listener with role = "metrics_only"',
            where="listener",
            hint="kv2render serves metrics and health on one listener: keep one",
        )
    kind, body = metrics[0]
    _check_metrics_listener(kind, body)
    out["metrics"] = {"address": str(body.get("address", _DEFAULT_ADDRESS))}
    changes.append(("listener", "the metrics_only listener: served as metrics.address"))


def _listeners(raw: Any) -> list[tuple[str, Any]]:
    """(kind, body) of each listener block, in HCL (``listener "tcp" {}``) or JSON shape."""
    found: list[tuple[str, Any]] = []
    for block in raw if isinstance(raw, list) else [] if raw is None else [raw]:
        if isinstance(block, dict) and len(block) == 1 and "type" not in block:
            ((kind, body),) = block.items()  # HCL: listener "tcp" { ... }
        elif isinstance(block, dict):
            kind = str(block.get("type", "tcp"))
            body = {k: v for k, v in block.items() if k != "type"}
        else:
            raise ConfigError("must be a block", where="listener")
        found.append((str(kind), unwrap_block(body)))
    return found


def _telemetry(
    telemetry: Any, with_metrics: bool, changes: list[tuple[str, str]], ignored: list[str]
) -> None:
    if not with_metrics:
        why = 'no listener with role = "metrics_only" serves metrics'
        ignored.append(f"ignoring the agent 'telemetry' stanza ({why})")
        changes.append(("telemetry", f"dropped: {why}"))
        return
    if isinstance(telemetry, dict):
        extra = sorted(k for k in telemetry if k not in _TELEMETRY_KEYS)
        if extra:
            ignored.append(
                f"ignoring 'telemetry.{', telemetry.'.join(extra)}' (the metrics are "
                "Prometheus only, at the listener's /metrics)"
            )
        changes.append(("telemetry", "dropped: the metrics listener always serves Prometheus"))


def _check_metrics_listener(kind: str, body: dict[str, Any]) -> None:
    where = f'listener "{kind}"'
    if kind != "tcp":
        raise ConfigError(
            "only a tcp listener is supported", where=where, hint='write listener "tcp" { ... }'
        )
    unknown = sorted(k for k in body if k not in _LISTENER_KEYS)
    if unknown:
        raise ConfigError(
            f"not supported by kv2render's listener: {', '.join(unknown)}",
            where=where,
            hint='it takes address, tls_disable = true and role = "metrics_only"',
        )
    if body.get("tls_disable") not in (True, "true", 1):
        raise ConfigError(
            "kv2render's listener has no TLS",
            where=f"{where}.tls_disable",
            hint="set tls_disable = true and keep the address on loopback or the pod network",
        )
