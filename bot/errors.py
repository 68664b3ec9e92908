"""What the bot says when something fails, in words for the people in a server.

The engine's messages are written for operators: they may carry its internal URL,
the server's media path, or yt-dlp's and urllib3's raw text. None of that is shown
in Discord. Each message is sorted into a known kind of problem by its wording, and
the kind is what people read; the original stays in the logs.
"""

from __future__ import annotations

import re
from enum import StrEnum

from gateway.engine_client import EngineBusy, EngineError, EngineUnavailable

__all__ = ["Problem", "classify", "describe", "describe_engine_error"]


class Problem(StrEnum):
    """Kinds of failure a person can act on, each with its sentence."""

    UNAVAILABLE = "that video is unavailable (removed, private or blocked)"
    SIGN_IN = "the site wants a signed-in account for that one"
    NOT_FOUND = "nothing was found at that link"
    FORBIDDEN = "the site refused to hand over the audio"
    UNREACHABLE = "the site could not be reached"
    TIMEOUT = "the site took too long to answer"
    NOT_AUDIO = "there is no audio I can play there"
    UNSUPPORTED_LINK = "that kind of link is not supported: use an http(s) link"
    NOT_ALLOWED = "links to that address are not allowed"
    NO_FILE = "that file is not available"
    STALLED = "the audio stopped arriving"
    NO_RESULTS = "the search found nothing"
    SEARCH_FAILED = "searching is not working right now"
    BUSY = "the audio engine is busy right now; try again in a moment"
    ENGINE_DOWN = "the audio engine is not answering right now; I will keep trying"
    TOO_LONG = "that link is too long"
    OTHER = "it could not be played"


# First match wins: specific wording before generic wording.
_RULES: tuple[tuple[Problem, re.Pattern[str]], ...] = tuple(
    (problem, re.compile(pattern, re.IGNORECASE))
    for problem, pattern in (
        (Problem.ENGINE_DOWN, r"audio engine .*(unreachable|did not answer)|talking to the audio"),
        (Problem.BUSY, r"session limit|too many sessions|engine is busy|at capacity|headroom"),
        (Problem.TOO_LONG, r"longer than \d+"),
        (Problem.SIGN_IN, r"sign in|log ?in to|login required|age[- ]restricted|confirm your age"
                          r"|members[- ]only|not a bot"),
        (Problem.UNAVAILABLE, r"video unavailable|private video|is unavailable|has been removed"
                              r"|not available in your country|copyright|blocked it"
                              r"|account .* terminated"),
        (Problem.UNSUPPORTED_LINK, r"unsupported url scheme|only http, https|no host"),
        (Problem.NOT_ALLOWED, r"not allowed|private or local|only be played from"
                              r"|cannot be played: no media directory"),
        (Problem.NO_FILE, r"file not found|file not readable|no such file"),
        (Problem.NO_RESULTS, r"no results|playlist is empty|nothing found"),
        (Problem.NOT_FOUND, r"\b404\b|not found"),
        (Problem.FORBIDDEN, r"\b403\b|forbidden|refused the request"),
        (Problem.TIMEOUT, r"timed? ?out|timeout"),
        (Problem.STALLED, r"stuck|stalled|stopped sending"),
        (Problem.NOT_AUDIO, r"invalid data|no audio|not a playable|could not read media"
                            r"|no playable audio|decode|no video formats|requested format"
                            r"|unsupported url"),
        (Problem.UNREACHABLE, r"could not reach|unable to download|urlopen|getaddrinfo"
                              r"|name or service|temporary failure in name|cannot resolve"
                              r"|connection|network is unreachable|max retries|resolve"),
    )
)


def classify(message: str) -> Problem:
    """The kind of problem an engine (or yt-dlp) message describes."""
    for problem, pattern in _RULES:
        if pattern.search(message):
            return problem
    return Problem.OTHER


def describe(message: str) -> str:
    """One sentence for people, from an engine message (never its text)."""
    return classify(message).value


def describe_engine_error(exc: EngineError) -> str:
    """One sentence for people, from an engine client exception."""
    match exc:
        case EngineUnavailable():
            return Problem.ENGINE_DOWN.value
        case EngineBusy():
            return Problem.BUSY.value
        case _:
            return describe(str(exc))
