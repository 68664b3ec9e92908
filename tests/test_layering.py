"""The layering rule, checked on the source: which package may import which,
no import cycles, and the composition root imported by nobody.

Every ``import`` counts, wherever it is (inside functions and ``TYPE_CHECKING``
blocks too): a cycle that only type checkers follow is still a cycle.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Package -> the packages of ours it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "applog": set(),
    "lifecycle": {"applog"},
    "audio_engine": {"protocol", "applog", "lifecycle"},
    "gateway": {"protocol", "applog", "lifecycle"},
    "bot": {"gateway", "protocol", "applog", "lifecycle"},
    "playground_ws": {"gateway", "protocol", "applog", "lifecycle"},
    "loadtest": {"protocol", "applog", "lifecycle"},
    "audiogate": {"protocol", "applog", "lifecycle", "audio_engine", "gateway", "bot",
                  "playground_ws", "loadtest"},
}
OURS = set(ALLOWED)


def _modules() -> dict[str, Path]:
    found = {}
    for package in OURS:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_entry_point(module: str) -> bool:
    """``<package>.__main__``: what ``python -m <package>`` runs. It hands over
    to the composition root, so it is exempt from its package's rule."""
    return module.endswith(".__main__")


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported module of ours, line) for every import in *path*."""
    yield from _scanned(module, path)


@functools.cache
def _scanned(module: str, path: Path) -> tuple[tuple[str, int], ...]:
    """What ``_imports`` yields, parsed once per file and test run (the tests below
    read the same 200-odd files; parsing them for each test took most of the time)."""
    return tuple(_scan(module, path))


def _scan(module: str, path: Path) -> Iterator[tuple[str, int]]:
    package_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _ours(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package_parts[: len(package_parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield from _ours(target, node.lineno)
            for alias in node.names:  # ``from gateway import runtime``: a module
                yield from _ours(f"{target}.{alias.name}", node.lineno, must_exist=True)


def _ours(name: str, line: int, must_exist: bool = False) -> Iterator[tuple[str, int]]:
    if name.split(".")[0] not in OURS:
        return
    if name in MODULES:
        yield name, line
    elif not must_exist:
        raise AssertionError(f"import of {name!r} (line {line}) names no module of ours")


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for target, _ in _imports(module, path):
            if target != module:
                graph[module].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of *graph*, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target):], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_every_package_imports_only_what_its_layer_allows() -> None:
    broken = []
    for module, path in sorted(MODULES.items()):
        if _is_entry_point(module):
            continue
        package = module.split(".")[0]
        for target, line in _imports(module, path):
            other = target.split(".")[0]
            if other != package and other not in ALLOWED[package]:
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not broken, "\n".join(broken)


def test_the_gateway_imports_no_front_and_nothing_of_the_engine() -> None:
    assert not ALLOWED["gateway"] & {"bot", "playground_ws", "audio_engine", "audiogate"}
    for module, path in MODULES.items():
        if module.startswith("gateway.") and not _is_entry_point(module):
            for target, line in _imports(module, path):
                assert target.split(".")[0] in {"gateway", "protocol", "applog", "lifecycle"}, \
                    f"{path.relative_to(ROOT)}:{line} imports {target}"


def test_lifecycle_is_a_leaf_beside_applog() -> None:
    """The task owner and the back-off are used by every package, the engine too:
    they import nothing of ours but ``applog``."""
    for module, path in MODULES.items():
        if module.split(".")[0] == "lifecycle":
            for target, line in _imports(module, path):
                assert target.split(".")[0] in {"lifecycle", "applog"}, \
                    f"{path.relative_to(ROOT)}:{line} imports {target}"


def test_no_library_imports_the_composition_root() -> None:
    for module, path in MODULES.items():
        if module.split(".")[0] == "audiogate" or _is_entry_point(module):
            continue
        for target, line in _imports(module, path):
            assert not target.startswith("audiogate"), \
                f"{path.relative_to(ROOT)}:{line} imports {target}"


def test_nothing_imports_an_entry_point() -> None:
    for module, path in MODULES.items():
        for target, line in _imports(module, path):
            assert not _is_entry_point(target), \
                f"{path.relative_to(ROOT)}:{line} imports {target}"


def test_packages_form_no_cycle() -> None:
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in _graph().items():
        if _is_entry_point(module):
            continue
        for target in targets:
            if target.split(".")[0] != module.split(".")[0]:
                packages[module.split(".")[0]].add(target.split(".")[0])
    assert _cycle(packages) is None, _cycle(packages)
    assert _cycle(ALLOWED) is None


def test_modules_form_no_cycle() -> None:
    graph = _graph()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_checker_sees_a_cycle_and_a_forbidden_import(tmp_path: Path) -> None:
    """The checks above can fail: a planted cycle and a planted import are found."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    planted = tmp_path / "runtime.py"
    planted.write_text("from __future__ import annotations\n"
                       "from bot.voice import VoiceBridge\n"
                       "def later() -> None:\n    import audiogate.stack\n")
    assert [t for t, _ in _imports("gateway.runtime", planted)] == \
        ["bot.voice", "audiogate.stack"]
