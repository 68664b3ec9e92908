"""Fair slots: a few slots shared by many callers, none of whom can hold them all.

The pure core, ``FairQueue``, decides who gets a slot; ``FairSlots`` is its thin
asyncio shell. The rules:

* at most ``capacity`` holders at once;
* at most ``per_caller`` of them for one caller (a session id, or whoever a
  catalogue request names), so one caller's slow or hostile URLs leave the other
  slots to everybody else;
* a freed slot goes to the waiting caller that holds the fewest slots, ties
  taken in turn (round robin: a caller just served, or just releasing, goes to
  the back), each caller's own requests in arrival order;
* at most ``max_waiting`` requests wait per caller; more are refused at once
  (nothing grows per caller without a bound).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

__all__ = ["FairQueue", "FairSlots", "SlotsBusy"]

T = TypeVar("T")


class SlotsBusy(Exception):
    """No slot could be had: too many requests waiting, or waited too long."""


class FairQueue(Generic[T]):
    """Who holds and who waits for the slots (no I/O, no clock).

    Tickets are opaque values the caller chooses (the shell uses futures).
    """

    def __init__(self, capacity: int, per_caller: int, max_waiting: int) -> None:
        if capacity < 1 or per_caller < 1 or max_waiting < 0:
            raise ValueError("capacity and per_caller must be >= 1, max_waiting >= 0")
        self.capacity = capacity
        self.per_caller = min(per_caller, capacity)
        self.max_waiting = max_waiting
        self._holding: dict[str, int] = {}
        #: Waiting tickets per caller; key order is the round-robin order.
        self._waiting: OrderedDict[str, deque[T]] = OrderedDict()

    @property
    def held(self) -> int:
        """Slots held now."""
        return sum(self._holding.values())

    @property
    def waiting(self) -> int:
        """Requests waiting now."""
        return sum(len(q) for q in self._waiting.values())

    def holding(self, caller: str) -> int:
        """Slots *caller* holds."""
        return self._holding.get(caller, 0)

    def request(self, caller: str, ticket: T) -> bool:
        """Ask for a slot: True if granted now, False if *ticket* now waits.

        Raises:
            SlotsBusy: *caller* already has ``max_waiting`` requests waiting.
        """
        if not self._waiting.get(caller) and self._may_hold(caller):
            self._holding[caller] = self.holding(caller) + 1
            return True
        queue = self._waiting.setdefault(caller, deque())
        if len(queue) >= self.max_waiting:
            if not queue:
                del self._waiting[caller]
            raise SlotsBusy("too many requests are waiting")
        queue.append(ticket)
        return False

    def cancel(self, caller: str, ticket: T) -> None:
        """Withdraw a waiting *ticket* (no-op if it is not waiting)."""
        queue = self._waiting.get(caller)
        if queue is not None and ticket in queue:
            queue.remove(ticket)
            if not queue:
                del self._waiting[caller]

    def release(self, caller: str) -> list[tuple[str, T]]:
        """Give back one of *caller*'s slots; returns the (caller, ticket) pairs
        that now hold a slot, in the order they were granted."""
        held = self.holding(caller) - 1
        if held > 0:
            self._holding[caller] = held
        else:
            self._holding.pop(caller, None)
        if caller in self._waiting:
            self._waiting.move_to_end(caller)
        granted: list[tuple[str, T]] = []
        while self.held < self.capacity:
            candidates = [c for c, q in self._waiting.items() if q and self._may_hold(c)]
            if not candidates:
                break
            chosen = min(candidates, key=self.holding)  # first of the fewest holders
            queue = self._waiting.pop(chosen)
            ticket = queue.popleft()
            if queue:
                self._waiting[chosen] = queue  # back of the round
            self._holding[chosen] = self.holding(chosen) + 1
            granted.append((chosen, ticket))
        return granted

    def _may_hold(self, caller: str) -> bool:
        return self.held < self.capacity and self.holding(caller) < self.per_caller


class FairSlots:
    """``FairQueue`` for asyncio tasks: ``async with slots.hold(caller, wait=s):``.

    Args:
        capacity, per_caller, max_waiting: as ``FairQueue``.
    """

    def __init__(self, capacity: int, per_caller: int, max_waiting: int = 64) -> None:
        self._queue: FairQueue[asyncio.Future[None]] = FairQueue(capacity, per_caller,
                                                                 max_waiting)

    @property
    def held(self) -> int:
        """Slots held now."""
        return self._queue.held

    @property
    def waiting(self) -> int:
        """Tasks waiting now."""
        return self._queue.waiting

    @contextlib.asynccontextmanager
    async def hold(self, caller: str, *, wait: float) -> AsyncIterator[None]:
        """Hold one slot for *caller* for the block's duration.

        Raises:
            SlotsBusy: too many of *caller*'s requests wait, or no slot came
                within *wait* seconds.
        Cancelling is safe: a waiting request is withdrawn, a held slot freed.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._queue.request(caller, future):
            try:
                async with asyncio.timeout(wait):
                    await asyncio.shield(future)
            except BaseException as exc:
                if future.done():
                    # Granted just as we gave up: pass the slot on.
                    self._release(caller)
                else:
                    self._queue.cancel(caller, future)
                    future.cancel()
                if isinstance(exc, TimeoutError):
                    raise SlotsBusy("every slot stayed busy") from exc
                raise
        try:
            yield
        finally:
            self._release(caller)

    def _release(self, caller: str) -> None:
        for _, future in self._queue.release(caller):
            future.set_result(None)
