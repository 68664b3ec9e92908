"""The bot sharded as Discord expects: the shard count and this process's shard
ids are settings, and each gateway identifies on its own shards only (Discord
then sends each guild's events to shard ``(guild_id >> 22) % count``)."""

from __future__ import annotations

import asyncio

import pytest

from bot import BotService
from gateway.settings import GatewaySettings, parse_shard_ids
from loadtest.processes import EngineProcess

from .support.discord_api import FakeDiscord, discord_gateway
from .support.gateway_harness import running_gateway, settings_for
from .support.waiting import poll_until_async

pytestmark = pytest.mark.timeout(60)


def test_shard_ids_parse() -> None:
    assert parse_shard_ids("") == []
    assert parse_shard_ids("0") == [0]
    assert parse_shard_ids("3, 1,2-4") == [1, 2, 3, 4]
    for bad in ("x", "4-", "5-2"):
        with pytest.raises(ValueError):
            parse_shard_ids(bad)


@pytest.mark.parametrize(
    ("count", "ids", "message"),
    [
        (2, "0,2", "has shard 2, but GATEWAY_DISCORD_SHARD_COUNT is 2"),
        (0, "1", "needs GATEWAY_DISCORD_SHARD_COUNT"),
    ],
)
def test_shard_settings_that_cannot_work_are_refused(count: int, ids: str,
                                                     message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GatewaySettings(discord_shard_count=count, discord_shard_ids=ids)


async def _true(value: bool) -> bool:
    return value


async def test_two_gateways_split_the_shards(engine: EngineProcess) -> None:
    fake = FakeDiscord()
    await fake.start()
    try:
        with discord_gateway(fake.port):
            async with running_gateway(settings_for(engine, discord_shard_count=4,
                                                    discord_shard_ids="0,1")) as first, \
                    running_gateway(settings_for(engine, discord_shard_count=4,
                                                 discord_shard_ids="2-3")) as second:
                bots = [BotService(first, "token"), BotService(second, "token")]
                runs = [asyncio.create_task(bot.run()) for bot in bots]
                try:
                    await poll_until_async(
                        lambda: _true(all(bot.readiness() is None for bot in bots)),
                        timeout=30, interval=0.05)
                    assert sorted(fake.identified_shards) == [[0, 4], [1, 4], [2, 4], [3, 4]]
                    clients = [bot.client for bot in bots]
                    assert [sorted(c.shards) for c in clients if c is not None] == \
                        [[0, 1], [2, 3]]
                finally:
                    for bot in bots:
                        await bot.close()
                    async with asyncio.timeout(20):
                        await asyncio.gather(*runs)
    finally:
        await fake.close()


async def test_one_gateway_by_default_runs_shard_zero_of_one(engine: EngineProcess) -> None:
    fake = FakeDiscord()
    await fake.start()
    try:
        with discord_gateway(fake.port):
            async with running_gateway(settings_for(engine)) as gateway:
                bot = BotService(gateway, "token")
                run = asyncio.create_task(bot.run())
                try:
                    await poll_until_async(lambda: _true(bot.readiness() is None),
                                           timeout=30, interval=0.05)
                    assert fake.identified_shards == [[0, 1]]
                finally:
                    await bot.close()
                    async with asyncio.timeout(20):
                        await run
    finally:
        await fake.close()
