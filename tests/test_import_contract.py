"""The layering rules, checked on the source (an AST walk: no import runs, no new dependency).

- trm_core imports neither trm_tui, textual nor rich, not even inside a function;
- no import cycle among trm_core's parts (its subpackages and top-level modules);
- `trm_tui/commands/*` other than `app` import no Textual (the CLI starts without it);
- no screen imports a command (`trm_tui/screens` -> `trm_tui/commands`): what both need lives in
  trm_core or a trm_tui module that is not a command;
- no import cycle among `trm_tui/commands/*`;
- no private name (`_x`) is imported from another module;
- no module is over 400 lines, except a tab pane (trm_tui/panes/*), which is one concept and may
  take up to 600 (docs/contracts.md says why).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE, TUI = ROOT / "trm_core", ROOT / "trm_tui"
MAX_LINES = 400
MAX_PANE_LINES = 600  # a tab pane is one concept: split it by concept, never into mixins


def modules(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(path: Path, *, runtime_only: bool = False) -> Iterator[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import in `path`, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if runtime_only and _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield name, [a.name for a in node.names], node.lineno


def _top(name: str) -> str:
    return name.split(".")[0]


def forbidden_in_core(path: Path) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for name, _, line in imports(path)
        if _top(name) in ("trm_tui", "textual", "rich")
    ]


def test_core_imports_no_ui() -> None:
    bad = [msg for p in modules(CORE) for msg in forbidden_in_core(p)]
    assert not bad, "trm_core must not import the UI:\n" + "\n".join(bad)


def part_of(module: str) -> str | None:
    """The part of trm_core a module belongs to: `trm_core.model.lm` -> `model`, `trm_core.profile` -> `profile`."""
    parts = module.split(".")
    if parts[0] != "trm_core" or len(parts) < 2:
        return None  # the package itself: the lazy public API, which names everything
    return parts[1]


def part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in modules(CORE):
        src = part_of(module_name(path))
        if src is None:
            continue
        graph.setdefault(src, set())
        for name, names, _ in imports(path, runtime_only=True):
            targets = [name] if part_of(name) else [f"{name}.{n}" for n in names]
            for t in targets:
                dst = part_of(t)
                if dst is not None and dst != src:
                    graph[src].add(dst)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_among_core_parts() -> None:
    graph = part_graph()
    assert {"model", "data", "training", "generation", "evaluation", "runs", "bench", "profile"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle among trm_core's parts: " + " -> ".join(cycle or [])


def test_find_cycle_sees_a_cycle() -> None:  # the checker itself
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_commands_other_than_app_import_no_textual() -> None:
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in modules(TUI / "commands")
        if p.stem != "app"
        for name, _, line in imports(p)
        if _top(name) == "textual"
    ]
    assert not bad, "only trm_tui/commands/app.py may import Textual:\n" + "\n".join(bad)


def test_screens_import_no_command() -> None:
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in modules(TUI / "screens")
        for name, _, line in imports(p)
        if name.startswith("trm_tui.commands")
    ]
    assert not bad, "a screen imports a command (move what both need out of commands/):\n" + "\n".join(bad)


def test_no_import_cycle_among_commands() -> None:
    graph: dict[str, set[str]] = {}
    for path in modules(TUI / "commands"):
        src = module_name(path)
        graph[src] = set()
        for name, names, _ in imports(path):
            for t in [name, *(f"{name}.{n}" for n in names)]:
                if t.startswith("trm_tui.commands.") and t != src:
                    graph[src].add(t)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle among trm_tui/commands: " + " -> ".join(cycle or [])


def test_no_private_name_crosses_a_module() -> None:
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {n} from {name}"
        for p in modules(CORE) + modules(TUI)
        for name, names, line in imports(p)
        if _top(name) in ("trm_core", "trm_tui")
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", [CORE, TUI], ids=["trm_core", "trm_tui"])
def test_no_module_over_400_lines(package: Path) -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in modules(package)
        if (n := len(p.read_text(encoding="utf-8").splitlines()))
        > (MAX_PANE_LINES if p.parent == TUI / "panes" else MAX_LINES)
    }
    assert not long, f"modules over {MAX_LINES} lines (panes: {MAX_PANE_LINES}): {long}"


def test_no_mixin_borrows_its_hosts_members() -> None:
    """The app's classes own what they use: no `type: ignore[attr-defined]` (a mixin reaching into
    its host, or code reaching into another object's members) anywhere in trm_tui."""
    bad = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in modules(TUI)
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "type: ignore[attr-defined]" in line
    ]
    assert not bad, "attr-defined ignores: " + ", ".join(bad)


def test_no_pane_calls_another_pane() -> None:
    """Panes ask each other for things by posting messages (trm_tui/messages.py) that the app
    delivers; the app's jobs live in trm_tui/jobs.py. So a tab pane's class is named only in its own
    module and in app.py's tab table (imported, listed once), never queried for its members."""
    import re

    classes = ("ProfilesPane", "TrainPane", "ReplPane", "RunsPane")
    bad = []
    for p in modules(TUI):
        text = p.read_text(encoding="utf-8")
        for cls in classes:
            n = len(re.findall(rf"\b{cls}\b", text))
            own = f"class {cls}(" in text
            if (p.name == "app.py" and n > 2) or (p.name != "app.py" and n and not own):
                bad.append(f"{p.relative_to(ROOT)} names {cls} {n} times")
        if re.search(r"\b(profiles|train|repl|runs)_pane\b", text):
            bad.append(f"{p.relative_to(ROOT)} reaches into a pane through an attribute")
    assert not bad, "\n".join(bad)
