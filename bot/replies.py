"""Answering an interaction, publicly or privately, whatever state it is in."""

from __future__ import annotations

import logging
from typing import Any

import discord

__all__ = ["refuse", "reply"]

log = logging.getLogger(__name__)


async def reply(interaction: Any, content: str | None = None, *,
                embed: discord.Embed | None = None, ephemeral: bool = False) -> None:
    """The answer, or a follow-up when the interaction was answered (deferred)."""
    kwargs: dict[str, Any] = {"content": content, "ephemeral": ephemeral}
    if embed is not None:
        kwargs["embed"] = embed
    if interaction.response.is_done():
        await interaction.followup.send(**kwargs)
    else:
        await interaction.response.send_message(**kwargs)


async def refuse(interaction: Any, message: str) -> None:
    """Answer privately. After a public "thinking..." (``/play`` resolving, a join)
    Discord would turn the first follow-up into that public message: delete it
    first, so the refusal stays private."""
    response_type = getattr(interaction.response, "type", None)
    if response_type is discord.InteractionResponseType.deferred_channel_message:
        try:
            await interaction.delete_original_response()
        except discord.HTTPException as exc:
            log.debug("could not delete the thinking message: %s", exc)
    await reply(interaction, message, ephemeral=True)
