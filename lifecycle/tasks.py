"""Tasks that outlive the call that started them: declared, named, owned, awaited.

Every long-lived task or thread of the gateway, the fronts and the composition root is
*declared* once, at import, with ``declare``: its name, who owns it, what it does and
when it ends. The declarations are the ownership table of docs/architecture.md
(``ownership_table()`` renders it; a test checks the document against it), so a task
nobody wrote down cannot be started by a ``TaskOwner`` at all.

A ``TaskOwner`` holds the tasks of one owner (a player, the registry, the announcer...):

* ``spawn(spec, coroutine, key=...)`` starts a task named after its declaration
  (``unload-{key}``) and keeps a reference until it ends;
* a task that fails is logged with its traceback and cause (never "exception was never
  retrieved"); one that is cancelled is not an error;
* ``aclose()`` cancels what runs and awaits all of it, so nothing is left running;
  ``join()`` awaits without cancelling (work that must finish, like a save).

Tasks of a ``TaskGroup`` (the composition roots') are declared too and take their name
from the declaration; the group, not a ``TaskOwner``, awaits them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

__all__ = [
    "DECLARED",
    "OwnerClosed",
    "Process",
    "TaskOwner",
    "TaskSpec",
    "declare",
    "ownership_table",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Process(StrEnum):
    """The process a task runs in (the table's sections, in this order)."""

    GATEWAY = "gateway"
    ENGINE = "engine"
    WORKER = "engine worker"
    STACK = "audiogate run"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One kind of task (or thread) and its owner.

    Attributes:
        name: the task's name; ``{key}`` is replaced by the key of each task (a
            session id, a guild id, a node name).
        owner: who keeps the reference and ends it (a class, or a task group).
        what: what it does, for the table.
        ends: when and how it ends, for the table.
        process: where it runs.
        thread: a thread (or a pool of them) rather than an asyncio task.
        module: the module that declared it.
    """

    name: str
    owner: str
    what: str
    ends: str
    process: Process = Process.GATEWAY
    thread: bool = False
    module: str = ""

    def task_name(self, key: str = "") -> str:
        """The name of one task of this kind."""
        return self.name.replace("{key}", key) if key else self.name.replace("-{key}", "")


#: Every declaration made so far, by name (filled as modules are imported).
DECLARED: dict[str, TaskSpec] = {}


def declare(name: str, *, owner: str, what: str, ends: str,
            process: Process = Process.GATEWAY, thread: bool = False) -> TaskSpec:
    """Declare a kind of task; returns its spec (a module-level constant of its owner).

    Raises:
        ValueError: *name* was declared before with other details.
    """
    module = str(sys._getframe(1).f_globals.get("__name__", ""))
    spec = TaskSpec(name, owner, what, ends, process, thread, module)
    known = DECLARED.setdefault(name, spec)
    if known != spec:
        raise ValueError(f"task {name!r} is declared twice, differently: {known} and {spec}")
    return spec


class OwnerClosed(RuntimeError):
    """``spawn`` after ``aclose``: the owner is shutting down and starts nothing."""


class TaskOwner:
    """The running tasks of one owner.

    Args:
        owner: the owner's name, as its specs declare it (checked at ``spawn``).
        logger: where failures are logged (this module's logger when None).
    """

    def __init__(self, owner: str, *,
                 logger: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> None:
        self.owner = owner
        self._log = logger if logger is not None else log
        self._tasks: set[asyncio.Task[Any]] = set()
        self._keys: dict[asyncio.Task[Any], str] = {}
        self.closed = False
        #: Tasks that ended with an exception (logged).
        self.failures = 0

    def spawn(self, spec: TaskSpec, coroutine: Coroutine[Any, Any, T], *,
              key: str = "") -> asyncio.Task[T]:
        """Start *coroutine* as a task of kind *spec* (named ``spec.task_name(key)``).

        Raises:
            OwnerClosed: after ``aclose`` (the coroutine is closed unstarted).
            ValueError: *spec* belongs to another owner.
        """
        if DECLARED.get(spec.name) is not spec:
            coroutine.close()
            raise ValueError(f"task {spec.name!r} was never declared")
        if spec.owner != self.owner or spec.thread:
            coroutine.close()
            raise ValueError(f"{self.owner} cannot own {spec.name!r} (declared for "
                             f"{spec.owner})")
        if self.closed:
            coroutine.close()
            raise OwnerClosed(f"{self.owner} is closed; {spec.task_name(key)} not started")
        task = asyncio.get_running_loop().create_task(coroutine, name=spec.task_name(key))
        self._tasks.add(task)
        if key:
            self._keys[task] = key
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        key = self._keys.pop(task, "")
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.failures += 1
            extra = {"session_id": key} if key else None
            self._log.error("task %s of %s failed: %r", task.get_name(), self.owner, exc,
                            exc_info=exc, extra=extra)

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        """The tasks running now."""
        return frozenset(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    async def join(self) -> None:
        """Wait until every task (including any started meanwhile) has ended, without
        cancelling them. Cancelling the wait leaves the tasks running."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def aclose(self) -> None:
        """Cancel every task and wait for all of them; ``spawn`` refuses afterwards.
        Idempotent. If the caller is cancelled meanwhile, the tasks are still
        cancelled and the caller's cancellation propagates."""
        self.closed = True
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)


def _rows(specs: Iterable[TaskSpec]) -> list[str]:
    return [f"| `{spec.name}`{' (thread)' if spec.thread else ''} | {spec.what} | "
            f"{spec.owner} | {spec.ends} |" for spec in specs]


def ownership_table(specs: Iterable[TaskSpec] | None = None) -> str:
    """The ownership table (Markdown) of *specs* (default: every declaration), one
    section per process, rows sorted by owner then name."""
    chosen = sorted(DECLARED.values() if specs is None else specs,
                    key=lambda s: (list(Process).index(s.process), s.owner, s.name))
    lines: list[str] = []
    for process in Process:
        section = [s for s in chosen if s.process is process]
        if not section:
            continue
        if lines:
            lines.append("")
        lines += [f"**{process.value}**", "", "| task | what it does | owner | ends |",
                  "|---|---|---|---|", *_rows(section)]
    return "\n".join(lines) + "\n"
