"""docs/ARCHITECTURE.md's layer picture is the import graph: every module-level import goes to
its own level or lower, every module has a level, and no modules import each other in a cycle.

Imports inside functions (the deliberate late imports the document lists) and those under
``if TYPE_CHECKING:`` are not part of the graph: they never run when a module is imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "amplitude_async"
PICTURE_TOKEN = re.compile(r"(\w+)(\.py|/)")


def levels() -> dict[str, int]:
    """Module or package name (``client``, ``queries``) → level, from the picture."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    picture = text.split("## Layers", 1)[1].split("```", 2)[1]
    out: dict[str, int] = {}
    level = -1
    for line in picture.splitlines():
        head = re.match(r"\s*(\d+)\s", line)
        if head:
            level = int(head.group(1))
        for name, _ in PICTURE_TOKEN.findall(line):
            out.setdefault(name, level)
    return out


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports when it is imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                if not target.startswith("amplitude_async"):
                    continue
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if resolves(candidate) else target)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("amplitude_async"))

    visit(tree.body)
    return {m for m in found if m != module_name(path)}


def resolves(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def level_of(module: str, table: dict[str, int]) -> int | None:
    parts = module.split(".")[1:]
    if not parts:
        return None  # the package's own __init__: it re-exports, above everything
    return table.get(parts[0])


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def test_every_module_has_a_level_in_the_picture() -> None:
    table = levels()
    missing = sorted(
        module_name(p)
        for p in modules()
        if p != PACKAGE / "__init__.py" and level_of(module_name(p), table) is None
    )
    assert missing == [], f"add these to docs/ARCHITECTURE.md's picture: {missing}"


def test_imports_only_go_down_the_picture() -> None:
    table = levels()
    upward = []
    for path in modules():
        source = module_name(path)
        mine = level_of(source, table)
        if mine is None:
            continue
        for target in top_level_imports(path):
            theirs = level_of(target, table)
            if theirs is not None and theirs > mine:
                upward.append(f"{source} (level {mine}) imports {target} (level {theirs})")
    assert upward == []


def test_no_import_cycles() -> None:
    graph = {module_name(p): top_level_imports(p) for p in modules()}
    # A package's __init__ re-exports its modules, which import their siblings through it:
    # edges into a package's own __init__ from inside it are that, not a cycle.
    for source, targets in graph.items():
        graph[source] = {t for t in targets if not source.startswith(t + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                walk(nxt, [*stack, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    assert cycles == []


MAX_LINES = 600


def test_no_module_is_over_600_lines() -> None:
    # One sitting's reading: a module that grows past it is doing more than one job.
    sources = [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.lua")]
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
