"""The package's shape (issue 15, docs/architecture.md): module sizes, stage docstrings, and
the import direction that ``lint-imports`` checks.

Line counts are physical lines (``len(text.splitlines())``), docstrings and comments included:
what a reader has to scroll through.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "kv2render"

MAX_LINES = 500

# Exempt as a whole: a port of Go's text/template and consul-template's functions, and the
# dev server, which follow their upstream's file layout (KV2-NFR-465).
EXEMPT_DIRS = ("render/ctmpl", "devserver")

# The modules over MAX_LINES when the limit came in. This set must only shrink: the store,
# jinja and loop splits bring these under the limit, and the entry goes as each split lands
# (a module named here that is no longer over the limit fails the test, so an entry cannot
# linger and let the module grow back). Never add to it: split the module instead.
ALLOWED_OVER_500: frozenset[str] = frozenset()

STAGES = ("config", "store", "render", "output", "daemon")

# Top-level names outside the layers contract: the entry point `python -m kv2render` (it only
# calls cli.main) and the dev server, which has a contract of its own (forbidden modules).
OUTSIDE_LAYERS = frozenset({"__init__", "__main__", "devserver"})


def _line_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if any(rel.startswith(exempt + "/") for exempt in EXEMPT_DIRS):
            continue
        counts[rel] = len(path.read_text(encoding="utf-8").splitlines())
    return counts


def test_no_module_outside_ctmpl_and_devserver_exceeds_500_lines() -> None:
    """KV2-AC-465, KV2-NFR-465: no module outside render/ctmpl/ and devserver/ is over 500
    lines, but the ones named in ALLOWED_OVER_500; that set only shrinks."""
    counts = _line_counts()
    assert counts, f"no modules found under {PACKAGE}"
    over = {rel: n for rel, n in counts.items() if n > MAX_LINES}
    new = sorted(set(over) - ALLOWED_OVER_500)
    stale = sorted(ALLOWED_OVER_500 - set(over))
    problems = [
        f"kv2render/{rel}: {over[rel]} lines (limit {MAX_LINES}): split it along a seam "
        "(docs/architecture.md)"
        for rel in new
    ]
    problems += [
        f"kv2render/{rel}: "
        + (f"{counts[rel]} lines now" if rel in counts else "no longer exists")
        + ": remove it from ALLOWED_OVER_500"
        for rel in stale
    ]
    listing = "\n".join(f"  kv2render/{rel}: {n}" for rel, n in sorted(over.items()))
    assert not problems, (
        "\n".join(problems) + f"\nall modules over {MAX_LINES} lines:\n{listing or '  none'}"
    )


def test_allowed_list_names_only_modules_that_the_limit_covers() -> None:
    """KV2-AC-465: an entry inside an exempt folder would be dead weight, never shrinking."""
    inside = sorted(
        rel for rel in ALLOWED_OVER_500 if any(rel.startswith(e + "/") for e in EXEMPT_DIRS)
    )
    assert not inside, f"exempt anyway, remove from ALLOWED_OVER_500: {inside}"


def _stage_docstring(stage: str) -> str | None:
    init = PACKAGE / stage / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"), filename=str(init))
    return ast.get_docstring(tree, clean=True)


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_folder_opens_with_its_docstring(stage: str) -> None:
    """KV2-AC-466, KV2-NFR-466: each stage's __init__.py opens with a docstring: its summary
    line names the folder, the paragraph after it says what the stage owns and what it may
    import."""
    doc = _stage_docstring(stage)
    assert doc, f"kv2render/{stage}/__init__.py has no module docstring"
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", doc) if p.strip()]
    summary = paragraphs[0].splitlines()[0]
    assert f"{stage}/" in summary, (
        f"kv2render/{stage}/__init__.py: the docstring's first line should name the stage "
        f"folder '{stage}/', got {summary!r}"
    )
    assert len(paragraphs) >= 2, f"kv2render/{stage}/__init__.py: no paragraph after the summary"
    owns = " ".join(paragraphs[1].split())
    missing = [words for words in ("owns", "may import") if words not in owns]
    assert not missing, (
        f"kv2render/{stage}/__init__.py: the paragraph after the summary should say what the "
        f"stage owns and what it may import (docs/architecture.md); missing {missing}"
    )


def _lint_imports() -> str:
    # The console script sits next to the interpreter (pip puts it there); import-linter has
    # no `python -m` entry point.
    script = Path(sys.executable).parent / "lint-imports"
    found = str(script) if script.exists() else shutil.which("lint-imports")
    assert found, "lint-imports is missing: it comes with the test extra, pip install -e '.[test]'"
    return found


def test_lint_imports_keeps_every_contract() -> None:
    """KV2-AC-467, KV2-NFR-467: `lint-imports` (import-linter, pyproject.toml) reports every
    contract KEPT: the layers, the dev server's independence, no import cycle at any depth."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    names = [c["name"] for c in config["tool"]["importlinter"]["contracts"]]
    done = subprocess.run(
        [_lint_imports(), "--no-cache", "--no-logo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for name in names:
        assert f"{name} KEPT" in output, f"contract {name!r} not reported KEPT:\n{output}"
    assert f"Contracts: {len(names)} kept, 0 broken." in output, output


def test_layers_contract_names_every_top_level_module() -> None:
    """KV2-AC-467: a new top-level module cannot stay outside the layers contract, where no
    rule would check its imports."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = [c for c in contracts if c["type"] == "layers"]
    assert len(layers) == 1, "expected one layers contract"
    named = {
        module.strip().removeprefix("kv2render.")
        for layer in layers[0]["layers"]
        for module in layer.split("|")
    }
    top = {p.stem for p in PACKAGE.glob("*.py")}
    top |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    missing = sorted(top - named - OUTSIDE_LAYERS)
    assert not missing, f"top-level modules outside the layers contract: {missing}"
    unknown = sorted(named - top)
    assert not unknown, f"the layers contract names modules that do not exist: {unknown}"
