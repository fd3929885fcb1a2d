"""The rules of the house (docs/architecture.md), checked on the source: no import circles, the harness sees
only what methods/ exports for it, and modules stay small enough to read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "reports", "splits", "sam3d_bench")
# What methods/ exports for the harness on purpose: the package (create_model, get_method, ...),
# the registry (options, meta-device builds, backbone specs), method options, plugin loading and
# the Figure 1(c) measuring setup.
METHODS_API = {"methods", "methods.registry", "methods.options", "methods.plugins", "methods.figure1c", "methods.macs"}
# The public contract for plugins re-exports from both sides; nothing of ours imports it.
CONTRACT = "sam3d_bench"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Our modules a file imports anywhere in it, function bodies included: a lazy import still ties two modules."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name in known:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = set(modules())
    return {name: imports_of(path, known) - {name} for name, path in modules().items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circles_between_our_modules():
    graph = import_graph()
    assert len(graph) > 50  # the walk saw the packages, not an empty folder
    # A package imports its own modules to register them (methods/__init__): that edge is not a
    # circle a reader has to untangle, so a package's edges into itself are left out.
    for name in list(graph):
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    assert find_cycle(graph) is None


def test_the_harness_imports_only_what_methods_export_for_it():
    offending = {
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        if not name.startswith(("methods", CONTRACT))
        for target in targets
        if target.startswith("methods") and target not in METHODS_API
    }
    assert not offending


def test_the_public_contract_sits_on_top():
    """Plugins import sam3d_bench; the harness and the methods never do, so the contract can
    re-export from both without a circle."""
    assert not {name for name, targets in import_graph().items() if CONTRACT in targets and name != CONTRACT}


def test_a_method_never_reads_files_or_reaches_into_the_harness_runner():
    """Methods get tensors and options; data, runs and reports are the harness's (docs/architecture.md)."""
    harness_only = ("bench.executors", "bench.plan", "bench.pipelines", "bench.data", "bench.reporting", "bench.runs", "bench.io")
    offending = {
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        if name.startswith("methods")
        for target in targets
        if target.startswith(harness_only)
    }
    assert not offending


def import_layers(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each module's layer: 1 for a module that imports none of ours, else one more than the highest
    layer it imports (the graph has no circles)."""
    layers: dict[str, int] = {}

    def layer(node: str) -> int:
        if node not in layers:
            layers[node] = 1 + max((layer(m) for m in graph.get(node, ())), default=0)
        return layers[node]

    for node in graph:
        layer(node)
    return layers


def test_the_layer_count_by_hand():
    assert import_layers({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == {"a": 3, "b": 2, "c": 1}


def test_at_most_eight_import_layers():
    """A reader follows at most eight modules from the command down to a leaf (a package's own
    submodules, imported to register them, are not a layer)."""
    graph = import_graph()
    for name in list(graph):
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    layers = import_layers(graph)
    assert max(layers.values()) <= 8, sorted(layers.items(), key=lambda kv: -kv[1])[:5]


def test_no_module_is_longer_than_300_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > 300}
    assert not long


def test_no_behaviour_is_decided_by_comparing_a_method_family_or_profile_name():
    """Behaviour comes from objects (profile fields, pipeline objects, method metadata): a comparison
    of such a name with a string literal in bench/ is a branch that the next method or profile
    would have to be added to."""
    from bench.plan.profiles import PROFILES
    from methods import list_methods

    names = {info.name for info in list_methods()} | {info.family for info in list_methods()} | set(PROFILES)
    offending = []
    for name, path in modules().items():
        if not name.startswith("bench"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                literals = {c.value for c in operands if isinstance(c, ast.Constant) and isinstance(c.value, str)}
                for c in operands:  # `x in ("paper", "smoke")`
                    if isinstance(c, (ast.Tuple, ast.List, ast.Set)):
                        literals |= {e.value for e in c.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if literals & names:
                    offending.append(f"{name}:{node.lineno} compares with {sorted(literals & names)}")
    assert not offending


def stage_of(module: str) -> str:
    """A module's stage: its folder under bench/ (bench.data, bench.runs, ...), else its top package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "bench" and len(parts) > 1 else parts[0]


def arrows_both_ways(graph: dict[str, set[str]]) -> list[str]:
    """Pairs of stages that import each other, each shown by one import either way."""
    arrows: dict[tuple[str, str], str] = {}
    for name, targets in graph.items():
        for target in targets:
            if stage_of(name) != stage_of(target):
                arrows.setdefault((stage_of(name), stage_of(target)), f"{name} -> {target}")
    return sorted(
        f"{arrows[pair]} and {arrows[(pair[1], pair[0])]}" for pair in arrows if pair < (pair[1], pair[0]) and (pair[1], pair[0]) in arrows
    )


def test_no_two_stages_import_each_other():
    """Data flows one way: a stage may use an earlier one's records, never the reverse as well (an
    arrow upward, such as the rank bookkeeping reaching into training's losses)."""
    assert not arrows_both_ways(import_graph())


def test_the_stage_check_sees_an_arrow_both_ways():
    graph = {"bench.distributed": {"bench.pipelines.losses"}, "bench.pipelines.training": {"bench.distributed"}, "bench.io": set()}
    assert arrows_both_ways(graph) == ["bench.distributed -> bench.pipelines.losses and bench.pipelines.training -> bench.distributed"]
    assert arrows_both_ways({"bench.pipelines.training": {"bench.distributed"}}) == []
