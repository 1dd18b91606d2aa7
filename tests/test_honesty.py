"""The test tree itself: tests that can fail, and one store fake that cannot drift (KV2-NFR-452).

Static checks over ``tests/**/*.py`` (the AST, not text, so that this file's own strings and
docstrings do not count).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
FAKES = TESTS / "fakes.py"


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(TESTS.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _name(node: ast.AST) -> str:
    """``pytest.mark.xfail`` for an attribute chain, ``xfail`` for a bare name."""
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return _name(node.func)
    return ""


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(TESTS.parent)}:{getattr(node, 'lineno', '?')}"


def test_every_store_fake_is_the_shared_one() -> None:
    """KV2-AC-455 KV2-NFR-450: a class with a ``read(location)`` method is FakeSecretStore (in
    tests/fakes.py) or derives from it, so the contract suite pins every store fake."""
    stray = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            reads = [
                item
                for item in node.body
                if isinstance(item, ast.FunctionDef)
                and item.name == "read"
                and [a.arg for a in item.args.args[1:2]] == ["location"]
            ]
            if not reads:
                continue
            shared = path == FAKES and node.name == "FakeSecretStore"
            derived = any(_name(base).endswith("FakeSecretStore") for base in node.bases)
            if not (shared or derived):
                stray.append(f"{_where(path, node)}: class {node.name}")
    assert not stray, "store fakes outside tests/fakes.py (subclass FakeSecretStore):\n" + (
        "\n".join(stray)
    )


def test_no_imperative_xfail_and_every_xfail_mark_is_strict() -> None:
    """KV2-AC-459: ``pytest.xfail()`` stops a case before it runs (a fix would never show) and
    a non-strict mark passes whether or not the bug is there."""
    wrong = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            if name == "pytest.xfail":
                wrong.append(f"{_where(path, node)}: pytest.xfail(...)")
            elif name.endswith("mark.xfail"):
                strict = [k for k in node.keywords if k.arg == "strict"]
                if not strict or not (
                    isinstance(strict[0].value, ast.Constant) and strict[0].value.value is True
                ):
                    wrong.append(f"{_where(path, node)}: xfail mark without strict=True")
        for node in ast.walk(tree):
            # A bare @pytest.mark.xfail decorator (no call) is not strict either.
            decorators = getattr(node, "decorator_list", [])
            for deco in decorators:
                if not isinstance(deco, ast.Call) and _name(deco).endswith("mark.xfail"):
                    wrong.append(f"{_where(path, deco)}: bare xfail mark")
    assert not wrong, "\n".join(wrong)


def test_no_test_asserts_a_constant() -> None:
    """KV2-AC-459: ``assert True`` (or any constant) checks nothing."""
    wrong = [
        _where(path, node)
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Assert) and isinstance(node.test, ast.Constant)
    ]
    assert not wrong, "asserts of a constant: " + ", ".join(wrong)


def test_no_summary_pretends_to_be_a_test() -> None:
    """KV2-AC-456 KV2-NFR-452: no ``test_*summary`` function: a summary is written by a fixture
    finalizer from what ran, and a test that only prints cannot fail."""
    wrong = [
        _where(path, node)
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and node.name.startswith("test_")
        and node.name.endswith("summary")
    ]
    assert not wrong, ", ".join(wrong)


def test_traceability_never_skips() -> None:
    """KV2-AC-458: an inconsistency in the spec's traceability fails; it is never a skip."""
    tree = ast.parse((TESTS / "test_traceability.py").read_text(encoding="utf-8"))
    skips = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _name(node.func) in ("pytest.skip", "pytest.mark.skip")
    ]
    assert not skips, f"tests/test_traceability.py skips at lines {skips}"


def test_no_hygiene_scenario_is_xfail() -> None:
    """KV2-AC-457: a known leak is fixed, not marked: no ``scenario(..., xfail=...)`` in the
    hygiene suites (a daemon crash there is a failure too: no ``pytest.xfail``, see above)."""
    marked = []
    for path, tree in _modules():
        if not path.name.startswith("test_hygiene"):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and _name(node.func) == "scenario"
                and any(k.arg == "xfail" for k in node.keywords)
            ):
                marked.append(_where(path, node))
    assert not marked, "hygiene scenarios marked xfail: " + ", ".join(marked)
