"""The executor: Go 1.19 ``text/template/exec.go`` over the values in :mod:`values`.

Departure from Go, on purpose: error messages that Go would print with a value
in them (``range can't iterate over <value>``, ``if/with can't use <value>``)
name the value's type instead, so a secret never reaches an error (KV2-INV-001).
"""

from __future__ import annotations

import time
from typing import Any

from kv2render.render.ctmpl import nodes as n
from kv2render.render.ctmpl.funcs import CallContext, Func, FuncError, function_for
from kv2render.render.ctmpl.gofmt import Spec, format_value, go_quote, print_struct_deref
from kv2render.render.ctmpl.values import (
    INVALID,
    GoSecret,
    JsonNumber,
    StringSlice,
    TypedNil,
    is_true,
    type_name,
)

_LITERALS = (n.StringNode, n.NumberNode, n.BoolNode, n.NilNode)
MISSING = object()  # Go's missingVal: "no final value from a previous pipeline stage"
MAX_DEPTH = 100000
# Departure from Go (issue 10, KV2-AC-285): nodes walked + functions called per render, the
# same budget as the Jinja2 sandbox's MAX_STEPS; Go would loop until the process is killed.
MAX_STEPS = 1_000_000

_STRUCT_FIELDS = {
    "*dependency.SecretAuth": (
        "ClientToken Accessor Policies Metadata LeaseDuration Renewable".split()
    ),
    "*dependency.SecretWrapInfo": "Token TTL CreationTime WrappedAccessor".split(),
}
_GO_TYPE = {"any": "interface {}", "value": "reflect.Value"}


class ExecError(Exception):
    """A runtime error, already formatted as Go formats it (minus the ``template: `` prefix)."""

    def __init__(self, location: str, context: str | None, message: str) -> None:
        self.location = location
        self.context = context
        self.message = message
        super().__init__(message)


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class State:
    def __init__(
        self,
        name: str,
        text: str,
        templates: dict[str, n.ListNode],
        ctx: CallContext,
        missing_error: bool,
    ) -> None:
        self.name = name
        self.text = text
        self.templates = templates
        self.ctx = ctx
        self.missing_error = missing_error
        self.vars: list[list[Any]] = []
        self.node: Any = None
        self.out: list[str] = []
        self.depth = 0
        self.steps = 0
        self.size = 0  # characters written so far (a lower bound of the UTF-8 bytes)

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            error = self.error(
                f"stopped after {MAX_STEPS} steps (loop iterations, template calls and "
                "functions): a runaway loop?"
            )
            error.context = None  # the node here is a loop body, not an action worth quoting
            raise error
        if not self.steps & 31 and time.monotonic() > self.ctx.deadline:
            # KV2-INV-367: the wall-clock budget, checked cooperatively every 32 steps (no
            # signal: renders run in a thread pool; a function is bounded by max_output_bytes,
            # about a millisecond). Same text as the Jinja2 engine's (KV2-FC-370).
            error = self.error(
                f"render stopped after {self.ctx.timeout:g}s (template_config.render_timeout)"
            )
            error.context = None
            raise error

    def emit(self, text: str) -> None:
        """Append output; stop as soon as it is larger than max_output_bytes (KV2-AC-285)."""
        self.size += len(text)
        if self.size > self.ctx.max_bytes:
            raise self.error(f"output is larger than max_output_bytes ({self.ctx.max_bytes})")
        self.out.append(text)

    # -- errors and variables --------------------------------------------------------------
    def at(self, node: Any) -> None:
        self.node = node

    def error(self, message: str) -> ExecError:
        if self.node is None or not hasattr(self.node, "pos"):
            return ExecError(self.name, None, message)
        pos = self.node.pos
        before = self.text[:pos]
        line = before.count("\n") + 1
        col = len(before[before.rfind("\n") + 1 :].encode("utf-8", "surrogatepass"))
        return ExecError(f"{self.name}:{line}:{col}", str(self.node), message)

    def push(self, name: str, value: Any) -> None:
        self.vars.append([name, value])

    def mark(self) -> int:
        return len(self.vars)

    def pop(self, mark: int) -> None:
        del self.vars[mark:]

    def set_var(self, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        raise self.error(f"undefined variable: {name}")

    def var_value(self, name: str) -> Any:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        raise self.error(f"undefined variable: {name}")

    # -- walking ----------------------------------------------------------------------------
    def walk(self, dot: Any, node: Any) -> None:  # noqa: C901
        self.at(node)
        self.step()
        if isinstance(node, n.ListNode):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, n.TextNode):
            self.emit(node.text)
        elif isinstance(node, n.ActionNode):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, value)
        elif isinstance(node, n.BranchNode):
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                self.walk_if_or_with(node, dot)
        elif isinstance(node, n.CommentNode):
            pass
        elif isinstance(node, n.BreakNode):
            raise _Break()
        elif isinstance(node, n.ContinueNode):
            raise _Continue()
        elif isinstance(node, n.TemplateNode):
            self.walk_template(dot, node)
        else:
            raise self.error(f"unknown node: {node}")

    def walk_if_or_with(self, node: n.BranchNode, dot: Any) -> None:
        mark = self.mark()
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if is_true(value):
                self.walk(value if node.kind == "with" else dot, node.body)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            self.pop(mark)

    def walk_range(self, dot: Any, node: n.BranchNode) -> None:
        self.at(node)
        outer = self.mark()
        try:
            value = self.eval_pipeline(dot, node.pipe)
            mark = self.mark()
            items: list[tuple[Any, Any]]
            if isinstance(value, list):
                items = list(enumerate(value))
            elif isinstance(value, dict):
                items = [(k, value[k]) for k in sorted(value)]
            elif value is INVALID or value is None:
                items = []
            else:
                raise self.error(f"range can't iterate over a value of type {type_name(value)}")
            for index, elem in items:
                if node.pipe.decl:
                    self.vars[-1][1] = elem
                if len(node.pipe.decl) > 1:
                    self.vars[-2][1] = index
                try:
                    self.walk(elem, node.body)
                except _Continue:
                    pass
                finally:
                    self.pop(mark)
            if not items and node.else_list is not None:
                self.walk(dot, node.else_list)
        except _Break:
            pass
        finally:
            self.pop(outer)

    def walk_template(self, dot: Any, node: n.TemplateNode) -> None:
        self.at(node)
        body = self.templates.get(node.name)
        if body is None:
            raise self.error(f"template {go_quote(node.name)} not defined")
        if self.depth == MAX_DEPTH:
            raise self.error(f"exceeded maximum template depth ({MAX_DEPTH})")
        dot = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else INVALID
        saved_vars = self.vars
        self.vars = [["$", dot]]
        self.depth += 1
        try:
            self.walk(dot, body)
        finally:
            self.vars, self.depth = saved_vars, self.depth - 1

    # -- evaluation ---------------------------------------------------------------------------
    def eval_pipeline(self, dot: Any, pipe: n.PipeNode | None) -> Any:
        if pipe is None:
            return INVALID
        self.at(pipe)
        value: Any = MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if value is None:  # a nil interface{} becomes the invalid Value ("lovely!")
                value = INVALID
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.ident[0], value)
            else:
                self.push(var.ident[0], value)
        return value

    def not_a_function(self, args: list[Any], final: Any) -> None:
        if len(args) > 1 or final is not MISSING:
            raise self.error(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: n.CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, n.FieldNode):
            return self.eval_field_node(dot, first, cmd.args, final)
        if isinstance(first, n.ChainNode):
            return self.eval_chain_node(dot, first, cmd.args, final)
        if isinstance(first, n.IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, n.PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, n.VariableNode):
            return self.eval_variable_node(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, n.BoolNode):
            return first.value
        if isinstance(first, n.DotNode):
            return dot
        if isinstance(first, n.NilNode):
            raise self.error("nil is not a command")
        if isinstance(first, n.NumberNode):
            return self.ideal_constant(first)
        if isinstance(first, n.StringNode):
            return first.text
        raise self.error(f"can't evaluate command {go_quote(str(first))}")

    def ideal_constant(self, c: n.NumberNode) -> Any:
        self.at(c)
        text = c.text
        is_hex = len(text) > 2 and text[0] == "0" and text[1] in "xX" and not set("pP") & set(text)
        if c.is_float and not is_hex and text[0] != "'" and set(".eEpP") & set(text):
            return c.float_value
        if c.is_int:
            return c.int_value
        if c.is_uint:
            raise self.error(f"{text} overflows int")
        return INVALID

    def eval_field_node(self, dot: Any, field: n.FieldNode, args: list[Any], final: Any) -> Any:
        self.at(field)
        return self.eval_field_chain(dot, dot, field, field.ident, args, final)

    def eval_chain_node(
        self, dot: Any, chain: n.ChainNode, args: list[Any] | None, final: Any
    ) -> Any:
        self.at(chain)
        if isinstance(chain.node, n.NilNode):
            raise self.error(f"indirection through explicit nil in {chain}")
        pipe = self.eval_arg(dot, None, chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final)

    def eval_variable_node(
        self, dot: Any, var: n.VariableNode, args: list[Any] | None, final: Any
    ) -> Any:
        self.at(var)
        value = self.var_value(var.ident[0])
        if len(var.ident) == 1:
            self.not_a_function(args or [var], final)
            return value
        return self.eval_field_chain(dot, value, var, var.ident[1:], args, final)

    def eval_field_chain(
        self, dot: Any, receiver: Any, node: Any, ident: list[str], args: Any, final: Any
    ) -> Any:
        for name in ident[:-1]:
            receiver = self.eval_field(dot, name, node, None, MISSING, receiver)
        return self.eval_field(dot, ident[-1], node, args, final, receiver)

    def eval_function(
        self, dot: Any, ident: n.IdentifierNode, cmd: Any, args: list[Any] | None, final: Any
    ) -> Any:
        self.at(ident)
        name = ident.ident
        if name in ("and", "or"):
            return self.eval_and_or(dot, name, cmd, args, final)
        fn = function_for(name, self.ctx.denied)
        if fn is None:
            raise self.error(f"{go_quote(name)} is not a defined function")
        return self.eval_call(dot, fn, cmd, args, final)

    def eval_field(  # noqa: C901
        self, dot: Any, name: str, node: Any, args: Any, final: Any, receiver: Any
    ) -> Any:
        del dot
        if receiver is INVALID:
            if self.missing_error:
                raise self.error(f"nil data; no entry for key {go_quote(name)}")
            return INVALID
        if receiver is None:
            raise self.error(f"nil pointer evaluating interface {{}}.{name}")
        has_args = (args is not None and len(args) > 1) or final is not MISSING
        if isinstance(receiver, JsonNumber) and name in ("String", "Int64", "Float64"):
            return _json_number_method(self, receiver, name)
        if isinstance(receiver, GoSecret):
            if name in GoSecret.FIELDS:
                if has_args:
                    raise self.error(f"{name} has arguments but cannot be invoked as function")
                return getattr(receiver, name)
        elif isinstance(receiver, dict):
            if has_args:
                raise self.error(f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            if self.missing_error:
                raise self.error(f"map has no entry for key {go_quote(name)}")
            return None
        elif isinstance(receiver, TypedNil) and name in _STRUCT_FIELDS.get(receiver.type_name, ()):
            raise self.error(f"nil pointer evaluating {receiver.type_name}.{name}")
        raise self.error(f"can't evaluate field {name} in type {type_name(receiver)}")

    def eval_and_or(self, dot: Any, name: str, cmd: Any, args: Any, final: Any) -> Any:
        arg_nodes = list(args[1:]) if args else []
        if not arg_nodes and final is MISSING:
            raise self.error(f"wrong number of args for {name}: want at least 1 got 0")
        value: Any = INVALID
        for arg in arg_nodes:
            value = self.eval_arg(dot, "value", arg)
            if is_true(value) == (name == "or"):
                return value
        if final is not MISSING:
            value = self.validate_type(final, "value")
        return value

    def eval_call(self, dot: Any, fn: Func, node: Any, args: Any, final: Any) -> Any:
        arg_nodes = list(args[1:]) if args else []
        num_in = len(arg_nodes) + (final is not MISSING)
        fixed = len(fn.params)
        if fn.variadic is not None:
            if num_in < fixed:
                got = len(arg_nodes)
                raise self.error(
                    f"wrong number of args for {fn.name}: want at least {fixed} got {got}"
                )
        elif num_in != fixed:
            raise self.error(f"wrong number of args for {fn.name}: want {fixed} got {num_in}")
        argv: list[Any] = []
        for i, arg in enumerate(arg_nodes):
            typ = fn.params[i] if i < fixed else fn.variadic
            argv.append(self.eval_arg(dot, typ, arg))
        if final is not MISSING:
            typ = fn.params[num_in - 1] if num_in - 1 < fixed else fn.variadic
            argv.append(self.validate_type(final, typ))
        self.step()
        try:
            if fn.needs_ctx:
                self.ctx.pos = node.pos
                return fn.impl(self.ctx, *argv)
            return fn.impl(*argv)
        except FuncError as exc:
            self.at(node)
            # KV2-INV-366: Go's text (with the argument) only when every argument is a literal
            # of the template; a computed one may be derived from a secret.
            literal = final is MISSING and all(isinstance(a, _LITERALS) for a in arg_nodes)
            text = str(exc) if literal else exc.hidden
            raise self.error(f"error calling {fn.name}: {text}") from None

    def validate_type(self, value: Any, typ: str | None) -> Any:  # noqa: C901
        if typ is None:
            return value
        if value is INVALID:
            if typ == "any":
                return None
            if typ == "value":
                return INVALID
            if typ == "[]string":
                return StringSlice.nil()
            raise self.error(f"invalid value; expected {typ}")
        if typ in ("any", "value"):
            return value
        ok = {
            "string": isinstance(value, str) and not isinstance(value, JsonNumber),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "[]string": isinstance(value, StringSlice),
        }[typ]
        if not ok:
            raise self.error(f"wrong type for value; expected {typ}; got {type_name(value)}")
        return value

    def eval_arg(self, dot: Any, typ: str | None, node: Any) -> Any:  # noqa: C901
        self.at(node)
        if isinstance(node, n.DotNode):
            return self.validate_type(dot, typ)
        if isinstance(node, n.NilNode):
            if typ in ("any", None):
                return None
            if typ == "value":
                return INVALID
            if typ == "[]string":
                return StringSlice.nil()
            raise self.error(f"cannot assign nil to {typ}")
        if isinstance(node, n.FieldNode):
            return self.validate_type(self.eval_field_node(dot, node, [node], MISSING), typ)
        if isinstance(node, n.VariableNode):
            return self.validate_type(self.eval_variable_node(dot, node, None, MISSING), typ)
        if isinstance(node, n.PipeNode):
            return self.validate_type(self.eval_pipeline(dot, node), typ)
        if isinstance(node, n.IdentifierNode):
            return self.validate_type(self.eval_function(dot, node, node, None, MISSING), typ)
        if isinstance(node, n.ChainNode):
            return self.validate_type(self.eval_chain_node(dot, node, None, MISSING), typ)
        if typ in ("any", "value", None):
            return self.eval_empty_interface(node)
        if typ == "string":
            if isinstance(node, n.StringNode):
                return node.text
            raise self.error(f"expected string; found {node}")
        if typ == "int":
            if isinstance(node, n.NumberNode) and node.is_int:
                return node.int_value
            raise self.error(f"expected integer; found {node}")
        if typ == "bool":
            if isinstance(node, n.BoolNode):
                return node.value
            raise self.error(f"expected bool; found {node}")
        raise self.error(f"can't handle {node} for arg of type {_GO_TYPE.get(typ, typ)}")

    def eval_empty_interface(self, node: Any) -> Any:
        self.at(node)
        if isinstance(node, n.BoolNode):
            return node.value
        if isinstance(node, n.NumberNode):
            return self.ideal_constant(node)
        if isinstance(node, n.StringNode):
            return node.text
        raise self.error(f"can't handle assignment of {node} to empty interface argument")

    def print_value(self, node: Any, value: Any) -> None:
        self.at(node)
        if value is INVALID:
            self.emit("<no value>")
        elif isinstance(value, GoSecret):
            self.emit(print_struct_deref(value))
        else:
            self.emit(format_value(value, "v", Spec(), 0))


def _json_number_method(state: State, number: JsonNumber, name: str) -> Any:
    if name == "String":
        return str(number)
    try:
        return int(number) if name == "Int64" else float(number)
    except ValueError:
        # Go quotes the number here; it is secret data, so the message does not (KV2-INV-366).
        func = "ParseInt" if name == "Int64" else "ParseFloat"
        raise state.error(
            f"error calling {name}: strconv.{func}: parsing a json.Number: invalid syntax"
        ) from None


def execute(
    name: str,
    text: str,
    root: n.ListNode,
    templates: dict[str, n.ListNode],
    ctx: CallContext,
    *,
    missing_error: bool,
) -> str:
    """Run a parsed template with a nil dot, as consul-template does; ExecError on failure."""
    state = State(name, text, templates, ctx, missing_error)
    state.vars = [["$", INVALID]]
    try:
        state.walk(INVALID, root)
    except RecursionError:
        # Go allows MAX_DEPTH nested {{template}} calls on its growable stacks; Python's
        # stack ends sooner. A clear error instead of an internal one (issue 10).
        raise state.error(
            "exceeded maximum template depth (a template that calls itself?)"
        ) from None
    return "".join(state.out)


__all__ = ["ExecError", "execute"]
