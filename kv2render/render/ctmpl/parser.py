"""Parser for Go ``text/template`` (a port of Go 1.19 ``text/template/parse/parse.go``).

Errors are raised as :class:`ParseError` with the line Go reports; the package
front end turns them into ``TemplateSyntaxError('name:line: ...')``.
Beyond Go 1.19 it accepts ``{{else with}}`` (Go 1.23), which Vault Agent builds support.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kv2render.render.ctmpl import nodes as n
from kv2render.render.ctmpl.gofmt import go_quote, go_unquote
from kv2render.render.ctmpl.lexer import Item, T, lex


class ParseError(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"{line}: {message}")


FunctionCheck = Callable[[str], "str | None"]
"""Returns None when the function exists, else the error message to raise."""


class Parser:
    def __init__(self, items: list[Item], check: FunctionCheck) -> None:
        self.items = items
        self.i = 0
        self.check = check
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.action_line = 0
        self.templates: dict[str, n.ListNode] = {}
        self.last_line = 1

    # -- token stream ---------------------------------------------------------
    def next(self) -> Item:
        item = self.items[min(self.i, len(self.items) - 1)]
        self.i += 1
        self.last_line = item.line
        return item

    def backup(self, count: int = 1) -> None:
        self.i -= count

    def peek(self) -> Item:
        return self.items[min(self.i, len(self.items) - 1)]

    def next_non_space(self) -> Item:
        while True:
            item = self.next()
            if item.typ != T.SPACE:
                return item

    def peek_non_space(self) -> Item:
        item = self.next_non_space()
        self.backup()
        return item

    def errorf(self, msg: str) -> ParseError:
        return ParseError(self.last_line, msg)

    def expect(self, typ: T, context: str) -> Item:
        token = self.next_non_space()
        if token.typ != typ:
            raise self.unexpected(token, context)
        return token

    def unexpected(self, token: Item, context: str) -> ParseError:
        if token.typ == T.ERROR:
            extra = ""
            if self.action_line not in (0, token.line):
                extra = f" in action started at {{name}}:{self.action_line}"
                if token.val.endswith(" action"):
                    extra = extra[len(" in action") :]
            return ParseError(token.line, f"{token}{extra}")
        return self.errorf(f"unexpected {token} in {context}")

    # -- structure ----------------------------------------------------------------
    def parse(self) -> n.ListNode:
        root = n.ListNode(self.peek().pos)
        while self.peek().typ != T.EOF:
            if self.peek().typ == T.LEFT_DELIM:
                mark = self.i
                self.next()
                if self.next_non_space().typ == T.DEFINE:
                    self.parse_definition()
                    continue
                self.i = mark
            node = self.text_or_action()
            if isinstance(node, n.EndNode | n.ElseNode):
                raise self.errorf(f"unexpected {node}")
            root.nodes.append(node)
        return root

    def parse_definition(self) -> None:
        context = "define clause"
        token = self.next_non_space()
        if token.typ not in (T.STRING, T.RAW_STRING):
            raise self.unexpected(token, context)
        name = go_unquote(token.val)
        self.expect(T.RIGHT_DELIM, context)
        saved_vars, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        self.vars = saved_vars
        if not isinstance(end, n.EndNode):
            raise self.errorf(f"unexpected {end} in {context}")
        self.add_template(name, body)

    def add_template(self, name: str, body: n.ListNode) -> None:
        if name in self.templates and not _is_empty(self.templates[name]) and not _is_empty(body):
            raise self.errorf(f"template: multiple definition of template {go_quote(name)}")
        self.templates[name] = body

    def item_list(self) -> tuple[n.ListNode, n.Node]:
        lst = n.ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != T.EOF:
            node = self.text_or_action()
            if isinstance(node, n.EndNode | n.ElseNode):
                return lst, node
            lst.nodes.append(node)
        raise self.errorf("unexpected EOF")

    def text_or_action(self) -> n.Node:
        token = self.next_non_space()
        if token.typ == T.TEXT:
            return n.TextNode(token.pos, token.val)
        if token.typ == T.LEFT_DELIM:
            self.action_line = token.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        if token.typ == T.COMMENT:
            return n.CommentNode(token.pos, token.val)
        raise self.unexpected(token, "input")

    def action(self) -> n.Node:
        token = self.next_non_space()
        typ = token.typ
        if typ == T.BLOCK:
            return self.block_control()
        if typ in (T.BREAK, T.CONTINUE):
            word = "break" if typ == T.BREAK else "continue"
            nxt = self.next_non_space()
            if nxt.typ != T.RIGHT_DELIM:
                raise self.unexpected(nxt, "{{" + word + "}}")
            if self.range_depth == 0:
                raise self.errorf("{{" + word + "}} outside {{range}}")
            cls = n.BreakNode if typ == T.BREAK else n.ContinueNode
            return cls(token.pos, token.line)
        if typ == T.ELSE:
            peek = self.peek_non_space()
            if peek.typ in (T.IF, T.WITH):
                return n.ElseNode(peek.pos, peek.line)
            tok = self.expect(T.RIGHT_DELIM, "else")
            return n.ElseNode(tok.pos, tok.line)
        if typ == T.END:
            return n.EndNode(self.expect(T.RIGHT_DELIM, "end").pos)
        if typ in (T.IF, T.RANGE, T.WITH):
            return self.control({T.IF: "if", T.RANGE: "range", T.WITH: "with"}[typ])
        if typ == T.TEMPLATE:
            return self.template_control()
        self.backup()
        token = self.peek()
        return n.ActionNode(token.pos, token.line, self.pipeline("command", T.RIGHT_DELIM))

    def control(self, context: str) -> n.BranchNode:
        mark = len(self.vars)
        try:
            pipe = self.pipeline(context, T.RIGHT_DELIM)
            if context == "range":
                self.range_depth += 1
            body, nxt = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list: n.ListNode | None = None
            if isinstance(nxt, n.ElseNode):
                chained = {"if": T.IF, "with": T.WITH}.get(context)
                if chained is not None and self.peek().typ == chained:
                    self.next()
                    else_list = n.ListNode(nxt.pos, [self.control(context)])
                else:
                    else_list, nxt = self.item_list()
                    if not isinstance(nxt, n.EndNode):
                        raise self.errorf(f"expected end; found {nxt}")
            return n.BranchNode(context, pipe.pos, pipe.line, pipe, body, else_list)
        finally:
            del self.vars[mark:]

    def block_control(self) -> n.TemplateNode:
        context = "block clause"
        token = self.next_non_space()
        name = self.template_name(token, context)
        pipe = self.pipeline(context, T.RIGHT_DELIM)
        saved_vars, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        self.vars = saved_vars
        if not isinstance(end, n.EndNode):
            raise self.errorf(f"unexpected {end} in {context}")
        self.add_template(name, body)
        return n.TemplateNode(token.pos, token.line, name, pipe)

    def template_control(self) -> n.TemplateNode:
        context = "template clause"
        token = self.next_non_space()
        name = self.template_name(token, context)
        pipe = None
        if self.next_non_space().typ != T.RIGHT_DELIM:
            self.backup()
            pipe = self.pipeline(context, T.RIGHT_DELIM)
        return n.TemplateNode(token.pos, token.line, name, pipe)

    def template_name(self, token: Item, context: str) -> str:
        if token.typ in (T.STRING, T.RAW_STRING):
            return go_unquote(token.val)
        raise self.unexpected(token, context)

    # -- pipelines ------------------------------------------------------------------
    def pipeline(self, context: str, end: T) -> n.PipeNode:
        token = self.peek_non_space()
        pipe = n.PipeNode(token.pos, token.line)
        self._declarations(pipe, context)
        while True:
            token = self.next_non_space()
            if token.typ == end:
                self.check_pipeline(pipe, context)
                return pipe
            if token.typ in _OPERAND_START:
                self.backup()
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(token, context)

    def _declarations(self, pipe: n.PipeNode, context: str) -> None:
        while True:
            v = self.peek_non_space()
            if v.typ != T.VARIABLE:
                return
            mark = self.i
            self.next_non_space()
            after = self.peek()
            nxt = self.peek_non_space()
            if nxt.typ in (T.ASSIGN, T.DECLARE):
                pipe.is_assign = nxt.typ == T.ASSIGN
                self.next_non_space()
                pipe.decl.append(n.VariableNode(v.pos, [v.val]))
                self.vars.append(v.val)
                return
            if nxt.typ == T.CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(n.VariableNode(v.pos, [v.val]))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (T.VARIABLE, T.RIGHT_DELIM, T.RIGHT_PAREN):
                        continue
                    raise self.errorf("range can only initialize variables")
                raise self.errorf(f"too many declarations in {context}")
            del after
            self.i = mark
            return

    def check_pipeline(self, pipe: n.PipeNode, context: str) -> None:
        if not pipe.cmds:
            raise self.errorf(f"missing value for {context}")
        for i, c in enumerate(pipe.cmds[1:]):
            if isinstance(
                c.args[0], n.BoolNode | n.DotNode | n.NilNode | n.NumberNode | n.StringNode
            ):
                raise self.errorf(f"non executable command in pipeline stage {i + 2}")

    def command(self) -> n.CommandNode:
        cmd = n.CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            token = self.next()
            if token.typ == T.SPACE:
                continue
            if token.typ in (T.RIGHT_DELIM, T.RIGHT_PAREN):
                self.backup()
            elif token.typ != T.PIPE:
                raise self.unexpected(token, "operand")
            break
        if not cmd.args:
            raise self.errorf("empty command")
        return cmd

    def operand(self) -> n.Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == T.FIELD:
            chain = n.ChainNode(self.peek().pos, node)
            while self.peek().typ == T.FIELD:
                chain.fields.append(self.next().val[1:])
            if isinstance(node, n.FieldNode):
                return n.FieldNode(chain.pos, [*node.ident, *chain.fields])
            if isinstance(node, n.VariableNode):
                return n.VariableNode(chain.pos, [*node.ident, *chain.fields])
            if isinstance(node, n.BoolNode | n.StringNode | n.NumberNode | n.NilNode | n.DotNode):
                raise self.errorf(f"unexpected . after term {go_quote(str(node))}")
            return chain
        return node

    def term(self) -> n.Node | None:  # noqa: C901
        token = self.next_non_space()
        typ = token.typ
        if typ == T.IDENTIFIER:
            problem = self.check(token.val)
            if problem is not None:
                raise self.errorf(problem)
            return n.IdentifierNode(token.pos, token.val)
        if typ == T.DOT:
            return n.DotNode(token.pos)
        if typ == T.NIL:
            return n.NilNode(token.pos)
        if typ == T.VARIABLE:
            name = token.val.split(".")[0]
            if name not in self.vars:
                raise self.errorf(f"undefined variable {go_quote(name)}")
            return n.VariableNode(token.pos, [token.val])
        if typ == T.FIELD:
            return n.FieldNode(token.pos, [token.val[1:]])
        if typ == T.BOOL:
            return n.BoolNode(token.pos, token.val == "true")
        if typ in (T.CHAR_CONSTANT, T.COMPLEX, T.NUMBER):
            return self.number(token)
        if typ == T.LEFT_PAREN:
            return self.pipeline("parenthesized pipeline", T.RIGHT_PAREN)
        if typ in (T.STRING, T.RAW_STRING):
            try:
                text = go_unquote(token.val)
            except ValueError as exc:
                raise self.errorf(str(exc)) from None
            return n.StringNode(token.pos, token.val, text)
        self.backup()
        return None

    def number(self, token: Item) -> n.NumberNode:
        node = n.NumberNode(token.pos, token.val)
        text = token.val
        if token.typ == T.COMPLEX:
            raise self.errorf(f"complex constants are not supported: {text}")
        if token.typ == T.CHAR_CONSTANT:
            try:
                rune = go_unquote('"' + text[1:-1].replace('"', '\\"') + '"')
            except ValueError:
                raise self.errorf(f"malformed character constant: {text}") from None
            if len(rune) != 1:
                raise self.errorf(f"malformed character constant: {text}")
            value = ord(rune)
            node.is_int = node.is_uint = node.is_float = True
            node.int_value, node.float_value = value, float(value)
            return node
        parsed = _parse_go_int(text)
        if parsed is not None and -(2**63) <= parsed < 2**64:
            node.is_uint = parsed >= 0
            node.is_int = parsed < 2**63
            node.int_value, node.float_value, node.is_float = parsed, float(parsed), True
            return node
        try:
            f = float(text.replace("_", ""))
        except ValueError:
            raise self.errorf(f"illegal number syntax: {go_quote(text)}") from None
        if not re.search(r"[.eEpP]", text):
            raise self.errorf(f"integer overflow: {text}")
        node.is_float, node.float_value = True, f
        if f == int(f) and -(2**63) <= int(f) < 2**63:
            node.is_int, node.int_value = True, int(f)
            node.is_uint = f >= 0
        return node


_OPERAND_START = {
    T.BOOL,
    T.CHAR_CONSTANT,
    T.COMPLEX,
    T.DOT,
    T.FIELD,
    T.IDENTIFIER,
    T.NUMBER,
    T.NIL,
    T.RAW_STRING,
    T.STRING,
    T.VARIABLE,
    T.LEFT_PAREN,
}


def _parse_go_int(text: str) -> int | None:
    t = text.replace("_", "")
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    try:
        if re.fullmatch(r"0[0-7]+", t):
            return sign * int(t, 8)
        return sign * int(t, 0)
    except ValueError:
        return None


def _is_empty(node: n.ListNode) -> bool:
    for child in node.nodes:
        if isinstance(child, n.CommentNode):
            continue
        if isinstance(child, n.TextNode) and not child.text.strip(" \t\r\n\v\f"):
            continue
        return False
    return True


def parse(
    text: str, check: FunctionCheck, left: str = "{{", right: str = "}}"
) -> tuple[n.ListNode, dict[str, n.ListNode]]:
    """Parse ``text``; returns the root list and the ``define``/``block`` templates."""
    parser = Parser(lex(text, left, right), check)
    root = parser.parse()
    return root, parser.templates
