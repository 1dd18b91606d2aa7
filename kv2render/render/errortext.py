"""A Jinja2 engine error as kv2render reports it: at ``name:line``, with nothing secret in it.

An exception raised while a template renders becomes one RenderError (or MissingKeyError)
whose place is the innermost template line of its traceback (jinja rewrites tracebacks so).
Its text goes through ``redact.redact()`` with every secret value the render saw; the
engine's own text, which may quote a value the template derived from a secret (upper-cased,
sliced, encoded) that redact() cannot recognise, is also passed through
``redact.scrub_engine_text()`` with :func:`constants`, the words the template itself wrote
and the only text such an error may quote (KV2-INV-366).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError

from kv2render.errors import Kv2RenderError, RenderError
from kv2render.redact import redact, scrub_engine_text

if TYPE_CHECKING:
    from kv2render.model import SecretVersion

__all__ = ["constants", "render_error"]


def constants(ast: nodes.Template) -> frozenset[str]:
    """The template's own words: what an error message may quote (KV2-INV-366)."""
    found: set[str] = set()
    for node in ast.find_all(nodes.Node):
        if isinstance(node, nodes.Const):
            if isinstance(node.value, str | int | float) and not isinstance(node.value, bool):
                found.add(str(node.value))
        elif isinstance(node, nodes.Getattr):
            found.add(node.attr)
        elif isinstance(node, nodes.Name | nodes.Macro):
            found.add(node.name)
        elif isinstance(node, nodes.Filter | nodes.Test):
            found.add(node.name)
        elif isinstance(node, nodes.Keyword):
            found.add(node.key)
    return frozenset(found)


def _template_line(exc: BaseException, name: str) -> int | None:
    """The template line of the innermost template frame (jinja rewrites tracebacks so)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_error(
    exc: BaseException, name: str, quotable: frozenset[str], secrets: Iterable[SecretVersion]
) -> RenderError:
    """One RenderError at ``name:line``, with every secret value of the template redacted.

    ``quotable``: the template's :func:`constants`, all the engine's text may keep quoted.
    """
    line = _template_line(exc, name)
    where = f"{name}:{line}" if line else name
    hint: str | None = None
    cls: type[RenderError] = RenderError
    if isinstance(exc, Kv2RenderError):
        message, hint = exc.message, exc.hint
        if isinstance(exc, RenderError):
            cls = type(exc)
        if exc.where and exc.where != name:
            message = f"{exc.where}: {message}"
    elif isinstance(exc, SecurityError):
        message = f"refused by the template sandbox: {exc}"
        hint = "templates reach only their secrets, filters and a few pure functions"
    elif isinstance(exc, TemplateError):
        message = str(exc)
    elif isinstance(exc, RecursionError):
        message = "recursion too deep (a macro that calls itself without end?)"
    else:
        message = f"{type(exc).__name__}: {exc}"
    secrets = list(secrets)
    message = redact(message, secrets)
    if not isinstance(exc, Kv2RenderError):
        # The engine's own text may quote a value the template derived from a secret
        # (upper-cased, sliced, encoded), which redact() cannot recognise; kv2render's own
        # messages never format a computed value in the first place (KV2-INV-366).
        message = scrub_engine_text(message, quotable)
    return cls(
        message,
        where=where,
        hint=redact(hint, secrets) if hint else None,
    )
