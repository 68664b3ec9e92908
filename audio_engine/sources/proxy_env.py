"""Proxy variables are taken out of the environment of every engine process.

The egress proxy (``egress.py``) is the only way out: FFmpeg gets it as its
``http_proxy`` option and yt-dlp as its ``proxy``. But libraries also read the
conventional variables themselves, at every open:

* FFmpeg's ``http`` and ``tls`` protocols call ``getenv("no_proxy")`` and connect
  *directly* to a host it matches (``127.0.0.1``, or ``*`` for all), whatever
  ``http_proxy`` option they were given; a redirect to a forbidden address then
  never reaches the policy. Without the option they use ``getenv("http_proxy")``.
* Python's ``urllib`` (``getproxies``) and anything built on it read every
  ``*_proxy`` variable in any letter case (``No_Proxy`` counts).

So each engine process drops every variable whose name ends in ``_proxy`` (any
case) before it opens anything: the engine at start-up (before its threads
exist: ``unsetenv`` races with ``getenv`` in another thread), and the
resolution workers both in the environment they are started with and again
in their own ``main``. A proxy the operator meant for the engine's own traffic is
therefore ignored (logged once); the egress proxy connects directly.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["is_proxy_variable", "scrub_proxy_environment"]


def is_proxy_variable(name: str) -> bool:
    """Whether a library would read *name* as a proxy setting (``http_proxy``,
    ``NO_PROXY``, ``All_Proxy``, ``ftp_proxy``, ...)."""
    return name.lower().endswith("_proxy")


def scrub_proxy_environment(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove every proxy variable from *environ* (default: this process's
    environment, which ``os.environ`` mirrors into the C library's, so FFmpeg's
    ``getenv`` no longer sees them). Returns the names removed, sorted.

    Call it before starting threads that open media (see the module docstring).
    """
    target = os.environ if environ is None else environ
    names = sorted(name for name in target if is_proxy_variable(name))
    for name in names:
        del target[name]
    return names
