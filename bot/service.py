"""The bot's life: logging in, retrying with backoff, and saying whether it is up.

``BotService.run`` logs in and stays connected until ``close``. A login that
fails for a reason that may pass (Discord unreachable, a 5xx, a dropped gateway
connection) is retried after a jittered, doubling delay; a refused token, or a
gateway close code that says the configuration is wrong, ends the attempts for
good and ``readiness`` says so (``/ready`` of the gateway answers 503 with it).
Any other exception (a bug) is logged with its traceback and retried the same
way: the bot is supervised, and its failure never takes the gateway down.

discord.py's ``Client`` cannot be started again once closed, so each attempt
uses a fresh client (closed after it, leaving the gateway's metrics); the voice
connections (``VoiceBridge``) are shared by all of them. Once logged in,
discord.py keeps the gateway connection up by itself, so attempts follow only a
failed login, a close code, or a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from enum import StrEnum

import aiohttp
import discord
from prometheus_client.core import Metric

from bot.client import MusicBot
from bot.voice import VoiceBridge
from gateway.metrics import counter, gauge
from gateway.runtime import Gateway
from lifecycle import Backoff

__all__ = ["FATAL_CLOSE_CODES", "BotService", "BotState"]

log = logging.getLogger(__name__)

#: Gateway close codes after which trying again cannot help (Discord's docs:
#: authentication failed, invalid shard, sharding required, invalid API version,
#: invalid intents, disallowed intents).
FATAL_CLOSE_CODES = frozenset({4004, 4010, 4011, 4012, 4013, 4014})

#: What may pass by itself: the network, Discord's servers, a dropped gateway.
_TRANSIENT: tuple[type[BaseException], ...] = (
    discord.HTTPException, discord.GatewayNotFound, discord.ConnectionClosed,
    aiohttp.ClientError, OSError, TimeoutError,
)


class BotState(StrEnum):
    """Where the bot's login stands."""

    LOGGING_IN = "logging in"  # an attempt is under way (or connected: see readiness)
    RETRYING = "retrying"  # waiting before the next attempt
    REFUSED = "refused"
    STOPPED = "stopped"


class BotService:
    """Runs the Discord bot of one gateway.

    Args:
        gateway: the players and router the commands drive.
        token: the bot token (never logged).
        sync_guild: sync slash commands to this guild only.
        backoff_initial: first delay before a new attempt (seconds).
        backoff_max: longest delay between attempts.
        client_factory: builds a client for an attempt (tests point it at a
            stand-in for Discord's servers).
    """

    def __init__(
        self,
        gateway: Gateway,
        token: str,
        *,
        sync_guild: int | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        client_factory: Callable[[Gateway, VoiceBridge, int | None], MusicBot] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.gateway = gateway
        self._token = token
        self.sync_guild = sync_guild
        #: Delays between attempts: doubling, jittered by ±50 %.
        self.backoff = Backoff(backoff_initial, cap=backoff_max, jitter=0.5, rng=rng)
        self._factory = client_factory or _music_bot
        self.voice = VoiceBridge(gateway)
        self.state = BotState.LOGGING_IN
        #: Login attempts made, and attempts that failed.
        self.attempts = 0
        self.failures = 0
        #: Why the latest attempt failed (for /ready; never contains the token).
        self.problem = ""
        self.client: MusicBot | None = None
        self._closing = asyncio.Event()
        gateway.metrics.add_source(self._metric_families)

    def readiness(self) -> str | None:
        """None when logged in and connected, else why not."""
        client = self.client
        if self.state is BotState.LOGGING_IN and client is not None and client.is_ready() \
                and not client.is_closed():
            return None
        match self.state:
            case BotState.REFUSED:
                return f"the Discord bot is off: {self.problem}"
            case BotState.RETRYING:
                return (f"the Discord bot is not logged in ({self.problem}); "
                        f"retrying, attempt {self.attempts + 1} next")
            case BotState.STOPPED:
                return "the Discord bot has stopped"
            case _:
                return "the Discord bot is logging in"

    async def run(self) -> None:
        """Log in and stay connected until ``close``; retry what may pass.
        Returns after ``close`` or a final refusal. Cancelling is safe."""
        try:
            while not self._closing.is_set():
                client = self.client = self._factory(self.gateway, self.voice, self.sync_guild)
                self.attempts += 1
                self.state = BotState.LOGGING_IN
                try:
                    if not await self._attempt(client) or self._closing.is_set():
                        return
                finally:
                    await client.close()
                wait = self.backoff.next()
                log.warning("Discord bot: %s; trying again in %.1f s (attempt %d)",
                            self.problem, wait, self.attempts + 1)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._closing.wait()
        finally:
            if self.state is not BotState.REFUSED:
                self.state = BotState.STOPPED

    async def _attempt(self, client: MusicBot) -> bool:
        """One login and connection; returns whether another attempt may help.

        Once logged in, discord.py reconnects the gateway by itself, so what
        ends up here is a failed login, a close code that is final, ``close``,
        or a bug.
        """
        try:
            await client.start(self._token)
        except discord.LoginFailure:
            self._refuse("Discord refused the token; set a valid DISCORD_TOKEN")
            return False
        except discord.PrivilegedIntentsRequired:
            self._refuse("Discord refused the intents the bot asks for; enable them "
                         "for the application in Discord's developer portal")
            return False
        except discord.ConnectionClosed as exc:
            if exc.code in FATAL_CLOSE_CODES:
                self._refuse(f"Discord closed the connection for good (code {exc.code})")
                return False
            self._failed(f"the connection to Discord closed (code {exc.code})")
        except _TRANSIENT as exc:
            self._failed(_describe(exc))
        except Exception as exc:  # a bug here or in discord.py: logged, then retried
            log.exception("the Discord bot failed")
            self._failed(f"the bot failed unexpectedly ({type(exc).__name__})")
        else:
            if not self._closing.is_set():
                self._failed("the connection to Discord ended")
        return True

    def _refuse(self, problem: str) -> None:
        self.failures += 1
        self.state = BotState.REFUSED
        self.problem = problem
        log.error("Discord bot is off: %s", problem)

    def _failed(self, problem: str) -> None:
        self.failures += 1
        self.state = BotState.RETRYING
        self.problem = problem

    async def close(self) -> None:
        """Leave voice, log out, and make ``run`` return. Idempotent."""
        self._closing.set()
        await self.voice.close()
        if self.client is not None:
            await self.client.close()

    def _metric_families(self) -> Iterable[Metric]:
        yield gauge("audiogate_gateway_discord_connected",
                    "1 while the Discord bot is logged in and connected",
                    int(self.readiness() is None))
        yield counter("audiogate_gateway_discord_login_failures",
                      "Discord logins or connections that failed", self.failures)


def _music_bot(gateway: Gateway, voice: VoiceBridge, sync_guild: int | None) -> MusicBot:
    return MusicBot(gateway, sync_guild=sync_guild, voice_bridge=voice)


def _describe(exc: BaseException) -> str:
    match exc:
        case discord.HTTPException():
            return f"Discord answered HTTP {exc.status}"
        case discord.GatewayNotFound():
            return "Discord's gateway could not be found"
        case TimeoutError():
            return "Discord did not answer in time"
        case _:
            return f"Discord is unreachable ({type(exc).__name__})"
