"""What a Jinja2 template reads, found before anything is read (KV2-INV-071).

After ``env.parse()`` and before code generation, the parsed template is checked and walked:

* :func:`check_structure` refuses ``{% include %}``, ``{% import %}`` and ``{% extends %}``
  (a template is one self-contained file) and a ``kv2``/``secret`` name that is not called
  directly (aliased, assigned or passed around, it could not be found up front);
* :func:`discover_refs` walks every ``find_all(nodes.Call)``: a ``kv2()``/``secret()`` call
  with a constant string is parsed now (KV2 issue 4) and its secret read before the render;
  a computed one is resolved while rendering (KV2-INV-390, ``functions.py``) and only its
  ``name:line`` is kept;
* :func:`check_names` refuses a name the template neither sets nor gets as a global.

Every problem is a TemplateSyntaxError at ``name:line`` (exit 2).
"""

from __future__ import annotations

from jinja2 import Environment, nodes
from jinja2.meta import find_undeclared_variables

from kv2render.errors import ReferenceSyntaxError, TemplateSyntaxError
from kv2render.refs import SecretRef, parse_ref

__all__ = ["check_names", "check_structure", "discover_refs", "syntax_error"]

_FUNCTIONS = ("kv2", "secret")

_REFUSED_NODES: dict[type[nodes.Node], str] = {
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Extends: "{% extends %}",
}


def syntax_error(message: str, name: str, line: int | None, hint: str | None = None) -> Exception:
    where = f"{name}:{line}" if line else name
    return TemplateSyntaxError(message, where=where, hint=hint)


def check_structure(ast: nodes.Template, name: str) -> None:
    for node_type, label in _REFUSED_NODES.items():
        for found in ast.find_all(node_type):
            raise syntax_error(
                f"{label} is not supported: a template is one self-contained file",
                name,
                found.lineno,
                hint="copy the shared part into this template",
            )
    called = {id(call.node) for call in ast.find_all(nodes.Call)}
    for ref_name in ast.find_all(nodes.Name):
        if ref_name.name in _FUNCTIONS and (id(ref_name) not in called or ref_name.ctx != "load"):
            raise syntax_error(
                f'{ref_name.name} can only be called directly, as {ref_name.name}("REF")',
                name,
                ref_name.lineno,
                hint="references are found before anything is read, so they cannot be "
                "aliased, assigned or passed around",
            )
    for macro in ast.find_all(nodes.Macro):
        if macro.name in _FUNCTIONS:
            raise syntax_error(f"a macro may not be named {macro.name}", name, macro.lineno)


def check_names(ast: nodes.Template, name: str, env: Environment) -> None:
    loaded = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}
    if loaded <= set(env.globals):
        # Nothing but our globals is read: nothing can be undefined. Skips jinja's
        # find_undeclared_variables, a second code generation (benchmarks/run.py).
        return
    unknown = find_undeclared_variables(ast) - set(env.globals)
    if not unknown:
        return
    first = min((n for n in ast.find_all(nodes.Name) if n.name in unknown), key=lambda n: n.lineno)
    raise syntax_error(
        f"{first.name!r} is undefined",
        name,
        first.lineno,
        hint="a template sees kv2(), secret(), range(), dict() and the variables it sets itself",
    )


def discover_refs(
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
            raise syntax_error(
                f"{func}() takes exactly one argument, the reference",
                name,
                call.lineno,
                hint=f'call {func}("vault+kv2:///secret/data/app") or {func}(a_computed_string)',
            )
        if not (isinstance(arg, nodes.Const) and isinstance(arg.value, str)):
            if isinstance(arg, nodes.Const):  # a number, a bool, None: never a reference
                raise syntax_error(f"{func}() argument must be a string", name, call.lineno)
            where = f"{name}:{call.lineno}"
            if where not in dynamic:
                dynamic.append(where)
            continue
        text = arg.value
        where = f"{name}:{call.lineno}"
        try:
            ref = parse_ref(text, where=where, allow_path_form=func == "secret")
        except ReferenceSyntaxError as exc:
            raise syntax_error(
                f"{func}() argument: {exc.message}", name, call.lineno, exc.hint
            ) from None
        if func == "secret" and (ref.key is not None or ref.pointer is not None):
            raise syntax_error(
                "secret() returns the whole secret and takes no #key or #/pointer",
                name,
                call.lineno,
                hint='select with .Data.data.KEY, or use kv2("...#KEY")',
            )
        calls[(func, text)] = ref
        if ref not in refs:
            refs.append(ref)
    return refs, calls, dynamic
