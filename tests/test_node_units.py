"""The node pool's pure parts: node settings, penalties, placement."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.nodes.config import parse_nodes
from gateway.nodes.penalty import NodeStats, penalty
from gateway.nodes.placement import Candidate, choose
from gateway.socket_client import AddressKind, SocketAddress


@pytest.mark.parametrize(
    ("text", "kind", "shown"),
    [
        ("/run/audiogate/engine-a.sock", AddressKind.UNIX, "/run/audiogate/engine-a.sock"),
        ("unix:///run/a.sock", AddressKind.UNIX, "/run/a.sock"),
        ("tcp://10.0.0.5:8190", AddressKind.TCP, "tcp://10.0.0.5:8190"),
        ("TLS://node-b.internal:443", AddressKind.TLS, "tls://node-b.internal:443"),
        ("tcp://[fd00::5]:8190", AddressKind.TCP, "tcp://[fd00::5]:8190"),
    ],
)
def test_socket_addresses(text: str, kind: AddressKind, shown: str) -> None:
    address = SocketAddress.parse(text)
    assert address.kind is kind and str(address) == shown


@pytest.mark.parametrize("text", ["engine.sock", "udp://x:1", "tcp://host", "tcp://:80",
                                  "tcp://h:0", "tcp://h:99999"])
def test_bad_socket_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        SocketAddress.parse(text)


def test_nodes_parse_with_the_default_token() -> None:
    nodes = parse_nodes(
        '[{"name":"a","api":"http://127.0.0.1:8180/","socket":"/run/a.sock"},'
        ' {"name":"b","api":"https://b:8180","socket":"tls://b:8190","token":"tb",'
        '  "ca":"/etc/ca.pem"}]', default_token="shared")
    assert [(n.name, n.api, str(n.socket), n.token) for n in nodes] == [
        ("a", "http://127.0.0.1:8180", "/run/a.sock", "shared"),
        ("b", "https://b:8180", "tls://b:8190", "tb"),
    ]
    assert nodes[1].ca == Path("/etc/ca.pem")
    assert "tb" not in repr(nodes[1])
    assert parse_nodes("") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"name":"a b","api":"http://x","socket":"/s"}]', "name must be"),
        ('[{"name":"a","socket":"/s"}]', "api (the engine's HTTP address) is required"),
        ('[{"name":"a","api":"ftp://x","socket":"/s"}]', "http:// or https://"),
        ('[{"name":"a","api":"http://x","socket":"tcp://x:1"}]', "needs a token"),
        ('[{"name":"a","api":"http://x","socket":"/s","colour":1}]', "unknown keys colour"),
        ('[{"name":"a","api":"http://x","socket":"/s"},'
         ' {"name":"a","api":"http://y","socket":"/t"}]', "names 'a' more than once"),
        ('[{"name":"a","api":"http://x","socket":"/s","ca":"/c.pem"}]', "only for a tls://"),
    ],
)
def test_bad_nodes_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_nodes(text)


def test_stats_of_our_engine_and_of_a_lavalink_shaped_one() -> None:
    ours = NodeStats.from_stats({
        "playingPlayers": 10, "cpu": {"systemLoad": 0.9},
        "frameStats": {"sent": 3000, "nulled": 0, "deficit": 0},
        "headroom": {"load": 0.2, "sessionCost": 0.01, "admitting": True,
                     "nulled": 30, "deficit": 0, "expectedFrames": 1500}})
    assert ours.nulled == 0  # 20 % of its budget: lost frames are the host's doing
    assert ours.load == 0.2  # the engine's own load, not the host's
    busy = NodeStats.from_stats({
        "playingPlayers": 10, "frameStats": {"nulled": 0, "deficit": 1},
        "headroom": {"load": 0.6, "nulled": 30, "deficit": 4, "expectedFrames": 1500}})
    # 30 frames of 10 sessions nulled in the last seconds: 3 a session (not
    # extrapolated to a minute); 4 skipped ticks beat the minute's 1.
    assert busy.nulled == pytest.approx(3) and busy.deficit == 4
    refusing = NodeStats.from_stats({"playingPlayers": 2, "headroom": {
        "load": 0.1, "admitting": False, "deficit": 2, "expectedFrames": 300}})
    assert refusing.deficit == 2
    # One late tick weighs less than a handful of sessions.
    assert penalty(NodeStats(playing=10, deficit=1)) < penalty(NodeStats(playing=14))
    lavalink = NodeStats.from_stats({"playingPlayers": 3, "cpu": {"systemLoad": 0.5},
                                     "frameStats": None})
    assert (lavalink.playing, lavalink.load, lavalink.admitting) == (3, 0.5, True)
    assert NodeStats.from_stats({"playingPlayers": "x"}) == NodeStats()


def test_penalty_grows_with_players_cpu_and_bad_frames() -> None:
    idle = penalty(NodeStats())
    assert idle == 0
    assert penalty(NodeStats(playing=5)) == 5
    assert penalty(NodeStats(load=0.5)) == pytest.approx(1.05 ** 50 * 10 - 10)
    assert penalty(NodeStats(nulled=60)) > penalty(NodeStats(playing=20))
    # Placements since the poll count as players and as their measured cost.
    assert penalty(NodeStats(playing=1, session_cost=0.01), placed=3) == pytest.approx(
        4 + 1.05 ** 3 * 10 - 10)


def _candidate(name: str, order: int, **kwargs: object) -> Candidate:
    values: dict[str, object] = {"up": True, "draining": False, "stats": NodeStats()}
    values.update(kwargs)
    return Candidate(name=name, order=order, **values)  # type: ignore[arg-type]


def test_placement_picks_the_least_penalty_and_skips_drained_and_down_nodes() -> None:
    nodes = [_candidate("a", 0, stats=NodeStats(playing=4)),
             _candidate("b", 1, stats=NodeStats(playing=2)),
             _candidate("c", 2, stats=NodeStats(playing=1), draining=True),
             _candidate("d", 3, up=False)]
    chosen = choose(nodes, now=0.0)
    assert chosen is not None and chosen.name == "b"
    chosen = choose(nodes, now=0.0, exclude=["b"])
    assert chosen is not None and chosen.name == "a"
    assert choose(nodes[2:], now=0.0) is None


def test_placement_spreads_a_burst_between_polls() -> None:
    placed = {"a": 0, "b": 0, "c": 0}
    for _ in range(30):
        nodes = [_candidate(n, i, placed=placed[n]) for i, n in enumerate(placed)]
        chosen = choose(nodes, now=0.0)
        assert chosen is not None
        placed[chosen.name] += 1
    assert placed == {"a": 10, "b": 10, "c": 10}


def test_a_node_that_refused_is_tried_last_until_its_retry_after() -> None:
    nodes = [_candidate("a", 0, refused_until=10.0),
             _candidate("b", 1, stats=NodeStats(playing=50)),
             _candidate("c", 2, stats=NodeStats(admitting=False))]
    chosen = choose(nodes, now=5.0)
    assert chosen is not None and chosen.name == "b"
    chosen = choose(nodes, now=11.0)
    assert chosen is not None and chosen.name == "a"
    # Nobody admits: the least loaded is still tried (its 503 tells the user).
    full = [_candidate("x", 0, stats=NodeStats(playing=9, admitting=False)),
            _candidate("y", 1, stats=NodeStats(playing=3, admitting=False))]
    chosen = choose(full, now=0.0)
    assert chosen is not None and chosen.name == "y"


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"GATEWAY_NODES": '[{"name":"a","api":"http://127.0.0.1:1",'
                           '"socket":"tcp://127.0.0.1:2"}]'},
         "error: bad settings: GATEWAY_NODES: node 'a': a tcp:// socket needs a token"),
        ({"GATEWAY_DRAIN_NODES": "a"},
         "error: bad settings: GATEWAY_DRAIN_NODES needs GATEWAY_NODES"),
        ({"GATEWAY_DISCORD_SHARD_COUNT": "2", "GATEWAY_DISCORD_SHARD_IDS": "5"},
         "error: bad settings: GATEWAY_DISCORD_SHARD_IDS has shard 5"),
    ],
)
def test_a_gateway_with_unusable_node_or_shard_settings_says_so(env: dict[str, str],
                                                                line: str) -> None:
    result = subprocess.run([sys.executable, "-m", "gateway"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "GATEWAY_PORT": "0", **env})
    assert result.returncode == 78
    assert result.stderr.startswith(line), result.stderr
