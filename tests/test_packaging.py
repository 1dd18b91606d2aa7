"""KV2-NFR-300: every import in kv2render/ is the standard library, a declared dependency, or a
guarded import of a declared extra.

A fresh ``pip install kv2render`` has only what pyproject.toml declares. A module that arrives
through another package (``requests`` through hvac) or that happened to be installed by hand
(python-hcl2 on a developer's machine) passes every test there and fails on the user's machine.
This test walks every ``import`` in the package, function-level ones included, with ``ast``.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "kv2render"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _norm(re.split(r"[\s<>=!~;\[]", req.strip(), maxsplit=1)[0])


def _declared() -> tuple[set[str], dict[str, str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras: dict[str, str] = {}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        if extra == "test":
            continue  # the test extra never serves the package itself
        for r in reqs:
            extras.setdefault(_requirement_name(r), extra)
    return core, extras


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """True when the import sits inside ``try: ... except ImportError`` (or its subclass)."""
    child, cur = node, parents.get(node)
    while cur is not None:
        if isinstance(cur, ast.Try) and child in cur.body:
            for handler in cur.handlers:
                names = []
                if isinstance(handler.type, ast.Name):
                    names = [handler.type.id]
                elif isinstance(handler.type, ast.Tuple):
                    names = [e.id for e in handler.type.elts if isinstance(e, ast.Name)]
                if {"ImportError", "ModuleNotFoundError"} & set(names):
                    return True
        child, cur = cur, parents.get(cur)
    return False


def _imports() -> list[tuple[str, int, str, bool]]:
    """(file, line, top-level module, guarded) for every absolute import in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        parents = {
            child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)
        }
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                rel = str(path.relative_to(REPO))
                found.append((rel, node.lineno, top, _guarded(node, parents)))
    return found


def test_every_import_is_stdlib_declared_or_a_guarded_extra() -> None:
    """KV2-NFR-300"""
    core, extras = _declared()
    distributions = metadata.packages_distributions()
    problems = []
    seen_third_party = set()
    for rel, line, top, guarded in _imports():
        if top == "kv2render" or top in sys.stdlib_module_names or top == "__future__":
            continue
        dists = {_norm(d) for d in distributions.get(top, [])}
        if not dists:
            problems.append(f"{rel}:{line}: imports {top!r}, which no installed package provides")
            continue
        seen_third_party.add(top)
        if dists & core:
            continue
        in_extra = sorted(extras[d] for d in dists if d in extras)
        if in_extra and guarded:
            continue
        if in_extra:
            problems.append(
                f"{rel}:{line}: imports {top!r} from extra [{in_extra[0]}] without an "
                "ImportError guard naming the extra"
            )
        else:
            problems.append(
                f"{rel}:{line}: imports {top!r} ({', '.join(sorted(dists))}), which pyproject "
                "does not declare"
            )
    assert not problems, "\n".join(problems)
    # the walk really saw the package's third-party imports (a broken walk must not pass)
    assert {"hvac", "jinja2", "yaml", "requests", "urllib3"} <= seen_third_party


def test_function_level_imports_are_walked() -> None:
    """KV2-NFR-300: the lazy ``import yaml`` inside ``config_sources._load_yaml`` (PyYAML is
    imported only for YAML configs, KV2-NFR-238) is among the imports seen."""
    rel = "kv2render/config/sources.py"
    tree = ast.parse((REPO / rel).read_text(encoding="utf-8"))
    (function,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "_load_yaml"
    ]
    lines = {
        node.lineno
        for node in ast.walk(function)
        if isinstance(node, ast.Import) and [a.name for a in node.names] == ["yaml"]
    }
    assert lines, "_load_yaml no longer imports yaml itself: pick another function-level import"
    hits = {line for path, line, top, _g in _imports() if path == rel and top == "yaml"}
    assert lines <= hits, "the walk misses function-level imports"


def test_hcl_needs_no_third_party_parser() -> None:
    """KV2-NFR-237: HCL is read by kv2render/hcl.py; python-hcl2 (lark) is a test dependency
    only (the oracle of tests/unit/test_hcl.py), never imported by the package."""
    core, extras = _declared()
    assert "python-hcl2" not in core and "python-hcl2" not in extras
    assert not [(rel, line) for rel, line, top, _g in _imports() if top in ("hcl2", "lark")]


@pytest.mark.parametrize("module", ["yaml", "requests", "urllib3", "certifi"])
def test_runtime_modules_are_direct_dependencies(module: str) -> None:
    """KV2-NFR-300: modules the package imports directly are declared directly."""
    core, _extras = _declared()
    dists = {_norm(d) for d in metadata.packages_distributions().get(module, [])}
    assert dists & core, f"{module} must be in [project].dependencies"


def test_missing_extra_is_a_clear_exit_2(tmp_path: Path) -> None:
    """KV2-NFR-300: without the devserver-tls extra, ``dev-server --tls`` says what to install
    and exits 2, never 1 (a blocked import stands in for the missing package)."""
    import subprocess

    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from kv2render.cli import main\n"
        "sys.exit(main(['dev-server', '--tls', '--listen', '127.0.0.1:0']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "kv2render[devserver-tls]" in proc.stderr
