"""The engine client's boundary: httpx's errors and malformed answers become ours once,
with the cause kept (``raise ... from exc``), and only harmless requests are retried."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from gateway.engine_client import (
    EngineClient,
    EngineError,
    EngineOutcomeUnknown,
    EngineUnavailable,
    map_exceptions,
)

from .support.scripted_engine import ScriptedEngine

pytestmark = pytest.mark.timeout(30)


def test_map_exceptions_translates_the_first_match_and_keeps_the_cause() -> None:
    mapping = {KeyError: lambda exc: EngineError(f"mapped {exc}"),
               LookupError: lambda exc: EngineError("too late")}
    with pytest.raises(EngineError, match="mapped 'k'") as caught:
        with map_exceptions(mapping):
            raise KeyError("k")
    assert isinstance(caught.value.__cause__, KeyError)
    with pytest.raises(ZeroDivisionError):  # not in the mapping: unchanged
        with map_exceptions(mapping):
            raise ZeroDivisionError


async def test_a_request_that_never_reached_the_engine_is_retried_then_unavailable() -> None:
    engine = ScriptedEngine(features=["play_id"])
    engine.down = True
    async with engine.client() as client:
        with pytest.raises(EngineUnavailable, match="unreachable") as caught:
            await client.pause("k")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert "http://engine.test/session/k/pause" in caught.value.detail
    assert "engine.test" not in str(caught.value)  # the message may reach a user


async def test_a_cut_play_is_never_sent_again_and_a_cut_pause_is() -> None:
    engine = ScriptedEngine(features=["play_id"])
    async with engine.client() as client:
        engine.fail("play", "cut")
        with pytest.raises(EngineOutcomeUnknown) as caught:
            await client.play("k", "http://media.test/a.mp3")
        assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
        assert len(engine.calls("play")) == 1
        engine.fail("pause", "cut")
        await client.pause("k")  # harmless to repeat: the second attempt answers
        assert len(engine.calls("pause")) == 2


async def test_a_malformed_answer_is_an_engine_error_with_its_cause() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        match request.url.path:
            case "/health":
                return httpx.Response(200, json={"status": "ok"})  # fields missing
            case "/session/k/crossfade":
                return httpx.Response(200, text="not json")
            case "/session/k/next/cancel":
                return httpx.Response(200, json=["not", "an", "object"])
            case "/sessions":
                return httpx.Response(200, json={"no_sessions": []})
        return httpx.Response(200, text="<html>")

    client = EngineClient("http://engine.test", transport=httpx.MockTransport(handler))
    async with client:
        for call, cause in ((client.health(), ValidationError),
                            (client.set_crossfade("k", 2.0), ValueError),
                            (client.cancel_next("k"), AttributeError),
                            (client.sessions(), KeyError),
                            (client.stats(), ValueError)):
            with pytest.raises(EngineError, match="unexpected answer from the engine") as caught:
                await call
            assert isinstance(caught.value.__cause__, cause)
