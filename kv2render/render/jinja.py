"""Jinja2 templates: a strict sandbox, ``kv2()``/``secret()``, references found before rendering.

::

    text --compile_template()--> CompiledTemplate(name, refs, dynamic)  (no network, `check`)
            parse -> refuse include/import, unknown names -> collect constant refs and
            the lines of computed ones -> add resource guards -> compile
    CompiledTemplate + {SecretLocation: SecretVersion} --render()--> str
            a computed reference not in the mapping: SecretsMissing, the runner reads it and
            renders again (KV2-INV-390)
            every error is a RenderError/MissingKeyError at `name:line`, passed through redact()

Spec: KV2-INV/FC/AC-070..089 (templates). Choices that differ from plain Jinja2 or from
consul-template are explained where they are made and listed in docs/templates.md.

The sandbox is jinja2's ImmutableSandboxedEnvironment with more taken away:

* no globals but ``kv2``, ``secret``, a bounded ``range`` and ``dict``; no loader, so
  ``{% include %}``/``{% import %}``/``{% extends %}`` are refused at compile time;
* calls are allowed only to an explicit list of callables (our functions, macros, loop helpers,
  and a few pure ``str``/mapping methods): nothing outside the template's inputs is reachable;
* resource guards: a bounded ``range``, a budget of loop iterations and calls per render, size
  checks on every string and container a template builds (``*``, ``+``, ``~``, ``%``, ``**``,
  literals, filters, calls), and ``max_output_bytes`` on the output (issue 10 item 3).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
import sys
import time
import types
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from string import Formatter
from typing import TYPE_CHECKING, Any, cast

from jinja2 import (
    ChainableUndefined,
    Environment,
    StrictUndefined,
    Undefined,
    nodes,
    pass_context,
)
from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.meta import find_undeclared_variables
from jinja2.nodes import EvalContext
from jinja2.runtime import BlockReference, Context, LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from kv2render.errors import (
    Kv2RenderError,
    MissingKeyError,
    ReferenceSyntaxError,
    RenderError,
    SecretsMissing,
    TemplateSyntaxError,
)
from kv2render.redact import REDACTED, redact, scrub_engine_text
from kv2render.refs import SecretLocation, SecretRef, parse_ref, value_to_text
from kv2render.render.filters import FILTERS, plain

if TYPE_CHECKING:
    from jinja2 import Template

    from kv2render.model import SecretVersion

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_RENDER_TIMEOUT",
    "MAX_FILTER_ITEMS",
    "MAX_RANGE",
    "MAX_STEPS",
    "REDACTED",
    "CompiledTemplate",
    "SecretData",
    "compile_template",
    "redact",
    "render",
]

DEFAULT_MAX_OUTPUT_BYTES = 1 << 20
DEFAULT_RENDER_TIMEOUT = 10.0  # seconds of wall clock per render (KV2-INV-367)
MAX_RANGE = 10_000  # items one range() call may produce
MAX_STEPS = 1_000_000  # loop iterations + calls per render (about a second of work)
MAX_POWER_BITS = 4096  # the largest integer '**' may build
# KV2-INV-368: the most items a filter that iterates or sorts its input may be given, so that
# no single call runs long between two clock checks (sorting 100,000 items: ~0.1 s).
MAX_FILTER_ITEMS = 100_000
_FUNCTIONS = ("kv2", "secret")


# -- the compiled template -----------------------------------------------------------------


@dataclass(frozen=True)
class CompiledTemplate:
    """A parsed, checked and compiled template; ``refs`` are known before anything is read."""

    name: str  # the source path, or 'template[2].contents'
    refs: tuple[SecretRef, ...]  # every distinct constant secret()/kv2() reference, in order
    error_on_missing_key: bool = True
    # 'name:line' of each kv2()/secret() call whose argument is computed (KV2-INV-390)
    dynamic: tuple[str, ...] = ()
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    render_timeout: float = DEFAULT_RENDER_TIMEOUT
    _template: Template | None = field(default=None, repr=False, compare=False)
    _calls: Mapping[tuple[str, str], SecretRef] = field(
        default_factory=dict, repr=False, compare=False
    )
    _source: str = field(default="", repr=False, compare=False)
    # Every constant written in the template (string/number literals, attribute, variable,
    # filter and macro names): the only text an error may quote (KV2-INV-366).
    _constants: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @property
    def locations(self) -> frozenset[SecretLocation]:
        return frozenset(ref.location for ref in self.refs)


# -- per-render state (a ContextVar: one compiled template may render in several threads) ---


@dataclass
class _RenderState:
    secrets: Mapping[SecretLocation, SecretVersion]
    calls: Mapping[tuple[str, str], SecretRef]
    strict: bool
    limit: int
    constants: frozenset[str] = frozenset()
    timeout: float = DEFAULT_RENDER_TIMEOUT
    deadline: float = 0.0  # time.monotonic() after which the render stops (KV2-INV-367)
    steps: int = 0
    ticks: int = 0
    views: dict[tuple[str, SecretLocation], SecretData] = field(default_factory=dict)
    # KV2-INV-390: references computed while rendering. ``pool`` holds every secret read so
    # far this pass; a computed one not in it is recorded in ``missing`` (with its line).
    pool: Mapping[SecretLocation, SecretVersion] = field(default_factory=dict)
    name: str = ""
    template: Template | None = None
    resolved: dict[tuple[str, str], SecretRef] = field(default_factory=dict)
    missing: dict[SecretLocation, str] = field(default_factory=dict)
    used: set[SecretLocation] = field(default_factory=set)

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise RenderError(
                f"the template ran more than {MAX_STEPS} loop iterations and calls",
                hint="a template that loops this much is runaway; simplify its loops",
            )
        self.tick()

    def tick(self) -> None:
        """A cheap unit of work (a step, a filter on bounded input): the clock every 32nd."""
        self.ticks += 1
        if not self.ticks & _CLOCK_EVERY:
            self.check_clock()

    def check_clock(self) -> None:
        # A cooperative check (no signal: renders run in a thread pool, runner.py): every 32
        # steps or cheap filters (each at most a pass over max_output_bytes: about a
        # millisecond), and before every iterating filter, which MAX_FILTER_ITEMS keeps short.
        if time.monotonic() > self.deadline:
            raise render_timeout_error(self.timeout)


_CLOCK_EVERY = 31  # a mask: the clock is read at every 32nd tick


def render_timeout_error(timeout: float) -> RenderError:
    """KV2-FC-370: the one message both engines give when a render runs out of time."""
    return RenderError(
        f"render stopped after {timeout:g}s (template_config.render_timeout)",
        hint="a template that runs this long is runaway; simplify it, or raise "
        "template_config.render_timeout",
    )


_STATE: contextvars.ContextVar[_RenderState | None] = contextvars.ContextVar(
    "kv2render_template_state", default=None
)


def _limit() -> int:
    state = _STATE.get()
    return state.limit if state is not None else DEFAULT_MAX_OUTPUT_BYTES


def _state() -> _RenderState:
    state = _STATE.get()
    if state is None:  # kv2()/secret() evaluated outside render(): never from a template
        raise RenderError("kv2() and secret() can only run while a template renders")
    return state


# -- the data handed to templates ----------------------------------------------------------

_MAPPING_METHODS = frozenset({"items", "keys", "values", "get"})


class SecretData(Mapping[str, Any]):
    """A read-only view of (part of) a secret. Attribute and item lookups are key lookups.

    ``.x`` looks up the key ``x`` first, like consul-template's ``.Data.data.x``; the mapping
    methods ``items``/``keys``/``values``/``get`` are reachable only when no key has that name.
    A missing key is a StrictUndefined that raises MissingKeyError naming the key and the secret
    (never a value); with ``error_on_missing_key: false`` it prints as an empty string.
    The repr shows metadata only (KV2-INV-001).
    """

    __slots__ = ("_items", "_label", "_path", "_weight")

    def __init__(self, items: dict[str, Any], label: str, path: str) -> None:
        self._items = items
        self._label = label  # 'secret/app/db' (with ?version=N when pinned)
        self._path = path  # '.Data.data' or '' for kv2()'s top level
        self._weight: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<secret {self._label}{self._path} ({len(self._items)} keys)>"

    def __str__(self) -> str:  # '~' and the string filters: compact JSON, as {{ }} prints it
        return value_to_text(plain(self))

    def _missing(self, key: Any) -> Undefined:
        where = f" at {self._path}" if self._path else ""
        state = _STATE.get()
        # KV2-INV-366: the key is named only when the template spells it as a constant
        # (.nope, ["nope"]); a computed key may be derived from a secret (| lower, a slice).
        constants = state.constants if state is not None else frozenset()
        literal = isinstance(key, str | int) and not isinstance(key, bool)
        if literal and str(key) in constants:
            message = f"key {key!r} not found{where} in secret {self._label}"
        else:
            message = f"a computed key was not found{where} in secret {self._label}"
        strict = state.strict if state is not None else True
        cls = StrictUndefined if strict else Undefined
        return cls(hint=message, obj=self, name=str(key), exc=MissingKeyError)  # type: ignore[arg-type]

    def lookup_attr(self, name: str) -> Any:
        if name in self._items:
            return self._items[name]
        if name in _MAPPING_METHODS:
            return getattr(self, name)
        return self._missing(name)

    def lookup_item(self, key: Any) -> Any:
        if isinstance(key, str) and key in self._items:
            return self._items[key]
        return self._missing(key)


def _child_path(path: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def _freeze(value: Any, label: str, path: str) -> Any:
    """Server data as templates see it: objects become SecretData, arrays tuples."""
    if isinstance(value, Mapping):
        items = {str(k): _freeze(v, label, _child_path(path, k)) for k, v in value.items()}
        return SecretData(items, label, path)
    if isinstance(value, list | tuple):
        return tuple(_freeze(v, label, _child_path(path, i)) for i, v in enumerate(value))
    return value


# -- kv2() and secret() --------------------------------------------------------------------


def _resolve(state: _RenderState, func: str, text: Any) -> SecretRef:
    """A reference computed while rendering (KV2-INV-390); never quoted in an error, since
    it may be derived from a secret value (KV2-INV-366, KV2-FC-390)."""
    if not isinstance(text, str):
        raise RenderError(
            f"{func}() needs a reference string; it was given a value of type "
            f"{type(text).__name__}",
            hint=f'pass {func}() one string, e.g. {func}("vault+kv2:///secret/data/app")',
        )
    ref = state.resolved.get((func, text))
    if ref is not None:
        return ref
    try:
        ref = parse_ref(text, allow_path_form=func == "secret")
    except ReferenceSyntaxError:
        raise RenderError(
            f"{func}() was given a reference computed while rendering that is not a valid "
            "KV2 reference (its text is not shown: it may be derived from a secret)",
            hint="build MOUNT/data/PATH (secret()) or vault+kv2:///MOUNT/data/PATH#KEY (kv2())",
        ) from None
    if func == "secret" and (ref.key is not None or ref.pointer is not None):
        raise RenderError(
            "secret() returns the whole secret and takes no #key or #/pointer",
            hint='select with .Data.data.KEY, or use kv2("...#KEY")',
        )
    state.resolved[(func, text)] = ref
    return ref


def _call_site(state: _RenderState) -> str:
    """``name:line`` of the template line running now (a live frame of the compiled code)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == state.name and state.template is not None:
            return f"{state.name}:{state.template.get_corresponding_lineno(frame.f_lineno)}"
        frame = frame.f_back  # type: ignore[assignment]
    return state.name


# What a computed reference gives while its secret is not read yet: it prints as nothing and
# chains (.Data.data.x), so the render goes on and finds every other missing secret in the
# same round; the output is discarded (KV2-INV-390, consul-template returns nil the same way).
_PENDING = ChainableUndefined(name="a secret not read yet")


def _lookup(func: str, text: Any) -> tuple[_RenderState, SecretRef, SecretVersion | None]:
    state = _state()
    ref = state.calls.get((func, text)) if isinstance(text, str) else None
    if ref is not None:
        return state, ref, state.secrets[ref.location]
    ref = _resolve(state, func, text)
    version = state.secrets.get(ref.location) or state.pool.get(ref.location)
    if version is None:
        state.missing.setdefault(ref.location, _call_site(state))
        return state, ref, None
    state.used.add(ref.location)
    return state, ref, version


def _kv2(text: Any) -> Any:
    """kv2(REF): with #key or #/pointer the value as text, else the whole data object."""
    state, ref, version = _lookup("kv2", text)
    if version is None:
        return _PENDING
    if ref.key is None and ref.pointer is None:
        view = state.views.get(("kv2", ref.location))
        if view is None:
            view = _freeze(version.data, str(ref.location), "")
            state.views[("kv2", ref.location)] = view
        return view
    try:
        value = ref.select(version.data)
    except MissingKeyError as exc:
        if state.strict:
            raise
        return Undefined(hint=exc.message, name=ref.key or ref.pointer, exc=MissingKeyError)  # type: ignore[arg-type]
    return value_to_text(value)  # KV2 decision 3: a string raw, anything else compact JSON


def _secret(text: Any) -> Any:
    """secret(PATH_OR_REF): consul-template's shape, ``.Data.data`` and ``.Data.metadata``."""
    state, ref, version = _lookup("secret", text)
    if version is None:
        return _PENDING
    view = state.views.get(("secret", ref.location))
    if view is None:
        metadata: dict[str, Any] = {
            "created_time": "",
            "custom_metadata": None,
            "deletion_time": "",
            "destroyed": False,
        }
        metadata.update(version.metadata)
        metadata["version"] = version.version
        shape = {"Data": {"data": version.data, "metadata": metadata}}
        view = _freeze(shape, str(ref.location), "")
        state.views[("secret", ref.location)] = view
    return view


def _range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        # Not its length: the bounds may be computed from a secret number (KV2-INV-366).
        raise RenderError(f"range() is limited to {MAX_RANGE} items, this one has more")
    return rng


# -- size guards ---------------------------------------------------------------------------


def _too_big(what: str) -> RenderError:
    return RenderError(
        f"{what} would be larger than max_output_bytes ({_limit()})",
        hint="raise template_config.max_output_bytes if this output is intended",
    )


def _weight(value: Any, limit: int) -> int:
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


def _check_size(value: Any, what: str) -> None:
    limit = _limit()
    if isinstance(value, str):
        if len(value) > limit:
            raise _too_big(what)
    elif isinstance(value, Mapping | list | tuple) and _weight(value, limit) > limit:
        raise _too_big(what)


_PRINTF_WIDTH = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_printf(fmt: str) -> None:
    limit = _limit()
    for width, precision in _PRINTF_WIDTH.findall(fmt):
        for part in (width, precision):
            if part == "*" or (part and int(part) > limit):
                raise _too_big("a %-format width")


def _check_format_spec(fmt: str) -> None:
    limit = _limit()
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
            raise _too_big("a format width")


_PAD_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _precheck_str_call(owner: str, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Refuse str method calls whose result would blow past the limit before they run."""
    limit = _limit()
    if name in _PAD_METHODS and args and isinstance(args[0], int) and args[0] > limit:
        raise _too_big(f"str.{name}()")
    if name == "expandtabs":
        tab = args[0] if args and isinstance(args[0], int) else 8
        if len(owner) + tab * owner.count("\t") > limit:
            raise _too_big("str.expandtabs()")
    if name == "replace" and len(args) >= 2:
        _check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else -1)
    if name == "join" and args:
        items = list(args[0])
        size = sum(len(x) if isinstance(x, str) else 1 for x in items)
        if size + len(owner) * max(0, len(items) - 1) > limit:
            raise _too_big("str.join()")
        return (items, *args[1:])
    return args


def _check_replace(text: Any, old: Any, new: Any, count: Any) -> None:
    text, old, new = str(text), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * (len(new) - len(old)) > _limit():
        raise _too_big("replace()")


# Removed from Jinja2's built-ins: 'random' (output must be a function of the secrets, or
# every pass rewrites the file), amplifiers with no use in secret files ('center', 'wordwrap',
# 'batch', 'slice') and HTML/debug helpers ('urlize', 'xmlattr', 'pprint').
_REMOVED_FILTERS = ("random", "center", "wordwrap", "batch", "slice", "urlize", "xmlattr", "pprint")


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
        if isinstance(prefix, int) and len(text) + prefix * (text.count("\n") + 1) > _limit():
            raise _too_big("indent")
    elif name == "format":
        _check_printf(str(bound.get("value", "")))
    elif name == "join" and "value" in bound:
        items = list(bound["value"])
        sep = str(bound.get("d", ""))
        if _weight(items, _limit()) + len(sep) * max(0, len(items) - 1) > _limit():
            raise _too_big("join")
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


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    iterating = name in _ITERATING_FILTERS

    @functools.wraps(func)  # keeps jinja_pass_arg (pass_context, pass_eval_context)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        state = _STATE.get()
        if iterating:
            if state is not None:
                state.check_clock()
            _check_filter_input(name, args)
        elif state is not None:
            state.tick()
        if name in ("replace", "indent", "format", "join"):
            args = _precheck_filter(name, func, args, kwargs)
        result = func(*args, **kwargs)
        _check_size(result, f"the result of the {name} filter")
        return result

    return guarded


@pass_context
def _loop_guard(context: Context, iterable: Any) -> Iterator[Any]:
    """Wraps every {% for %} iterable: each iteration costs one step of the budget."""
    state = _STATE.get()
    for item in iterable:
        if state is not None:
            state.step()
        yield item


@pass_context
def _size_guard(context: Context, value: Any) -> Any:
    """Wraps every '~' concatenation and list/tuple/dict literal."""
    _check_size(value, "a value built by the template")
    return value


_LOOP_GUARD = "_kv2render_loop"
_SIZE_GUARD = "_kv2render_size"


def _guard(node: nodes.Expr, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class _AddGuards(NodeTransformer):
    """Wrap loop iterables and built values in guard filters before code generation."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)  # transforms the children in place
        node.iter = _guard(cast(nodes.Expr, node.iter), _LOOP_GUARD)
        return node

    def _sized(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        return _guard(node, _SIZE_GUARD)

    visit_Concat = visit_List = visit_Dict = _sized

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        return self._sized(node) if node.ctx == "load" else self.generic_visit(node)


# -- the sandbox ---------------------------------------------------------------------------

_STR_METHODS = frozenset(
    """capitalize casefold center count endswith expandtabs find format format_map index
    isalnum isalpha isascii isdecimal isdigit isidentifier islower isnumeric isspace istitle
    isupper join ljust lower lstrip partition removeprefix removesuffix replace rfind rindex
    rjust rpartition rsplit rstrip split splitlines startswith strip swapcase title upper
    zfill""".split()
)
_SEQ_METHODS = frozenset({"count", "index"})
_SAFE_MARK = "_kv2render_callable"


def _mark_safe(func: Callable[..., Any]) -> Callable[..., Any]:
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
            return name in _MAPPING_METHODS
        if isinstance(owner, list | tuple):
            return name in _SEQ_METHODS
        if isinstance(owner, LoopContext):
            return name in ("cycle", "changed")
    return False


def _describe(obj: Any) -> str:
    """A callable's name for an error message (never its repr, which may show a value)."""
    name = getattr(obj, "__qualname__", None)
    return name if isinstance(name, str) else f"a {type(obj).__name__} object"


class _Sandbox(ImmutableSandboxedEnvironment):
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
        limit = _limit()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and times > 1
                    and _weight(seq, limit) * times > limit
                ):
                    raise _too_big("a repeated string or list ('*')")
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
            _check_printf(left)
        result = self.binop_table[operator](left, right)
        _check_size(result, f"the result of '{operator}'")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format_spec(value.__self__)
            _mark_safe(wrapped)
        return wrapped

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        state = _STATE.get()
        if state is not None:
            state.step()
        if not isinstance(__obj, Undefined):  # calling an Undefined raises its own error
            if not _callable_allowed(__obj):
                raise SecurityError(
                    f"calling {_describe(__obj)} is not allowed in kv2render templates"
                )
            if isinstance(__obj, types.BuiltinMethodType) and isinstance(__obj.__self__, str):
                args = _precheck_str_call(__obj.__self__, __obj.__name__, args)
        result = __context.call(__obj, *args, **kwargs)
        _check_size(result, f"the result of {_describe(__obj)}()")
        return result


def _finalize(value: Any) -> Any:
    """What ``{{ }}`` prints: strings as written, other JSON values as compact JSON."""
    if isinstance(value, str | Undefined):
        return value
    if value is None or isinstance(value, bool | int | float | Mapping | list | tuple):
        _check_size(value, "a printed value")
        return value_to_text(plain(value))
    raise RenderError(
        f"cannot print a {type(value).__name__} value",
        hint="print strings, numbers, booleans, null, lists or objects; add |list or |join",
    )


def _make_env() -> _Sandbox:
    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_finalize,
        auto_reload=False,
        cache_size=0,
    )
    env.globals.clear()  # drops lipsum, cycler, joiner, namespace (see docs/templates.md)
    env.globals.update(
        kv2=_mark_safe(_kv2), secret=_mark_safe(_secret), range=_mark_safe(_range), dict=dict
    )
    for name in _REMOVED_FILTERS:
        env.filters.pop(name, None)
    for name, func in list(env.filters.items()):
        env.filters[name] = _guarded_filter(name, func)
    for name, func in FILTERS.items():
        env.filters[name] = _guarded_filter(name, func)
    env.filters[_LOOP_GUARD] = _loop_guard
    env.filters[_SIZE_GUARD] = _size_guard
    return env


_ENV: _Sandbox | None = None


def _env() -> _Sandbox:
    global _ENV
    if _ENV is None:
        _ENV = _make_env()
    return _ENV


# -- compile -------------------------------------------------------------------------------

_REFUSED_NODES: dict[type[nodes.Node], str] = {
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Extends: "{% extends %}",
}


def _syntax(message: str, name: str, line: int | None, hint: str | None = None) -> Exception:
    where = f"{name}:{line}" if line else name
    return TemplateSyntaxError(message, where=where, hint=hint)


def _check_structure(ast: nodes.Template, name: str) -> None:
    for node_type, label in _REFUSED_NODES.items():
        for found in ast.find_all(node_type):
            raise _syntax(
                f"{label} is not supported: a template is one self-contained file",
                name,
                found.lineno,
                hint="copy the shared part into this template",
            )
    called = {id(call.node) for call in ast.find_all(nodes.Call)}
    for ref_name in ast.find_all(nodes.Name):
        if ref_name.name in _FUNCTIONS and (id(ref_name) not in called or ref_name.ctx != "load"):
            raise _syntax(
                f'{ref_name.name} can only be called directly, as {ref_name.name}("REF")',
                name,
                ref_name.lineno,
                hint="references are found before anything is read, so they cannot be "
                "aliased, assigned or passed around",
            )
    for macro in ast.find_all(nodes.Macro):
        if macro.name in _FUNCTIONS:
            raise _syntax(f"a macro may not be named {macro.name}", name, macro.lineno)


def _check_names(ast: nodes.Template, name: str, env: _Sandbox) -> None:
    loaded = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}
    if loaded <= set(env.globals):
        # Nothing but our globals is read: nothing can be undefined. Skips jinja's
        # find_undeclared_variables, a second code generation (benchmarks/run.py).
        return
    unknown = find_undeclared_variables(ast) - set(env.globals)
    if not unknown:
        return
    first = min((n for n in ast.find_all(nodes.Name) if n.name in unknown), key=lambda n: n.lineno)
    raise _syntax(
        f"{first.name!r} is undefined",
        name,
        first.lineno,
        hint="a template sees kv2(), secret(), range(), dict() and the variables it sets itself",
    )


def _discover(
    ast: nodes.Template, name: str
) -> tuple[list[SecretRef], dict[tuple[str, str], SecretRef], list[str]]:
    """Every kv2()/secret() call: one argument; a constant string is parsed now (KV2 issue 4),
    a computed one is resolved while rendering (KV2-INV-390) and only its line is kept."""
    refs: list[SecretRef] = []
    calls: dict[tuple[str, str], SecretRef] = {}
    dynamic: list[str] = []
    for call in ast.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name in _FUNCTIONS):
            continue
        func = call.node.name
        arg = call.args[0] if len(call.args) == 1 else None
        plain = not (call.kwargs or call.dyn_args or call.dyn_kwargs)
        if not plain or arg is None:
            raise _syntax(
                f"{func}() takes exactly one argument, the reference",
                name,
                call.lineno,
                hint=f'call {func}("vault+kv2:///secret/data/app") or {func}(a_computed_string)',
            )
        if not (isinstance(arg, nodes.Const) and isinstance(arg.value, str)):
            if isinstance(arg, nodes.Const):  # a number, a bool, None: never a reference
                raise _syntax(f"{func}() argument must be a string", name, call.lineno)
            where = f"{name}:{call.lineno}"
            if where not in dynamic:
                dynamic.append(where)
            continue
        text = arg.value
        where = f"{name}:{call.lineno}"
        try:
            ref = parse_ref(text, where=where, allow_path_form=func == "secret")
        except ReferenceSyntaxError as exc:
            raise _syntax(
                f"{func}() argument: {exc.message}", name, call.lineno, exc.hint
            ) from None
        if func == "secret" and (ref.key is not None or ref.pointer is not None):
            raise _syntax(
                "secret() returns the whole secret and takes no #key or #/pointer",
                name,
                call.lineno,
                hint='select with .Data.data.KEY, or use kv2("...#KEY")',
            )
        calls[(func, text)] = ref
        if ref not in refs:
            refs.append(ref)
    return refs, calls, dynamic


def _constants(ast: nodes.Template) -> frozenset[str]:
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


def compile_template(
    text: str,
    *,
    name: str,
    error_on_missing_key: bool = True,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    render_timeout: float = DEFAULT_RENDER_TIMEOUT,
) -> CompiledTemplate:
    """Parse, check and compile ``text``; raise TemplateSyntaxError ``name:line: ...``.

    Nothing is read here: ``refs`` lists what render() will need (spec KV2-INV-071).
    """
    if max_output_bytes < 1:
        raise ValueError("max_output_bytes must be positive")
    if not render_timeout > 0:
        raise ValueError("render_timeout must be positive")
    env = _env()
    try:
        ast = env.parse(text, name=name, filename=name)
        _check_structure(ast, name)
        refs, calls, dynamic = _discover(ast, name)
        constants = _constants(ast)
        _check_names(ast, name, env)  # last: jinja's meta pass const-folds the tree in place
        _AddGuards().visit(ast)
        code = env.compile(ast, name=name, filename=name)
    except JinjaSyntaxError as exc:
        raise _syntax(exc.message or "syntax error", name, exc.lineno) from None
    except RecursionError:
        # Thousands of nested (, [ or {% if %}: jinja's parser and compiler recurse (issue 10).
        raise _syntax(
            "the template nests too deeply", name, None, hint="flatten the nested blocks"
        ) from None
    template = env.template_class.from_code(env, code, env.make_globals(None))
    return CompiledTemplate(
        name=name,
        refs=tuple(refs),
        error_on_missing_key=error_on_missing_key,
        dynamic=tuple(dynamic),
        max_output_bytes=max_output_bytes,
        render_timeout=render_timeout,
        _template=template,
        _calls=calls,
        _source=text,
        _constants=constants,
    )


# -- render --------------------------------------------------------------------------------


def _template_line(exc: BaseException, name: str) -> int | None:
    """The template line of the innermost template frame (jinja rewrites tracebacks so)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _render_error(
    exc: BaseException, tpl: CompiledTemplate, secrets: Iterable[SecretVersion]
) -> RenderError:
    """One RenderError at ``name:line``, with every secret value of the template redacted."""
    line = _template_line(exc, tpl.name)
    where = f"{tpl.name}:{line}" if line else tpl.name
    hint: str | None = None
    cls: type[RenderError] = RenderError
    if isinstance(exc, Kv2RenderError):
        message, hint = exc.message, exc.hint
        if isinstance(exc, RenderError):
            cls = type(exc)
        if exc.where and exc.where != tpl.name:
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
        message = scrub_engine_text(message, tpl._constants)
    return cls(
        message,
        where=where,
        hint=redact(hint, secrets) if hint else None,
    )


def render(
    tpl: CompiledTemplate,
    secrets: Mapping[SecretLocation, SecretVersion],
    *,
    used: set[SecretLocation] | None = None,
) -> str:
    """Render with the secrets read for ``tpl.locations``; RenderError/MissingKeyError else.

    A reference computed while rendering is looked up in ``secrets`` too; when one is not
    there, SecretsMissing lists them all and the output is discarded (KV2-INV-390). ``used``
    receives the computed references' locations of a complete render.
    """
    if tpl._template is None:
        raise RenderError("the template was not compiled by compile_template()", where=tpl.name)
    available: dict[SecretLocation, SecretVersion] = {}
    for location in sorted(tpl.locations):
        got = secrets.get(location)
        if got is None:
            raise RenderError(f"secret {location} was not read before rendering", where=tpl.name)
        available[location] = got
    state = _RenderState(
        available,
        tpl._calls,
        tpl.error_on_missing_key,
        tpl.max_output_bytes,
        constants=tpl._constants,
        timeout=tpl.render_timeout,
        deadline=time.monotonic() + tpl.render_timeout,
        pool=secrets,
        name=tpl.name,
        template=tpl._template,
    )
    token = _STATE.set(state)
    chunks: list[str] = []
    size = 0
    generator = cast(Generator[str, None, None], tpl._template.generate())
    try:
        for chunk in generator:
            state.check_clock()
            size += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8"))
            if size > tpl.max_output_bytes:
                raise RenderError(
                    f"output is larger than max_output_bytes ({tpl.max_output_bytes})",
                    hint="raise template_config.max_output_bytes if this output is intended",
                )
            chunks.append(chunk)
    except Exception as exc:
        if state.missing:
            # An incomplete render's errors are not trusted: a pending secret printed as
            # nothing may be what failed (consul-template ignores them the same way).
            raise SecretsMissing(state.missing) from None
        # 'from None': the original message may quote a value (KV2-INV-001).
        seen = [*available.values(), *(secrets[loc] for loc in state.used)]
        raise _render_error(exc, tpl, seen) from None
    finally:
        generator.close()
        _STATE.reset(token)
    if state.missing:
        raise SecretsMissing(state.missing)
    if used is not None:
        used.update(state.used)
    return "".join(chunks)
