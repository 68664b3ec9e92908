"""Discord's servers, played on 127.0.0.1: the only part of the bot tests that is not real.

``FakeDiscord`` is a small aiohttp server answering the REST calls discord.py makes
(login, command sync, interaction callbacks, follow-ups, channel messages) and
recording them; it can refuse the token, and it serves a gateway WebSocket that says
hello and ready, so a real ``Client.start`` logs in (``discord_gateway``).
``DiscordWorld`` plays Discord's gateway: it hands discord.py's own
``ConnectionState`` the payloads the websocket would carry (GUILD_CREATE,
VOICE_STATE_UPDATE, INTERACTION_CREATE), so the real command tree, the real
``Interaction``/``InteractionResponse``, the real views and the real member and
voice-state caches do the work. Voice connections are the recording stand-ins of
``discord_standins``.

For Lavalink clients (wavelink, mafic), which join voice through discord.py's own
``change_voice_state``, the gateway answers a voice state update (op 4) as Discord
does: a VOICE_STATE_UPDATE for the bot and, when it joins a channel of a guild with a
voice server set in ``voice_servers``, a VOICE_SERVER_UPDATE pointing at it (a
``discord_voice`` stand-in).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import discord
import yarl
from aiohttp import WSMsgType, web
from discord.gateway import DiscordWebSocket
from discord.http import Route

__all__ = [
    "DiscordWorld", "FakeDiscord", "Member", "Reply", "SentMessage", "discord_gateway",
]

APPLICATION_ID = 900_000_000_000_000_001
BOT_USER_ID = 900_000_000_000_000_002
_ids = itertools.count(1_000_000_000_000_000_000)


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only when the type is exactly this.
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json"})


def snowflake() -> int:
    """A fresh id (monotonic, like Discord's)."""
    return next(_ids)


def _user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(user_id), "username": name, "global_name": name, "discriminator": "0",
            "avatar": None, "bot": bot, "public_flags": 0}


@dataclass
class SentMessage:
    """A channel message the bot posted, with every edit applied."""

    id: int
    channel_id: int
    payload: dict[str, Any]
    edits: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def content(self) -> str:
        return str(self.payload.get("content") or "")

    @property
    def embed(self) -> dict[str, Any]:
        embeds = self.payload.get("embeds") or []
        return dict(embeds[0]) if embeds else {}

    @property
    def text(self) -> str:
        """Content and the first embed's visible text, joined."""
        embed = self.embed
        parts = [self.content, str(embed.get("title") or ""), str(embed.get("description") or "")]
        parts += [f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields") or []]
        footer = embed.get("footer") or {}
        parts.append(str(footer.get("text") or ""))
        return "\n".join(p for p in parts if p)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for row in self.payload.get("components") or []:
            out.extend(c for c in row.get("components", []) if c.get("type") == 2)
        return out


@dataclass
class Reply:
    """What the bot answered to one interaction."""

    kind: int
    content: str
    embeds: list[dict[str, Any]]
    ephemeral: bool
    choices: list[dict[str, Any]]

    @property
    def text(self) -> str:
        parts = [self.content]
        for embed in self.embeds:
            parts += [str(embed.get("title") or ""), str(embed.get("description") or "")]
            parts += [f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields") or []]
        return "\n".join(p for p in parts if p)


class FakeDiscord:
    """The REST half of Discord, recording what the bot sends, and a gateway
    WebSocket (``/gateway``) that answers an IDENTIFY with READY.

    Args:
        refuse_token: answer the login (``GET /users/@me``) with 401.
    """

    def __init__(self, *, refuse_token: bool = False) -> None:
        self.refuse_token = refuse_token
        #: Logins asked for, and IDENTIFYs received on the gateway.
        self.logins = 0
        self.identifies = 0
        #: The ``shard`` field of each IDENTIFY ([id, count]), None when absent.
        self.identified_shards: list[list[int] | None] = []
        self.requests: list[tuple[float, str, str]] = []
        self.commands: list[dict[str, Any]] = []
        self.messages: dict[int, SentMessage] = {}
        self.replies: dict[str, list[Reply]] = {}
        #: Interactions whose "thinking..." message the bot deleted.
        self.deleted_originals: set[str] = set()
        self.reply_arrived = asyncio.Condition()
        #: Guild id -> (voice session id, token, endpoint) a voice join is given.
        self.voice_servers: dict[int, tuple[str, str, str]] = {}
        #: The voice state updates (op 4) the bot sent, in order.
        self.voice_state_updates: list[dict[str, Any]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        """Serve on 127.0.0.1:*port* (0: any free port)."""
        app = web.Application()
        app.router.add_route("*", "/api/v10/{tail:.*}", self._handle)
        app.router.add_get("/gateway", self._gateway)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    # -- queries for tests --------------------------------------------------------------

    def channel_messages(self, channel_id: int) -> list[SentMessage]:
        return [m for m in self.messages.values() if m.channel_id == channel_id]

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for _, m, p in self.requests if m == method and p.startswith(prefix))

    async def reply_to(self, token: str, within: float = 20.0) -> Reply:
        """The final answer to the interaction with *token* (a message, an
        autocomplete result, or an acknowledgement of a button)."""
        async with asyncio.timeout(within):
            async with self.reply_arrived:
                await self.reply_arrived.wait_for(lambda: self._final(token) is not None)
        reply = self._final(token)
        assert reply is not None
        return reply

    def _final(self, token: str) -> Reply | None:
        for reply in self.replies.get(token, []):
            if reply.kind != 5:  # 5 = "thinking": a follow-up comes later
                return reply
        return None

    # -- the API --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        self.requests.append((time.monotonic(), request.method, path))
        body: dict[str, Any] = {}
        if request.can_read_body:
            if request.content_type.startswith("multipart/"):
                reader = await request.multipart()
                while (part := await reader.next()) is not None:
                    if getattr(part, "name", None) == "payload_json":
                        body = json.loads(await part.text())  # type: ignore[union-attr]
            else:
                raw = await request.read()
                body = json.loads(raw) if raw else {}
        parts = path.strip("/").split("/")
        match request.method, parts:
            case "GET", ["users", "@me"]:
                self.logins += 1
                if self.refuse_token:
                    return _json({"message": "401: Unauthorized", "code": 0}, status=401)
                return _json(_user(BOT_USER_ID, "audiogate", bot=True))
            case "GET", ["oauth2", "applications", "@me"]:
                return _json(self._application())
            case ("PUT", ["applications", _, "commands"]) | (
                    "PUT", ["applications", _, "guilds", _, "commands"]):
                self.commands = [dict(c, id=str(snowflake()), application_id=str(APPLICATION_ID),
                                      version="1") for c in body]  # type: ignore[arg-type]
                return _json(self.commands)
            case "POST", ["interactions", interaction_id, token, "callback"]:
                await self._record(token, body.get("type", 0), body.get("data") or {})
                return _json({"interaction": {"id": interaction_id,
                                                          "type": 2}})
            case "POST", ["webhooks", _, token]:
                await self._record(token, 4, body)
                return _json(self._message(snowflake(), 0, body))
            case "DELETE", ["webhooks", _, token, "messages", "@original"]:
                self.deleted_originals.add(token)
                return web.Response(status=204)
            case "PATCH", ["webhooks", _, token, "messages", "@original"]:
                await self._record(token, 4, body)
                return _json(self._message(snowflake(), 0, body))
            case "POST", ["channels", channel_id, "messages"]:
                message = SentMessage(snowflake(), int(channel_id), body)
                self.messages[message.id] = message
                return _json(self._message(message.id, message.channel_id, body))
            case "PATCH", ["channels", channel_id, "messages", message_id]:
                sent = self.messages.get(int(message_id))
                if sent is None:
                    return _json({"message": "Unknown Message", "code": 10008},
                                             status=404)
                sent.history.append(dict(sent.payload))
                sent.payload = {**sent.payload, **body}
                sent.edits += 1
                return _json(self._message(sent.id, sent.channel_id, sent.payload))
            case "DELETE", ["channels", _, "messages", message_id]:
                self.messages.pop(int(message_id), None)
                return web.Response(status=204)
            case _:
                return _json({"message": f"not faked: {request.method} {path}",
                                          "code": 0}, status=404)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        # Text frames: discord.py inflates only binary ones.
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 45_000}}))
        sequence = itertools.count(2)
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            payload = json.loads(message.data)
            if payload.get("op") == 2:  # IDENTIFY
                self.identifies += 1
                shard = payload.get("d", {}).get("shard")
                self.identified_shards.append(list(shard) if shard is not None else None)
                ready: dict[str, Any] = {
                    "v": 10, "user": _user(BOT_USER_ID, "audiogate", bot=True), "guilds": [],
                    "session_id": "fake-session",
                    "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                    "application": {"id": str(APPLICATION_ID), "flags": 0},
                }
                if shard is not None:
                    ready["shard"] = shard  # Discord echoes the shard identified
                await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": 1, "d": ready}))
            elif payload.get("op") == 1:  # heartbeat
                await ws.send_str(json.dumps({"op": 11}))
            elif payload.get("op") == 4:  # voice state update
                for event, data in self._voice_join(payload["d"]):
                    await ws.send_str(json.dumps({"op": 0, "t": event, "s": next(sequence),
                                                  "d": data}))
        return ws

    def _voice_join(self, request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """Discord's answers to the bot's voice state update *request*."""
        self.voice_state_updates.append(request)
        guild_id = int(request["guild_id"])
        channel = request.get("channel_id")
        server = self.voice_servers.get(guild_id)
        session_id = server[0] if server is not None else "no-voice-server"
        state = {
            "guild_id": str(guild_id), "channel_id": channel, "user_id": str(BOT_USER_ID),
            "session_id": session_id, "deaf": False, "mute": False,
            "self_deaf": bool(request.get("self_deaf")),
            "self_mute": bool(request.get("self_mute")), "self_video": False,
            "suppress": False, "request_to_speak_timestamp": None,
            "member": {"user": _user(BOT_USER_ID, "audiogate", bot=True), "roles": [],
                       "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False,
                       "mute": False, "flags": 0, "nick": None, "avatar": None},
        }
        answers: list[tuple[str, dict[str, Any]]] = [("VOICE_STATE_UPDATE", state)]
        if channel is not None and server is not None:
            answers.append(("VOICE_SERVER_UPDATE", {"guild_id": str(guild_id),
                                                    "token": server[1], "endpoint": server[2]}))
        return answers

    async def _record(self, token: str, kind: int, data: dict[str, Any]) -> None:
        reply = Reply(
            kind=kind,
            content=str(data.get("content") or ""),
            embeds=list(data.get("embeds") or []),
            ephemeral=bool(int(data.get("flags") or 0) & 64),
            choices=list(data.get("choices") or []),
        )
        async with self.reply_arrived:
            self.replies.setdefault(token, []).append(reply)
            self.reply_arrived.notify_all()

    @staticmethod
    def _application() -> dict[str, Any]:
        return {"id": str(APPLICATION_ID), "name": "audiogate", "icon": None,
                "description": "", "rpc_origins": [], "bot_public": True,
                "bot_require_code_grant": False, "summary": "", "verify_key": "0" * 64,
                "flags": 0, "owner": _user(1, "owner"), "team": None,
                "interactions_endpoint_url": None}

    @staticmethod
    def _message(message_id: int, channel_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": str(message_id), "channel_id": str(channel_id), "type": 0,
            "content": body.get("content") or "", "embeds": body.get("embeds") or [],
            "components": body.get("components") or [], "attachments": [],
            "author": _user(BOT_USER_ID, "audiogate", bot=True), "mentions": [],
            "mention_roles": [], "mention_everyone": False, "pinned": False, "tts": False,
            "timestamp": "2025-01-01T00:00:00+00:00", "edited_timestamp": None,
            "flags": int(body.get("flags") or 0),
        }


@dataclass
class Member:
    """A person in the test guild."""

    id: int
    name: str
    roles: list[int] = field(default_factory=list)
    #: Discord permission bits; 0x20 = Manage Server.
    permissions: int = 0

    def payload(self) -> dict[str, Any]:
        return {"user": _user(self.id, self.name), "roles": [str(r) for r in self.roles],
                "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False, "mute": False,
                "flags": 0, "nick": None, "avatar": None,
                "permissions": str(self.permissions)}


class DiscordWorld:
    """One guild with a text channel and two voice channels, and the gateway events
    Discord would send about it."""

    def __init__(self, client: discord.Client, api: FakeDiscord, guild_id: int) -> None:
        self.client = client
        self.api = api
        self.guild_id = guild_id
        self.text_channel = snowflake()
        #: A second text channel (``/settings announce``).
        self.text_b = snowflake()
        self.voice_a = snowflake()
        self.voice_b = snowflake()
        self.dj_role = snowflake()
        self._voice: dict[int, int | None] = {}

    @property
    def state(self) -> Any:
        return self.client._connection

    def create_guild(self, members: list[Member]) -> None:
        """GUILD_CREATE for the guild, with its channels and roles."""
        everyone = {"id": str(self.guild_id), "name": "@everyone", "permissions": str(0x3FFFFFFF),
                    "position": 0, "color": 0, "hoist": False, "managed": False,
                    "mentionable": False, "flags": 0}
        dj = dict(everyone, id=str(self.dj_role), name="DJ", position=1)
        channel = {"guild_id": str(self.guild_id), "position": 0, "permission_overwrites": [],
                   "nsfw": False, "parent_id": None}
        self.state.parse_guild_create({
            "id": str(self.guild_id), "name": "test guild", "icon": None, "owner_id": "1",
            "region": "", "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0,
            "roles": [everyone, dj], "emojis": [], "stickers": [], "features": [],
            "mfa_level": 0, "application_id": None, "system_channel_id": None,
            "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None,
            "description": None, "banner": None, "premium_tier": 0,
            "preferred_locale": "en-US", "public_updates_channel_id": None, "nsfw_level": 0,
            "premium_progress_bar_enabled": False, "large": False, "unavailable": False,
            "member_count": len(members) + 1, "voice_states": [], "presences": [],
            "threads": [], "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "members": [m.payload() for m in members],
            "channels": [
                dict(channel, id=str(self.text_channel), type=0, name="music", topic=None,
                     last_message_id=None, rate_limit_per_user=0),
                dict(channel, id=str(self.text_b), type=0, name="now-playing", topic=None,
                     last_message_id=None, rate_limit_per_user=0),
                dict(channel, id=str(self.voice_a), type=2, name="Voice A", bitrate=64000,
                     user_limit=0, rtc_region=None),
                dict(channel, id=str(self.voice_b), type=2, name="Voice B", bitrate=64000,
                     user_limit=0, rtc_region=None),
            ],
        })

    def voice_channel(self, channel_id: int) -> Any:
        guild = self.client.get_guild(self.guild_id)
        assert guild is not None
        return guild.get_channel(channel_id)

    def move(self, member: Member, channel_id: int | None) -> None:
        """VOICE_STATE_UPDATE: *member* joined, moved to or left (None) a channel."""
        self._voice[member.id] = channel_id
        self.state.parse_voice_state_update({
            "guild_id": str(self.guild_id), "channel_id": str(channel_id) if channel_id else None,
            "user_id": str(member.id), "member": member.payload(), "session_id": "s",
            "deaf": False, "mute": False, "self_deaf": False, "self_mute": False,
            "self_video": False, "suppress": False, "request_to_speak_timestamp": None,
        })

    # -- interactions -----------------------------------------------------------------------

    def _interaction(self, kind: int, member: Member, data: dict[str, Any],
                     **extra: Any) -> tuple[str, dict[str, Any]]:
        token = f"token-{snowflake()}"
        return token, {
            "id": str(snowflake()), "application_id": str(APPLICATION_ID), "type": kind,
            "data": data, "guild_id": str(self.guild_id),
            "channel": {"id": str(self.text_channel), "type": 0, "name": "music",
                        "guild_id": str(self.guild_id)},
            "channel_id": str(self.text_channel), "member": member.payload(), "token": token,
            "version": 1, "locale": "en-US", "guild_locale": "en-US",
            "app_permissions": str(0x3FFFFFFF), "entitlements": [],
            "authorizing_integration_owners": {}, "context": 0,
            "attachment_size_limit": 8 * 1024 * 1024, **extra,
        }

    async def command(self, member: Member, name: str, /, *, within: float = 30.0,
                      **options: Any) -> Reply:
        """Run ``/name option=value ...`` as *member*; returns the bot's answer.
        A subcommand is given as ``name="settings dj"``; a role as ``("role", id)``, a
        channel as ``("channel", id)``, an uploaded file as ``("attachment", {"url":
        ..., "filename": ..., "size": ..., "content_type": ...})``."""
        token = self.send_command(member, name, **options)
        return await self.api.reply_to(token, within)

    def send_command(self, member: Member, name: str, /, *, focused: str | None = None,
                     **options: Any) -> str:
        """Deliver the interaction without waiting; returns its token."""
        words = name.split()
        resolved: dict[str, Any] = {}
        opts = [self._option(k, v, resolved, focused == k) for k, v in options.items()]
        for sub in reversed(words[1:]):
            opts = [{"name": sub, "type": 1, "options": opts}]
        data: dict[str, Any] = {"id": self._command_id(words[0]), "name": words[0], "type": 1,
                                "options": opts, "guild_id": str(self.guild_id)}
        if resolved:
            data["resolved"] = resolved
        token, payload = self._interaction(4 if focused else 2, member, data)
        self.state.parse_interaction_create(payload)
        return token

    async def autocomplete(self, member: Member, name: str, option: str, value: str,
                           within: float = 30.0) -> list[dict[str, Any]]:
        """Type *value* into *option* of ``/name``; returns the choices offered."""
        token = self.send_command(member, name, focused=option, **{option: value})
        return (await self.api.reply_to(token, within)).choices

    async def press(self, member: Member, message: SentMessage, custom_id: str,
                    within: float = 30.0) -> Reply:
        """Press the button *custom_id* of *message*."""
        message_payload = FakeDiscord._message(message.id, message.channel_id, message.payload)
        token, payload = self._interaction(3, member, {"custom_id": custom_id,
                                                       "component_type": 2},
                                           message=message_payload)
        self.state.parse_interaction_create(payload)
        return await self.api.reply_to(token, within)

    def _command_id(self, name: str) -> str:
        for command in self.api.commands:
            if command["name"] == name:
                return str(command["id"])
        raise AssertionError(f"/{name} was not registered with Discord")

    def _option(self, name: str, value: Any, resolved: dict[str, Any],
                focused: bool) -> dict[str, Any]:
        option: dict[str, Any] = {"name": name}
        match value:
            case bool():
                option.update(type=5, value=value)
            case int():
                option.update(type=4, value=value)
            case float():
                option.update(type=10, value=value)
            case ("role", role_id):
                option.update(type=8, value=str(role_id))
                resolved.setdefault("roles", {})[str(role_id)] = {
                    "id": str(role_id), "name": "DJ", "permissions": "0", "position": 1,
                    "color": 0, "hoist": False, "managed": False, "mentionable": False,
                    "flags": 0}
            case ("channel", channel_id):
                option.update(type=7, value=str(channel_id))
                resolved.setdefault("channels", {})[str(channel_id)] = {
                    "id": str(channel_id), "name": "now-playing", "type": 0,
                    "permissions": str(0x3FFFFFFF), "guild_id": str(self.guild_id)}
            case ("attachment", dict() as attachment):
                attachment_id = str(snowflake())
                option.update(type=11, value=attachment_id)
                resolved.setdefault("attachments", {})[attachment_id] = {
                    "id": attachment_id, "proxy_url": attachment["url"], **attachment}
            case _:
                option.update(type=3, value=str(value))
        if focused:
            option["focused"] = True
        return option


@contextmanager
def discord_api_base(base: str) -> Iterator[None]:
    """Point discord.py's REST routes at *base* for the duration."""
    original = Route.BASE
    Route.BASE = base
    try:
        yield
    finally:
        Route.BASE = original


@contextmanager
def discord_gateway(port: int) -> Iterator[None]:
    """Point discord.py's REST routes and its gateway connection at a
    ``FakeDiscord`` on 127.0.0.1:*port* (which need not be listening yet)."""
    original = DiscordWebSocket.DEFAULT_GATEWAY
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{port}/gateway")
    try:
        with discord_api_base(f"http://127.0.0.1:{port}/api/v10"):
            yield
    finally:
        DiscordWebSocket.DEFAULT_GATEWAY = original


@asynccontextmanager
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    api = FakeDiscord()
    await api.start()
    try:
        with discord_api_base(api.base):
            yield api
    finally:
        await api.close()
