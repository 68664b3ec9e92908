"""What the page says when something fails: the engine's and the player's
messages, made fit for the person at the page (pure).

The engine words its errors for people already ("file not found: song.mp3",
"the URL led to an address that is not allowed") and keeps its addresses and
paths out of them. This is the last line: whatever reaches a tab passes
``Wording``, which

* drops jargon ("extraction failed: ", "the engine said: "),
* says a failed search in words ("searching is not working right now"),
* replaces the gateway's own engine address and socket path, should one ever
  appear, and any absolute file path by the file's name alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["Wording"]

# An absolute path: "/" not preceded by a URL's host or scheme, two or more
# segments; the last one is kept (the file's name is the user's own).
_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/:'\"]+/)+([^\s/:'\"]+)")
_JARGON = re.compile(r"(^|: )(?:the engine said|extraction failed): ", re.IGNORECASE)
#: Longest message sent to a page; longer ones are cut (raw tool output).
MAX_MESSAGE = 300


class Wording:
    """Makes messages fit for a page.

    Args:
        hidden: strings that must never reach a page (the engine's URL, the
            socket path); each is replaced by *as_words*.
    """

    def __init__(self, hidden: Iterable[str] = ()) -> None:
        self._hidden = sorted((h for h in hidden if h), key=len, reverse=True)

    def __call__(self, message: str) -> str:
        """*message* for a page."""
        text = message.strip()
        for secret in self._hidden:
            text = text.replace(secret, "the audio engine")
        text = _PATH.sub(lambda m: m.group(1), text)
        while _JARGON.search(text):
            text = _JARGON.sub(r"\1", text)
        if len(text) > MAX_MESSAGE:
            text = text[: MAX_MESSAGE - 1].rstrip() + "…"
        return text or "something went wrong"

    def search_failed(self, message: str) -> str:
        """A failed search, in words: the details (a catalogue's raw answer) stay
        in the gateway's log."""
        if re.search(r"busy|too many", message, re.IGNORECASE):
            return "searching is busy right now; try again in a moment"
        return "searching is not working right now; paste a link to play instead"
