"""Parse-tree nodes of Go ``text/template`` (Go 1.19 ``parse/node.go``).

``str(node)`` reproduces Go's ``Node.String()``, which appears in error contexts
(``executing "t" at <.Data.data.x>``).
"""

from __future__ import annotations

from typing import Union


class _Node:
    """A parse-tree node: plain slotted classes, not dataclasses, because creating 21
    dataclasses costs ~5 ms at import on every consul-template start (KV2-NFR-520). Nodes are
    compared by identity; nothing needs their equality."""

    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({args})"


class TextNode(_Node):
    __slots__ = ("pos", "text")

    def __init__(self, pos: int, text: str) -> None:
        self.pos = pos
        self.text = text


class CommentNode(_Node):
    __slots__ = ("pos", "text")

    def __init__(self, pos: int, text: str) -> None:
        self.pos = pos
        self.text = text


class DotNode(_Node):
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def __str__(self) -> str:
        return "."


class NilNode(_Node):
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def __str__(self) -> str:
        return "nil"


class BoolNode(_Node):
    __slots__ = ("pos", "value")

    def __init__(self, pos: int, value: bool) -> None:
        self.pos = pos
        self.value = value

    def __str__(self) -> str:
        return "true" if self.value else "false"


class NumberNode(_Node):
    __slots__ = (
        "pos",
        "text",
        "is_int",
        "is_uint",
        "is_float",
        "is_complex",
        "int_value",
        "float_value",
    )

    def __init__(
        self,
        pos: int,
        text: str,
        is_int: bool = False,
        is_uint: bool = False,
        is_float: bool = False,
        is_complex: bool = False,
        int_value: int = 0,
        float_value: float = 0.0,
    ) -> None:
        self.pos = pos
        self.text = text
        self.is_int = is_int
        self.is_uint = is_uint
        self.is_float = is_float
        self.is_complex = is_complex
        self.int_value = int_value
        self.float_value = float_value

    def __str__(self) -> str:
        return self.text


class StringNode(_Node):
    __slots__ = ("pos", "quoted", "text")

    def __init__(self, pos: int, quoted: str, text: str) -> None:
        self.pos = pos
        self.quoted = quoted
        self.text = text

    def __str__(self) -> str:
        return self.quoted


class IdentifierNode(_Node):
    __slots__ = ("pos", "ident")

    def __init__(self, pos: int, ident: str) -> None:
        self.pos = pos
        self.ident = ident

    def __str__(self) -> str:
        return self.ident


class VariableNode(_Node):
    __slots__ = ("pos", "ident")

    def __init__(self, pos: int, ident: list[str]) -> None:
        self.pos = pos
        self.ident = ident

    def __str__(self) -> str:
        return ".".join(self.ident)


class FieldNode(_Node):
    __slots__ = ("pos", "ident")

    def __init__(self, pos: int, ident: list[str]) -> None:
        self.pos = pos
        self.ident = ident

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


class ChainNode(_Node):
    __slots__ = ("pos", "node", "fields")

    def __init__(self, pos: int, node: Node, fields: list[str] | None = None) -> None:
        self.pos = pos
        self.node = node
        self.fields: list[str] = [] if fields is None else fields

    def __str__(self) -> str:
        base = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return base + "".join("." + f for f in self.fields)


class CommandNode(_Node):
    __slots__ = ("pos", "args")

    def __init__(self, pos: int, args: list[Node] | None = None) -> None:
        self.pos = pos
        self.args: list[Node] = [] if args is None else args

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)


class PipeNode(_Node):
    __slots__ = ("pos", "line", "is_assign", "decl", "cmds")

    def __init__(
        self,
        pos: int,
        line: int,
        is_assign: bool = False,
        decl: list[VariableNode] | None = None,
        cmds: list[CommandNode] | None = None,
    ) -> None:
        self.pos = pos
        self.line = line
        self.is_assign = is_assign
        self.decl: list[VariableNode] = [] if decl is None else decl
        self.cmds: list[CommandNode] = [] if cmds is None else cmds

    def __str__(self) -> str:
        head = ", ".join(str(v) for v in self.decl) + " := " if self.decl else ""
        return head + " | ".join(str(c) for c in self.cmds)


class ActionNode(_Node):
    __slots__ = ("pos", "line", "pipe")

    def __init__(self, pos: int, line: int, pipe: PipeNode) -> None:
        self.pos = pos
        self.line = line
        self.pipe = pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


class ListNode(_Node):
    __slots__ = ("pos", "nodes")

    def __init__(self, pos: int, nodes: list[Node] | None = None) -> None:
        self.pos = pos
        self.nodes: list[Node] = [] if nodes is None else nodes


class BranchNode(_Node):
    """if / range / with; ``kind`` says which."""

    __slots__ = ("kind", "pos", "line", "pipe", "body", "else_list")

    def __init__(
        self,
        kind: str,
        pos: int,
        line: int,
        pipe: PipeNode,
        body: ListNode,
        else_list: ListNode | None,
    ) -> None:
        self.kind = kind
        self.pos = pos
        self.line = line
        self.pipe = pipe
        self.body = body
        self.else_list = else_list

    def __str__(self) -> str:
        text = "{{" + self.kind + " " + str(self.pipe) + "}}"
        if self.else_list is not None:
            return text + "...{{else}}...{{end}}"
        return text + "...{{end}}"


class BreakNode(_Node):
    __slots__ = ("pos", "line")

    def __init__(self, pos: int, line: int) -> None:
        self.pos = pos
        self.line = line

    def __str__(self) -> str:
        return "{{break}}"


class ContinueNode(_Node):
    __slots__ = ("pos", "line")

    def __init__(self, pos: int, line: int) -> None:
        self.pos = pos
        self.line = line

    def __str__(self) -> str:
        return "{{continue}}"


class TemplateNode(_Node):
    __slots__ = ("pos", "line", "name", "pipe")

    def __init__(self, pos: int, line: int, name: str, pipe: PipeNode | None) -> None:
        self.pos = pos
        self.line = line
        self.name = name
        self.pipe = pipe

    def __str__(self) -> str:
        from kv2render.render.ctmpl.gofmt import go_quote

        tail = "" if self.pipe is None else " " + str(self.pipe)
        return "{{template " + go_quote(self.name) + tail + "}}"


class EndNode(_Node):
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def __str__(self) -> str:
        return "{{end}}"


class ElseNode(_Node):
    __slots__ = ("pos", "line")

    def __init__(self, pos: int, line: int) -> None:
        self.pos = pos
        self.line = line

    def __str__(self) -> str:
        return "{{else}}"


Node = Union[  # noqa: UP007 - a runtime alias used in isinstance-free annotations
    TextNode,
    CommentNode,
    DotNode,
    NilNode,
    BoolNode,
    NumberNode,
    StringNode,
    IdentifierNode,
    VariableNode,
    FieldNode,
    ChainNode,
    CommandNode,
    PipeNode,
    ActionNode,
    ListNode,
    BranchNode,
    BreakNode,
    ContinueNode,
    TemplateNode,
    EndNode,
    ElseNode,
]
