"""The playground's HTTP and WebSocket endpoints, mounted on the gateway's app.

``GET /`` serves the page and gives a first-time browser its identity cookie;
``/ws`` is the WebSocket (protocol in docs/playground.md); ``/static`` holds the
page's script, styles and AudioWorklet.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client.core import CounterMetricFamily, Metric
from starlette.websockets import WebSocketDisconnect, WebSocketState

from gateway.engine_client import EngineError
from gateway.lyrics import LyricsUnavailable
from gateway.metrics import counter, gauge
from gateway.player import (
    Clear,
    Command,
    CommandError,
    Enqueue,
    LoopMode,
    Pause,
    PlayNow,
    Previous,
    Resume,
    SetCrossfade,
    SetFilters,
    SetLoop,
    SetVolume,
    Shuffle,
    Skip,
    Stop,
    Track,
    UndoClear,
)
from gateway.player import Jump as JumpTo
from gateway.player import Move as MoveTo
from gateway.player import Remove as RemoveAt
from gateway.player import Seek as SeekTo
from gateway.runtime import Gateway
from lifecycle import TaskOwner, declare
from playground_ws.admission import (
    Holder,
    IdentityIssuer,
    client_key,
    refuse_start,
    refuse_tab,
)
from playground_ws.identity import (
    COOKIE_MAX_AGE,
    COOKIE_NAME,
    CookieIdentity,
    Identity,
    is_user_id,
)
from playground_ws.messages import (
    Add,
    ClientMessage,
    Crossfade,
    Filters,
    Jump,
    Loop,
    LyricsRequest,
    Move,
    Play,
    Remove,
    Search,
    Seek,
    Simple,
    Volume,
    parse_client_message,
)
from playground_ws.origins import default_origins, normalize_origin, parse_origins
from playground_ws.ratelimit import RateLimiter
from playground_ws.rooms import Connection, Room, Rooms
from playground_ws.wording import Wording
from protocol.filter_presets import EQUALIZER_BANDS, preset_catalogue

__all__ = ["HEARTBEAT_INTERVAL", "HEARTBEAT_TIMEOUT", "mount_playground"]

log = logging.getLogger(__name__)

TAB_WRITER = declare(
    "tab-writer-{key}", owner="the tab's WebSocket handler",
    what="a tab's writer: its bounded audio and text queues into the WebSocket",
    ends="the tab closes (cancelled and awaited by its handler)")

STATIC_DIR = Path(__file__).parent / "static"
#: Seconds between the server's pings, and of silence after which a tab is gone.
HEARTBEAT_INTERVAL = 15.0
HEARTBEAT_TIMEOUT = 45.0
#: Close codes (4000-4999 are the application's).
CLOSE_BAD_IDENTITY = 4401
CLOSE_BAD_ORIGIN = 4403
CLOSE_SILENT = 4408
CLOSE_TOO_MANY = 4429
#: Commands that never start an engine session (the rest are admitted first).
_NEVER_STARTS = frozenset({"stop", "pause", "clear", "undo_clear", "shuffle", "loop",
                           "remove", "move", "volume", "state", "pong", "focus", "search",
                           "lyrics"})
#: Where the page offers the bundled demo tracks (``audiogate run``): a link of the
#: page's own server, never a path on it.
DEMO_PATH = "/demo/"
_DEMO_TYPES = {".opus": "audio/ogg", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}
#: Engine sessions the playground may hold when neither the setting nor the
#: engine says (a Go engine reports no limit).
_FALLBACK_SESSION_CAP = 50
#: Refused origins logged at warning level (the rest at debug: a flood of
#: handshakes from a hostile page must not flood the log).
_ORIGINS_LOGGED = 32


def _check_url(url: str) -> str | None:
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme in ("http", "https"):
        return None if parsed.hostname else "the URL has no host"
    if not parsed.scheme and url.startswith("/"):
        return None
    return "only http(s) links (or files in the server's media folder) can be played"


def _fallback_title(url: str) -> str:
    """A name for *url* until (or unless) the catalogue knows better: a file's name
    without its extension, else the link without its scheme."""
    parts = urllib.parse.urlsplit(url)
    path = PurePosixPath(urllib.parse.unquote(parts.path))
    if path.suffix or not parts.netloc:
        return path.stem or url
    text = parts.netloc + parts.path + (f"?{parts.query}" if parts.query else "")
    return text if len(text) <= 80 else text[:79] + "…"


def _too_many_identities(wait: float) -> Response:
    minutes = max(1, round(wait / 60))
    body = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>audiogate playground: try again soon</title><link rel=\"icon\" href=\"data:,\">"
        "</head><body style=\"font-family: system-ui, sans-serif; max-width: 36rem; "
        "margin: 3rem auto; padding: 0 1rem\"><h1>Too many new visitors from your network</h1>"
        "<p>Your network has just been given several new playground identities. "
        f"Try again in about {minutes} minute{'s' if minutes != 1 else ''}.</p>"
        "<p>A browser that opened the playground before keeps its identity and is not "
        "affected: use that one if you can.</p></body></html>"
    )
    return HTMLResponse(body, status_code=429, headers={
        "Retry-After": str(max(1, round(wait))), "Cache-Control": "no-store"})


class _Playground:
    def __init__(self, gateway: Gateway, identity: Identity, demo_tracks: dict[str, Path],
                 allowed_origins: frozenset[str]) -> None:
        settings = gateway.settings
        self.gateway = gateway
        self.identity = identity
        self.demo_tracks = demo_tracks
        #: Configured origins; empty: the page's own (``origins.default_origins``).
        self.allowed_origins = allowed_origins
        self.wording = Wording([settings.engine_url, str(settings.socket_path)])
        self.rooms = Rooms(gateway, linger=settings.room_linger, wording=self.wording)
        self.limits = RateLimiter()
        self.issuer = IdentityIssuer(settings.playground_new_identities,
                                     settings.playground_new_identity_interval)
        self._names = itertools.count(1)
        #: The client address each user's engine session is charged to: the address
        #: of the tab whose command started it, until the player holds no session
        #: any more. Closing every tab does not move the session off that address
        #: (``_charged_client``); entries go when their player is unloaded.
        self.charges: dict[str, str] = {}
        self._origins_logged: set[str] = set()
        self.identities_issued = 0
        #: Admission refusals by reason: identity, address, full, tabs, origin.
        self.refused: Counter[str] = Counter()
        gateway.metrics.add_source(self._metric_families)
        gateway.socket.add_state_listener(self._engine_state)
        gateway.add_housekeeping(self.limits.sweep)
        gateway.add_housekeeping(self.issuer.sweep)
        gateway.add_housekeeping(self._sweep_charges)
        log.info("playground WebSocket accepts pages from %s",
                 ", ".join(sorted(allowed_origins)) if allowed_origins
                 else "its own addresses (set GATEWAY_ALLOWED_ORIGINS for a public name)")

    def _metric_families(self) -> Iterable[Metric]:
        yield counter("audiogate_gateway_playground_identities_issued",
                      "Playground identities (cookies) issued", self.identities_issued)
        refused = CounterMetricFamily(
            "audiogate_gateway_playground_refused",
            "Playground admission refusals (identity: no new cookie for the address; "
            "address: sessions per address; full: the playground's share; tabs; origin)",
            labels=["reason"])
        for reason in ("identity", "address", "full", "tabs", "origin"):
            refused.add_metric([reason], self.refused[reason])
        yield refused
        yield gauge("audiogate_gateway_playground_sessions",
                    "Engine sessions held by playground users",
                    sum(1 for p in self.gateway.players.players
                        if is_user_id(p.key) and p.holds_engine_session))
        yield gauge("audiogate_gateway_playground_session_cap",
                    "Most engine sessions the playground may hold", self._session_cap())

    def _engine_state(self, connected: bool) -> None:
        """Tell every tab when the engine goes away and comes back."""
        self.rooms.broadcast_all({"type": "engine", "connected": connected})

    # -- the page -------------------------------------------------------------------

    def page(self, request: Request) -> Response:
        """The page; a browser without a valid identity gets one, unless its
        client address has had its share lately (then a 429 page in words)."""
        fresh_cookie = None
        if self.identity.user_from_cookie(request.cookies.get(COOKIE_NAME)) is None:
            client = client_key(request.client.host if request.client else None)
            now = asyncio.get_running_loop().time()
            if not self.issuer.allow(client, now):
                self.refused["identity"] += 1
                log.info("no new identity for client %s: its share is used up", client)
                return _too_many_identities(self.issuer.retry_after(client, now))
            user, fresh_cookie = self.identity.new_user()
            self.identities_issued += 1
            log.debug("new identity %s for client %s", user, client)
        html = (STATIC_DIR / "index.html").read_text()
        demo = self.demo_tracks.get("opus")
        response = HTMLResponse(html.replace("{{DEMO_PATH}}", DEMO_PATH + demo.name if demo else "")
                                .replace("{{SOUND_CATALOGUE}}", _SOUND_CATALOGUE))
        if fresh_cookie is not None:
            response.set_cookie(COOKIE_NAME, fresh_cookie, max_age=COOKIE_MAX_AGE,
                                httponly=True, samesite="strict")
        return response

    def demo_file(self, name: str) -> Response:
        """A bundled demo track by its file name (404 for anything else)."""
        for path in self.demo_tracks.values():
            if path.name == name:
                return FileResponse(path, media_type=_DEMO_TYPES.get(path.suffix,
                                                                     "application/octet-stream"))
        return Response("404 page not found", status_code=404, media_type="text/plain")

    def _demo_location(self, url: str, own_hosts: frozenset[str]) -> str | None:
        """The file a link to this server's own demo track names (the page shows the
        link; the engine plays the file), or None for any other URL."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() not in own_hosts:
            return None
        if not parts.path.startswith(DEMO_PATH) or parts.query or parts.fragment:
            return None
        name = parts.path.removeprefix(DEMO_PATH)
        return next((str(path) for path in self.demo_tracks.values() if path.name == name),
                    None)

    # -- admission ------------------------------------------------------------------

    def _origin_allowed(self, websocket: WebSocket) -> bool:
        origin = websocket.headers.get("origin")
        if origin is None:
            return True  # not a browser (tools, tests): the cookie still decides who it is
        normalized = normalize_origin(origin)
        allowed = self.allowed_origins
        if not allowed:
            server = websocket.scope.get("server") or (None, 0)
            allowed = default_origins(websocket.scope.get("scheme", "ws"), server[0],
                                      int(server[1] or 0))
        if normalized is not None and normalized in allowed:
            return True
        self.refused["origin"] += 1
        level = logging.DEBUG
        if len(self._origins_logged) < _ORIGINS_LOGGED and origin not in self._origins_logged:
            self._origins_logged.add(origin)
            level = logging.WARNING
        log.log(level, "refused a WebSocket from origin %r (not in GATEWAY_ALLOWED_ORIGINS "
                "or the page's own addresses)", origin[:200])
        return False

    def _session_cap(self) -> int:
        configured = self.gateway.settings.playground_max_sessions
        if configured:
            return configured
        watch = self.gateway.engine_watch  # None with a pool of engine nodes
        health = watch.health if watch is not None else None
        if health is not None and health.max_sessions:
            return max(1, health.max_sessions // 2)
        return _FALLBACK_SESSION_CAP

    def _charged_client(self, user: str) -> str:
        """The client *user*'s engine session counts for. A session with no
        charge yet (one resumed by a reconnecting tab after a gateway restart) is
        charged to its open tab's client the first time it is seen, and stays so."""
        charged = self.charges.get(user)
        if charged is None:
            room = self.rooms.existing(user)
            charged = room.client if room is not None else ""
            if charged:
                self.charges[user] = charged
        return charged

    def _sweep_charges(self, now: float) -> int:
        """Forget the charges of players no longer loaded (their sessions are
        stopped). Returns how many."""
        loaded = {player.key for player in self.gateway.players.players}
        gone = [user for user in self.charges if user not in loaded]
        for user in gone:
            del self.charges[user]
        return len(gone)

    def _refuse_start(self, room: Room, client: str) -> str | None:
        """Why *room*'s user, from a tab of *client*, may not start an engine
        session now (None: it may, and the session is charged to *client*)."""
        holders = [Holder(player.key, self._charged_client(player.key))
                   for player in self.gateway.players.players
                   if is_user_id(player.key) and player.holds_engine_session]
        refusal = refuse_start(
            room.user_id, client, holders,
            per_client=self.gateway.settings.playground_sessions_per_address,
            total=self._session_cap())
        if refusal is not None:
            self.refused["full" if refusal.startswith("the playground is full") else
                         "address"] += 1
        else:
            self.charges[room.user_id] = client
        return refusal

    def _tabs_of(self, client: str) -> int:
        return sum(1 for room in self.rooms.rooms() for c in room.connections
                   if c.client == client)

    # -- the socket -----------------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        if not self._origin_allowed(websocket):
            await websocket.close(code=CLOSE_BAD_ORIGIN, reason="origin not allowed")
            return
        user = self.identity.user_from_cookie(websocket.cookies.get(COOKIE_NAME))
        client = client_key(websocket.client.host if websocket.client else None)
        await websocket.accept()
        if user is None:
            await websocket.send_text(json.dumps({
                "type": "error",
                "message": self.wording("your identity cookie is missing or invalid; "
                                        "reload the page"),
            }))
            await websocket.close(code=CLOSE_BAD_IDENTITY, reason="invalid identity")
            return
        existing = self.rooms.existing(user)
        refusal = refuse_tab(len(existing.connections) if existing else 0, self._tabs_of(client))
        if refusal is not None:
            self.refused["tabs"] += 1
            log.info("tab of %s from client %s refused: %s", user, client, refusal)
            await websocket.send_text(json.dumps({"type": "error",
                                                  "message": self.wording(refusal)}))
            # A close reason is at most 123 bytes; the words are ASCII and shorter.
            await websocket.close(code=CLOSE_TOO_MANY, reason=refusal[:120])
            return
        room = self.rooms.get(user)
        # The first state a tab sees is the user's stored queue, not an empty one.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await room.player.loaded()
        connection = Connection(websocket, f"t{next(self._names)}", client)
        connection.last_seen = asyncio.get_running_loop().time()
        # hello first, then (from join) where the sound plays.
        connection.send_json({**room.state_message(), "type": "hello",
                              "engine_connected": self.gateway.socket.connected.is_set()})
        room.join(connection)
        writer = TaskOwner(TAB_WRITER.owner, logger=room.log)
        writer.spawn(TAB_WRITER, connection.writer(), key=user)
        try:
            await self._receive(websocket, room, connection, _own_hosts(websocket))
        finally:
            room.leave(connection)
            self.rooms.connection_closed(connection)
            await writer.aclose()
            if websocket.application_state is WebSocketState.CONNECTED:
                with contextlib.suppress(RuntimeError, OSError):
                    await websocket.close()

    def _error(self, connection: Connection, message: str) -> None:
        """Send *message* as an ``error``, in the page's one wording (``Wording``)."""
        connection.send_json({"type": "error", "message": self.wording(message)})

    async def _receive(self, websocket: WebSocket, room: Room, connection: Connection,
                       own_hosts: frozenset[str]) -> None:
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT_INTERVAL):
                    message = await websocket.receive()
            except TimeoutError:
                if asyncio.get_running_loop().time() - connection.last_seen > HEARTBEAT_TIMEOUT:
                    await websocket.close(code=CLOSE_SILENT, reason="no heartbeat")
                    return
                connection.send_json({"type": "ping"})
                continue
            connection.last_seen = asyncio.get_running_loop().time()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                self._error(connection, "binary messages are not accepted; send JSON text")
                continue
            try:
                parsed = parse_client_message(text)
            except ValueError as exc:
                self._error(connection, str(exc))
                continue
            if parsed.type != "pong":
                refusal = self.limits.allow(room.user_id, parsed.type,
                                            asyncio.get_running_loop().time())
                if refusal is not None:
                    self._error(connection, refusal)
                    continue
            if parsed.type not in _NEVER_STARTS and not room.player.holds_engine_session:
                refusal = self._refuse_start(room, connection.client)
                if refusal is not None:
                    room.log.info("not admitted: %s", refusal)
                    self._error(connection, refusal)
                    continue
            try:
                await self._dispatch(parsed, room, connection, own_hosts)
            except CommandError as exc:
                self._error(connection, str(exc))
            except EngineError as exc:
                room.log.info("%s failed at the engine: %s", parsed.type, exc.detail)
                self._error(connection, str(exc))

    async def _track(self, url: str, own_hosts: frozenset[str]) -> Track:
        url = url.strip()
        url = self._demo_location(url, own_hosts) or url
        problem = _check_url(url)
        if problem is not None:
            raise CommandError(problem)
        title = _fallback_title(url)
        duration: float | None = None
        thumbnail = ""
        try:
            async with asyncio.timeout(self.gateway.settings.playground_metadata_timeout):
                metadata = await self.gateway.engine.metadata(url)
            title = metadata.title or title
            duration = metadata.duration or None
            if urllib.parse.urlsplit(metadata.thumbnail).scheme in ("http", "https"):
                thumbnail = metadata.thumbnail
        except (EngineError, TimeoutError):
            pass  # the play itself will say what is wrong, if anything
        return Track(url=url, title=title, duration=duration, thumbnail=thumbnail)

    async def _dispatch(self, message: ClientMessage, room: Room, connection: Connection,
                        own_hosts: frozenset[str]) -> None:
        player = room.player
        match message:
            case Add(url=url):
                track = await self._track(url, own_hosts)
                outcome = await player.apply(Enqueue(track))
                connection.send_json({"type": "queued", "position": outcome.position,
                                      "title": track.label})
            case Search(query=query):
                try:
                    result = await self.gateway.engine.search(query)
                except EngineError as exc:
                    room.log.info("search failed: %s", exc.detail)
                    raise CommandError(self.wording.search_failed(str(exc))) from exc
                connection.send_json({
                    "type": "search_results", "query": query,
                    "results": [r.model_dump() for r in result.results],
                })
            case LyricsRequest():
                connection.send_json(await self._lyrics(room))
            case Simple(type="pong"):
                pass
            case Simple(type="focus"):
                room.focus(connection)
            case Simple(type="state"):
                connection.send_json(room.state_message())
            case _:
                await player.apply(await self._command(message, own_hosts))

    async def _lyrics(self, room: Room) -> dict[str, object]:
        """The ``lyrics`` answer for *room*'s current track: ``found`` with ``lyrics``
        (``gateway.lyrics.Lyrics.as_dict``), or a ``message`` saying why not."""
        track = room.player.view().current
        answer: dict[str, object] = {"type": "lyrics", "track_id": track.id if track else None,
                                     "found": False, "lyrics": None, "message": ""}
        if track is None:
            return {**answer, "message": "nothing is playing"}
        if not self.gateway.lyrics.enabled:
            return {**answer, "message": "lyrics are turned off on this server"}
        try:
            found = await self.gateway.lyrics.for_track(track)
        except LyricsUnavailable as exc:
            room.log.info("lyrics: %s", exc)
            return {**answer, "message": "the lyrics service cannot be reached right now"}
        if found is None:
            return {**answer, "message": "no lyrics were found for this track"}
        return {**answer, "found": True, "lyrics": found.as_dict()}

    async def _command(self, message: ClientMessage, own_hosts: frozenset[str]) -> Command:
        """The player command a page message asks for.

        Raises:
            CommandError: what the page sent cannot be a command (a bad URL, filters
                the model refuses).
        """
        match message:
            case Play(url=url):
                return PlayNow(await self._track(url, own_hosts))
            case Seek(seconds=seconds):
                return SeekTo(seconds)
            case Volume(volume=volume):
                return SetVolume(volume)
            case Filters(preset=preset, filters=filters):
                if preset is not None:
                    return SetFilters.preset(preset)
                assert filters is not None
                return SetFilters.from_json(filters.lavalink())
            case Crossfade(seconds=seconds):
                return SetCrossfade(seconds)
            case Remove(position=position):
                return RemoveAt(position)
            case Jump(position=position):
                return JumpTo(position)
            case Move(position=position, to=to):
                return MoveTo(position, to)
            case Loop(mode=mode):
                return SetLoop(LoopMode(mode))
            case Simple(type="shuffle"):
                return Shuffle(seed=secrets.randbits(32))
            case Simple(type=kind) if kind in _SIMPLE:
                return _SIMPLE[kind]
        raise AssertionError(f"no player command for {message!r}")


#: What the page's filters panel offers, written into the page (a JSON script element):
#: the presets and the equalizer's bands, from their one place in ``protocol``. Its
#: ``<`` are escaped, so no text in it can end the script element.
_SOUND_CATALOGUE = json.dumps({"presets": preset_catalogue(),
                               "bands": list(EQUALIZER_BANDS)}).replace("<", "\\u003c")

#: Page messages without arguments, and the player command each is. The page's stop
#: keeps the queue: clearing it is the separate ``clear`` (which can be undone).
_SIMPLE: dict[str, Command] = {
    "stop": Stop(keep_queue=True), "pause": Pause(), "resume": Resume(), "skip": Skip(),
    "previous": Previous(), "clear": Clear(), "undo_clear": UndoClear(),
}


def _own_hosts(websocket: WebSocket) -> frozenset[str]:
    """The names this connection's page reached the server by (its ``Host``, and
    its ``Origin``'s host), as ``host:port`` in lower case."""
    hosts = {websocket.headers.get("host", "")}
    origin = normalize_origin(websocket.headers.get("origin", "") or "")
    if origin is not None:
        hosts.add(urllib.parse.urlsplit(origin).netloc)
    return frozenset(host.lower() for host in hosts if host)


def mount_playground(
    app: FastAPI,
    gateway: Gateway,
    *,
    demo_tracks: dict[str, Path],
    identity: Identity | None = None,
    allowed_origins: Iterable[str] | None = None,
) -> None:
    """Add the playground's routes to *app*.

    Args:
        allowed_origins: origins whose pages may open the WebSocket (default:
            ``GATEWAY_ALLOWED_ORIGINS``, or else the page's own addresses).

    Raises:
        OSError: the cookie secret cannot be kept in the data directory.
        ValueError: an allowed origin is not an http(s) origin.
    """
    settings = gateway.settings
    if identity is None:
        from playground_ws.identity import load_or_create_secret

        secret = (settings.cookie_secret.get_secret_value() if settings.cookie_secret
                  else load_or_create_secret(settings.data_dir / "cookie_secret"))
        identity = CookieIdentity(secret)
    origins = (parse_origins(",".join(allowed_origins)) if allowed_origins is not None
               else parse_origins(settings.allowed_origins))
    playground = _Playground(gateway, identity, demo_tracks, origins)
    app.state.playground = playground

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> Response:
        return playground.page(request)

    @app.get(DEMO_PATH + "{name}", include_in_schema=False)
    async def demo(name: str) -> Response:
        return playground.demo_file(name)

    @app.websocket("/ws")
    async def websocket(websocket: WebSocket) -> None:
        try:
            await playground.serve(websocket)
        except WebSocketDisconnect:
            pass

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

