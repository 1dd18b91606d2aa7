"""What one Jinja2 render may spend, and the state it spends it from.

A render runs with a :class:`RenderState` in a ContextVar (one compiled template may render in
several threads at once, runner.py's pool): the secrets it may read, the steps it has taken
against :data:`MAX_STEPS`, the wall-clock deadline of ``template_config.render_timeout``
(KV2-INV-367) and the byte limit ``max_output_bytes`` that every size guard measures against
(``guards.py``). ``functions.py`` records there what ``kv2()``/``secret()`` found and missed.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kv2render.errors import RenderError

if TYPE_CHECKING:
    from jinja2 import Template

    from kv2render.model import SecretVersion
    from kv2render.refs import SecretLocation, SecretRef

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_RENDER_TIMEOUT",
    "MAX_FILTER_ITEMS",
    "MAX_POWER_BITS",
    "MAX_RANGE",
    "MAX_STEPS",
    "STATE",
    "RenderState",
    "current_limit",
    "current_state",
    "render_timeout_error",
]

DEFAULT_MAX_OUTPUT_BYTES = 1 << 20
DEFAULT_RENDER_TIMEOUT = 10.0  # seconds of wall clock per render (KV2-INV-367)
MAX_RANGE = 10_000  # items one range() call may produce
MAX_STEPS = 1_000_000  # loop iterations + calls per render (about a second of work)
MAX_POWER_BITS = 4096  # the largest integer '**' may build
# KV2-INV-368: the most items a filter that iterates or sorts its input may be given, so that
# no single call runs long between two clock checks (sorting 100,000 items: ~0.1 s).
MAX_FILTER_ITEMS = 100_000


@dataclass
class RenderState:
    secrets: Mapping[SecretLocation, SecretVersion]
    calls: Mapping[tuple[str, str], SecretRef]
    strict: bool
    limit: int
    constants: frozenset[str] = frozenset()
    timeout: float = DEFAULT_RENDER_TIMEOUT
    deadline: float = 0.0  # time.monotonic() after which the render stops (KV2-INV-367)
    steps: int = 0
    ticks: int = 0
    # the SecretData views kv2()/secret() built, one per (function, location)
    views: dict[tuple[str, SecretLocation], Any] = field(default_factory=dict)
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


STATE: contextvars.ContextVar[RenderState | None] = contextvars.ContextVar(
    "kv2render_template_state", default=None
)


def current_limit() -> int:
    """``max_output_bytes`` of the render running in this context."""
    state = STATE.get()
    return state.limit if state is not None else DEFAULT_MAX_OUTPUT_BYTES


def current_state() -> RenderState:
    state = STATE.get()
    if state is None:  # kv2()/secret() evaluated outside render(): never from a template
        raise RenderError("kv2() and secret() can only run while a template renders")
    return state
