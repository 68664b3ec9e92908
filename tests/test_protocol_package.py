"""The protocol package stays pure and documented (STYLE.md)."""

from __future__ import annotations

import ast
import inspect
import pkgutil
from pathlib import Path

import protocol

PACKAGE_DIR = Path(protocol.__file__).parent
FORBIDDEN = {
    "asyncio", "socket", "selectors", "ssl", "threading", "time", "subprocess",
    "multiprocessing", "concurrent", "audio_engine", "gateway", "bot", "playground_ws",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_protocol_imports_no_io_clock_or_project_package() -> None:
    for path in PACKAGE_DIR.glob("*.py"):
        assert not imported_modules(path) & FORBIDDEN, path.name


def test_every_module_exports_a_deliberate_all() -> None:
    for info in pkgutil.iter_modules([str(PACKAGE_DIR)]):
        module = __import__(f"protocol.{info.name}", fromlist=["__all__"])
        assert isinstance(module.__all__, list), info.name
        for name in module.__all__:
            assert hasattr(module, name), (info.name, name)


def documented_constants() -> set[str]:
    """Module-level names whose assignment is preceded by a ``#:`` comment."""
    names: set[str] = set()
    for path in PACKAGE_DIR.glob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.parse("\n".join(lines)).body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                previous = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                if previous.startswith("#:"):
                    names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def test_every_public_name_has_a_docstring() -> None:
    constants = documented_constants()
    missing = []
    for name in protocol.__all__:
        value = getattr(protocol, name)
        if callable(value) and not isinstance(value, protocol.NeedData):
            if not inspect.getdoc(value):
                missing.append(name)
            if inspect.isclass(value):
                for attribute, member in vars(value).items():
                    if attribute.startswith("_") and attribute != "__bytes__":
                        continue
                    if isinstance(member, classmethod):
                        member = member.__func__
                    if (inspect.isfunction(member) or isinstance(member, property)) and (
                        not inspect.getdoc(member)
                    ):
                        missing.append(f"{name}.{attribute}")
        elif name not in constants:
            missing.append(name)
    assert not missing
