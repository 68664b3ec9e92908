"""Growing delays between attempts, with jitter: one rule for every retry loop.

A pure value object: no clock, no sleeping. The caller asks ``next()`` for the delay
to wait before its next attempt and ``reset()`` after a success. Each delay is the
current base times a random factor in ``[1 - jitter, 1 + jitter]``; the base then
grows by ``factor`` up to ``cap``. With ``jitter=0.5`` the factor is 0.5-1.5, which is
what lets many gateways restarted together reconnect out of step.
"""

from __future__ import annotations

import math
import random

__all__ = ["Backoff"]


class Backoff:
    """Delays from *initial* growing by *factor* to at most *cap* (seconds).

    Args:
        initial: the first delay's base (> 0).
        factor: growth per attempt (>= 1; 2 doubles).
        cap: the largest base (>= *initial*); a jittered delay may exceed it by
            ``jitter`` of itself.
        jitter: 0 (exact delays) to 1: each delay is scaled by a random factor in
            ``[1 - jitter, 1 + jitter]``.
        rng: the randomness (seeded in tests); the module's when None.

    Raises (on construction):
        ValueError: a parameter out of its range.
    """

    __slots__ = ("_base", "cap", "factor", "initial", "jitter", "rng")

    def __init__(self, initial: float, *, factor: float = 2.0, cap: float = math.inf,
                 jitter: float = 0.0, rng: random.Random | None = None) -> None:
        if not initial > 0:
            raise ValueError(f"the first delay must be positive, not {initial!r}")
        if not factor >= 1:
            raise ValueError(f"the growth factor must be at least 1, not {factor!r}")
        if not cap >= initial:
            raise ValueError(f"the cap ({cap!r}) must be at least the first delay "
                             f"({initial!r})")
        if not 0 <= jitter <= 1:
            raise ValueError(f"the jitter must be between 0 and 1, not {jitter!r}")
        self.initial = initial
        self.factor = factor
        self.cap = cap
        self.jitter = jitter
        self.rng = rng
        self._base = initial

    @property
    def base(self) -> float:
        """The base of the next delay (before jitter)."""
        return self._base

    def next(self) -> float:
        """The delay to wait now; the following one grows."""
        base = self._base
        self._base = min(self.cap, base * self.factor)
        if not self.jitter:
            return base
        draw = (self.rng or random).random()
        return base * (1.0 - self.jitter + 2.0 * self.jitter * draw)

    def reset(self) -> None:
        """Back to *initial* (after a success)."""
        self._base = self.initial

    def __repr__(self) -> str:
        return (f"Backoff(initial={self.initial!r}, factor={self.factor!r}, cap={self.cap!r}, "
                f"jitter={self.jitter!r}, base={self._base!r})")
