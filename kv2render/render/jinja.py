"""Jinja2 templates: a strict sandbox, ``kv2()``/``secret()``, references found before rendering.

::

    text --compile_template()--> CompiledTemplate(name, refs, dynamic)  (no network, `check`)
            parse -> refuse include/import, unknown names -> collect constant refs and
            the lines of computed ones (discover.py) -> add resource guards (guards.py)
            -> compile
    CompiledTemplate + {SecretLocation: SecretVersion} --render()--> str
            a computed reference not in the mapping: SecretsMissing, the runner reads it and
            renders again (KV2-INV-390)
            every error is a RenderError/MissingKeyError at `name:line`, passed through
            redact() (errortext.py)

Spec: KV2-INV/FC/AC-070..089 (templates). Choices that differ from plain Jinja2 or from
consul-template are explained where they are made and listed in docs/templates.md.

This module holds the environment and the two entry points. The environment is the sandbox
of ``sandbox.py`` (jinja2's ImmutableSandboxedEnvironment with more taken away) set up so:

* no globals but ``kv2``, ``secret``, a bounded ``range`` (``functions.py``) and ``dict``; no
  loader, so ``{% include %}``/``{% import %}``/``{% extends %}`` are refused at compile time;
* calls are allowed only to an explicit list of callables (our functions, macros, loop helpers,
  and a few pure ``str``/mapping methods): nothing outside the template's inputs is reachable;
* resource guards: a bounded ``range``, a budget of loop iterations and calls per render
  (``budget.py``), size checks on every string and container a template builds (``*``, ``+``,
  ``~``, ``%``, ``**``, literals, filters, calls: ``guards.py``), and ``max_output_bytes`` on
  the output (issue 10 item 3).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from jinja2 import StrictUndefined
from jinja2 import TemplateSyntaxError as JinjaSyntaxError

from kv2render.errors import RenderError, SecretsMissing
from kv2render.redact import REDACTED, redact
from kv2render.refs import SecretLocation, SecretRef
from kv2render.render.budget import (
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_RENDER_TIMEOUT,
    MAX_FILTER_ITEMS,
    MAX_RANGE,
    MAX_STEPS,
    STATE,
    RenderState,
)
from kv2render.render.discover import check_names, check_structure, discover_refs, syntax_error
from kv2render.render.errortext import constants, render_error
from kv2render.render.filters import FILTERS
from kv2render.render.functions import FUNCTIONS, SecretData
from kv2render.render.guards import (
    LOOP_GUARD,
    REMOVED_FILTERS,
    SIZE_GUARD,
    AddGuards,
    guarded_filter,
    loop_guard,
    size_guard,
)
from kv2render.render.sandbox import Sandbox, finalize, mark_safe

if TYPE_CHECKING:
    from jinja2 import Template

    from kv2render.model import SecretVersion

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_RENDER_TIMEOUT",
    "MAX_FILTER_ITEMS",
    "MAX_RANGE",
    "MAX_STEPS",
    "REDACTED",
    "CompiledTemplate",
    "SecretData",
    "compile_template",
    "redact",
    "render",
]

# -- the compiled template -----------------------------------------------------------------


@dataclass(frozen=True)
class CompiledTemplate:
    """A parsed, checked and compiled template; ``refs`` are known before anything is read."""

    name: str  # the source path, or 'template[2].contents'
    refs: tuple[SecretRef, ...]  # every distinct constant secret()/kv2() reference, in order
    error_on_missing_key: bool = True
    # 'name:line' of each kv2()/secret() call whose argument is computed (KV2-INV-390)
    dynamic: tuple[str, ...] = ()
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    render_timeout: float = DEFAULT_RENDER_TIMEOUT
    _template: Template | None = field(default=None, repr=False, compare=False)
    _calls: Mapping[tuple[str, str], SecretRef] = field(
        default_factory=dict, repr=False, compare=False
    )
    _source: str = field(default="", repr=False, compare=False)
    # Every constant written in the template (string/number literals, attribute, variable,
    # filter and macro names): the only text an error may quote (KV2-INV-366).
    _constants: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @property
    def locations(self) -> frozenset[SecretLocation]:
        return frozenset(ref.location for ref in self.refs)


# -- the environment -----------------------------------------------------------------------


def _make_env() -> Sandbox:
    env = Sandbox(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=finalize,
        auto_reload=False,
        cache_size=0,
    )
    env.globals.clear()  # drops lipsum, cycler, joiner, namespace (see docs/templates.md)
    env.globals.update({name: mark_safe(func) for name, func in FUNCTIONS.items()}, dict=dict)
    for name in REMOVED_FILTERS:
        env.filters.pop(name, None)
    for name, func in list(env.filters.items()):
        env.filters[name] = guarded_filter(name, func)
    for name, func in FILTERS.items():
        env.filters[name] = guarded_filter(name, func)
    env.filters[LOOP_GUARD] = loop_guard
    env.filters[SIZE_GUARD] = size_guard
    return env


_ENV: Sandbox | None = None


def _env() -> Sandbox:
    global _ENV
    if _ENV is None:
        _ENV = _make_env()
    return _ENV


# -- compile -------------------------------------------------------------------------------


def compile_template(
    text: str,
    *,
    name: str,
    error_on_missing_key: bool = True,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    render_timeout: float = DEFAULT_RENDER_TIMEOUT,
) -> CompiledTemplate:
    """Parse, check and compile ``text``; raise TemplateSyntaxError ``name:line: ...``.

    Nothing is read here: ``refs`` lists what render() will need (spec KV2-INV-071).
    """
    if max_output_bytes < 1:
        raise ValueError("max_output_bytes must be positive")
    if not render_timeout > 0:
        raise ValueError("render_timeout must be positive")
    env = _env()
    try:
        ast = env.parse(text, name=name, filename=name)
        check_structure(ast, name)
        refs, calls, dynamic = discover_refs(ast, name)
        words = constants(ast)
        check_names(ast, name, env)  # last: jinja's meta pass const-folds the tree in place
        AddGuards().visit(ast)
        code = env.compile(ast, name=name, filename=name)
    except JinjaSyntaxError as exc:
        raise syntax_error(exc.message or "syntax error", name, exc.lineno) from None
    except RecursionError:
        # Thousands of nested (, [ or {% if %}: jinja's parser and compiler recurse (issue 10).
        raise syntax_error(
            "the template nests too deeply", name, None, hint="flatten the nested blocks"
        ) from None
    template = env.template_class.from_code(env, code, env.make_globals(None))
    return CompiledTemplate(
        name=name,
        refs=tuple(refs),
        error_on_missing_key=error_on_missing_key,
        dynamic=tuple(dynamic),
        max_output_bytes=max_output_bytes,
        render_timeout=render_timeout,
        _template=template,
        _calls=calls,
        _source=text,
        _constants=words,
    )


# -- render --------------------------------------------------------------------------------


def render(
    tpl: CompiledTemplate,
    secrets: Mapping[SecretLocation, SecretVersion],
    *,
    used: set[SecretLocation] | None = None,
) -> str:
    """Render with the secrets read for ``tpl.locations``; RenderError/MissingKeyError else.

    A reference computed while rendering is looked up in ``secrets`` too; when one is not
    there, SecretsMissing lists them all and the output is discarded (KV2-INV-390). ``used``
    receives the computed references' locations of a complete render.
    """
    if tpl._template is None:
        raise RenderError("the template was not compiled by compile_template()", where=tpl.name)
    available: dict[SecretLocation, SecretVersion] = {}
    for location in sorted(tpl.locations):
        got = secrets.get(location)
        if got is None:
            raise RenderError(f"secret {location} was not read before rendering", where=tpl.name)
        available[location] = got
    state = RenderState(
        available,
        tpl._calls,
        tpl.error_on_missing_key,
        tpl.max_output_bytes,
        constants=tpl._constants,
        timeout=tpl.render_timeout,
        deadline=time.monotonic() + tpl.render_timeout,
        pool=secrets,
        name=tpl.name,
        template=tpl._template,
    )
    token = STATE.set(state)
    chunks: list[str] = []
    size = 0
    generator = cast(Generator[str, None, None], tpl._template.generate())
    try:
        for chunk in generator:
            state.check_clock()
            size += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8"))
            if size > tpl.max_output_bytes:
                raise RenderError(
                    f"output is larger than max_output_bytes ({tpl.max_output_bytes})",
                    hint="raise template_config.max_output_bytes if this output is intended",
                )
            chunks.append(chunk)
    except Exception as exc:
        if state.missing:
            # An incomplete render's errors are not trusted: a pending secret printed as
            # nothing may be what failed (consul-template ignores them the same way).
            if used is not None:  # KV2-INV-394: what was read so far judges the missing
                used.update(state.used)
            raise SecretsMissing(state.missing) from None
        # 'from None': the original message may quote a value (KV2-INV-001).
        seen = [*available.values(), *(secrets[loc] for loc in state.used)]
        raise render_error(exc, tpl.name, tpl._constants, seen) from None
    finally:
        generator.close()
        STATE.reset(token)
    if used is not None:  # before SecretsMissing too (KV2-INV-394)
        used.update(state.used)
    if state.missing:
        raise SecretsMissing(state.missing)
    return "".join(chunks)
