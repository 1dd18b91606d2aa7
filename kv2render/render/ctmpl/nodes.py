"""Parse-tree nodes of Go ``text/template`` (Go 1.19 ``parse/node.go``).

``str(node)`` reproduces Go's ``Node.String()``, which appears in error contexts
(``executing "t" at <.Data.data.x>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass
class TextNode:
    pos: int
    text: str


@dataclass
class CommentNode:
    pos: int
    text: str


@dataclass
class DotNode:
    pos: int

    def __str__(self) -> str:
        return "."


@dataclass
class NilNode:
    pos: int

    def __str__(self) -> str:
        return "nil"


@dataclass
class BoolNode:
    pos: int
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass
class NumberNode:
    pos: int
    text: str
    is_int: bool = False
    is_uint: bool = False
    is_float: bool = False
    is_complex: bool = False
    int_value: int = 0
    float_value: float = 0.0

    def __str__(self) -> str:
        return self.text


@dataclass
class StringNode:
    pos: int
    quoted: str
    text: str

    def __str__(self) -> str:
        return self.quoted


@dataclass
class IdentifierNode:
    pos: int
    ident: str

    def __str__(self) -> str:
        return self.ident


@dataclass
class VariableNode:
    pos: int
    ident: list[str]

    def __str__(self) -> str:
        return ".".join(self.ident)


@dataclass
class FieldNode:
    pos: int
    ident: list[str]

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


@dataclass
class ChainNode:
    pos: int
    node: Node
    fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        base = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return base + "".join("." + f for f in self.fields)


@dataclass
class CommandNode:
    pos: int
    args: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)


@dataclass
class PipeNode:
    pos: int
    line: int
    is_assign: bool = False
    decl: list[VariableNode] = field(default_factory=list)
    cmds: list[CommandNode] = field(default_factory=list)

    def __str__(self) -> str:
        head = ", ".join(str(v) for v in self.decl) + " := " if self.decl else ""
        return head + " | ".join(str(c) for c in self.cmds)


@dataclass
class ActionNode:
    pos: int
    line: int
    pipe: PipeNode

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass
class ListNode:
    pos: int
    nodes: list[Node] = field(default_factory=list)


@dataclass
class BranchNode:
    """if / range / with; ``kind`` says which."""

    kind: str
    pos: int
    line: int
    pipe: PipeNode
    body: ListNode
    else_list: ListNode | None

    def __str__(self) -> str:
        text = "{{" + self.kind + " " + str(self.pipe) + "}}"
        if self.else_list is not None:
            return text + "...{{else}}...{{end}}"
        return text + "...{{end}}"


@dataclass
class BreakNode:
    pos: int
    line: int

    def __str__(self) -> str:
        return "{{break}}"


@dataclass
class ContinueNode:
    pos: int
    line: int

    def __str__(self) -> str:
        return "{{continue}}"


@dataclass
class TemplateNode:
    pos: int
    line: int
    name: str
    pipe: PipeNode | None

    def __str__(self) -> str:
        from kv2render.render.ctmpl.gofmt import go_quote

        tail = "" if self.pipe is None else " " + str(self.pipe)
        return "{{template " + go_quote(self.name) + tail + "}}"


@dataclass
class EndNode:
    pos: int

    def __str__(self) -> str:
        return "{{end}}"


@dataclass
class ElseNode:
    pos: int
    line: int

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
