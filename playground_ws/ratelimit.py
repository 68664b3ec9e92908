"""Per-user action limits for the playground (token buckets, pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RateLimiter", "TokenBucket"]


@dataclass
class TokenBucket:
    """*rate* actions per second on average, *burst* at once."""

    rate: float
    burst: float
    tokens: float = field(default=-1.0)
    updated: float = 0.0

    def full_at(self) -> float:
        """When the bucket is full again if nothing is taken meanwhile (then it
        behaves exactly like a new one)."""
        if self.tokens < 0:
            return self.updated
        return self.updated + (self.burst - self.tokens) / self.rate

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimiter:
    """Two buckets per user: every action, and the costly ones (play, add,
    search, lyrics), which make the engine resolve and open URLs, or ask LRCLIB.

    A user whose buckets have filled up again is forgotten by ``sweep``: a full
    bucket and a new one are the same, so memory follows the users active in
    the last few seconds, not every identity ever seen.

    Args:
        rate, burst: any action.
        heavy_rate, heavy_burst: costly actions.
    """

    HEAVY = frozenset({"play", "add", "search", "lyrics"})

    def __init__(self, rate: float = 10.0, burst: float = 20.0,
                 heavy_rate: float = 1.0, heavy_burst: float = 5.0) -> None:
        self._limits = (rate, burst, heavy_rate, heavy_burst)
        self._buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def sweep(self, now: float) -> int:
        """Forget users whose buckets are full again. Returns how many."""
        idle = [user for user, (general, heavy) in self._buckets.items()
                if general.full_at() <= now and heavy.full_at() <= now]
        for user in idle:
            del self._buckets[user]
        return len(idle)

    def allow(self, user: str, action: str, now: float) -> str | None:
        """None if allowed, else why not (for the user)."""
        buckets = self._buckets.get(user)
        if buckets is None:
            rate, burst, heavy_rate, heavy_burst = self._limits
            buckets = self._buckets[user] = (TokenBucket(rate, burst),
                                             TokenBucket(heavy_rate, heavy_burst))
        general, heavy = buckets
        if action in self.HEAVY and not heavy.take(now):
            return (f"slow down: at most {heavy.rate:g} {action} per second "
                    f"(bursts of {heavy.burst:g})")
        if not general.take(now):
            return f"slow down: at most {general.rate:g} actions per second"
        return None
