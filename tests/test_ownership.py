"""Every task that outlives its caller has a declared owner, and the ownership table of
docs/architecture.md is generated from those declarations (``lifecycle.declare``).

Two checks on the source: the table in the document is exactly the declared one, and
no package starts a task outside a ``TaskOwner`` or a task group with a declared name.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

from lifecycle import DECLARED, ownership_table

ROOT = Path(__file__).resolve().parents[1]
#: The packages whose tasks the table covers.
PACKAGES = ("lifecycle", "audio_engine", "gateway", "bot", "playground_ws", "audiogate")
BEGIN = ("<!-- ownership table: generated from lifecycle.declare, checked by "
         "tests/test_ownership.py -->")
END = "<!-- end of the ownership table -->"


def _import_everything() -> None:
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not info.name.endswith(".__main__"):
                importlib.import_module(info.name)


def test_the_documented_ownership_table_is_the_declared_one() -> None:
    _import_everything()
    declared = [s for s in DECLARED.values() if s.module.split(".")[0] in PACKAGES]
    assert declared
    table = ownership_table(declared)
    document = (ROOT / "docs" / "architecture.md").read_text()
    assert BEGIN in document and END in document, "the table's markers are missing"
    shown = document.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert shown == table.strip(), (
        "docs/architecture.md's ownership table differs from the declarations; "
        f"put this between its markers:\n\n{table}")


def _task_starts(path: Path) -> list[str]:
    """Calls in *path* that start a task without a declared owner."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        where = f"{path.name}:{node.lineno}"
        if name == "ensure_future":
            bad.append(f"{where}: ensure_future (use a TaskOwner)")
        elif name == "create_task":
            receiver = node.func.value
            group = isinstance(receiver, ast.Name) and receiver.id == "tasks"
            named = any(k.arg == "name" and isinstance(k.value, ast.Attribute | ast.Call)
                        for k in node.keywords)
            if not (group and named):
                bad.append(f"{where}: create_task outside a task group, or without a "
                           "declared name (use TaskOwner.spawn, or name=SPEC.name)")
    return bad


def test_every_task_is_started_by_an_owner_or_a_named_group() -> None:
    bad = []
    for package in PACKAGES:
        if package == "lifecycle":
            continue  # the owner itself
        for path in sorted((ROOT / package).rglob("*.py")):
            bad += _task_starts(path)
    assert not bad, "\n".join(bad)


def test_the_check_sees_an_unowned_task(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("import asyncio\n"
                       "async def f() -> None:\n"
                       "    asyncio.get_running_loop().create_task(f())\n"
                       "    asyncio.ensure_future(f())\n"
                       "    async with asyncio.TaskGroup() as tasks:\n"
                       "        tasks.create_task(f(), name=SPEC.name)\n"
                       "        tasks.create_task(f())\n")
    assert len(_task_starts(planted)) == 3
