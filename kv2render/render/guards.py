"""The Jinja2 sandbox's resource guards: how much a template may build (issue 10 item 3).

* size: every string and container a template builds (``*``, ``+``, ``~``, ``%``,
  literals, filters, calls) is measured against ``max_output_bytes``, and the calls that
  would amplify past it (padding, ``replace``, ``indent``, ``join``, format widths) are
  refused before they run;
* filters: Jinja2's built-ins that have no use in a secret file are removed
  (:data:`REMOVED_FILTERS`); every other filter is wrapped by :func:`guarded_filter`, which
  ticks the step budget and refuses an input over ``MAX_FILTER_ITEMS`` to a filter whose work
  grows with its input (KV2-INV-368);
* loops and literals: :class:`AddGuards` rewrites the parsed template before code generation
  so that each ``{% for %}`` iteration costs a step and each built value is measured.

The limits and the clock live in ``budget.py``; ``sandbox.py`` applies the same checks to
operators and calls.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from string import Formatter
from typing import Any, cast

from jinja2 import Environment, nodes, pass_context
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.visitor import NodeTransformer

from kv2render.errors import RenderError
from kv2render.render.budget import MAX_FILTER_ITEMS, STATE, current_limit
from kv2render.render.functions import SecretData

__all__ = [
    "LOOP_GUARD",
    "REMOVED_FILTERS",
    "SIZE_GUARD",
    "AddGuards",
    "check_format_spec",
    "check_printf",
    "check_size",
    "guarded_filter",
    "loop_guard",
    "precheck_str_call",
    "size_guard",
    "too_big",
    "weight",
]


def too_big(what: str) -> RenderError:
    return RenderError(
        f"{what} would be larger than max_output_bytes ({current_limit()})",
        hint="raise template_config.max_output_bytes if this output is intended",
    )


def weight(value: Any, limit: int) -> int:
    """Characters + items a value expands to when printed; stops counting past ``limit``.

    Memoised by identity, so a structure that shares itself (``[x, x]`` nested 40 times)
    is measured in linear time although it would print exponentially large.
    """
    memo: dict[int, int] = {}

    def walk(v: Any) -> int:
        if isinstance(v, str):
            return len(v) + 1
        if isinstance(v, SecretData) and v._weight is not None:
            return v._weight
        if not isinstance(v, Mapping | list | tuple):
            return 1
        known = memo.get(id(v))
        if known is not None:
            return known
        total = 1
        children = [x for pair in v.items() for x in pair] if isinstance(v, Mapping) else v
        for child in children:
            total += walk(child)
            if total > limit:
                break
        memo[id(v)] = total
        if isinstance(v, SecretData):
            v._weight = total
        return total

    return walk(value)


def check_size(value: Any, what: str) -> None:
    limit = current_limit()
    if isinstance(value, str):
        if len(value) > limit:
            raise too_big(what)
    elif isinstance(value, Mapping | list | tuple) and weight(value, limit) > limit:
        raise too_big(what)


_PRINTF_WIDTH = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_printf(fmt: str) -> None:
    limit = current_limit()
    for width, precision in _PRINTF_WIDTH.findall(fmt):
        for part in (width, precision):
            if part == "*" or (part and int(part) > limit):
                raise too_big("a %-format width")


def check_format_spec(fmt: str) -> None:
    limit = current_limit()
    try:
        parsed = list(Formatter().parse(fmt))
    except ValueError:
        return  # the call itself reports the malformed format string
    for _, _, spec, _ in parsed:
        if not spec:
            continue
        if "{" in spec:
            raise RenderError("nested replacement fields in a format spec are not allowed")
        if any(int(d) > limit for d in re.findall(r"\d+", spec)):
            raise too_big("a format width")


_PAD_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def precheck_str_call(owner: str, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Refuse str method calls whose result would blow past the limit before they run."""
    limit = current_limit()
    if name in _PAD_METHODS and args and isinstance(args[0], int) and args[0] > limit:
        raise too_big(f"str.{name}()")
    if name == "expandtabs":
        tab = args[0] if args and isinstance(args[0], int) else 8
        if len(owner) + tab * owner.count("\t") > limit:
            raise too_big("str.expandtabs()")
    if name == "replace" and len(args) >= 2:
        _check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else -1)
    if name == "join" and args:
        items = list(args[0])
        size = sum(len(x) if isinstance(x, str) else 1 for x in items)
        if size + len(owner) * max(0, len(items) - 1) > limit:
            raise too_big("str.join()")
        return (items, *args[1:])
    return args


def _check_replace(text: Any, old: Any, new: Any, count: Any) -> None:
    text, old, new = str(text), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * (len(new) - len(old)) > current_limit():
        raise too_big("replace()")


# Removed from Jinja2's built-ins: 'random' (output must be a function of the secrets, or
# every pass rewrites the file), amplifiers with no use in secret files ('center', 'wordwrap',
# 'batch', 'slice') and HTML/debug helpers ('urlize', 'xmlattr', 'pprint').
REMOVED_FILTERS = ("random", "center", "wordwrap", "batch", "slice", "urlize", "xmlattr", "pprint")


def _bound_args(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return inspect.signature(func).bind(*args, **kwargs).arguments
    except TypeError:
        return None  # the call itself reports the bad arguments


def _precheck_filter(name: str, func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """Refuse built-in filter calls that would amplify past the limit; may return new args."""
    bound = _bound_args(func, args, kwargs)
    if bound is None:
        return args
    if name == "replace":
        _check_replace(bound.get("s"), bound.get("old"), bound.get("new"), bound.get("count"))
    elif name == "indent":
        width = bound.get("width", 4)
        prefix = len(width) if isinstance(width, str) else width
        text = str(bound.get("s", ""))
        if (
            isinstance(prefix, int)
            and len(text) + prefix * (text.count("\n") + 1) > current_limit()
        ):
            raise too_big("indent")
    elif name == "format":
        check_printf(str(bound.get("value", "")))
    elif name == "join" and "value" in bound:
        items = list(bound["value"])
        sep = str(bound.get("d", ""))
        if weight(items, current_limit()) + len(sep) * max(0, len(items) - 1) > current_limit():
            raise too_big("join")
        position = list(bound).index("value")
        args = (*args[:position], items, *args[position + 1 :])
    return args


# KV2-INV-368: filters whose work grows with (or faster than) the size of their input.
_ITERATING_FILTERS = frozenset(
    """list sort unique reverse join map select reject selectattr rejectattr dictsort groupby
    sum min max items""".split()
)


def _check_filter_input(name: str, args: tuple[Any, ...]) -> None:
    """Refuse an input too large for one call (its length is not shown: KV2-INV-366)."""
    passed = (Context, EvalContext, Environment)  # pass_context/eval_context/environment
    value = next((a for a in args[:2] if not isinstance(a, passed)), None)
    if isinstance(value, str | list | tuple | Mapping | range) and len(value) > MAX_FILTER_ITEMS:
        raise RenderError(
            f"the {name} filter takes at most {MAX_FILTER_ITEMS} items (MAX_FILTER_ITEMS); "
            "its input has more",
            hint="a secret file does not need this much work; simplify the template",
        )


def guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    iterating = name in _ITERATING_FILTERS

    @functools.wraps(func)  # keeps jinja_pass_arg (pass_context, pass_eval_context)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        state = STATE.get()
        if iterating:
            if state is not None:
                state.check_clock()
            _check_filter_input(name, args)
        elif state is not None:
            state.tick()
        if name in ("replace", "indent", "format", "join"):
            args = _precheck_filter(name, func, args, kwargs)
        result = func(*args, **kwargs)
        check_size(result, f"the result of the {name} filter")
        return result

    return guarded


@pass_context
def loop_guard(context: Context, iterable: Any) -> Iterator[Any]:
    """Wraps every {% for %} iterable: each iteration costs one step of the budget."""
    state = STATE.get()
    for item in iterable:
        if state is not None:
            state.step()
        yield item


@pass_context
def size_guard(context: Context, value: Any) -> Any:
    """Wraps every '~' concatenation and list/tuple/dict literal."""
    check_size(value, "a value built by the template")
    return value


LOOP_GUARD = "_kv2render_loop"
SIZE_GUARD = "_kv2render_size"


def _guard(node: nodes.Expr, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class AddGuards(NodeTransformer):
    """Wrap loop iterables and built values in guard filters before code generation."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)  # transforms the children in place
        node.iter = _guard(cast(nodes.Expr, node.iter), LOOP_GUARD)
        return node

    def _sized(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        return _guard(node, SIZE_GUARD)

    visit_Concat = visit_List = visit_Dict = _sized

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        return self._sized(node) if node.ctx == "load" else self.generic_visit(node)
