"""The import contract: imports flow one way, and no module imports itself back through others.

Checked in ``make lint`` (and with the suite). The graph is read from the source with ``ast``, so
it holds every import: at module level, inside functions (a lazy import is still a dependency), and
under ``if TYPE_CHECKING:``. A module's dependencies are the project modules it names; ``from pkg
import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``.

The allowed directions are written down here, highest layer first: a module may import from its own
package (or subpackage) and from any layer below its own, never from a layer above, and packages in
the same layer do not import each other. ``docs/architecture.md`` draws the same layers.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The project's top-level packages and modules, highest first. meta_supervisor reads what the others
# write; agents are run by the scheduler and call services; alpha scores and validates signals;
# services are the seams (LLM, market data, kill switch, state files); otel is the telemetry
# pipeline; settings is the leaf every package may raise a ConfigError from.
PACKAGE_LAYERS: list[tuple[str, ...]] = [
    ("scheduler",),
    ("meta_supervisor",),
    ("agents",),
    ("alpha",),
    ("services",),
    ("otel",),
    ("settings",),
]

# Imports against PACKAGE_LAYERS that are known and allowed for now, each with its reason. None of
# them closes a cycle (test_no_import_cycles), and each must still exist (the list must not rot).
KNOWN_UPWARD: dict[tuple[str, str], str] = {
    ("services.signal_book", "alpha.emit"): "the recent-signals book keeps only signals alpha.emit's one validation rule accepts",
    ("services.fleet_config", "agents.base"): "checking an agent's params against its module's PARAMS (a lazy import)",
}

# meta_supervisor's folders in the order a build flows through them, highest first (the folder
# docstrings and docs/architecture.md say what each holds). The entry points sit on top; the leaves
# at the bottom hold vocabulary every folder shares.
META_LAYERS: list[tuple[str, ...]] = [
    ("meta_supervisor.build_meta_report", "meta_supervisor.supervise", "meta_supervisor.scheduled"),  # entry points
    ("meta_supervisor.cli", "meta_supervisor.clickhouse"),  # the commands; the same figures as SQL over ClickHouse
    ("meta_supervisor.render", "meta_supervisor.supervisor"),  # dict -> json/md/html; policy, actions, audit
    ("meta_supervisor.assemble",),  # tallies -> the report dict (pure)
    ("meta_supervisor.build",),  # files -> tallies: full, incremental, parallel, native
    ("meta_supervisor.tally",),  # typed spans -> mergeable per-agent state
    ("meta_supervisor.reading",),  # bytes -> typed spans
    ("meta_supervisor.locations", "meta_supervisor.native_core", "meta_supervisor.blake2", "meta_supervisor.forked"),  # leaves
]

PROJECT_PACKAGES = ("agents", "alpha", "meta_supervisor", "otel", "services", "settings")


def project_modules() -> dict[str, Path]:
    modules = {"scheduler": ROOT / "scheduler.py"}
    for package in PROJECT_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


@functools.cache
def import_graph() -> dict[str, frozenset[str]]:
    """module -> the project modules it imports (anywhere in its source)."""
    modules = project_modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [resolve(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [resolve(f"{source}.{alias.name}") for alias in node.names]
            else:
                continue
            graph[module].update(target for target in targets if target and target != module)
    return {module: frozenset(targets) for module, targets in graph.items()}


def _layer(module: str, layers: list[tuple[str, ...]]) -> tuple[int, str] | None:
    for index, names in enumerate(layers):
        for name in names:
            if module == name or module.startswith(name + "."):
                return index, name
    return None


def _violations(graph: dict, layers: list[tuple[str, ...]], allowed: dict) -> list[str]:
    found = []
    for source, targets in sorted(graph.items()):
        mine = _layer(source, layers)
        for target in sorted(targets):
            theirs = _layer(target, layers)
            if mine is None or theirs is None or mine[1] == theirs[1] or (source, target) in allowed:
                continue
            if theirs[0] < mine[0]:
                found.append(f"{source} -> {target}: {theirs[1]} is above {mine[1]}")
            elif theirs[0] == mine[0]:
                found.append(f"{source} -> {target}: {mine[1]} and {theirs[1]} are siblings (neither imports the other)")
    return found


def cycles(graph: dict) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_packages_import_downward() -> None:
    assert _violations(import_graph(), PACKAGE_LAYERS, KNOWN_UPWARD) == []


def test_known_upward_imports_still_exist() -> None:
    graph = import_graph()
    assert [edge for edge in KNOWN_UPWARD if edge[1] not in graph.get(edge[0], ())] == []


def test_meta_supervisor_folders_import_downward() -> None:
    graph = {source: targets for source, targets in import_graph().items() if source.startswith("meta_supervisor")}
    assert _violations(graph, META_LAYERS, {}) == []


def test_every_meta_supervisor_module_has_a_layer() -> None:
    unplaced = [m for m in project_modules() if m.startswith("meta_supervisor.") and _layer(m, META_LAYERS) is None]
    assert unplaced == []


def test_the_checker_sees_cycles_and_upward_imports() -> None:
    """The checks above fail on what they are for (a contract that cannot fail checks nothing)."""
    graph = {"a.x": {"a.y"}, "a.y": {"b.z"}, "b.z": {"a.x"}, "c": set()}
    assert cycles(graph) == [["a.x", "a.y", "b.z"]]
    assert _violations(graph, [("a",), ("b",)], {}) == ["b.z -> a.x: a is above b"]
    assert _violations({"a.x": {"c.y"}}, [("a", "c")], {}) == ["a.x -> c.y: a and c are siblings (neither imports the other)"]
