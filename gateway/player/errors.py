"""The player's two kinds of refusal, split by who broke the rules (as h11 does):
``CommandError`` for a command that cannot apply now (the user's; its words are shown),
``PhaseError`` for an input the play binding's transition table does not allow (ours: a
bug in the shell or the core, never the user's or the engine's)."""

from __future__ import annotations

__all__ = ["CommandError", "PhaseError"]


class CommandError(Exception):
    """A command that cannot apply now; ``str()`` says why, for the user. The state
    is unchanged."""


class PhaseError(RuntimeError):
    """An input that the play binding's current phase does not accept (see
    ``binding.TRANSITIONS``). The binding is unchanged."""
