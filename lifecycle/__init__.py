"""How long-lived work is run and retried, once for every package: the task owner
(declared, named tasks that are awaited at close; ``tasks``) and the back-off between
attempts (``backoff``).

A leaf package: it imports nothing of ours but ``applog``, so the engine, the gateway,
the fronts and the composition root all use it.
"""

from __future__ import annotations

from lifecycle.backoff import Backoff
from lifecycle.tasks import (
    DECLARED,
    OwnerClosed,
    Process,
    TaskOwner,
    TaskSpec,
    declare,
    ownership_table,
)

__all__ = [
    "DECLARED",
    "Backoff",
    "OwnerClosed",
    "Process",
    "TaskOwner",
    "TaskSpec",
    "declare",
    "ownership_table",
]
