"""The Jinja2 sandbox: what a template may reach and call.

:class:`Sandbox` is jinja2's ImmutableSandboxedEnvironment with more taken away. Calls are
allowed only to an explicit list of callables (our functions, marked by :func:`mark_safe`,
macros, loop helpers and a few pure ``str``/mapping methods): nothing outside the template's
inputs is reachable. Attribute and item lookups on a secret are key lookups
(``functions.SecretData``). The operators that can build large values (``*``, ``**``, ``%``,
``+``), ``str.format`` and every call go through the size guards of ``guards.py`` and the
step budget of ``budget.py``; :func:`finalize` decides what ``{{ }}`` may print.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import Undefined
from jinja2.exceptions import SecurityError
from jinja2.runtime import BlockReference, Context, LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

from kv2render.errors import RenderError
from kv2render.refs import value_to_text
from kv2render.render.budget import MAX_POWER_BITS, STATE, current_limit
from kv2render.render.filters import plain
from kv2render.render.functions import MAPPING_METHODS, SecretData
from kv2render.render.guards import (
    check_format_spec,
    check_printf,
    check_size,
    precheck_str_call,
    too_big,
    weight,
)

__all__ = ["Sandbox", "finalize", "mark_safe"]

_STR_METHODS = frozenset(
    """capitalize casefold center count endswith expandtabs find format format_map index
    isalnum isalpha isascii isdecimal isdigit isidentifier islower isnumeric isspace istitle
    isupper join ljust lower lstrip partition removeprefix removesuffix replace rfind rindex
    rjust rpartition rsplit rstrip split splitlines startswith strip swapcase title upper
    zfill""".split()
)
_SEQ_METHODS = frozenset({"count", "index"})
_SAFE_MARK = "_kv2render_callable"


def mark_safe(func: Callable[..., Any]) -> Callable[..., Any]:
    setattr(func, _SAFE_MARK, True)
    return func


def _callable_allowed(obj: Any) -> bool:
    if isinstance(obj, types.FunctionType):
        return getattr(obj, _SAFE_MARK, False) is True
    if obj is dict or isinstance(obj, Macro | LoopContext | BlockReference):
        return True
    if isinstance(obj, types.BuiltinMethodType | types.MethodType):
        owner, name = obj.__self__, obj.__name__
        if isinstance(owner, str):
            return name in _STR_METHODS
        if isinstance(owner, SecretData | dict):
            return name in MAPPING_METHODS
        if isinstance(owner, list | tuple):
            return name in _SEQ_METHODS
        if isinstance(owner, LoopContext):
            return name in ("cycle", "changed")
    return False


def _describe(obj: Any) -> str:
    """A callable's name for an error message (never its repr, which may show a value)."""
    name = getattr(obj, "__qualname__", None)
    return name if isinstance(name, str) else f"a {type(obj).__name__} object"


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, SecretData):
            return obj.lookup_attr(attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, SecretData):
            return obj.lookup_item(argument)
        return super().getitem(obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        limit = current_limit()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and times > 1
                    and weight(seq, limit) * times > limit
                ):
                    raise too_big("a repeated string or list ('*')")
        elif operator == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and right > 0
                and abs(left) > 1
                and abs(left).bit_length() * right > MAX_POWER_BITS
            ):
                raise RenderError(f"'**' would build an integer larger than {MAX_POWER_BITS} bits")
        elif operator == "%" and isinstance(left, str):
            check_printf(left)
        result = self.binop_table[operator](left, right)
        check_size(result, f"the result of '{operator}'")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            check_format_spec(value.__self__)
            mark_safe(wrapped)
        return wrapped

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        state = STATE.get()
        if state is not None:
            state.step()
        if not isinstance(__obj, Undefined):  # calling an Undefined raises its own error
            if not _callable_allowed(__obj):
                raise SecurityError(
                    f"calling {_describe(__obj)} is not allowed in kv2render templates"
                )
            if isinstance(__obj, types.BuiltinMethodType) and isinstance(__obj.__self__, str):
                args = precheck_str_call(__obj.__self__, __obj.__name__, args)
        result = __context.call(__obj, *args, **kwargs)
        check_size(result, f"the result of {_describe(__obj)}()")
        return result


def finalize(value: Any) -> Any:
    """What ``{{ }}`` prints: strings as written, other JSON values as compact JSON."""
    if isinstance(value, str | Undefined):
        return value
    if value is None or isinstance(value, bool | int | float | Mapping | list | tuple):
        check_size(value, "a printed value")
        return value_to_text(plain(value))
    raise RenderError(
        f"cannot print a {type(value).__name__} value",
        hint="print strings, numbers, booleans, null, lists or objects; add |list or |join",
    )
