"""The gateway's pure pieces on their own: the router and the playground's
rate limiter."""

from __future__ import annotations

import logging

import pytest

from gateway.router import Router
from gateway.sinks import OpusSink, Sink
from playground_ws.ratelimit import RateLimiter, TokenBucket
from protocol import AudioPacket, Discarded, Event, EventType

# -- Router ------------------------------------------------------------------------------


class Recorder(Sink):
    kind = "recorder"

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.payloads: list[bytes] = []
        self.events: list[Event] = []
        self.resets = 0
        self.closed = 0
        self.dropped = 0

    def feed(self, payload: bytes) -> None:
        if self.fail:
            raise RuntimeError("sink bug")
        self.payloads.append(payload)

    def event(self, event: Event) -> None:
        self.events.append(event)

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closed += 1


def test_packets_reach_their_sink_and_unknown_ids_are_counted() -> None:
    router = Router()
    a, b = Recorder(), Recorder()
    router.register_sink("a", a)
    router.register_sink("b", b)
    for message in (AudioPacket("a", b"1"), AudioPacket("b", b"2"), AudioPacket("a", b"3"),
                    AudioPacket("nobody", b"4")):
        router.dispatch(message)
    assert a.payloads == [b"1", b"3"] and b.payloads == [b"2"]
    assert (router.packets, router.unknown_packets) == (4, 1)
    assert router.packets_by_session == {"a": 2, "b": 1, "nobody": 1}
    assert router.sink("a") is a and router.sink("nobody") is None and router.sink_count == 2


def test_events_go_to_the_sink_then_that_ids_listeners_then_global_ones() -> None:
    router = Router()
    sink = Recorder()
    router.register_sink("s1", sink)
    order: list[str] = []
    router.add_listener("s1", lambda e: order.append("listener"))
    router.add_listener("s2", lambda e: order.append("other id"))
    router.add_global_listener(lambda e: order.append("global"))
    router.dispatch(AudioPacket("s1", b"x"))
    ready = Event(EventType.READY, "s1")
    router.dispatch(ready)
    assert sink.events == [ready]
    assert order == ["listener", "global"]
    assert "s1" not in router.packets_by_session  # counted anew after each event
    assert router.events == 1


def test_a_listener_removed_hears_nothing_more() -> None:
    router = Router()
    heard: list[Event] = []
    router.add_listener("s1", heard.append)
    router.remove_listener("s1", heard.append)
    router.remove_listener("s1", heard.append)  # absent: no error
    router.dispatch(Event(EventType.FINISHED, "s1"))
    assert heard == []


def test_a_failing_sink_or_listener_harms_no_other_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = Router()
    broken, healthy = Recorder(fail=True), Recorder()
    router.register_sink("broken", broken)
    router.register_sink("healthy", healthy)

    def bad_listener(event: Event) -> None:
        raise ValueError("listener bug")

    heard: list[Event] = []
    router.add_listener("healthy", bad_listener)
    router.add_global_listener(heard.append)
    with caplog.at_level(logging.ERROR, logger="gateway.router"):
        router.dispatch(AudioPacket("broken", b"x"))
        router.dispatch(AudioPacket("healthy", b"y"))
        router.dispatch(Event(EventType.READY, "healthy"))
    assert healthy.payloads == [b"y"]
    assert [e.session_id for e in heard] == ["healthy"]
    assert [getattr(r, "session_id", None) for r in caplog.records] == ["broken", "healthy"]


def test_replacing_a_sink_closes_the_old_one_and_keeps_its_drop_count() -> None:
    router = Router()
    old = OpusSink(capacity=1)
    router.register_sink("s", old)
    old.push(b"a")
    old.push(b"b")  # drops a
    assert router.sink_drops() == {"opus": 1}
    new = OpusSink(capacity=1)
    router.register_sink("s", new)
    assert old.closed and not new.closed
    new.push(b"c")
    new.push(b"d")
    assert router.sink_drops() == {"opus": 2}  # monotonic across the replacement
    router.register_sink("s", new)  # the same sink again: not closed
    assert not new.closed


def test_unregistering_only_removes_the_sink_it_names() -> None:
    router = Router()
    first, second = Recorder(), Recorder()
    router.register_sink("s", first)
    router.register_sink("s", second)
    router.unregister_sink("s", first)  # already replaced: nothing happens
    assert router.sink("s") is second and second.closed == 0
    router.unregister_sink("s", second)
    assert router.sink("s") is None and second.closed == 1
    router.unregister_sink("s")  # nothing registered: no error


def test_discarded_messages_are_counted_and_a_reconnect_resets_every_sink() -> None:
    router = Router()
    sinks = [Recorder(), Recorder()]
    for index, sink in enumerate(sinks):
        router.register_sink(f"s{index}", sink)
    router.dispatch(Discarded(reason="unknown event type", size=40))
    assert router.discarded == 1
    router.connection_reset()
    assert [s.resets for s in sinks] == [1, 1]


# -- RateLimiter -------------------------------------------------------------------------


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(10.4)  # 0.8 of a token
    assert bucket.take(10.5)  # one full token after 0.5 s at 2/s
    assert not bucket.take(10.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped


def test_each_user_has_their_own_limits() -> None:
    limits = RateLimiter(rate=2.0, burst=2.0, heavy_rate=1.0, heavy_burst=1.0)
    assert limits.allow("ann", "state", 0.0) is None
    assert limits.allow("ann", "state", 0.0) is None
    refusal = limits.allow("ann", "state", 0.0)
    assert refusal == "slow down: at most 2 actions per second"
    assert limits.allow("bob", "state", 0.0) is None  # another user: untouched
    assert limits.allow("ann", "state", 1.0) is None  # refilled


def test_costly_actions_have_a_tighter_limit_of_their_own() -> None:
    limits = RateLimiter(rate=10.0, burst=10.0, heavy_rate=1.0, heavy_burst=2.0)
    assert limits.allow("ann", "play", 0.0) is None
    assert limits.allow("ann", "search", 0.0) is None
    assert limits.allow("ann", "add", 0.0) == \
        "slow down: at most 1 add per second (bursts of 2)"
    assert limits.allow("ann", "pause", 0.0) is None  # cheap actions still pass
    assert limits.allow("ann", "play", 1.0) is None
