"""consul-template (Vault Agent) templates, interpreted directly (spec: issue 9, KV2-*-25x).

Data flow::

    text --lexer--> tokens --parser--> tree --refs--> CtTemplate(name, refs, dynamic)
    CtTemplate + {SecretLocation: SecretVersion} --exec (Go text/template rules)--> str
        a path computed while rendering (printf, env, a variable, a pipeline) that is not in
        the mapping: SecretsMissing; the runner reads it and renders again (KV2-INV-390),
        as consul-template does with its ``missing`` set

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

from kv2render.errors import (
    MissingKeyError,
    ReferenceSyntaxError,
    RenderError,
    SecretsMissing,
    TemplateSyntaxError,
)
from kv2render.model import SecretVersion
from kv2render.redact import redact, scrub_quoted
from kv2render.refs import SecretLocation, SecretRef, parse_ref
from kv2render.render.ctmpl import nodes as n
from kv2render.render.ctmpl.exec import ExecError, execute
from kv2render.render.ctmpl.funcs import CallContext, FuncError, check_function
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
    # 'name:line' of each secret call whose path is computed while rendering (KV2-INV-390)
    dynamic: tuple[str, ...] = ()
    # function_denylist: these functions fail when called (KV2-INV-496)
    denied: frozenset[str] = frozenset()

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


def _constant_piped(pipe: n.PipeNode, index: int) -> n.StringNode | None:
    """The string literal a pipeline feeds stage ``index`` (``"p" | secret``), if it is one."""
    if index != 1:
        return None
    before = pipe.cmds[0].args
    return before[0] if len(before) == 1 and isinstance(before[0], n.StringNode) else None


def _secret_paths(
    text: str, name: str, trees: list[n.ListNode]
) -> tuple[list[tuple[str, int]], list[str]]:
    """Constant secret paths (with their positions) and the lines of computed ones.

    Go's pipeline passes the previous value as the LAST argument: ``"p" | secret`` is
    ``secret "p"``, a read; ``"k=v" | secret "p"`` is ``secret "p" "k=v"``, a write
    (consul-template's secretFunc: a path plus key=value data). Only writes are refused.
    """
    paths: list[tuple[str, int]] = []
    dynamic: list[str] = []
    for tree in trees:
        for pipe, cmd in _walk_commands(tree):
            first = cmd.args[0]
            if not (isinstance(first, n.IdentifierNode) and first.ident == "secret"):
                continue
            where = f"{name}:{_line_of(text, first.pos)}"
            index = pipe.cmds.index(cmd)
            given = len(cmd.args) - 1 + (1 if index > 0 else 0)
            if given > 1:
                raise TemplateSyntaxError(
                    "secret with more than one argument (a path and key=value data, a piped "
                    "value counting as the last) is a write; kv2render only reads secrets",
                    where=where,
                    hint="remove the key=value arguments",
                )
            if given == 0:
                raise TemplateSyntaxError(
                    "secret needs a path",
                    where=where,
                    hint='write secret "secret/data/app" or secret (printf ...)',
                )
            literal = cmd.args[1] if index == 0 else _constant_piped(pipe, index)
            if isinstance(literal, n.StringNode):
                paths.append((literal.text, first.pos))
            elif where not in dynamic:
                dynamic.append(where)
    return paths, dynamic


def _parse_path(path: str, where: str) -> SecretRef:
    return parse_ref(path, where=where, allow_path_form=True)


def compile_ctmpl(
    text: str,
    *,
    name: str,
    left_delim: str = "{{",
    right_delim: str = "}}",
    error_on_missing_key: bool = False,
    function_denylist: tuple[str, ...] = (),
) -> CtTemplate:
    """Parse a consul-template template; TemplateSyntaxError names ``name:line``.

    A function on ``function_denylist`` still parses, and fails when a render calls it, as in
    consul-template (KV2-INV-496); a denied ``secret`` reads nothing."""
    root, templates = _parse(text, name, left_delim or "{{", right_delim or "}}")
    refs: list[SecretRef] = []
    paths: dict[str, SecretLocation] = {}
    try:
        found, dynamic = _secret_paths(text, name, [root, *templates.values()])
    except RecursionError:
        raise TemplateSyntaxError(
            "the template nests too deeply", where=name, hint="flatten the nested blocks"
        ) from None
    denied = frozenset(function_denylist)
    if "secret" in denied:
        found, dynamic = [], []  # its calls fail when they run: nothing is read for them
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
        dynamic=tuple(dynamic),
        denied=denied,
    )


def render_ctmpl(
    tpl: CtTemplate,
    secrets: Mapping[SecretLocation, SecretVersion],
    *,
    env: Mapping[str, str] | None = None,
    now: Callable[[], datetime] | None = None,
    max_output_bytes: int = 1 << 20,
    render_timeout: float = 10.0,
    used: set[SecretLocation] | None = None,
) -> str:
    """Render with Vault Agent's semantics; RenderError/MissingKeyError name ``name:line:col``.

    A path computed while rendering is looked up in ``secrets``; when it is not there the
    call gives nil, as consul-template's does for a secret it has not fetched, the render
    goes on, and SecretsMissing lists every such location at the end: nothing of it is
    written (KV2-INV-390). ``used`` receives the computed paths' locations the render read,
    also when it raises SecretsMissing (KV2-INV-394 judges the missing ones against them).
    """
    cache: dict[SecretLocation, GoSecret] = {}
    resolved: dict[str, SecretLocation] = {}
    missing: dict[SecretLocation, str] = {}
    seen: dict[SecretLocation, SecretVersion] = {}  # what this render read, for redaction

    def locate(path: str) -> SecretLocation:
        location = tpl.paths.get(path) or resolved.get(path)
        if location is None:
            try:
                ref = parse_ref(path, allow_path_form=True)
            except ReferenceSyntaxError:
                # KV2-FC-390: the computed text is not shown; it may come from a secret value.
                raise FuncError(
                    "the path computed for secret is not a KV2 secret path (MOUNT/data/PATH); "
                    "its text is not shown, it may be derived from a secret"
                ) from None
            location = resolved[path] = ref.location
        return location

    def secret(path: str) -> GoSecret | None:
        location = locate(path)
        if location not in cache:
            version = secrets.get(location)
            if version is None:
                missing.setdefault(location, f"{tpl.name}:{_line_of(tpl.text, ctx.pos)}")
                return None  # consul-template's nil for a secret not fetched yet
            cache[location] = make_secret(version.data, version.metadata)
            seen[location] = version
        return cache[location]

    ctx = CallContext(
        env=os.environ if env is None else env,
        now=now or (lambda: datetime.now(UTC)),
        secret=secret,
        max_bytes=max_output_bytes,
        deadline=time.monotonic() + render_timeout,
        timeout=render_timeout,
        denied=tpl.denied,
    )
    try:
        out = execute(
            tpl.name,
            tpl.text,
            tpl.root,
            tpl.templates,
            ctx,
            missing_error=tpl.error_on_missing_key,
        )
    except ExecError as exc:
        if missing:
            # An incomplete render's errors are not trusted: a nil secret's '.Data' fails
            # until it is read (consul-template renders again the same way).
            _report_used(used, seen, tpl.locations)
            raise SecretsMissing(missing) from None
        # Go's messages quote the values they choke on (strconv: parsing "<value>"): redact
        # the secrets' values, then keep only quoted text the template itself holds.
        # Only the secrets this render read: ``secrets`` may hold a whole pass's.
        message = scrub_quoted(redact(exc.message, seen.values()), tpl.text)
        if exc.context is not None:
            message = f"executing {go_quote(tpl.name)} at <{exc.context}>: {message}"
        cls = MissingKeyError if "no entry for key" in exc.message else RenderError
        raise cls(message, where=exc.location) from None
    _report_used(used, seen, tpl.locations)
    if missing:
        raise SecretsMissing(missing)
    return out


def _report_used(
    used: set[SecretLocation] | None,
    seen: dict[SecretLocation, SecretVersion],
    constant: frozenset[SecretLocation],
) -> None:
    # Also before SecretsMissing: the runner judges the missing paths against every secret
    # read so far (KV2-INV-394).
    if used is not None:
        used.update(seen.keys() - constant)


def to_jinja2(text: str, *, name: str, left_delim: str = "{{", right_delim: str = "}}") -> str:
    """An equivalent Jinja2 template for ``kv2render convert``; ConfigError if not expressible."""
    from kv2render.render.ctmpl.convert import convert

    return convert(text, name=name, left_delim=left_delim or "{{", right_delim=right_delim or "}}")
