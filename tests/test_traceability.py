"""Keep the spec (docs/spec/*.md) and the test suite in step (KV2-NFR-001).

A rule is *defined* by a markdown line ``- **KV2-AC-001** text``; its block is that line and
the following lines that are blank or indented. A block line ``  planned: <issue title>`` marks
the rule as not built yet. A rule whose text starts with ``Withdrawn:`` no longer applies (IDs
are never reused); it needs no citing test and no test may cite it. A rule is *cited* when its
ID appears anywhere in a test source (``tests/**/*.py``, this file excluded so that it cannot
satisfy itself). Package code (``kv2render/**/*.py``) may cite rules in comments and docstrings
too, but only rules that exist.

Run ``python tests/test_traceability.py`` to print the ID -> test-file mapping as markdown rows
for docs/spec/traceability.md.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC_DIR = ROOT / "docs" / "spec"
MAIN_SPEC = SPEC_DIR / "kv2render.md"
TRACEABILITY = SPEC_DIR / "traceability.md"
TESTS_DIR = ROOT / "tests"
PACKAGE_DIR = ROOT / "kv2render"
THIS_FILE = Path(__file__).resolve()

ID_RE = re.compile(r"KV2-(?:INV|FC|NFR|AC)-\d{3}")
RULE_RE = re.compile(r"^- \*\*(KV2-(?:INV|FC|NFR|AC)-\d{3})\*\*\s+(?P<text>.*)$")
PLANNED_RE = re.compile(r"^  planned: (?P<title>\S.*?)\s*$")
TABLE_ROW_RE = re.compile(r"^\|\s*(KV2-(?:INV|FC|NFR|AC)-\d{3})\s*\|(?P<files>[^|]*)\|")

# The issue titles a `planned:` marker may name, verbatim (`issues list` / `issues show N`).
ISSUE_TITLES = frozenset(
    {
        "Spec first: the KV2 protocol backend specification, its acceptance rules and a "
        "traceability test",
        "Embedded KV2 dev server (`kv2render dev-server`), faithful to the wire reference",
        "`kv2render --once`: authenticate, resolve KV2 references, render strict templates, "
        "write files atomically",
        "Daemon mode: keep files current as versions change, survive outages, renew and re-login",
        "One protocol, three targets: Vault, OpenBao and OVHcloud Secret Manager",
        "End to end with a real PostgreSQL: from KV2 to a password file to a database "
        "connection, with rotation",
        "Benchmarks: start-up, load on the server, scale, idle cost and memory, each against a "
        "baseline",
        "Vault Agent drop-in: existing agent configs and consul-template templates work unchanged",
        "Fault and abuse suite: kv2render under crashes, full disks, hostile input and load, "
        "with figures",
    }
)

REQUIRED_SECTIONS = (
    "Purpose",
    "Inputs",
    "Outputs",
    "Interfaces",
    "Invariants",
    "Failure Conditions",
    "Non-Functional Requirements",
    "Acceptance Rules",
    "Safety Impact",
    "Resolved decisions",
)


@dataclass
class Rule:
    id: str
    source: str  # "file:line"
    planned: list[str] = field(default_factory=list)
    withdrawn: bool = False

    @property
    def kind(self) -> str:
        return self.id.split("-")[1]


@dataclass
class Spec:
    rules: dict[str, Rule]
    duplicates: list[str]  # "ID at file:line (first at file:line)"
    mentioned: dict[str, list[str]]  # every ID text in the spec files -> places
    stray_planned: list[str]  # planned markers outside any rule block


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


@cache
def parse_spec() -> Spec:
    return parse_files(sorted(SPEC_DIR.glob("*.md")))


def parse_files(paths: list[Path]) -> Spec:
    rules: dict[str, Rule] = {}
    duplicates: list[str] = []
    mentioned: dict[str, list[str]] = defaultdict(list)
    stray: list[str] = []
    for path in paths:
        current: Rule | None = None
        in_fence = False
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{_rel(path)}:{lineno}"
            if line.lstrip().startswith("```"):
                in_fence = not in_fence
                current = None
                continue
            if in_fence:
                continue
            for found in ID_RE.findall(line):
                mentioned[found].append(where)
            match = RULE_RE.match(line)
            if match:
                rule_id = match.group(1)
                if rule_id in rules:
                    duplicates.append(f"{rule_id} at {where} (first at {rules[rule_id].source})")
                    current = None
                else:
                    withdrawn = match.group("text").startswith("Withdrawn:")
                    current = rules[rule_id] = Rule(rule_id, where, withdrawn=withdrawn)
                continue
            planned = PLANNED_RE.match(line)
            if planned:
                if current is None:
                    stray.append(where)
                else:
                    current.planned.append(planned.group("title"))
                continue
            if line.strip() and not line.startswith("  "):
                current = None  # a heading, paragraph or other bullet ends the rule's block
    return Spec(rules, duplicates, dict(mentioned), stray)


def _test_sources() -> list[Path]:
    return sorted(p for p in TESTS_DIR.rglob("*.py") if p.resolve() != THIS_FILE)


@cache
def cited_ids() -> dict[str, list[str]]:
    """ID -> test files (relative to the repository) that mention it."""
    cited: dict[str, set[str]] = defaultdict(set)
    for path in _test_sources():
        rel = str(path.relative_to(ROOT))
        for found in ID_RE.findall(path.read_text(encoding="utf-8", errors="replace")):
            cited[found].add(rel)
    return {k: sorted(v) for k, v in cited.items()}


def _acceptance_rules() -> list[Rule]:
    return [r for r in parse_spec().rules.values() if r.kind == "AC"]


# --- the checks -----------------------------------------------------------------------------


def test_spec_exists_and_defines_rules() -> None:
    spec = parse_spec()
    assert MAIN_SPEC.is_file(), f"{MAIN_SPEC.relative_to(ROOT)} is missing"
    kinds = {r.kind for r in spec.rules.values()}
    assert kinds == {"INV", "FC", "NFR", "AC"}, f"rule kinds defined: {sorted(kinds)}"


def test_spec_has_required_sections() -> None:
    headings = {
        m.group(1).strip()
        for m in re.finditer(r"^## (.+)$", MAIN_SPEC.read_text(encoding="utf-8"), re.M)
    }
    missing = [s for s in REQUIRED_SECTIONS if s not in headings]
    assert not missing, f"{MAIN_SPEC.name} lacks sections: {missing}"


def test_resolved_decisions_are_numbered_and_cite_rules() -> None:
    text = MAIN_SPEC.read_text(encoding="utf-8")
    section = text.split("\n## Resolved decisions", 1)[1]
    decisions = re.split(r"^### \d+\. ", section, flags=re.M)[1:]
    assert len(decisions) >= 7, f"expected at least 7 resolved decisions, found {len(decisions)}"
    defined = parse_spec().rules
    for number, body in enumerate(decisions, 1):
        ids = set(ID_RE.findall(body))
        assert ids, f"resolved decision {number} names no rule ID"
        assert ids <= defined.keys(), (
            f"decision {number} names undefined {sorted(ids - defined.keys())}"
        )


def test_no_id_is_defined_twice() -> None:
    assert not parse_spec().duplicates, "rule IDs defined more than once:\n" + "\n".join(
        parse_spec().duplicates
    )


def test_ids_fall_in_the_documented_ranges() -> None:
    bad = [i for i in parse_spec().rules if not 1 <= int(i[-3:]) <= 599]
    assert not bad, f"IDs outside 001-599: {bad}"


def test_every_id_mentioned_in_the_spec_is_defined() -> None:
    spec = parse_spec()
    undefined = {i: places for i, places in spec.mentioned.items() if i not in spec.rules}
    assert not undefined, "the spec mentions undefined IDs:\n" + "\n".join(
        f"{i} ({', '.join(p[:3])})" for i, p in sorted(undefined.items())
    )


def test_planned_markers_name_known_issues() -> None:
    spec = parse_spec()
    assert not spec.stray_planned, f"planned markers outside a rule block: {spec.stray_planned}"
    wrong = [
        f"{r.id} ({r.source}): {title!r}"
        for r in spec.rules.values()
        for title in r.planned
        if title not in ISSUE_TITLES
    ]
    assert not wrong, "planned markers with an unknown issue title:\n" + "\n".join(wrong)
    repeated = [r.id for r in spec.rules.values() if len(r.planned) > 1]
    assert not repeated, f"rules with more than one planned marker: {repeated}"


def test_every_built_acceptance_rule_is_cited_by_a_test() -> None:
    cited = cited_ids()
    uncited = [
        r.id for r in _acceptance_rules() if not r.planned and not r.withdrawn and r.id not in cited
    ]
    assert not uncited, (
        "acceptance rules neither planned nor cited by any test (cite the ID in a test "
        "docstring, or mark the rule `planned: <issue title>`):\n" + "\n".join(sorted(uncited))
    )


def test_withdrawn_rules_are_neither_cited_nor_planned() -> None:
    """A withdrawn rule names what replaced it; no test may still claim to prove it."""
    cited = cited_ids()
    withdrawn = [r for r in parse_spec().rules.values() if r.withdrawn]
    still_cited = {r.id: cited[r.id] for r in withdrawn if r.id in cited}
    assert not still_cited, f"tests cite withdrawn rules: {still_cited}"
    planned = [r.id for r in withdrawn if r.planned]
    assert not planned, f"withdrawn rules with a planned marker: {planned}"


def test_tests_cite_only_defined_ids() -> None:
    defined = parse_spec().rules
    unknown = {i: files for i, files in cited_ids().items() if i not in defined}
    assert not unknown, "tests cite IDs that docs/spec does not define:\n" + "\n".join(
        f"{i}: {', '.join(files)}" for i, files in sorted(unknown.items())
    )


@cache
def package_citations() -> dict[str, list[str]]:
    """ID -> `file:line` places in the package code (comments and docstrings) that cite it."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            for rule_id in ID_RE.findall(line):
                found[rule_id].append(f"{_rel(path)}:{lineno}")
    return dict(found)


def test_package_code_cites_only_defined_ids() -> None:
    """Comments say why by citing a rule (STYLE.md 15); the rule they cite must exist."""
    defined = parse_spec().rules
    unknown = {i: places for i, places in package_citations().items() if i not in defined}
    assert not unknown, "kv2render/ cites IDs that docs/spec does not define:\n" + "\n".join(
        f"{i}: {', '.join(places)}" for i, places in sorted(unknown.items())
    )


def test_traceability_table_rows_are_true() -> None:
    """Each `| ID | file, file |` row of traceability.md names files that exist and cite the ID."""
    cited = cited_ids()
    defined = parse_spec().rules
    wrong: list[str] = []
    for lineno, line in enumerate(TRACEABILITY.read_text(encoding="utf-8").splitlines(), 1):
        row = TABLE_ROW_RE.match(line)
        if not row:
            continue
        rule_id = row.group(1)
        files = [f.strip().strip("`") for f in row.group("files").split(",") if f.strip()]
        if rule_id not in defined:
            wrong.append(f"line {lineno}: {rule_id} is not defined")
        for name in files:
            path = ROOT / name
            if not path.is_file():
                wrong.append(f"line {lineno}: {name} does not exist")
            elif path.resolve() != THIS_FILE and name not in cited.get(rule_id, []):
                wrong.append(f"line {lineno}: {name} does not cite {rule_id}")
            elif path.resolve() == THIS_FILE and rule_id not in path.read_text(encoding="utf-8"):
                wrong.append(f"line {lineno}: {name} does not cite {rule_id}")
    assert not wrong, "traceability.md table rows that are not true:\n" + "\n".join(wrong)


def test_planned_rules_that_are_already_cited() -> None:
    """A built rule must not stay planned (issue #2): an inconsistency fails, never skips
    (KV2-AC-458)."""
    cited = cited_ids()
    stale = sorted(r.id for r in _acceptance_rules() if r.planned and r.id in cited)
    assert not stale, f"planned but already cited (remove their markers): {stale}"


def test_parser_reads_the_documented_format(tmp_path: Path) -> None:
    """The block rules above, on a sample: a planned marker belongs to the rule above it."""
    sample = tmp_path / "sample.md"
    sample.write_text(
        "## Acceptance Rules\n"
        "- **KV2-AC-201** first\n"
        "  continues\n"
        "  planned: T\n"
        "- **KV2-AC-202** second\n"
        "\n"
        "Prose mentioning KV2-AC-203.\n"
        "  planned: stray\n"
        "```\n- **KV2-AC-204** inside a fence\n```\n"
        "- **KV2-AC-205** Withdrawn: now KV2-NFR-205.\n",
        encoding="utf-8",
    )
    spec = parse_files([sample])
    assert sorted(spec.rules) == ["KV2-AC-201", "KV2-AC-202", "KV2-AC-205"]
    assert [r.id for r in spec.rules.values() if r.withdrawn] == ["KV2-AC-205"]
    assert spec.rules["KV2-AC-201"].planned == ["T"]
    assert spec.rules["KV2-AC-202"].planned == []
    assert "KV2-AC-203" in spec.mentioned
    assert len(spec.stray_planned) == 1


def mapping_rows() -> list[str]:
    """Markdown rows `| ID | files | status |` for every AC, for traceability.md."""
    cited = cited_ids()
    rows = []
    for rule in sorted(_acceptance_rules(), key=lambda r: r.id):
        files = ", ".join(f"`{f}`" for f in cited.get(rule.id, []))
        status = "withdrawn" if rule.withdrawn else "planned" if rule.planned else "built"
        rows.append(f"| {rule.id} | {files} | {status} |")
    return rows


if __name__ == "__main__":
    print("| ID | test files | status |\n|---|---|---|")
    print("\n".join(mapping_rows()))
