"""The gateway's configuration: environment variables, or the same names as flags.

Shared names with the engine keep their Go spelling (``GO_API_PORT``,
``SOCKET_PATH``) so one environment configures both processes; the rest is
``GATEWAY_<NAME>``, and the Discord token is the conventional ``DISCORD_TOKEN``.
``python -m gateway --help`` lists every setting with its variable and default.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.nodes.config import NodeConfig, parse_nodes
from protocol import DEFAULT_API_PORT, DEFAULT_SOCKET_PATH

__all__ = ["GatewaySettings", "parse_shard_ids", "setting_default"]


def parse_shard_ids(text: str) -> list[int]:
    """Shard ids from ``"0,1"``, ``"4-7"`` or a mix (sorted, without repeats).

    Raises:
        ValueError: a part is neither a number nor a ``low-high`` range.
    """
    ids: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"{part!r} is not a shard id or a range such as 4-7")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"the range {part!r} goes backwards")
        if last - first > 65536:
            raise ValueError(f"the range {part!r} is too long")
        ids.update(range(first, last + 1))
    return sorted(ids)


def _plain_name(name: str) -> AliasChoices:
    return AliasChoices(name.lower(), name)


class GatewaySettings(BaseSettings):
    """Every knob of the gateway process (router, playground and bot)."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        extra="ignore",
        cli_prog_name="python -m gateway",
        cli_kebab_case=True,
        cli_implicit_flags=True,
    )

    go_api_port: int = Field(
        DEFAULT_API_PORT,
        ge=1,
        le=65535,
        validation_alias=_plain_name("GO_API_PORT"),
        description="port of the engine's HTTP API on engine_host [env GO_API_PORT]",
    )
    engine_host: str = Field(
        "127.0.0.1", description="host of the engine's HTTP API [env GATEWAY_ENGINE_HOST]"
    )
    socket_path: Path = Field(
        Path(DEFAULT_SOCKET_PATH),
        validation_alias=_plain_name("SOCKET_PATH"),
        description="the engine's Unix socket [env SOCKET_PATH]",
    )
    host: str = Field(
        "127.0.0.1", description="address the playground binds to [env GATEWAY_HOST]"
    )
    port: int = Field(
        8080, ge=0, le=65535, description="playground HTTP port [env GATEWAY_PORT]"
    )
    discord_token: SecretStr | None = Field(
        None,
        validation_alias=_plain_name("DISCORD_TOKEN"),
        description="Discord bot token; the bot starts only when it is set [env DISCORD_TOKEN]",
    )
    data_dir: Path = Field(
        Path("var"),
        description="where the gateway keeps its files (queues, demo track) "
        "[env GATEWAY_DATA_DIR]",
    )
    queue_db: str = Field(
        "",
        description="SQLite file of the persistent queues (default: DATA_DIR/queues.sqlite3; "
        "':memory:' keeps them in memory) [env GATEWAY_QUEUE_DB]",
    )
    queue_lock_timeout: float = Field(
        5.0,
        gt=0,
        description="seconds a locked queue database is retried before a save fails "
        "(it is retried later, never dropped) [env GATEWAY_QUEUE_LOCK_TIMEOUT]",
    )
    player_idle_timeout: float = Field(
        600.0,
        gt=0,
        description="seconds a player with nobody attached (no tab, no voice) and nothing "
        "playing stays in memory; then it is unloaded, its queue kept in the database "
        "[env GATEWAY_PLAYER_IDLE_TIMEOUT]",
    )
    room_linger: float = Field(
        60.0,
        ge=0,
        description="seconds a playground user's room outlives their last tab; then a "
        "playing player is paused and the room released [env GATEWAY_ROOM_LINGER]",
    )
    allowed_origins: str = Field(
        "",
        description="origins (scheme://host[:port], comma-separated) whose pages may open "
        "the playground's WebSocket, e.g. https://music.example.com behind a TLS proxy; "
        "default: the page's own loopback and listening addresses "
        "[env GATEWAY_ALLOWED_ORIGINS]",
    )
    ws_max_message_bytes: int = Field(
        16 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="largest WebSocket message the gateway reads (the playground parses "
        "at most 8 KiB of it and answers larger ones in words); a tab that announces more "
        "is closed (1009) before any of it is read [env GATEWAY_WS_MAX_MESSAGE_BYTES]",
    )
    ws_message_timeout: float = Field(
        10.0,
        gt=0,
        description="seconds a WebSocket message has to arrive whole from its first byte; "
        "a tab that stops mid-message is closed (1008) [env GATEWAY_WS_MESSAGE_TIMEOUT]",
    )
    playground_max_sessions: int = Field(
        0,
        ge=0,
        description="most engine sessions playground users hold at once, so the bot always "
        "finds room; 0: half the engine's own limit (50 if it does not say) "
        "[env GATEWAY_PLAYGROUND_MAX_SESSIONS]",
    )
    playground_sessions_per_address: int = Field(
        4,
        ge=1,
        description="most engine sessions playground users from one client address (an "
        "IPv6 /64) hold at once [env GATEWAY_PLAYGROUND_SESSIONS_PER_ADDRESS]",
    )
    playground_new_identities: int = Field(
        10,
        ge=1,
        description="new playground identities (cookies) one client address may get at "
        "once [env GATEWAY_PLAYGROUND_NEW_IDENTITIES]",
    )
    playground_new_identity_interval: float = Field(
        60.0,
        gt=0,
        description="seconds after which a client address may get one more identity "
        "[env GATEWAY_PLAYGROUND_NEW_IDENTITY_INTERVAL]",
    )
    playground_metadata_timeout: float = Field(
        5.0,
        gt=0,
        description="seconds a play or add from the playground waits for the engine's "
        "catalogue (title, duration, picture) before it goes ahead with the link's file "
        "name as its title [env GATEWAY_PLAYGROUND_METADATA_TIMEOUT]",
    )
    silence_timeout: float = Field(
        3.0,
        gt=0,
        description="seconds without audio for a playing session, which the engine says "
        "is streaming, before the engine socket is taken as silent and reconnected "
        "[env GATEWAY_SILENCE_TIMEOUT]",
    )
    engine_token: SecretStr | None = Field(
        None,
        validation_alias=_plain_name("ENGINE_API_TOKEN"),
        description="bearer token for the engine's API, when it requires one "
        "[env ENGINE_API_TOKEN]",
    )
    cookie_secret: SecretStr | None = Field(
        None,
        description="secret signing playground identity cookies (default: generated once "
        "into DATA_DIR/cookie_secret) [env GATEWAY_COOKIE_SECRET]",
    )
    discord_guild_id: int | None = Field(
        None,
        description="sync slash commands to this guild only (instant, for development) "
        "[env GATEWAY_DISCORD_GUILD_ID]",
    )
    engine_check_interval: float = Field(
        2.0,
        gt=0,
        description="seconds between checks that the engine's API answers (readiness) "
        "[env GATEWAY_ENGINE_CHECK_INTERVAL]",
    )
    http_request_timeout: float = Field(
        5.0,
        gt=0,
        description="seconds an HTTP connection has to deliver each whole request; "
        "half-sent requests are closed after it [env GATEWAY_HTTP_REQUEST_TIMEOUT]",
    )
    shutdown_timeout: float = Field(
        10.0,
        gt=0,
        description="seconds allowed for a graceful shutdown (queues are saved first) "
        "[env GATEWAY_SHUTDOWN_TIMEOUT]",
    )
    bot_leave_after: float = Field(
        120.0,
        ge=0,
        description="seconds the Discord bot stays in a voice channel where nobody is "
        "listening before it pauses and leaves (guilds with 24/7 on stay) "
        "[env GATEWAY_BOT_LEAVE_AFTER]",
    )
    bot_playlist_limit: int = Field(
        100,
        ge=1,
        le=400,
        description="most tracks the Discord bot queues from one playlist link "
        "[env GATEWAY_BOT_PLAYLIST_LIMIT]",
    )
    bot_max_upload_mb: int = Field(
        25,
        ge=1,
        le=500,
        description="largest uploaded audio file the Discord bot plays with /play file:, "
        "in MB (Discord's own limit for a server's uploads is 10 to 500 MB) "
        "[env GATEWAY_BOT_MAX_UPLOAD_MB]",
    )
    lyrics_url: str = Field(
        "https://lrclib.net",
        description="LRCLIB's address, where /lyrics and the now-playing message find a "
        "track's words (its /api/get and /api/search); empty: no lyrics "
        "[env GATEWAY_LYRICS_URL]",
    )
    lyrics_timeout: float = Field(
        5.0,
        gt=0,
        le=60,
        description="seconds each request to LRCLIB may take [env GATEWAY_LYRICS_TIMEOUT]",
    )
    nodes: str = Field(
        "",
        description="the engine nodes, a JSON list of {name, api, socket, token?, ca?}; "
        "socket is a Unix path, tcp://host:port or tls://host:port (docs/operations.md, "
        "'Engine nodes'); empty: one engine from GO_API_PORT, GATEWAY_ENGINE_HOST and "
        "SOCKET_PATH [env GATEWAY_NODES]",
    )
    drain_nodes: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_,\- ]*$",
        description="names of nodes that take no new sessions from the start (comma-"
        "separated) [env GATEWAY_DRAIN_NODES]",
    )
    drain_move_after: float = Field(
        600.0,
        ge=0,
        description="seconds a drained node's sessions may play on before they are moved "
        "live to other nodes (they move at their next track before that) "
        "[env GATEWAY_DRAIN_MOVE_AFTER]",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="bearer token of the admin calls (GET /admin/nodes, POST "
        "/admin/nodes/NAME/drain and /undrain); unset: they answer 404 "
        "[env GATEWAY_ADMIN_TOKEN]",
    )
    discord_shard_count: int = Field(
        1,
        ge=0,
        le=65536,
        description="Discord shards of the whole bot, across all gateway processes; 0: as "
        "many as Discord recommends (asked at login, one process only) "
        "[env GATEWAY_DISCORD_SHARD_COUNT]",
    )
    discord_shard_ids: str = Field(
        "",
        pattern=r"^[0-9,\- ]*$",
        description="the shards this gateway process runs, e.g. '0,1' or '4-7' (Discord "
        "sends each guild to shard (guild_id >> 22) % count); empty: all of them "
        "[env GATEWAY_DISCORD_SHARD_IDS]",
    )
    log_level: str = Field("INFO", description="log level [env GATEWAY_LOG_LEVEL]")
    log_json: bool = Field(False, description="write logs as JSON lines [env GATEWAY_LOG_JSON]")

    @model_validator(mode="after")
    def _nodes_parse(self) -> GatewaySettings:
        try:
            nodes = self.node_configs
        except ValueError as exc:
            text = str(exc)
            raise ValueError(text if "GATEWAY_NODES" in text else f"GATEWAY_NODES: {text}") \
                from exc
        names = {node.name for node in nodes}
        unknown = sorted(set(self.drained_nodes) - names)
        if unknown and nodes:
            raise ValueError(f"GATEWAY_DRAIN_NODES names {', '.join(unknown)}, which "
                             "GATEWAY_NODES does not list")
        if self.drained_nodes and not nodes:
            raise ValueError("GATEWAY_DRAIN_NODES needs GATEWAY_NODES")
        return self

    @property
    def node_configs(self) -> list[NodeConfig]:
        """``nodes`` parsed (empty: the single engine of the plain settings)."""
        token = self.engine_token.get_secret_value() if self.engine_token else None
        return parse_nodes(self.nodes, default_token=token or None)

    @property
    def drained_nodes(self) -> list[str]:
        """``drain_nodes`` as names."""
        return [name.strip() for name in self.drain_nodes.split(",") if name.strip()]

    @model_validator(mode="after")
    def _shards_fit(self) -> GatewaySettings:
        ids = parse_shard_ids(self.discord_shard_ids)
        if ids and self.discord_shard_count == 0:
            raise ValueError("GATEWAY_DISCORD_SHARD_IDS needs GATEWAY_DISCORD_SHARD_COUNT: "
                             "several processes must agree on the count")
        if ids and max(ids) >= self.discord_shard_count:
            raise ValueError(f"GATEWAY_DISCORD_SHARD_IDS has shard {max(ids)}, but "
                             f"GATEWAY_DISCORD_SHARD_COUNT is {self.discord_shard_count} "
                             f"(ids go from 0 to {self.discord_shard_count - 1})")
        return self

    @property
    def shard_ids(self) -> list[int] | None:
        """``discord_shard_ids`` parsed (None: every shard of the count)."""
        return parse_shard_ids(self.discord_shard_ids) or None

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for entry in (e.strip() for e in value.split(",")):
            if not entry:
                continue
            parts = urllib.parse.urlsplit(entry)
            if (parts.scheme not in ("http", "https") or not parts.hostname
                    or parts.path not in ("", "/") or parts.query or parts.fragment):
                raise ValueError(f"{entry!r} is not an origin like https://music.example.com")
        return value

    @field_validator("lyrics_url")
    @classmethod
    def _lyrics_url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value.strip())
        if value.strip() and (parts.scheme not in ("http", "https") or not parts.hostname
                              or parts.query or parts.fragment):
            raise ValueError(f"{value!r} is not an http(s) address like https://lrclib.net")
        return value.strip()

    @property
    def engine_url(self) -> str:
        """Base URL of the engine's HTTP API."""
        return f"http://{self.engine_host}:{self.go_api_port}"

    @property
    def queue_path(self) -> str:
        """Where queues are stored (a path, or ``:memory:``)."""
        return self.queue_db or str(self.data_dir / "queues.sqlite3")


def setting_default(name: str) -> Any:
    """The default of the gateway setting *name* (a field of ``GatewaySettings``): the
    one place it is written, which the parts' own defaults (used when they are built
    without settings, as the tests do) read rather than repeat."""
    return GatewaySettings.model_fields[name].default
