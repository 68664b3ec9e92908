"""The URL policy and the egress proxy: which addresses are private, and every
hop FFmpeg makes (redirects, HLS segments) checked at connect time.

Two media servers on 127.0.0.1: the policy allows only the first one's
address:port, so the second stands for an internal service."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import av
import pytest

from audio_engine.sources.egress import EgressProxy
from audio_engine.sources.options import media_options
from audio_engine.sources.proxy_http import (
    HeadError,
    forward_head,
    parse_request_head,
    rewrite_response_head,
)
from audio_engine.sources.url_policy import (
    PolicyError,
    UrlPolicy,
    forbidden_reason,
    parse_endpoints,
)
from loadtest.media_server import MediaServer

from .support.waiting import poll_until_async

pytestmark = pytest.mark.timeout(120)


# -- which addresses are private ---------------------------------------------------------

@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "100.127.255.254",  # carrier-grade NAT: is_private misses it
    "0.0.0.0", "255.255.255.255", "224.0.0.1", "239.1.2.3",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
    "fec0::1",  # deprecated site-local: is_global says True
    "::ffff:10.0.0.1", "::ffff:100.64.0.1", "::ffff:127.0.0.1",  # IPv4-mapped
    "::10.0.0.1", "::127.0.0.1",  # IPv4-compatible
    "2002:a00:1::1", "2002:7f00:1::",  # 6to4 of 10.0.0.1 and 127.0.0.1
    "64:ff9b::a00:1", "64:ff9b::7f00:1",  # NAT64 of 10.0.0.1 and 127.0.0.1
])
def test_non_global_addresses_and_their_ipv6_disguises_are_forbidden(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == "private or local", address


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1",
    "64:ff9b::808:808",
])
def test_global_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None, address


def test_an_endpoint_allow_list_admits_exact_address_and_port_only() -> None:
    policy = UrlPolicy(allowed_endpoints=parse_endpoints("127.0.0.1:8123, [::1]:9000"))
    policy.check_address(ipaddress.ip_address("127.0.0.1"), 8123)
    policy.check_address(ipaddress.ip_address("::1"), 9000)
    with pytest.raises(PolicyError, match="not allowed"):
        policy.check_address(ipaddress.ip_address("127.0.0.1"), 8124)
    with pytest.raises(PolicyError):
        policy.check_address(ipaddress.ip_address("127.0.0.2"), 8123)
    for bad in ("localhost:80", "127.0.0.1", "127.0.0.1:0", "1.2.3.4:x"):
        with pytest.raises(ValueError):
            parse_endpoints(bad)


async def test_names_resolving_to_internal_addresses_are_refused_without_saying_where() -> None:
    policy = UrlPolicy()
    with pytest.raises(PolicyError) as refused:
        await policy.check_url("http://localhost:9/a.mp3")
    assert "localhost resolves to a private or local address" in str(refused.value)
    assert "127.0.0.1" not in str(refused.value)


def test_local_paths_stay_in_the_media_directory_and_errors_never_show_it(
        tmp_path: Path) -> None:
    media = tmp_path / "secret-media-root"
    media.mkdir()
    policy = UrlPolicy(media_dir=media)
    for outside in ("/etc/passwd", f"{media}/../x.mp3", "file:///etc/hostname"):
        with pytest.raises(PolicyError) as refused:
            policy.local_path(outside)
        assert "secret-media-root" not in str(refused.value)
        assert "media directory" in str(refused.value)
    with pytest.raises(PolicyError, match="too long"):
        policy.local_path(f"{media}/{'x' * 300}.mp3")


# -- the proxy's HTTP, without I/O ---------------------------------------------------------

def _basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"{token}:x".encode()).decode()


def test_request_heads_are_parsed_and_forwarded_in_origin_form() -> None:
    head = (b"GET http://example.com:8080/a.mp3?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n"
            b"Proxy-Authorization: " + _basic("tok").encode() + b"\r\n"
            b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nRange: bytes=0-\r\n\r\n")
    request = parse_request_head(head)
    assert request.token == "tok"
    destination = request.destination()
    assert (destination.host, destination.port, destination.path) == ("example.com", 8080,
                                                                       "/a.mp3?x=1")
    forwarded = forward_head(request, destination).decode()
    assert forwarded.startswith("GET /a.mp3?x=1 HTTP/1.1\r\n")
    assert "Range: bytes=0-" in forwarded and "Host: example.com:8080" in forwarded
    assert "Proxy-Authorization" not in forwarded and "X-Hop" not in forwarded
    assert forwarded.endswith("Connection: close\r\n\r\n")
    connect = parse_request_head(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (connect.destination().host, connect.destination().port) == ("::1", 443)
    assert connect.token is None


@pytest.mark.parametrize("head", [
    b"GET /relative HTTP/1.1\r\n\r\n",  # origin form: not a proxy request
    b"GET ftp://example.com/ HTTP/1.1\r\n\r\n",
    b"CONNECT example.com HTTP/1.1\r\n\r\n",
    b"CONNECT example.com:99999 HTTP/1.1\r\n\r\n",
])
def test_requests_that_name_no_usable_destination_are_refused(head: bytes) -> None:
    with pytest.raises(HeadError):
        parse_request_head(head).destination()


@pytest.mark.parametrize("head", [b"", b"GET\r\n\r\n", b"GET / HTTP/2\r\n\r\n",
                                  b"GET http://x/ HTTP/1.1\r\nbad header\r\n\r\n",
                                  b"GET http://x/ HTTP/1.1\r\n" + b"A: b\r\n" * 9000 + b"\r\n"])
def test_malformed_heads_raise_head_error(head: bytes) -> None:
    with pytest.raises(HeadError):
        parse_request_head(head)


def test_responses_are_passed_on_announcing_connection_close() -> None:
    status, head = rewrite_response_head(
        b"HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\n"
        b"Connection: keep-alive\r\n\r\n")
    assert status == 206
    assert head == (b"HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\n"
                    b"Connection: close\r\n\r\n")


# -- the proxy with FFmpeg ---------------------------------------------------------------

@pytest.fixture(scope="module")
def inside(media_dir: Path) -> Iterator[MediaServer]:
    """A second server: an internal service the policy refuses."""
    with MediaServer(media_dir) as server:
        yield server


@pytest.fixture
async def proxy(media_server: MediaServer) -> AsyncIterator[EgressProxy]:
    policy = UrlPolicy(allowed_endpoints=parse_endpoints(f"127.0.0.1:{media_server.port}"))
    egress = EgressProxy(policy)
    await egress.start()
    yield egress
    await egress.close()


def _demux(url: str, proxy: str) -> int:
    options = media_options(is_local=False, proxy=proxy, headers={}, open_timeout=5,
                            read_timeout=5, index_bytes=32 * 1024)
    with av.open(url, options=options) as container:
        stream = container.streams.audio[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


async def test_ffmpeg_reaches_the_allowed_server_through_the_proxy_only_with_a_grant(
        proxy: EgressProxy, media_server: MediaServer) -> None:
    grant = proxy.grant("s1")
    packets = await asyncio.to_thread(_demux, media_server.url("e.ogg"), proxy.url(grant))
    assert packets > 590  # 12 s of 20 ms Opus packets: the whole file
    assert grant.received > 100_000 and grant.problem is None
    stranger = f"http://nobody:x@127.0.0.1:{proxy.port}"
    with pytest.raises(av.error.HTTPOtherClientError):  # 407
        await asyncio.to_thread(_demux, media_server.url("e.ogg"), stranger)


async def test_redirects_to_the_internal_server_are_refused_at_the_hop(
        proxy: EgressProxy, media_server: MediaServer, inside: MediaServer) -> None:
    grant = proxy.grant("s2")
    internal = inside.url("a.mp3")
    hop = media_server.url("hop.mp3", redirect=internal)
    chain = media_server.url("chain.mp3", redirect=hop)
    for url in (hop, chain):
        before = len(inside.requests)
        with pytest.raises(av.error.HTTPForbiddenError):
            await asyncio.to_thread(_demux, url, proxy.url(grant))
        assert len(inside.requests) == before  # never reached
    assert grant.refused == 2
    assert grant.problem is not None and "not allowed" in grant.problem
    assert str(inside.port) not in grant.problem
    # A redirect that stays on the allowed server plays.
    fine = proxy.grant("s3")
    assert await asyncio.to_thread(
        _demux, media_server.url("x.mp3", redirect=media_server.url("a.mp3")),
        proxy.url(fine)) > 450  # 12 s of 1152-sample mp3 frames: 459


async def test_too_many_redirects_end_the_open(proxy: EgressProxy,
                                               media_server: MediaServer) -> None:
    url = media_server.url("a.mp3")
    for step in range(8):
        url = media_server.url(f"r{step}.mp3", redirect=url)
    with pytest.raises(av.error.FFmpegError):
        await asyncio.to_thread(_demux, url, proxy.url(proxy.grant("s4")))


def _playlist(path: Path, segment: str) -> None:
    path.write_text("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:12\n"
                    f"#EXTINF:12.0,\n{segment}\n#EXT-X-ENDLIST\n")


async def test_hls_segments_on_the_internal_server_are_refused(
        proxy: EgressProxy, media_server: MediaServer, inside: MediaServer,
        media_dir: Path) -> None:
    _playlist(media_dir / "hls-inside.mp3", inside.url("a.mp3"))
    _playlist(media_dir / "hls-here.mp3", media_server.url("a.mp3"))
    mime = "application/vnd.apple.mpegurl"
    good = proxy.grant("s5")
    assert await asyncio.to_thread(
        _demux, media_server.url("hls-here.mp3", type=mime), proxy.url(good)) > 450
    bad = proxy.grant("s6")
    before = len(inside.requests)
    try:
        packets = await asyncio.to_thread(
            _demux, media_server.url("hls-inside.mp3", type=mime), proxy.url(bad))
    except av.error.FFmpegError:
        packets = 0
    assert packets == 0
    assert len(inside.requests) == before
    assert bad.refused >= 1


async def test_a_grant_is_cut_at_its_byte_cap_and_revoking_closes_its_connections(
        proxy: EgressProxy, media_server: MediaServer) -> None:
    capped = proxy.grant("job", max_bytes=200_000)

    def read_endless() -> int:
        import urllib.request
        opener = urllib.request.build_opener(urllib.request.ProxyHandler(
            {"http": proxy.url(capped)}))
        total = 0
        with opener.open(media_server.url("page", endless=1), timeout=10) as response:
            while chunk := response.read(65536):
                total += len(chunk)
        return total

    try:
        total = await asyncio.to_thread(read_endless)
    except OSError:
        total = capped.received
    assert total <= 200_000 + 65_536
    assert capped.problem is not None and "limit" in capped.problem
    dripping = proxy.grant("drip")

    def read_drip() -> bytes:
        import urllib.request
        opener = urllib.request.build_opener(urllib.request.ProxyHandler(
            {"http": proxy.url(dripping)}))
        with opener.open(media_server.url("page", drip=50), timeout=10) as response:
            return response.read()

    reader = asyncio.create_task(asyncio.to_thread(read_drip))

    async def connected() -> bool:
        return bool(dripping.tasks)

    await poll_until_async(connected, 10)
    proxy.revoke(dripping)
    async with asyncio.timeout(10):
        body = await reader  # the connection was closed: the read ends
    assert body.startswith(b"<html>")
    assert proxy.connections == 0


def test_every_spelling_of_a_proxy_variable_is_scrubbed_and_nothing_else() -> None:
    from audio_engine.sources.proxy_env import scrub_proxy_environment

    environ = {"http_proxy": "x", "HTTPS_PROXY": "x", "No_Proxy": "*", "all_proxy": "x",
               "ftp_proxy": "x", "PATH": "/bin", "PROXY": "kept", "GIT_PROXY_COMMAND": "kept"}
    assert scrub_proxy_environment(environ) == ["HTTPS_PROXY", "No_Proxy", "all_proxy",
                                                "ftp_proxy", "http_proxy"]
    assert environ == {"PATH": "/bin", "PROXY": "kept", "GIT_PROXY_COMMAND": "kept"}
