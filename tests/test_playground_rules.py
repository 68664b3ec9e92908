"""The playground's pure rules: message parsing limits, the origin check,
admission (identities per client, sessions per client and in total) and the
wording of messages for pages."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from playground_ws.admission import (
    MAX_TABS_PER_USER,
    Holder,
    IdentityIssuer,
    client_key,
    refuse_start,
    refuse_tab,
)
from playground_ws.messages import MAX_DEPTH, Move, Simple, parse_client_message
from playground_ws.origins import default_origins, normalize_origin, parse_origins
from playground_ws.routes import _fallback_title
from playground_ws.wording import Wording

# -- messages -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[" * 4000, "{" * 4000, '{"a":' * 1500,
                                  '{"type":"play","url":"x","extra":' + "[" * 10 + "]" * 10 + "}",
                                  "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)])
def test_deep_nesting_is_refused_in_words_before_parsing(text: str) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_client_message(text)


def test_brackets_inside_strings_do_not_count() -> None:
    url = "http://example.com/" + "[{" * 100 + '\\"' + "[" * 50 + ".mp3"
    parsed = parse_client_message(json.dumps({"type": "play", "url": url}))
    assert parsed.type == "play"
    assert parsed.url == url


def test_focus_and_move() -> None:
    assert parse_client_message('{"type":"focus"}') == Simple(type="focus")
    assert parse_client_message('{"type":"move","position":3,"to":1}') == Move(
        type="move", position=3, to=1)
    with pytest.raises(ValueError, match="move needs 'to'"):
        parse_client_message('{"type":"move","position":3}')
    with pytest.raises(ValueError, match="to"):
        parse_client_message('{"type":"move","position":3,"to":0}')


@given(st.text(max_size=300) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=40).map(json.dumps))
def test_any_text_is_a_message_or_an_error_in_words(text: str) -> None:
    try:
        parse_client_message(text)
    except ValueError as exc:
        assert str(exc)


# -- origins ------------------------------------------------------------------------


def test_origins_are_compared_in_one_spelling() -> None:
    assert normalize_origin("HTTP://LocalHost:8080") == "http://localhost:8080"
    assert normalize_origin("https://music.example:443") == "https://music.example"
    assert normalize_origin("http://[::1]:8080") == "http://[::1]:8080"
    for junk in ("null", "", "file://x", "http://", "http://a/b", "http://a:99999",
                 "http://user@a"):
        assert normalize_origin(junk) is None, junk
    assert parse_origins(" https://music.example , http://localhost:8080,") == {
        "https://music.example", "http://localhost:8080"}
    with pytest.raises(ValueError, match="not an origin"):
        parse_origins("music.example")


def test_the_default_is_the_pages_own_origin_scheme_included() -> None:
    allowed = default_origins("ws", "127.0.0.1", 8080)
    assert allowed == {"http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"}
    assert "https://127.0.0.1:8080" not in allowed          # an https page is another page
    assert "http://evil.example:8080" not in allowed        # DNS rebinding
    assert "http://127.0.0.1:8081" not in allowed
    lan = default_origins("ws", "192.168.1.5", 8080)
    assert "http://192.168.1.5:8080" in lan
    assert default_origins("wss", "::1", 443) >= {"https://[::1]", "https://localhost"}


# -- admission ----------------------------------------------------------------------


def test_clients_are_addresses_and_ipv6_networks() -> None:
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_key(None) == "unknown"


def test_identities_are_rationed_per_client_and_refill() -> None:
    issuer = IdentityIssuer(burst=3, interval=60.0)
    assert [issuer.allow("a", 0.0) for _ in range(5)] == [True, True, True, False, False]
    assert issuer.allow("b", 0.0)                     # another client is not affected
    assert issuer.retry_after("a", 0.0) == pytest.approx(60.0)
    assert issuer.retry_after("a", 30.0) == pytest.approx(30.0)
    assert issuer.allow("a", 60.0)
    assert not issuer.allow("a", 61.0)
    assert issuer.sweep(100.0) == 1                   # "b" is full again, "a" is not
    assert issuer.sweep(61.0 + 3 * 60.0) == 1         # now "a" is: forgotten too
    assert len(issuer) == 0


def test_sessions_are_capped_per_client_and_in_total() -> None:
    holders = [Holder("u1", "a"), Holder("u2", "a"), Holder("u3", "b")]
    assert refuse_start("u4", "c", holders, per_client=2, total=4) is None
    refused = refuse_start("u4", "a", holders, per_client=2, total=4)
    assert refused and "2 players are already in use from your network" in refused
    assert refuse_start("u1", "a", holders, per_client=2, total=4) is None  # its own
    full = refuse_start("u4", "c", holders, per_client=2, total=3)
    assert full and "the playground is full right now" in full


def test_tabs_are_capped() -> None:
    assert refuse_tab(0, 0) is None
    refused = refuse_tab(MAX_TABS_PER_USER, 0)
    assert refused and "close one" in refused


# -- wording ------------------------------------------------------------------------


def test_messages_reach_pages_without_paths_addresses_or_jargon() -> None:
    words = Wording(["http://127.0.0.1:8180", "/run/audiogate/engine.sock"])
    assert words("could not play watch: extraction failed: could not reach the source") == (
        "could not play watch: could not reach the source")
    assert words("the engine said: extraction failed: no audio") == "no audio"
    assert words("cannot open /srv/media/private/song.mp3") == "cannot open song.mp3"
    assert "127.0.0.1:8180" not in words("POST http://127.0.0.1:8180/session/u/play failed")
    assert "engine.sock" not in words("socket /run/audiogate/engine.sock refused")
    # The user's own links stay as they are.
    assert words("could not play http://example.com/a/b.mp3: 404") == (
        "could not play http://example.com/a/b.mp3: 404")
    assert len(words("x" * 5000)) <= 300
    assert words("   ") == "something went wrong"
    assert "not working" in words.search_failed("extraction failed: urlopen error [Errno -3]")


def test_a_track_is_named_before_the_catalogue_answers() -> None:
    assert _fallback_title("http://host/music/My%20Song.mp3") == "My Song"
    assert _fallback_title("https://www.youtube.com/watch?v=abc") == "www.youtube.com/watch?v=abc"
    assert _fallback_title("/srv/media/a.ogg") == "a"
    assert len(_fallback_title("https://example.com/" + "x" * 200)) == 80
