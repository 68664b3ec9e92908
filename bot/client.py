"""The Discord client: slash commands registered on start, voice state handling.

Runs inside the gateway process, on the gateway's event loop, so commands reach
the shared players and router directly; ``bot.service`` logs it in and retries.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import discord
from discord import app_commands

from bot.commands import MusicCommands
from bot.controls import ControlButton
from bot.guild_settings import GuildSettingsStore
from bot.search import Search, Searcher, engine_searcher
from bot.sound import EQUALIZER_HELP
from bot.voice import VoiceBridge, VoiceClientLike
from gateway.player import LoopMode
from gateway.related import RelatedTracks
from gateway.runtime import Gateway
from protocol.filter_presets import Preset, preset_choices

__all__ = ["MusicBot"]

log = logging.getLogger(__name__)


class MusicBot(discord.AutoShardedClient):
    """discord.py client with the music commands, sharded as Discord expects.

    The shard count and this process's shard ids come from the gateway's
    settings (``GATEWAY_DISCORD_SHARD_COUNT``, ``GATEWAY_DISCORD_SHARD_IDS``):
    several gateway processes with the same count and disjoint ids split the
    guilds between them, each with its own players and engine nodes. One process
    with the defaults runs the single shard 0 of 1.

    Args:
        gateway: players, router, engine client; its settings give the bot's
            (``bot_leave_after``, ``bot_playlist_limit``, the database file).
        sync_guild: register the commands in this guild only (instant).
        connect: opens voice connections (Discord's by default).
        searcher: runs searches (the engine's ``/search`` by default).
        search: the whole search front (tests tune its limits); built from
            *searcher* when None.
        voice_bridge: the voice connections to use; ``BotService`` shares one
            between the clients of successive login attempts. Built from
            *connect* when None.
        related: where autoplay finds related tracks (YouTube's mixes through the
            engine's ``/playlist`` when None).
    """

    def __init__(self, gateway: Gateway, *, sync_guild: int | None = None,
                 connect: Callable[[Any], Awaitable[VoiceClientLike]] | None = None,
                 searcher: Searcher | None = None, search: Search | None = None,
                 voice_bridge: VoiceBridge | None = None,
                 related: RelatedTracks | None = None) -> None:
        intents = discord.Intents.default()
        intents.voice_states = True
        settings = gateway.settings
        shard_ids = settings.shard_ids
        if shard_ids is not None:
            super().__init__(intents=intents, shard_count=settings.discord_shard_count,
                             shard_ids=shard_ids)
        else:
            super().__init__(intents=intents, shard_count=settings.discord_shard_count or None)
        self.gateway = gateway
        if voice_bridge is not None:
            self.voice_bridge = voice_bridge
        else:
            self.voice_bridge = (VoiceBridge(gateway) if connect is None
                                 else VoiceBridge(gateway, connect=connect))
        self.guild_settings = GuildSettingsStore(gateway.database)
        self.handlers = MusicCommands(
            gateway, self.voice_bridge, settings=self.guild_settings,
            search=search if search is not None else Search(
                searcher if searcher is not None else engine_searcher(gateway.engine)),
            playlist_limit=settings.bot_playlist_limit, leave_after=settings.bot_leave_after,
            max_upload_mb=settings.bot_max_upload_mb, related=related,
        )
        self.tree = app_commands.CommandTree(self)
        self._sync_guild = sync_guild
        _register(self.tree, self.handlers)
        # The now-playing buttons: matched by their custom ids, so they keep
        # working on messages posted before a restart.
        self.add_dynamic_items(ControlButton)

    async def setup_hook(self) -> None:
        """Register the slash commands (one guild, instantly, when configured)."""
        if self._sync_guild is not None:
            guild = discord.Object(id=self._sync_guild)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to guild %s", len(synced), self._sync_guild)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands (may take up to an hour to appear)",
                     len(synced))

    async def on_ready(self) -> None:
        """Log in line."""
        log.info("Discord bot logged in as %s (shards %s of %s)", self.user,
                 ",".join(str(i) for i in sorted(self.shards)), self.shard_count)

    async def on_voice_state_update(self, member: discord.Member, before: discord.VoiceState,
                                    after: discord.VoiceState) -> None:
        """Our own member left voice (kicked, channel deleted): stop that guild.
        Anyone else: count who is still listening with the bot."""
        await self.handlers.voice_state_changed(
            member, before, after, bot_user_id=self.user.id if self.user else None)

    async def close(self) -> None:
        """Leave voice everywhere, then log out."""
        await self.handlers.close()
        await self.voice_bridge.close()
        await super().close()
        await self.guild_settings.aclose()


def _register(tree: app_commands.CommandTree[Any], handlers: MusicCommands) -> None:
    @tree.command(name="play", description="Play a link, a playlist, the best search result "
                                            "or an uploaded audio file")
    @app_commands.describe(query="a link, or words to search for (suggestions as you type)",
                           now="play it at once instead of adding it to the queue",
                           file="an audio file to play (mp3, ogg, opus, flac, wav, m4a)")
    async def play(interaction: discord.Interaction, query: str | None = None,
                   now: bool = False, file: discord.Attachment | None = None) -> None:
        await handlers.play(interaction, query, now, file)

    @play.autocomplete("query")
    async def play_suggestions(interaction: discord.Interaction, current: str
                               ) -> list[app_commands.Choice[str]]:
        return await handlers.autocomplete_query(interaction, current)

    @tree.command(name="playnext", description="Put a track right after the current one")
    @app_commands.describe(query="a link, or words to search for (suggestions as you type)")
    async def playnext(interaction: discord.Interaction, query: str) -> None:
        await handlers.playnext(interaction, query)

    @playnext.autocomplete("query")
    async def playnext_suggestions(interaction: discord.Interaction, current: str
                                   ) -> list[app_commands.Choice[str]]:
        return await handlers.autocomplete_query(interaction, current)

    @tree.command(name="join", description="Come to your voice channel")
    async def join(interaction: discord.Interaction) -> None:
        await handlers.voice_commands.join(interaction)

    @tree.command(name="leave", description="Leave the voice channel, keeping the queue")
    async def leave(interaction: discord.Interaction) -> None:
        await handlers.voice_commands.leave(interaction)

    @tree.command(name="voteskip", description="Vote to skip (more than half of the "
                                                "listeners skip)")
    async def voteskip(interaction: discord.Interaction) -> None:
        await handlers.voice_commands.voteskip(interaction)

    @tree.command(name="stop", description="Stop, clear the queue and leave the channel")
    async def stop(interaction: discord.Interaction) -> None:
        await handlers.stop(interaction)

    @tree.command(name="pause", description="Pause")
    async def pause(interaction: discord.Interaction) -> None:
        await handlers.pause(interaction)

    @tree.command(name="resume", description="Resume (I join your voice channel if needed)")
    async def resume(interaction: discord.Interaction) -> None:
        await handlers.resume(interaction)

    @tree.command(name="skip", description="Play the next track")
    async def skip(interaction: discord.Interaction) -> None:
        await handlers.skip(interaction)

    @tree.command(name="previous", description="Play the previous track again")
    async def previous(interaction: discord.Interaction) -> None:
        await handlers.previous(interaction)

    @tree.command(name="jump", description="Play a track of the queue now")
    @app_commands.describe(position="its number in /queue")
    async def jump(interaction: discord.Interaction,
                   position: app_commands.Range[int, 1, 10000]) -> None:
        await handlers.jump(interaction, position)

    @tree.command(name="forward", description="Jump forward within the track")
    @app_commands.describe(seconds="how many seconds")
    async def forward(interaction: discord.Interaction,
                      seconds: app_commands.Range[int, 1, 86400]) -> None:
        await handlers.forward(interaction, seconds)

    @tree.command(name="rewind", description="Jump back within the track")
    @app_commands.describe(seconds="how many seconds")
    async def rewind(interaction: discord.Interaction,
                     seconds: app_commands.Range[int, 1, 86400]) -> None:
        await handlers.rewind(interaction, seconds)

    @tree.command(name="seek", description="Jump within the track")
    @app_commands.describe(position="90, 1:30 or 1:02:30")
    async def seek(interaction: discord.Interaction, position: str) -> None:
        await handlers.seek(interaction, position)

    @tree.command(name="remove", description="Remove a track from the queue")
    @app_commands.describe(position="its number in /queue")
    async def remove(interaction: discord.Interaction,
                   position: app_commands.Range[int, 1, 10000]) -> None:
        await handlers.remove(interaction, position)

    @tree.command(name="move", description="Move a track within the queue")
    @app_commands.describe(position="its number in /queue", to="its new number")
    async def move(interaction: discord.Interaction, position: app_commands.Range[int, 1, 10000],
                   to: app_commands.Range[int, 1, 10000]) -> None:
        await handlers.move(interaction, position, to)

    @tree.command(name="clear", description="Remove every track coming up")
    async def clear(interaction: discord.Interaction) -> None:
        await handlers.clear(interaction)

    @tree.command(name="removedupes", description="Remove tracks queued twice (the first "
                                                   "stays)")
    async def removedupes(interaction: discord.Interaction) -> None:
        await handlers.removedupes(interaction)

    @tree.command(name="shuffle", description="Mix the tracks coming up")
    async def shuffle(interaction: discord.Interaction) -> None:
        await handlers.shuffle(interaction)

    @tree.command(name="loop", description="Loop nothing, this track, or the whole queue")
    @app_commands.describe(mode="off, track or queue")
    async def loop(interaction: discord.Interaction,
                   mode: Literal["off", "track", "queue"]) -> None:
        await handlers.loop(interaction, LoopMode(mode))

    @tree.command(name="autoplay", description="When the queue runs out, play related tracks")
    @app_commands.describe(mode="on or off")
    async def autoplay(interaction: discord.Interaction, mode: Literal["on", "off"]) -> None:
        await handlers.autoplay_mode(interaction, mode == "on")

    @tree.command(name="volume", description="Show the volume, or set it")
    @app_commands.describe(percent="0 to 200 (leave it out to see the volume)")
    async def volume(interaction: discord.Interaction,
                     percent: app_commands.Range[int, 0, 200] | None = None) -> None:
        await handlers.volume(interaction, percent)

    @tree.command(name="filter", description="Change how the music sounds: a preset, or your "
                                              "own equalizer, speed and pitch")
    @app_commands.describe(preset=preset_choices(serial_comma=False), equalizer=EQUALIZER_HELP,
                           speed="tempo, 0.25 to 4 (1: as made)",
                           pitch="pitch, 0.25 to 4 (1: as made)")
    @app_commands.choices(preset=[app_commands.Choice(name=p.value, value=p.value)
                                  for p in Preset])
    async def filter_(interaction: discord.Interaction, preset: str | None = None,
                      equalizer: app_commands.Range[str, 1, 200] | None = None,
                      speed: app_commands.Range[float, 0.25, 4.0] | None = None,
                      pitch: app_commands.Range[float, 0.25, 4.0] | None = None) -> None:
        await handlers.filter(interaction, Preset(preset) if preset else None, equalizer,
                              speed, pitch)

    @tree.command(name="crossfade", description="Fade each next track in over the last one")
    @app_commands.describe(seconds="0 to 12 (0: no fade, no gap)")
    async def crossfade(interaction: discord.Interaction,
                        seconds: app_commands.Range[int, 0, 12]) -> None:
        await handlers.crossfade(interaction, seconds)

    @tree.command(name="queue", description="What is coming up")
    @app_commands.describe(page="page number")
    async def queue(interaction: discord.Interaction,
                    page: app_commands.Range[int, 1, 1000] = 1) -> None:
        await handlers.info.queue(interaction, page)

    @tree.command(name="history", description="What played here, the latest first")
    @app_commands.describe(page="page number")
    async def history(interaction: discord.Interaction,
                      page: app_commands.Range[int, 1, 1000] = 1) -> None:
        await handlers.info.history(interaction, page)

    @tree.command(name="nowplaying", description="The current track and its progress")
    async def nowplaying(interaction: discord.Interaction) -> None:
        await handlers.info.nowplaying(interaction)

    @tree.command(name="lyrics", description="The words of the current track")
    async def lyrics(interaction: discord.Interaction) -> None:
        await handlers.info.lyrics(interaction)

    @tree.command(name="status", description="The audio engine's health")
    async def status(interaction: discord.Interaction) -> None:
        await handlers.info.status(interaction)

    @tree.command(name="help", description="What the bot can do")
    async def help_(interaction: discord.Interaction) -> None:
        await handlers.info.help(interaction)

    settings = app_commands.Group(
        name="settings", description="The bot's settings for this server",
        default_permissions=discord.Permissions(manage_guild=True), guild_only=True)

    @settings.command(name="dj", description="Set the DJ role (leave it out: no DJ role)")
    @app_commands.describe(role="members with it may skip, stop and change the queue")
    async def settings_dj(interaction: discord.Interaction,
                          role: discord.Role | None = None) -> None:
        await handlers.settings_commands.dj(interaction, role)

    @settings.command(name="stay", description="24/7: stay in voice when nobody listens")
    @app_commands.describe(on="true: stay; false: pause and leave after a while")
    async def settings_stay(interaction: discord.Interaction, on: bool) -> None:
        await handlers.settings_commands.stay(interaction, on)

    @settings.command(name="volume", description="The volume playback starts at when I join "
                                                  "with nothing queued")
    @app_commands.describe(percent="0 to 200 (leave it out: as the last session left it)")
    async def settings_volume(interaction: discord.Interaction,
                              percent: app_commands.Range[int, 0, 200] | None = None) -> None:
        await handlers.settings_commands.volume(interaction, percent)

    @settings.command(name="announce", description="Where now-playing messages go")
    @app_commands.describe(channel="a text channel (leave it out: where playback is started)")
    async def settings_announce(interaction: discord.Interaction,
                                channel: discord.TextChannel | None = None) -> None:
        await handlers.settings_commands.announce(interaction, channel)

    @settings.command(name="show", description="Show this server's settings")
    async def settings_show(interaction: discord.Interaction) -> None:
        await handlers.settings_commands.show(interaction)

    tree.add_command(settings)

    playlists = app_commands.Group(name="playlist", description="Your own saved playlists")
    names = handlers.playlist_commands.names

    @playlists.command(name="save", description="Save the current track and the queue after it")
    @app_commands.describe(name="the playlist's name (an existing one is replaced)")
    async def playlist_save(interaction: discord.Interaction,
                            name: app_commands.Range[str, 1, 50]) -> None:
        await handlers.playlist_commands.save(interaction, name)

    @playlists.command(name="load", description="Queue one of your playlists here")
    @app_commands.describe(name="one of your playlists",
                           now="play its first track at once")
    async def playlist_load(interaction: discord.Interaction,
                            name: app_commands.Range[str, 1, 50], now: bool = False) -> None:
        await handlers.playlist_commands.load(interaction, name, now)

    @playlists.command(name="list", description="Your playlists")
    async def playlist_list(interaction: discord.Interaction) -> None:
        await handlers.playlist_commands.listing(interaction)

    @playlists.command(name="delete", description="Delete one of your playlists")
    @app_commands.describe(name="one of your playlists")
    async def playlist_delete(interaction: discord.Interaction,
                              name: app_commands.Range[str, 1, 50]) -> None:
        await handlers.playlist_commands.delete(interaction, name)

    playlist_save.autocomplete("name")(names)
    playlist_load.autocomplete("name")(names)
    playlist_delete.autocomplete("name")(names)

    tree.add_command(playlists)

