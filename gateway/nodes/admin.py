"""The gateway's admin calls for its engine nodes (bearer ``GATEWAY_ADMIN_TOKEN``).

* ``GET /admin/nodes``: every node with its state, drain flag, sessions, penalty,
  load and counters (no addresses, no tokens);
* ``POST /admin/nodes/{name}/drain``: no new sessions there; its sessions move at
  their next track, or now with the body ``{"move": "now"}``;
* ``POST /admin/nodes/{name}/undrain``: take new sessions again.

Without ``GATEWAY_ADMIN_TOKEN`` the admin surface is off: every ``/admin/`` path
answers 404 saying so. With a token but without ``GATEWAY_NODES`` (one engine, no
pool) a caller with the token is told in words that there are no nodes to manage
(404). A wrong or missing token is 401; the scheme may be spelled in any case.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway.nodes.pool import NodePool
from protocol.bearer import bearer_matches

__all__ = ["mount_admin"]

#: Largest admin request body: ``{"move": "now"}`` and room to spare.
_MAX_BODY = 1024


#: Answers of the admin paths when there is nothing to administer.
_OFF = "the admin calls are off: set GATEWAY_ADMIN_TOKEN to use them"
_NO_POOL = ("this gateway runs one engine, not a pool of nodes: the admin calls manage the "
            "nodes listed in GATEWAY_NODES")


def _refused() -> JSONResponse:
    return JSONResponse({"error": "unauthorized: a valid admin bearer token is required"},
                        status_code=401, headers={"WWW-Authenticate": "Bearer"})


def mount_admin(app: FastAPI, pool: NodePool | None, token: str | None) -> None:
    """Add the admin routes to *app*: the real ones with a pool and a token, else
    routes that say in words why there is nothing to administer."""
    if not token:
        @app.api_route("/admin/{path:path}", methods=["GET", "POST"], include_in_schema=False)
        async def off(path: str) -> JSONResponse:
            return JSONResponse({"error": _OFF}, status_code=404)
        return

    def authorized(request: Request) -> bool:
        return bearer_matches(request.headers.get("authorization"), token)

    if pool is None:
        @app.api_route("/admin/{path:path}", methods=["GET", "POST"], include_in_schema=False)
        async def no_pool(path: str, request: Request) -> JSONResponse:
            if not authorized(request):
                return _refused()
            return JSONResponse({"error": _NO_POOL}, status_code=404)
        return

    refused = _refused

    def unknown(name: str) -> JSONResponse:
        names = ", ".join(node.name for node in pool.nodes)
        return JSONResponse({"error": f"no node named {name[:40]!r} (nodes: {names})"},
                            status_code=404)

    @app.get("/admin/nodes", summary="Every engine node: state, sessions, penalty")
    async def nodes(request: Request) -> JSONResponse:
        if not authorized(request):
            return refused()
        return JSONResponse({"nodes": pool.view()})

    @app.post("/admin/nodes/{name}/drain",
              summary="No new sessions on a node; move its sessions at their next track "
                      "(or now with {\"move\": \"now\"})")
    async def drain(name: str, request: Request) -> JSONResponse:
        if not authorized(request):
            return refused()
        if pool.node(name) is None:
            return unknown(name)
        body = await request.body()
        move = False
        if body.strip():
            try:
                if len(body) > _MAX_BODY:
                    raise ValueError("the body is too large")
                document: Any = json.loads(body)
                if not isinstance(document, dict) or document.get("move", "at_track_end") \
                        not in ("now", "at_track_end"):
                    raise ValueError('the body must be {"move": "now"} or '
                                     '{"move": "at_track_end"}')
            except ValueError as exc:
                return JSONResponse({"error": f"invalid request: {exc}"}, status_code=400)
            move = document.get("move") == "now"
        moved = pool.drain(name, move=move)
        view = next(n for n in pool.view() if n["name"] == name)
        return JSONResponse({"node": view, "moved_now": moved})

    @app.post("/admin/nodes/{name}/undrain", summary="Let a drained node take sessions again")
    async def undrain(name: str, request: Request) -> JSONResponse:
        if not authorized(request):
            return refused()
        if pool.node(name) is None:
            return unknown(name)
        pool.undrain(name)
        return JSONResponse({"node": next(n for n in pool.view() if n["name"] == name)})
