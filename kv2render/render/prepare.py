"""A template entry compiled into something the runner can render: :class:`PreparedTemplate`.

``prepare(config)`` compiles every ``template`` entry before anything is read, so the
secrets each needs are known up front (KV2-INV-071), and reports every problem found, not
only the first (KV2-INV-398). What an entry compiles to depends on its kind:

* a ``ref:`` entry selects one value of one secret (or the whole secret): no template;
* ``syntax: consul-template`` compiles with ``ctmpl/``; its ``env`` calls see the commands'
  token-free environment (KV2-INV-101, ``hardening.command_environment``);
* anything else compiles with the Jinja2 sandbox (``jinja.py``).

Each gives a ``render(secrets[, used])`` that returns the output's bytes, UTF-8, or raises a
RenderError (a lone surrogate included, issue 10). The engines are imported only when an
entry needs them: a ``ref:``-only configuration never loads Jinja2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from kv2render import hardening
from kv2render.config import Config, TemplateSpec
from kv2render.errors import ConfigError, RenderError, TemplateSyntaxError, raise_all
from kv2render.model import SecretVersion
from kv2render.refs import SecretLocation, value_to_text

__all__ = ["Compiled", "PreparedTemplate", "prepare", "prepare_all", "prepare_one"]


class Compiled(Protocol):
    """What both template engines (Jinja2 and consul-template) compile to."""

    @property
    def name(self) -> str: ...

    @property
    def locations(self) -> frozenset[SecretLocation]: ...


@dataclass(frozen=True)
class PreparedTemplate:
    """A template entry, compiled, with the secrets it needs known up front.

    ``locations`` are the constant references; ``dynamic`` names (``name:line``) the calls
    whose path is computed while rendering. When there are any, ``render`` takes a second
    argument ``used=set()`` and puts the computed paths' locations of its render in it.
    """

    spec: TemplateSpec
    compiled: Compiled | None  # None for a ``ref:`` entry
    locations: frozenset[SecretLocation]
    render: Callable[..., bytes] = field(repr=False)
    dynamic: tuple[str, ...] = ()


def prepare(config: Config) -> list[PreparedTemplate]:
    """Compile every template; raise every problem found, not only the first (KV2-INV-398)."""
    tc = config.template_config
    prepared, problems = prepare_all(config.templates, tc.max_output_bytes, tc.render_timeout)
    raise_all(problems)
    return prepared


def prepare_all(
    specs: Iterable[TemplateSpec], max_output_bytes: int, render_timeout: float
) -> tuple[list[PreparedTemplate], list[ConfigError]]:
    """Compile each of ``specs``: those that compiled, and the problems of the others."""
    prepared: list[PreparedTemplate] = []
    problems: list[ConfigError] = []
    for spec in specs:
        try:
            prepared.append(
                prepare_one(spec, max_output_bytes=max_output_bytes, render_timeout=render_timeout)
            )
        except ConfigError as exc:
            problems.append(exc)
    return prepared, problems


def _read_source(spec: TemplateSpec) -> str:
    assert spec.source is not None
    try:
        return spec.source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"source file {str(spec.source)!r} does not exist", where=f"{spec.where}.source"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"source file {str(spec.source)!r} is not UTF-8 text", where=f"{spec.where}.source"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read source file {str(spec.source)!r}: {exc.strerror}",
            where=f"{spec.where}.source",
        ) from None


def _encode(text: str, where: str, errors: str = "strict") -> bytes:
    """UTF-8 bytes of an output; a lone surrogate (a ``\\ud800`` escape in a server's JSON)
    is a RenderError, not an internal error (issue 10, KV2-AC-287)."""
    try:
        return text.encode("utf-8", errors)
    except UnicodeEncodeError:
        raise RenderError(
            "the output holds a lone surrogate (\\ud800-\\udfff), which UTF-8 cannot encode",
            where=where,
            hint="a secret value carries an invalid \\u escape; fix the value at the source",
        ) from None


def prepare_one(
    spec: TemplateSpec, *, max_output_bytes: int = 1 << 20, render_timeout: float = 10.0
) -> PreparedTemplate:
    """Compile one template entry (KV2-INV-071: references are known before any read)."""
    if spec.ref is not None:
        ref = spec.ref
        location = ref.location
        if ref.key is None and ref.pointer is None and not spec.whole_secret:
            # config_build refuses this at load time; a TemplateSpec built in code too.
            raise ConfigError(
                "names no key; a ref: output writes one value unless whole_secret is set",
                where=f"{spec.where}.ref",
            )

        def render_ref(secrets: Mapping[SecretLocation, SecretVersion]) -> bytes:
            text = value_to_text(ref.select(secrets[location].data))
            if text == "":
                # The connector refuses an empty password (KV2-FC-009).
                raise RenderError(
                    f"the value selected by {ref} is empty; the consumer would read an empty "
                    "password",
                    where=f"{spec.where}.ref",
                )
            return _encode(text, f"{spec.where}.ref")

        return PreparedTemplate(spec, None, frozenset({location}), render_ref)

    text = spec.contents if spec.contents is not None else _read_source(spec)
    name = str(spec.source) if spec.source is not None else f"{spec.where}.contents"
    if spec.syntax == "consul-template":
        from kv2render.render import ctmpl

        ct = ctmpl.compile_ctmpl(
            text,
            name=name,
            left_delim=spec.left_delimiter or "{{",
            right_delim=spec.right_delimiter or "}}",
            error_on_missing_key=spec.error_on_missing_key,
            function_denylist=spec.function_denylist,
        )

        def render_ct(
            secrets: Mapping[SecretLocation, SecretVersion],
            used: set[SecretLocation] | None = None,
        ) -> bytes:
            # surrogateescape: ctmpl keeps base64Decode's non-UTF-8 bytes as lone surrogates
            # (ctmpl/__init__.py); strict UTF-8 crashed on them (issue 10).
            # env/mustEnv/envOrDefault see the commands' environment: no VAULT_TOKEN/BAO_TOKEN
            # (KV2-INV-101); a template could otherwise write the token into a file (issue 10).
            text = ctmpl.render_ctmpl(
                ct,
                secrets,
                env=hardening.LazyCommandEnvironment(),
                max_output_bytes=max_output_bytes,
                render_timeout=render_timeout,
                used=used,
            )
            out = _encode(text, name, "surrogateescape")
            if len(out) > max_output_bytes:
                raise RenderError(
                    f"output is larger than max_output_bytes ({max_output_bytes})", where=name
                )
            return out

        return PreparedTemplate(spec, ct, ct.locations, render_ct, ct.dynamic)

    if spec.left_delimiter or spec.right_delimiter:
        raise TemplateSyntaxError(
            "left_delimiter/right_delimiter apply to consul-template syntax only",
            where=spec.where,
            hint="set syntax: consul-template, or remove the delimiters",
        )
    from kv2render.render import jinja

    compiled = jinja.compile_template(
        text,
        name=name,
        error_on_missing_key=spec.error_on_missing_key,
        max_output_bytes=max_output_bytes,
        render_timeout=render_timeout,
    )

    def render_jinja(
        secrets: Mapping[SecretLocation, SecretVersion], used: set[SecretLocation] | None = None
    ) -> bytes:
        return jinja.render(compiled, secrets, used=used).encode("utf-8")

    return PreparedTemplate(spec, compiled, compiled.locations, render_jinja, compiled.dynamic)
