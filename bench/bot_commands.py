"""What the bot adds to a Discord interaction (printed table, never asserted).

The real bot (discord.py's client, command tree, interactions, our handlers) answers
interactions delivered as Discord's gateway would deliver them; its answers go to a
loopback stand-in of Discord's REST API (tests/support/discord_api.py). Timed: from
handing the payload to discord.py to the answer arriving at the stand-in, so the
figure is our handlers plus discord.py plus one loopback HTTP round trip, the part
of a command's latency the bot controls (Discord's own network comes on top).

Scenarios (no audio engine needed: none of them calls it):

* ``/queue`` on a 500-track queue (the embed of one page);
* ``/nowplaying``;
* autocomplete answered from the search cache;
* autocomplete with a search that answers at once (a cache miss);
* the now-playing card: one player change observed and rendered (pure, no I/O).

Run: .venv/bin/python bench/bot_commands.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.player import Enqueue, Skip, Stop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.client import MusicBot
from bot.nowplaying import Timeline, render
from bot.search import SearchHit
from gateway.player import PlayerCore, Track
from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from loadtest.stats import format_table, summarize
from tests.support.discord_api import DiscordWorld, Member, fake_discord, snowflake


async def instant_search(query: str) -> Sequence[SearchHit]:
    return [SearchHit(f"https://example.invalid/{i}", f"{query} {i}", 180.0, "channel")
            for i in range(10)]


async def timed(world: DiscordWorld, member: Member, name: str, rounds: int,
                **options: object) -> list[float]:
    out = []
    for i in range(rounds):
        started = time.perf_counter()
        if "current" in options:
            await world.autocomplete(member, name, "query", f"{options['current']} {i}"
                                     if options.get("miss") else str(options["current"]))
        else:
            await world.command(member, name, **options)
        out.append(time.perf_counter() - started)
    return out


def card_costs(rounds: int) -> list[float]:
    core = PlayerCore("g")
    for i in range(200):
        core.apply(Enqueue(Track(f"https://example.invalid/{i}", title=f"track {i}",
                           duration=200.0, requested_by="someone")), 0.0)
    timeline = Timeline(core.view(0.0))
    out = []
    for i in range(rounds):
        if len(core.queue.upcoming) < 2:
            more = tuple(Track(f"https://example.invalid/{i}-{n}", title=f"track {n}",
                               duration=200.0) for n in range(100))
            core.apply(Enqueue(more[0], more[1:]), float(i))
        started = time.perf_counter()
        core.apply(Skip(), float(i))
        view = core.view(float(i))
        timeline.observe(view)
        render(view, timeline).key()
        out.append(time.perf_counter() - started)
    return out


async def main(rounds: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="ag-bench-"))
    settings = GatewaySettings(queue_db=":memory:", port=0, go_api_port=1,
                               socket_path=directory / "no-engine.sock")
    gateway = Gateway(settings)
    rows = []
    async with fake_discord() as api:
        bot = MusicBot(gateway, searcher=instant_search)
        await bot.login("bench-token")
        world = DiscordWorld(bot, api, snowflake())
        member = Member(snowflake(), "bench")
        world.create_guild([member])
        # A queue as it comes back from SQLite: 500 tracks, nothing plays.
        key = str(world.guild_id)
        await gateway.store.save(key, PlayerCore.restore(key, {"tracks": [
            {"url": f"https://example.invalid/{i}", "title": f"track {i}", "duration": 200.0}
            for i in range(500)]}).snapshot(0.0))
        player = gateway.players.get(key)
        await player.loaded()
        try:
            await timed(world, member, "queue", 20)  # warm-up
            for label, samples in (
                ("/queue (500 tracks)", await timed(world, member, "queue", rounds)),
                ("/nowplaying", await timed(world, member, "nowplaying", rounds)),
                ("autocomplete, cached", await timed(world, member, "play", rounds,
                                                     current="lofi beats")),
                ("autocomplete, search miss", await timed(world, member, "play", rounds,
                                                          current="lofi", miss=True)),
            ):
                rows.append((label, summarize(samples).scaled(1000)))
        finally:
            await bot.close()
            await gateway.apply(Stop(), 0.0)
    rows.append(("card: observe + render", summarize(card_costs(rounds)).scaled(1000)))
    print(f"bot interaction latency, ms ({rounds} rounds each; loopback Discord)")
    print(format_table(
        ["scenario", "mean", "p50", "p90", "p99", "max"],
        [[label, f"{s.mean:.2f}", f"{s.median:.2f}", f"{s.p90:.2f}", f"{s.p99:.2f}",
          f"{s.max:.2f}"] for label, s in rows],
    ))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    asyncio.run(main(parser.parse_args().rounds))
