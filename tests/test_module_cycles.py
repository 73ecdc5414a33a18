"""No two modules of trm_core import each other at run time, even through a local import.

test_import_contract.py checks cycles between trm_core's parts (folders); this one looks at
modules, where a function-local import can hide a circle inside one part (it hid
data/sources.py <-> data/synthetic.py). Imports under `if TYPE_CHECKING:` do not count."""

from __future__ import annotations

from tests.test_import_contract import CORE, find_cycle, imports, module_name, modules


def module_graph() -> dict[str, set[str]]:
    names = {module_name(p) for p in modules(CORE)}
    graph: dict[str, set[str]] = {}
    for path in modules(CORE):
        src = module_name(path)
        deps = graph.setdefault(src, set())
        for name, taken, _ in imports(path, runtime_only=True):
            targets = [name] if name in names else []
            targets += [f"{name}.{n}" for n in taken if f"{name}.{n}" in names]
            deps.update(t for t in targets if t != src and t != "trm_core")
    return graph


def test_no_runtime_import_cycle_among_core_modules() -> None:
    graph = module_graph()
    assert {"trm_core.data.sources", "trm_core.data.synthetic"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "runtime import cycle: " + " -> ".join(cycle or [])
