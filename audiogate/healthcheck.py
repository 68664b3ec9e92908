"""``python -m audiogate.healthcheck [engine|gateway|run]``: the image's HEALTHCHECK.

Asks the ``/ready`` of this container's process and exits 0 when it answers
200, 1 otherwise (a 503 with its reasons, no answer, nothing listening); the
reason goes to stdout, which ``docker inspect`` shows. The slim image has no
curl, so this is the standard library alone, and it imports nothing of ours:
it starts in a few tens of milliseconds.

One image runs every role, so the role is the argument, or else read from the
command line of the container's first process (``audiogate engine``,
``python -m gateway``, ...). The engine answers on ``GO_API_PORT`` (8180); the
gateway and ``audiogate run`` on ``GATEWAY_PORT`` (8080), where under
``audiogate run`` the gateway is ready only while its engine child is. When
neither tells the role (an init process in front), the gateway's port is asked
first and the engine's second, and the first that answers decides.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["main", "ready_urls", "role_of"]

#: Seconds for the whole answer; under the HEALTHCHECK's own timeout.
TIMEOUT = 3.0
#: Bound on the body read back (a 503's reasons are a few hundred bytes).
_MAX_BODY = 2048

_ROLES = ("engine", "gateway", "run")


def role_of(command: Sequence[str]) -> str | None:
    """The role of a process started with *command* (its argv), or None if it
    is not one of ours."""
    for index, arg in enumerate(command):
        name = Path(arg).name
        if name == "audio_engine" or name == "audiogate-engine":
            return "engine"
        if name == "gateway" and index > 0 and command[index - 1] == "-m":
            return "gateway"
        if name == "audiogate-gateway":
            return "gateway"
        if name == "audiogate-stack":
            return "run"
        if name == "audiogate" and index + 1 < len(command) and command[index + 1] in _ROLES:
            return command[index + 1]
    return None


def _loopback(host: str) -> str:
    """Where to reach a server bound to *host* from inside its container."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def ready_urls(role: str | None, env: Mapping[str, str]) -> list[str]:
    """The ``/ready`` URLs to ask, in order, for *role* (None: unknown) with
    the settings in *env*."""
    engine = (f"http://{_loopback(env.get('ENGINE_API_HOST', ''))}:"
              f"{env.get('GO_API_PORT', '8180')}/ready")
    gateway = (f"http://{_loopback(env.get('GATEWAY_HOST', ''))}:"
               f"{env.get('GATEWAY_PORT', '8080')}/ready")
    if role == "engine":
        return [engine]
    if role in ("gateway", "run"):
        return [gateway]
    return [gateway, engine]


def _first_process() -> list[str]:
    try:
        return Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _ask(url: str) -> tuple[bool, str] | None:
    """(ready, what it said); None when nothing listens there."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            return answer.status == 200, f"{url}: {answer.status}"
    except urllib.error.HTTPError as exc:
        body = exc.read(_MAX_BODY).decode(errors="replace")
        return False, f"{url}: {exc.code} {body}"
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return None
        return False, f"{url}: {exc.reason}"
    except OSError as exc:  # a timeout, a reset
        return False, f"{url}: {exc}"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Exit code of the check: 0 ready, 1 not (see the module's docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in _ROLES:
        print(f"usage: python -m audiogate.healthcheck [{'|'.join(_ROLES)}]", file=sys.stderr)
        return 2
    role = args[0] if args else role_of(_first_process())
    urls = ready_urls(role, os.environ if env is None else env)
    for url in urls:
        answer = _ask(url)
        if answer is None:
            continue
        ready, said = answer
        print(said)
        return 0 if ready else 1
    print(f"nothing listens on {' or '.join(urls)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
