"""Every listening socket a process needs, bound before anything else starts.

A port that is taken, a host that is not ours, a socket directory that does not
exist: each is a ``StartupError`` naming the address and the setting to change,
raised before a single task, thread or file exists. The caller closes what it
bound if a later step fails (``close()`` is idempotent and removes the socket
file only if it is still the one we created).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from pathlib import Path

from audiogate.errors import StartupError

__all__ = ["HTTP_BACKLOG", "UnixListener", "bind_tcp", "bind_unix"]

#: Pending connections the kernel holds for an HTTP listener (uvicorn's default):
#: a burst of browser tabs or probes waits here instead of being refused.
HTTP_BACKLOG = 2048
#: Pending socket consumers: a handful of gateways, a probe or two.
UNIX_BACKLOG = 64
#: ``sun_path`` holds 108 bytes including the terminating NUL on Linux.
_MAX_UNIX_PATH = 107


def bind_tcp(host: str, port: int, *, host_setting: str, port_setting: str) -> socket.socket:
    """A listening TCP socket on *host*:*port* (0: any free port).

    *host_setting* and *port_setting* name the settings an error tells the user
    to change, e.g. ``GO_API_PORT (--go-api-port)``.

    Raises:
        StartupError: the address cannot be used, with the reason in words.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(
            f"cannot listen on {host!r}: not an address or a known host name; "
            f"set {host_setting}"
        ) from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(HTTP_BACKLOG)
    except OSError as exc:
        sock.close()
        raise StartupError(_tcp_problem(exc, host, port, host_setting, port_setting)) from exc
    return sock


def _tcp_problem(exc: OSError, host: str, port: int, host_setting: str,
                 port_setting: str) -> str:
    match exc.errno:
        case errno.EADDRINUSE:
            return (f"port {port} on {host} is already in use; stop what is using it "
                    f"or set {port_setting} to a free port")
        case errno.EADDRNOTAVAIL:
            return (f"cannot listen on {host}: it is not an address of this machine; "
                    f"set {host_setting}")
        case errno.EACCES | errno.EPERM:
            return (f"not allowed to listen on port {port} (ports below 1024 need "
                    f"privileges); set {port_setting}")
        case _:
            return (f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                    f"check {host_setting} and {port_setting}")


class UnixListener:
    """A bound, listening Unix socket and the file it created."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self.sock = sock
        self.path = path
        self._inode = os.stat(path).st_ino

    def close(self) -> None:
        """Close the socket and remove its file, unless another process has
        replaced the file since. Idempotent."""
        self.sock.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()


def bind_unix(path: Path, mode: int, *, setting: str) -> UnixListener:
    """A listening Unix socket at *path* with permissions *mode*; a stale file
    left by a dead process is replaced.

    Raises:
        StartupError: the path cannot be used (directory missing, path too
            long, another engine serving it, no permission, not a socket).
    """
    if len(os.fsencode(path)) > _MAX_UNIX_PATH:
        raise StartupError(
            f"the socket path {path} is {len(os.fsencode(path))} bytes long, more than the "
            f"{_MAX_UNIX_PATH} the system allows; set {setting} to a shorter path"
        )
    directory = path.parent
    if not directory.is_dir():
        raise StartupError(
            f"the socket directory {directory} does not exist; create it or set {setting}"
        )
    try:
        _clear_stale_socket(path, setting)
    except PermissionError as exc:
        raise StartupError(
            f"no permission to replace the stale socket file {path}; remove it or set {setting}"
        ) from exc
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StartupError(
                f"no permission to create the socket {path}; set {setting}"
            ) from exc
        if exc.errno == errno.EADDRINUSE:  # created between the check and the bind
            raise StartupError(f"{path} is already in use; set {setting}") from exc
        raise StartupError(f"cannot create the socket {path} ({exc.strerror or exc}); "
                           f"set {setting}") from exc
    listener = UnixListener(sock, path)
    try:
        os.chmod(path, mode)
        sock.listen(UNIX_BACKLOG)
    except OSError as exc:
        listener.close()
        raise StartupError(f"cannot listen on the socket {path} ({exc.strerror or exc}); "
                           f"set {setting}") from exc
    return listener


def _clear_stale_socket(path: Path, setting: str) -> None:
    """Remove *path* if it is a socket nobody listens on (left by a crash).

    Raises:
        StartupError: a live server answers on *path*, or *path* is not a
            socket (a regular file is never deleted).
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{path} exists and is not a socket; remove it or set {setting}")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listening: stale
        return
    finally:
        probe.close()
    raise StartupError(f"another process is already serving on {path}; stop it or set {setting}")
