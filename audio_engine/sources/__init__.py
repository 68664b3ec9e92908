"""Where audio comes from: opening media with PyAV (``media``, ``options``), resolving
page URLs in killable worker processes (``resolver``, ``resolve_pool``,
``resolve_worker``, ``fair``), and the egress policy every connection goes through
(``url_policy``, ``egress``, ``proxy_http``)."""

from __future__ import annotations

__all__: list[str] = []
