"""consul-template (Vault Agent) templates, interpreted directly (spec: issue 9, KV2-*-25x).

Data flow::

    text --lexer--> tokens --parser--> tree --refs--> CtTemplate(name, refs)
    CtTemplate + {SecretLocation: SecretVersion} --exec (Go text/template rules)--> str

Why an interpreter and not a Jinja2 translation: Go's truthiness (a JSON ``0`` and
``"false"`` are true), its printing (``<no value>``, ``map[a:1]``, number literals
kept), its argument type checks and its error-on-missing-key behaviour cannot be
expressed reliably in Jinja2. :func:`to_jinja2` still offers a migration path.

Output may carry bytes that are not UTF-8 (``base64Decode`` of a binary value): they
are kept as lone surrogates, so ``text.encode("utf-8", "surrogateescape")`` gives
the exact bytes Vault Agent would write.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kv2render.errors import MissingKeyError, RenderError, TemplateSyntaxError
from kv2render.model import SecretVersion
from kv2render.redact import redact, scrub_quoted
from kv2render.refs import SecretLocation, SecretRef
from kv2render.render.ctmpl import nodes as n
from kv2render.render.ctmpl.exec import ExecError, execute
from kv2render.render.ctmpl.funcs import CallContext, check_function
from kv2render.render.ctmpl.gofmt import go_quote
from kv2render.render.ctmpl.parser import ParseError, parse
from kv2render.render.ctmpl.values import GoSecret, make_secret

__all__ = ["CtTemplate", "compile_ctmpl", "render_ctmpl", "to_jinja2"]


@dataclass(frozen=True)
class CtTemplate:
    """A parsed consul-template template and the KV2 secrets it reads."""

    name: str
    refs: tuple[SecretRef, ...]
    text: str = field(default="", repr=False, compare=False)
    error_on_missing_key: bool = False
    root: n.ListNode = field(default_factory=lambda: n.ListNode(0), repr=False, compare=False)
    templates: dict[str, n.ListNode] = field(default_factory=dict, repr=False, compare=False)
    paths: dict[str, SecretLocation] = field(default_factory=dict, repr=False, compare=False)

    @property
    def locations(self) -> frozenset[SecretLocation]:
        return frozenset(ref.location for ref in self.refs)


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _parse(text: str, name: str, left: str, right: str) -> tuple[n.ListNode, dict[str, n.ListNode]]:
    try:
        return parse(text, check_function, left, right)
    except ParseError as exc:
        message = exc.message.replace("{name}", name)
        raise TemplateSyntaxError(message, where=f"{name}:{exc.line}") from None
    except RecursionError:
        # Thousands of nested ( or {{if}}: a clear error, not an internal one (issue 10).
        raise TemplateSyntaxError(
            "the template nests too deeply", where=name, hint="flatten the nested blocks"
        ) from None


def _walk_commands(node: object) -> list[tuple[n.PipeNode, n.CommandNode]]:
    """Every (pipeline, command) pair in a tree, in source order."""
    found: list[tuple[n.PipeNode, n.CommandNode]] = []

    def visit(x: object, pipe: n.PipeNode | None) -> None:
        if isinstance(x, n.ListNode):
            for child in x.nodes:
                visit(child, None)
        elif isinstance(x, n.ActionNode):
            visit(x.pipe, None)
        elif isinstance(x, n.BranchNode):
            visit(x.pipe, None)
            visit(x.body, None)
            if x.else_list is not None:
                visit(x.else_list, None)
        elif isinstance(x, n.TemplateNode) and x.pipe is not None:
            visit(x.pipe, None)
        elif isinstance(x, n.PipeNode):
            for cmd in x.cmds:
                found.append((x, cmd))
                for arg in cmd.args:
                    visit(arg, x)
        elif isinstance(x, n.ChainNode):
            visit(x.node, pipe)

    visit(node, None)
    return found


def _secret_paths(text: str, name: str, trees: list[n.ListNode]) -> list[tuple[str, int]]:
    paths: list[tuple[str, int]] = []
    for tree in trees:
        for pipe, cmd in _walk_commands(tree):
            first = cmd.args[0]
            if not (isinstance(first, n.IdentifierNode) and first.ident == "secret"):
                continue
            where = f"{name}:{_line_of(text, first.pos)}"
            if len(cmd.args) > 2:
                raise TemplateSyntaxError(
                    "secret with extra arguments is a write; kv2render only reads secrets",
                    where=where,
                    hint="remove the key=value arguments",
                )
            if pipe.cmds.index(cmd) > 0:
                raise TemplateSyntaxError(
                    "secret in a later pipeline stage receives the previous value as a write "
                    "argument; kv2render only reads secrets",
                    where=where,
                )
            if len(cmd.args) < 2 or not isinstance(cmd.args[1], n.StringNode):
                raise TemplateSyntaxError(
                    "secret needs a constant path so its reads are known before rendering",
                    where=where,
                    hint='write the path as a string literal: secret "secret/data/app"',
                )
            paths.append((cmd.args[1].text, first.pos))
    return paths


def _parse_path(path: str, where: str) -> SecretRef:
    from kv2render.refs import parse_ref

    return parse_ref(path, where=where, allow_path_form=True)


def compile_ctmpl(
    text: str,
    *,
    name: str,
    left_delim: str = "{{",
    right_delim: str = "}}",
    error_on_missing_key: bool = False,
) -> CtTemplate:
    """Parse a consul-template template; TemplateSyntaxError names ``name:line``."""
    root, templates = _parse(text, name, left_delim or "{{", right_delim or "}}")
    refs: list[SecretRef] = []
    paths: dict[str, SecretLocation] = {}
    try:
        found = _secret_paths(text, name, [root, *templates.values()])
    except RecursionError:
        raise TemplateSyntaxError(
            "the template nests too deeply", where=name, hint="flatten the nested blocks"
        ) from None
    for path, pos in found:
        if path in paths:
            continue
        ref = _parse_path(path, f"{name}:{_line_of(text, pos)}")
        paths[path] = ref.location
        if ref not in refs:
            refs.append(ref)
    return CtTemplate(
        name=name,
        refs=tuple(refs),
        text=text,
        error_on_missing_key=error_on_missing_key,
        root=root,
        templates=templates,
        paths=paths,
    )


def render_ctmpl(
    tpl: CtTemplate,
    secrets: Mapping[SecretLocation, SecretVersion],
    *,
    env: Mapping[str, str] | None = None,
    now: Callable[[], datetime] | None = None,
    max_output_bytes: int = 1 << 20,
    render_timeout: float = 10.0,
) -> str:
    """Render with Vault Agent's semantics; RenderError/MissingKeyError name ``name:line:col``."""
    cache: dict[SecretLocation, GoSecret] = {}

    def secret(path: str) -> GoSecret:
        location = tpl.paths[path]
        if location not in cache:
            version = secrets.get(location)
            if version is None:
                raise RenderError(f"secret {location} was not read", where=tpl.name)
            cache[location] = make_secret(version.data, version.metadata)
        return cache[location]

    ctx = CallContext(
        env=os.environ if env is None else env,
        now=now or (lambda: datetime.now(UTC)),
        secret=secret,
        max_bytes=max_output_bytes,
        deadline=time.monotonic() + render_timeout,
        timeout=render_timeout,
    )
    try:
        return execute(
            tpl.name,
            tpl.text,
            tpl.root,
            tpl.templates,
            ctx,
            missing_error=tpl.error_on_missing_key,
        )
    except ExecError as exc:
        # Go's messages quote the values they choke on (strconv: parsing "<value>"): redact
        # the secrets' values, then keep only quoted text the template itself holds.
        message = scrub_quoted(redact(exc.message, secrets.values()), tpl.text)
        if exc.context is not None:
            message = f"executing {go_quote(tpl.name)} at <{exc.context}>: {message}"
        cls = MissingKeyError if "no entry for key" in exc.message else RenderError
        raise cls(message, where=exc.location) from None


def to_jinja2(text: str, *, name: str, left_delim: str = "{{", right_delim: str = "}}") -> str:
    """An equivalent Jinja2 template for ``kv2render convert``; ConfigError if not expressible."""
    from kv2render.render.ctmpl.convert import convert

    return convert(text, name=name, left_delim=left_delim or "{{", right_delim=right_delim or "}}")
