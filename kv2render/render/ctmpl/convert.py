"""``kv2render convert``: a consul-template template as an equivalent kv2render Jinja2 template.

The conversion works on the parsed Go tree, so trim markers and comments are already
applied to the text. What Jinja2 cannot say the same way is refused with a ConfigError
naming the construct and its line, rather than translated into something that renders
different bytes. Known limits of the translation (documented for users):

* a value is printed as Jinja2 prints it: strings, integers and booleans print as in
  Go; lists, maps and ``null`` print as JSON, and a missing key follows the Jinja2
  template's ``error_on_missing_key`` (never ``<no value>``);
* ``range $k, $v := X`` is taken to iterate a map (the KV2 idiom) unless X comes from
  ``split``; single-variable ``range`` is taken to iterate a list.
"""

from __future__ import annotations

import itertools
import re

from kv2render.errors import ConfigError, TemplateSyntaxError
from kv2render.render.ctmpl import nodes as n
from kv2render.render.ctmpl.funcs import check_function
from kv2render.render.ctmpl.parser import ParseError, parse

_FILTERS = {
    "toJSON": "toJSON",
    "toJSONPretty": "toJSONPretty",
    "toUnescapedJSON": "toUnescapedJSON",
    "toUnescapedJSONPretty": "toUnescapedJSONPretty",
    "base64Encode": "base64Encode",
    "base64Decode": "base64Decode",
    "trimSpace": "trimSpace",
    "toLower": "lower",
    "toUpper": "upper",
}
_COMPARE = {"ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_BOOLEAN = {"eq", "ne", "lt", "le", "gt", "ge", "not", "contains", "and", "or"}


class _Unsupported(Exception):
    def __init__(self, construct: str, pos: int, reason: str) -> None:
        self.construct, self.pos, self.reason = construct, pos, reason
        super().__init__(construct)


class _Converter:
    def __init__(self, text: str) -> None:
        self.text = text
        self.counter = itertools.count(1)
        self.out: list[str] = []
        self.secrets: set[str] = set()  # Jinja2 names bound to a whole secret

    def fail(self, construct: str, node: object, reason: str) -> _Unsupported:
        return _Unsupported(construct, getattr(node, "pos", 0), reason)

    # -- statements ---------------------------------------------------------------------
    def block(self, lst: n.ListNode, dot: str | None) -> None:
        for node in lst.nodes:
            self.statement(node, dot)

    def statement(self, node: n.Node, dot: str | None) -> None:  # noqa: C901
        if isinstance(node, n.TextNode):
            self.text_node(node)
        elif isinstance(node, n.CommentNode):
            pass
        elif isinstance(node, n.ActionNode):
            pipe = node.pipe
            if pipe.decl:
                if pipe.is_assign:
                    raise self.fail("variable reassignment ($x = ...)", node, _SCOPE)
                name = _var(pipe.decl[0].ident[0])
                if _is_secret_read(pipe):
                    self.secrets.add(name)
                self.out.append(f"{{% set {name} = {self.pipeline(pipe, dot)} %}}")
            else:
                self.out.append("{{ " + self.value(pipe, dot) + " }}")
        elif isinstance(node, n.BranchNode):
            if node.kind == "range":
                self.range_node(node, dot)
            else:
                self.if_with(node, dot)
        elif isinstance(node, n.BreakNode | n.ContinueNode):
            raise self.fail(str(node), node, "kv2render's Jinja2 has no loop controls")
        elif isinstance(node, n.TemplateNode):
            raise self.fail("{{template}} / {{block}}", node, "use a Jinja2 macro instead")
        else:
            raise self.fail(type(node).__name__, node, "no Jinja2 equivalent")

    def text_node(self, node: n.TextNode) -> None:
        if node.text.endswith("{"):  # "{" + "{%" would read as "{{" in Jinja2
            self.text_node(n.TextNode(node.pos, node.text[:-1]))
            self.out.append('{{ "{" }}')
            return
        if any(tag in node.text for tag in ("{{", "{%", "{#")):
            if "endraw" in node.text:
                raise self.fail("text containing 'endraw'", node, "cannot be quoted in Jinja2")
            self.out.append("{% raw %}" + node.text + "{% endraw %}")
        else:
            self.out.append(node.text)

    def if_with(self, node: n.BranchNode, dot: str | None) -> None:
        pipe = node.pipe
        value = self.pipeline(pipe, dot)
        body_dot = dot
        if node.kind == "with" and _is_secret_read(pipe):
            # A secret kv2render could not read fails the pass before rendering, so the
            # Jinja2 ``secret()`` always has a value: no truth test, no else branch.
            body_dot = f"_secret{next(self.counter)}"
            self.secrets.add(body_dot)
            self.out.append(f"{{% set {body_dot} = {value} %}}")
            if pipe.decl:
                self.secrets.add(_var(pipe.decl[0].ident[0]))
                self.out.append(f"{{% set {_var(pipe.decl[0].ident[0])} = {body_dot} %}}")
            self.block(node.body, body_dot)
            return
        if node.kind == "with":
            body_dot = f"_with{next(self.counter)}"
            self.out.append(f"{{% set {body_dot} = {value} %}}")
            if pipe.decl:
                self.out.append(f"{{% set {_var(pipe.decl[0].ident[0])} = {body_dot} %}}")
            value = body_dot
        elif pipe.decl:
            raise self.fail("variable declared in {{if}}", node, _SCOPE)
        cond = value if _is_boolean(pipe) else _go_truth(value)
        self.out.append(f"{{% if {cond} %}}")
        self.block(node.body, body_dot)
        if node.else_list is not None:
            chained = node.else_list.nodes
            if node.kind == "with" and len(chained) == 1 and isinstance(chained[0], n.BranchNode):
                raise self.fail("{{else with}}", chained[0], "write {{else}}{{with}} instead")
            self.out.append("{% else %}")
            self.block(node.else_list, dot)
        self.out.append("{% endif %}")

    def range_node(self, node: n.BranchNode, dot: str | None) -> None:
        pipe = node.pipe
        value = self.pipeline(pipe, dot)
        elem = f"_item{next(self.counter)}"
        if len(pipe.decl) == 2:
            key, elem = _var(pipe.decl[0].ident[0]), _var(pipe.decl[1].ident[0])
            if _ends_with_split(pipe):
                head = f"{{% for {elem} in {value} %}}{{% set {key} = loop.index0 %}}"
            else:
                head = f"{{% for {key}, {elem} in {value}|dictsort(case_sensitive=true) %}}"
        else:
            if pipe.decl:
                elem = _var(pipe.decl[0].ident[0])
            head = f"{{% for {elem} in {value} %}}"
        self.out.append(head)
        self.block(node.body, elem)
        if node.else_list is not None:
            self.out.append("{% else %}")
            self.block(node.else_list, dot)
        self.out.append("{% endfor %}")

    # -- expressions ----------------------------------------------------------------------
    def value(self, pipe: n.PipeNode, dot: str | None) -> str:
        """A pipeline whose result is printed or encoded: never a whole secret."""
        text = self.pipeline(pipe, dot)
        bare = text.strip("()")
        if (
            bare in self.secrets
            or _SECRET_CALL.fullmatch(bare)
            or any(bare in (f"{s}.Data", f"{s}.Data.metadata") for s in self.secrets)
        ):
            raise self.fail(
                "printing a whole secret", pipe, "Go prints its struct; print .Data.data.KEY"
            )
        return text

    def pipeline(self, pipe: n.PipeNode, dot: str | None) -> str:
        value: str | None = None
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, value)
        assert value is not None
        return value

    def command(self, cmd: n.CommandNode, dot: str | None, final: str | None) -> str:
        first = cmd.args[0]
        if isinstance(first, n.IdentifierNode):
            args = [self.operand(a, dot) for a in cmd.args[1:]]
            if final is not None:
                args.append(final)
            return self.call(first, args)
        if final is not None or len(cmd.args) > 1:
            raise self.fail(str(cmd), cmd, "arguments to a non-function")
        return self.operand(first, dot)

    def operand(self, node: n.Node, dot: str | None) -> str:  # noqa: C901
        if isinstance(node, n.StringNode):
            return _jinja_string(node.text)
        if isinstance(node, n.NumberNode):
            if node.is_int and "." not in node.text and node.text[0] != "'":
                return str(node.int_value)
            raise self.fail(f"number {node.text}", node, "only integer constants convert")
        if isinstance(node, n.BoolNode):
            return "true" if node.value else "false"
        if isinstance(node, n.NilNode):
            return "none"
        if isinstance(node, n.DotNode):
            return self.need_dot(dot, node)
        if isinstance(node, n.FieldNode):
            base = self.need_dot(dot, node)
            self.check_secret_field(base, node.ident[0], node)
            return base + _attrs(node.ident)
        if isinstance(node, n.VariableNode):
            if node.ident[0] == "$":
                raise self.fail("$", node, "the root data of a Vault Agent template is empty")
            if len(node.ident) > 1:
                self.check_secret_field(_var(node.ident[0]), node.ident[1], node)
            return _var(node.ident[0]) + _attrs(node.ident[1:])
        if isinstance(node, n.PipeNode):
            if node.decl:
                raise self.fail("declaration inside parentheses", node, _SCOPE)
            return "(" + self.pipeline(node, dot) + ")"
        if isinstance(node, n.ChainNode):
            return self.operand(node.node, dot) + _attrs(node.fields)
        if isinstance(node, n.IdentifierNode):
            return self.call(node, [])
        raise self.fail(str(node), node, "no Jinja2 equivalent")

    def check_secret_field(self, base: str, field: str, node: n.Node) -> None:
        if base in self.secrets and field != "Data":
            raise self.fail(f"secret field .{field}", node, "kv2render's secret() has only .Data")

    def need_dot(self, dot: str | None, node: n.Node) -> str:
        if dot is None:
            raise self.fail(str(node), node, "the root data of a Vault Agent template is empty")
        return dot

    def call(self, ident: n.IdentifierNode, args: list[str]) -> str:  # noqa: C901
        name = ident.ident
        if name == "secret" and len(args) == 1:
            return f"secret({args[0]})"
        if name in _FILTERS and len(args) == 1:
            bare = args[0].strip("()")
            if bare in self.secrets or _SECRET_CALL.fullmatch(bare):
                raise self.fail("encoding a whole secret", ident, "encode .Data.data instead")
            return f"({args[0]})|{_FILTERS[name]}"
        if name == "index" and args:
            # Go's index ignores missingkey=error: a missing key is nil, so use .get()
            return args[0] + "".join(f".get({a})" if a[:1] == '"' else f"[{a}]" for a in args[1:])
        if name == "eq" and len(args) >= 2:
            if len(args) == 2:
                return f"({args[0]} == {args[1]})"
            return f"({args[0]} in [{', '.join(args[1:])}])"
        if name in _COMPARE and len(args) == 2:
            return f"({args[0]} {_COMPARE[name]} {args[1]})"
        if name in ("and", "or") and args:
            return "(" + f" {name} ".join(args) + ")"
        if name == "not" and len(args) == 1:
            return f"(not {args[0]})"
        if name == "len" and len(args) == 1:
            return f"({args[0]})|length"
        if name == "indent" and len(args) == 2:
            return f"({args[1]})|indent({args[0]}, first=true)"
        if name == "join" and len(args) == 2:
            return f"({args[1]})|join({args[0]})"
        if name == "split" and len(args) == 2:
            return f"(({args[1]})|trimSpace).split({args[0]})"
        if name == "replaceAll" and len(args) == 3:
            return f"({args[2]})|replace({args[0]}, {args[1]})"
        if name == "contains" and len(args) == 2:
            return f"({args[0]} in {args[1]})"
        if name == "printf" and args:
            return self.printf(ident, args)
        if name == "print" and len(args) == 1:
            return f"({args[0]})|string"
        raise self.fail(f"function {name}", ident, _NO_FUNCTION.get(name, "no Jinja2 equivalent"))

    def printf(self, ident: n.IdentifierNode, args: list[str]) -> str:
        fmt = args[0]
        verbs = re.findall(r"%(.)", fmt.replace("%%", ""))
        if any(v not in "sdv" for v in verbs):
            raise self.fail("printf verb", ident, "only %s, %d and %v convert (to |format)")
        fmt = re.sub(r"%v", "%s", fmt)
        return f"{fmt}|format({', '.join(args[1:])})" if args[1:] else fmt


_SECRET_CALL = re.compile(r'secret\("(?:[^"\\]|\\.)*"\)')
_SCOPE = "Jinja2 scopes variables per block; restructure with {% set %} at the top level"
_NO_FUNCTION = {
    "env": "kv2render templates do not read the environment",
    "mustEnv": "kv2render templates do not read the environment",
    "envOrDefault": "kv2render templates do not read the environment",
    "timestamp": "output must depend only on secrets, or every pass rewrites the file",
}


def _go_truth(value: str) -> str:
    """Go truthiness in Jinja2: a KV2 number (json.Number in Go) is true even when 0."""
    return f"({value} is number and {value} is not boolean or {value})"


def _var(name: str) -> str:
    return "v_" + name.lstrip("$")


def _attrs(idents: list[str]) -> str:
    return "".join(f".{i}" if i.isidentifier() else f"[{_jinja_string(i)}]" for i in idents)


def _jinja_string(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return '"' + out.replace("\r", "\\r") + '"'


def _is_boolean(pipe: n.PipeNode) -> bool:
    last = pipe.cmds[-1].args[0]
    return isinstance(last, n.IdentifierNode) and last.ident in _BOOLEAN


def _is_secret_read(pipe: n.PipeNode) -> bool:
    first = pipe.cmds[0].args[0]
    return len(pipe.cmds) == 1 and isinstance(first, n.IdentifierNode) and first.ident == "secret"


def _ends_with_split(pipe: n.PipeNode) -> bool:
    last = pipe.cmds[-1].args[0]
    return isinstance(last, n.IdentifierNode) and last.ident == "split"


def convert(text: str, *, name: str, left_delim: str = "{{", right_delim: str = "}}") -> str:
    try:
        root, templates = parse(text, check_function, left_delim, right_delim)
    except ParseError as exc:
        message = exc.message.replace("{name}", name)
        raise TemplateSyntaxError(message, where=f"{name}:{exc.line}") from None
    if templates:
        raise ConfigError(
            "{{define}} has no direct Jinja2 translation",
            where=name,
            hint="rewrite the named template as a Jinja2 macro",
        )
    conv = _Converter(text)
    try:
        conv.block(root, None)
    except _Unsupported as exc:
        line = text.count("\n", 0, exc.pos) + 1
        raise ConfigError(
            f"cannot convert {exc.construct} to Jinja2: {exc.reason}", where=f"{name}:{line}"
        ) from None
    return "".join(conv.out)
