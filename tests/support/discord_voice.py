"""A stand-in for a Discord voice server, on 127.0.0.1 only: what the engine's own voice
connection (audio_engine.voice) talks to in the tests.

It plays Discord's part of the voice gateway v8 (HELLO, READY with SSRC, address, port
and modes, SESSION DESCRIPTION with a fresh key, heartbeat ACKs, RESUMED with the
messages the client missed, numbered ``seq`` on every message) and of its UDP side (IP
discovery answers, RTP received and decrypted in either AEAD mode). It can close the
WebSocket with any code on demand, and take part in DAVE: it is the MLS external sender
(``dave_mls``) and holds a second member of the group, a *listener* with its own
``davey`` session, which welcomes itself in and decrypts the end-to-end encrypted frames.

Everything it decrypts is decoded with libopus (opuslib), so a test can ask which tone
it hears (``dominant_frequency``) and at what packet rate (``packets_per_second``). It is
written from Discord's documentation, apart from audio_engine.voice, so that it checks
our code rather than agreeing with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import davey
import numpy as np
import opuslib
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .dave_mls import ExternalSender, split_commit_welcome
from .media import dominant_frequency

__all__ = ["AES_GCM", "XCHACHA", "DiscordVoiceStandIn", "ReceivedPacket"]

AES_GCM: Final = "aead_aes256_gcm_rtpsize"
XCHACHA: Final = "aead_xchacha20_poly1305_rtpsize"
#: Packets kept for inspection: 60 s of 20 ms frames, far more than a test sends.
_MAX_PACKETS: Final = 3000
_DAVE_TRANSITION: Final = 1


@dataclass(frozen=True, slots=True)
class ReceivedPacket:
    """One RTP packet the stand-in decrypted: its arrival (monotonic s), header fields,
    whether its frame was end-to-end encrypted, and the decoded PCM (int16 stereo)."""

    arrival: float
    sequence: int
    timestamp: int
    ssrc: int
    e2ee: bool
    pcm: np.ndarray


@dataclass
class _Session:
    """One voice session (what RESUME brings back)."""

    session_id: str
    token: str
    user_id: int
    ssrc: int
    dave_version: int
    mode: str | None = None
    secret_key: bytes = b""
    client_address: tuple[str, int] | None = None
    seq: int = 0
    #: Numbered messages sent, for a buffered resume (v8).
    sent: list[tuple[int, str | bytes]] = field(default_factory=list)


class DiscordVoiceStandIn:
    """The stand-in (see the module docstring). Use as ``async with``.

    Args:
        modes: encryption modes READY offers.
        dave: take part in DAVE with clients that support it.
        heartbeat_interval: HELLO's interval in seconds.
        server_id, session_id, token: what identify must carry.
    """

    def __init__(self, *, modes: Iterable[str] = (AES_GCM, XCHACHA), dave: bool = False,
                 heartbeat_interval: float = 1.0, server_id: int = 41771983423143937,
                 session_id: str = "voice-session", token: str = "voice-token",
                 channel_id: int = 127121515262115840,
                 listener_id: int = 158533742254751744) -> None:
        self.modes = tuple(modes)
        self.dave = dave
        self.heartbeat_interval = heartbeat_interval
        self.server_id, self.session_id, self.token = server_id, session_id, token
        self.channel_id, self.listener_id = channel_id, listener_id
        self.ack_heartbeats = True
        # What tests read.
        self.connections = 0
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.speaking: list[dict[str, Any]] = []
        self.selected: list[dict[str, Any]] = []
        self.packets: deque[ReceivedPacket] = deque(maxlen=_MAX_PACKETS)
        self.undecryptable = 0
        self.dave_ready = asyncio.Event()
        self.closed_codes: list[int] = []
        self._session: _Session | None = None
        self._current: ServerConnection | None = None
        self._server: Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        # Set whenever something arrives (a connection, a message, a packet); waiters
        # clear it and check their condition again.
        self._changed = asyncio.Event()
        self._external_sender = ExternalSender()
        self._listener: davey.DaveSession | None = None
        self._decoders: dict[int, opuslib.Decoder] = {}
        self.endpoint = ""

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> DiscordVoiceStandIn:
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpServer(self), local_addr=("127.0.0.1", 0))
        self.udp_port = self._udp.get_extra_info("sockname")[1]
        self._server = await serve(self._handle, "127.0.0.1", 0, ping_interval=None,
                                   max_size=1 << 20)
        port = self._server.sockets[0].getsockname()[1] if self._server.sockets else 0
        self.endpoint = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._udp is not None:
            self._udp.close()

    # -- what tests do --------------------------------------------------------------------

    async def close_connection(self, code: int, reason: str = "") -> None:
        """Close the client's current WebSocket with *code*, as Discord would."""
        assert self._current is not None, "no client connected"
        await self._current.close(code, reason)

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until *condition* holds; it is checked again whenever something reaches
        the stand-in (no polling)."""
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    async def wait_for_connections(self, count: int) -> None:
        """Wait until *count* WebSockets have been opened in all."""
        await self.wait_until(lambda: self.connections >= count)

    async def wait_for_packets(self, count: int) -> None:
        """Wait until *count* RTP packets have been decrypted (since the start or the
        last ``packets.clear()``)."""
        await self.wait_until(lambda: len(self.packets) >= count)

    def dominant_frequency(self, *, last: int | None = None) -> float:
        """Strongest frequency (Hz) of the decoded audio (of the *last* packets only)."""
        packets = list(self.packets)[-last:] if last else list(self.packets)
        pcm = np.concatenate([packet.pcm for packet in packets]).reshape(-1, 2)
        return dominant_frequency(pcm.T.astype(np.float64))

    def packets_per_second(self) -> float:
        """Packet rate between the first and the last packet received."""
        packets = list(self.packets)
        span = packets[-1].arrival - packets[0].arrival
        return (len(packets) - 1) / span

    @property
    def e2ee_packets(self) -> int:
        """Packets whose frame was DAVE-encrypted (and decrypted by the listener)."""
        return sum(1 for packet in self.packets if packet.e2ee)

    # -- the voice gateway ----------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path if ws.request else "").query)
        if query.get("v") != ["8"]:
            await ws.close(4012, "voice gateway version 8 expected")
            return
        self.connections += 1
        self._current = ws
        self._changed.set()
        await self._send(ws, {"op": 8, "d": {"heartbeat_interval":
                                             self.heartbeat_interval * 1000}}, numbered=False)
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    await self._binary(ws, message)
                else:
                    await self._text(ws, json.loads(message))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            if ws.close_code is not None:
                self.closed_codes.append(ws.close_code)

    async def _text(self, ws: ServerConnection, message: dict[str, Any]) -> None:
        op, data = message["op"], message.get("d")
        match op:
            case 0:
                await self._identify(ws, data)
            case 1:
                await self._select_protocol(ws, data)
            case 3:
                self.heartbeats.append(data)
                if self.ack_heartbeats:
                    await self._send(ws, {"op": 6, "d": {"t": data["t"]}}, numbered=False)
            case 5:
                self.speaking.append(data)
            case 7:
                await self._resume(ws, data)
            case 23:
                if data["transition_id"] == _DAVE_TRANSITION:
                    await self._send(ws, {"op": 22, "d": {"transition_id": _DAVE_TRANSITION}})
                    self.dave_ready.set()
            case 31:
                raise AssertionError(f"client refused our DAVE commit or welcome: {data}")
            case _:
                await ws.close(4001, f"unknown opcode {op}")

    async def _identify(self, ws: ServerConnection, data: dict[str, Any]) -> None:
        self.identifies.append(data)
        if (data["server_id"], data["session_id"], data["token"]) != (
                str(self.server_id), self.session_id, self.token):
            await ws.close(4004, "authentication failed")
            return
        dave_version = 1 if self.dave and data.get("max_dave_protocol_version", 0) >= 1 else 0
        self._session = _Session(session_id=data["session_id"], token=data["token"],
                                 user_id=int(data["user_id"]), ssrc=secrets.randbits(31) + 1,
                                 dave_version=dave_version)
        await self._send(ws, {"op": 2, "d": {
            "ssrc": self._session.ssrc, "ip": "127.0.0.1", "port": self.udp_port,
            "modes": list(self.modes), "heartbeat_interval": 1}})

    async def _select_protocol(self, ws: ServerConnection, data: dict[str, Any]) -> None:
        session = self._session
        assert session is not None
        self.selected.append(data)
        mode = data["data"]["mode"]
        if data["protocol"] != "udp" or mode not in self.modes:
            await ws.close(4016, "unknown encryption mode")
            return
        session.mode, session.secret_key = mode, os.urandom(32)
        session.client_address = (data["data"]["address"], data["data"]["port"])
        await self._send(ws, {"op": 4, "d": {
            "mode": mode, "secret_key": list(session.secret_key),
            "dave_protocol_version": session.dave_version}})
        if session.dave_version:
            self._listener = davey.DaveSession(1, self.listener_id, self.channel_id)
            self._listener.set_external_sender(self._external_sender.package())
            self._listener_key_package = self._listener.get_serialized_key_package()
            await self._send(ws, {"op": 11, "d": {"user_ids": [str(self.listener_id)]}})
            await self._send_binary(ws, 25, self._external_sender.package())

    async def _resume(self, ws: ServerConnection, data: dict[str, Any]) -> None:
        self.resumes.append(data)
        session = self._session
        if session is None or (data["server_id"], data["session_id"], data["token"]) != (
                str(self.server_id), session.session_id, session.token):
            await ws.close(4006, "session no longer valid")
            return
        missed = [message for seq, message in session.sent if seq > data.get("seq_ack", -1)]
        await self._send(ws, {"op": 9, "d": None})
        for message in missed:  # v8's buffered resume
            await ws.send(message)

    async def _binary(self, ws: ServerConnection, message: bytes) -> None:
        op, payload = message[0], message[1:]
        session = self._session
        assert session is not None and self._listener is not None
        match op:
            case 26:  # the client's key package: propose adding the listener to it
                proposal = self._external_sender.add_proposal(
                    self._listener_key_package, self.channel_id, epoch=0)
                await self._send_binary(ws, 27, self._external_sender.proposals([proposal]))
            case 28:  # its commit adding the listener, and the listener's welcome
                commit = self._welcome_listener(payload)
                await self._send_binary(
                    ws, 29, struct.pack(">H", _DAVE_TRANSITION) + commit)
            case _:
                await ws.close(4001, f"unknown binary opcode {op}")

    def _welcome_listener(self, payload: bytes) -> bytes:
        assert self._listener is not None
        for commit, welcome in split_commit_welcome(payload):
            if welcome is None:
                continue
            try:
                self._listener.process_welcome(welcome)
            except Exception:  # davey: not the welcome (a false split)
                continue
            return commit
        raise AssertionError("the client's op 28 carried no welcome for the listener")

    async def _send(self, ws: ServerConnection, message: dict[str, Any], *,
                    numbered: bool = True) -> None:
        session = self._session
        if numbered and session is not None:
            session.seq += 1
            message = {**message, "seq": session.seq}
            text = json.dumps(message)
            session.sent.append((session.seq, text))
        else:
            text = json.dumps(message)
        await ws.send(text)

    async def _send_binary(self, ws: ServerConnection, op: int, payload: bytes) -> None:
        session = self._session
        assert session is not None
        session.seq = (session.seq + 1) & 0xFFFF
        message = struct.pack(">HB", session.seq, op) + payload
        session.sent.append((session.seq, message))
        await ws.send(message)

    # -- the UDP side -----------------------------------------------------------------------

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self._udp is not None
        if len(data) == 74 and data[:4] == b"\x00\x01\x00\x46":
            answer = (struct.pack(">HHI", 2, 70, struct.unpack_from(">I", data, 4)[0])
                      + addr[0].encode().ljust(64, b"\x00") + struct.pack(">H", addr[1]))
            self._udp.sendto(answer, addr)
            return
        packet = self._decrypt(data)
        if packet is not None:
            self.packets.append(packet)
            self._changed.set()

    def _decrypt(self, data: bytes) -> ReceivedPacket | None:
        session = self._session
        if session is None or session.mode is None or len(data) < 12 + 16 + 4:
            self.undecryptable += 1
            return None
        first, payload_type, sequence, timestamp, ssrc = struct.unpack_from(">BBHII", data)
        if first >> 6 != 2 or payload_type & 0x7F != 0x78 or ssrc != session.ssrc:
            self.undecryptable += 1
            return None
        # rtpsize: the header, its CSRCs and the extension's 4-byte preamble are
        # authenticated, not encrypted; the extension body is encrypted with the frame.
        header_size = 12 + 4 * (first & 0x0F)
        extension_words = 0
        if first & 0x10:
            extension_words = struct.unpack_from(">H", data, header_size + 2)[0]
            header_size += 4
        header, body, nonce = data[:header_size], data[header_size:-4], data[-4:]
        try:
            if session.mode == AES_GCM:
                plain = AESGCM(session.secret_key).decrypt(nonce + bytes(8), body, header)
            else:
                plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
                    body, header, nonce + bytes(20), session.secret_key)
        except Exception:  # an authentication failure: the packet is not for this key
            self.undecryptable += 1
            return None
        frame = plain[4 * extension_words:]
        e2ee = frame[-2:] == b"\xfa\xfa"
        if e2ee:
            assert self._listener is not None, "an E2EE frame outside a DAVE call"
            frame = self._listener.decrypt(session.user_id, davey.MediaType.audio, frame)
        decoder = self._decoders.setdefault(ssrc, opuslib.Decoder(48_000, 2))
        pcm = np.frombuffer(decoder.decode(frame, 960), dtype=np.int16)
        return ReceivedPacket(time.monotonic(), sequence, timestamp, ssrc, e2ee, pcm)


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, owner: DiscordVoiceStandIn) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._owner._datagram(data, addr)
