"""Which engine nodes a gateway uses: parsed from ``GATEWAY_NODES`` (pure).

``GATEWAY_NODES`` is a JSON list, one object per engine::

    [{"name": "a", "api": "http://10.0.0.5:8180", "socket": "tls://10.0.0.5:8190",
      "token": "...", "ca": "/etc/audiogate/tls/ca.pem"}]

* ``name``: 1-32 letters, digits, ``-`` or ``_``; unique; in logs, metrics and
  the admin calls;
* ``api``: the engine's HTTP API (``http://`` or ``https://``);
* ``socket``: a Unix socket path (same machine), ``tcp://host:port`` or
  ``tls://host:port``;
* ``token`` (optional): sent in the socket hello and as the API's bearer token;
  default: the gateway's ``ENGINE_API_TOKEN``. A TCP or TLS socket needs one;
* ``ca`` (optional): the certificate authority file a ``tls://`` node's
  certificate is checked against (default: the system's).

Without ``GATEWAY_NODES`` the gateway has one node, named ``engine``, built from
the single-engine settings (``GO_API_PORT``, ``GATEWAY_ENGINE_HOST``,
``SOCKET_PATH``, ``ENGINE_API_TOKEN``), so an existing setup keeps working.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.socket_client import AddressKind, SocketAddress

__all__ = ["DEFAULT_NODE_NAME", "NodeConfig", "parse_nodes"]

#: The name of the one node made from the single-engine settings.
DEFAULT_NODE_NAME = "engine"
#: Most nodes one gateway takes: each costs a socket connection, a stats poll
#: every few seconds and a reconnect loop.
MAX_NODES = 64
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_KEYS = frozenset({"name", "api", "socket", "token", "ca"})


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One engine node as configured."""

    name: str
    api: str
    socket: SocketAddress
    token: str | None = None
    ca: Path | None = None

    def __repr__(self) -> str:  # never show the token
        return f"NodeConfig(name={self.name!r}, api={self.api!r}, socket='{self.socket}')"


def _node(index: int, item: Any, default_token: str | None) -> NodeConfig:
    where = f"node {index + 1}"
    if not isinstance(item, dict):
        raise ValueError(f"{where} is not a JSON object")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown keys {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(_KEYS))})")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}: name must be 1-32 letters, digits, '-' or '_'")
    where = f"node {name!r}"
    api = item.get("api")
    if not isinstance(api, str):
        raise ValueError(f"{where}: api (the engine's HTTP address) is required")
    parsed = urllib.parse.urlsplit(api)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{where}: api must be an http:// or https:// address with a host")
    socket_text = item.get("socket")
    if not isinstance(socket_text, str):
        raise ValueError(f"{where}: socket (a path, tcp://host:port or tls://host:port) "
                         "is required")
    try:
        address = SocketAddress.parse(socket_text)
    except ValueError as exc:
        raise ValueError(f"{where}: socket: {exc}") from exc
    token = item.get("token", default_token)
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError(f"{where}: token must be a non-empty string")
    if address.kind is not AddressKind.UNIX and token is None:
        raise ValueError(f"{where}: a {address.kind.value}:// socket needs a token "
                         "(the node's ENGINE_NODE_TOKEN or ENGINE_API_TOKEN)")
    ca = item.get("ca")
    if ca is not None and (not isinstance(ca, str) or not ca.startswith("/")):
        raise ValueError(f"{where}: ca must be an absolute file path")
    if ca is not None and address.kind is not AddressKind.TLS:
        raise ValueError(f"{where}: ca is only for a tls:// socket")
    return NodeConfig(name, api.rstrip("/"), address, token, Path(ca) if ca else None)


def parse_nodes(text: str, *, default_token: str | None = None) -> list[NodeConfig]:
    """The nodes of a ``GATEWAY_NODES`` value (``[]`` when it is empty).

    Raises:
        ValueError: what is wrong, naming the node (tokens are never quoted).
    """
    if not text.strip():
        return []
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError("GATEWAY_NODES is not valid JSON (a list of node objects)") from exc
    if not isinstance(document, list) or not document:
        raise ValueError("GATEWAY_NODES must be a non-empty JSON list of node objects")
    if len(document) > MAX_NODES:
        raise ValueError(f"GATEWAY_NODES lists more than {MAX_NODES} nodes")
    nodes = [_node(i, item, default_token) for i, item in enumerate(document)]
    names = [n.name for n in nodes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"GATEWAY_NODES names {', '.join(map(repr, repeated))} more than once")
    return nodes
