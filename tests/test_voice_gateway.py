"""The sans-I/O parts of the voice connection: the gateway state machine, the close-code
table, RTP packets and IP discovery, and the DAVE driver, with no socket and no clock
(``now`` is passed in)."""

from __future__ import annotations

import json
import struct
from typing import Any

import davey
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt

from audio_engine.voice import (
    CloseAction,
    EncryptionMode,
    Phase,
    RtpPacketizer,
    SpeakingFlag,
    TransportEncryptor,
    VoiceCredentials,
    VoiceGateway,
    VoiceGatewayError,
    VoiceOp,
    VoiceUsageError,
    close_action,
    gateway_url,
)
from audio_engine.voice.actions import (
    CloseForResume,
    DiscoverIp,
    SendBinary,
    SendJson,
    SessionReady,
    StartHeartbeat,
)
from audio_engine.voice.dave import DaveDriver
from audio_engine.voice.transport import (
    InvalidDiscoveryResponse,
    ip_discovery_request,
    parse_ip_discovery_response,
)

from .support.dave_mls import ExternalSender, split_commit_welcome

CREDS = VoiceCredentials(guild_id=41771983423143937, user_id=104694319306248192,
                         session_id="sess", token="tok", endpoint="voice.example:443",
                         channel_id=127121515262115840)
KEY = bytes(range(32))


def message(op: int, data: Any, seq: int | None = None) -> str:
    body: dict[str, Any] = {"op": op, "d": data}
    if seq is not None:
        body["seq"] = seq
    return json.dumps(body)


def sent(actions: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(a.to_text()) for a in actions if isinstance(a, SendJson)]


def handshake(gateway: VoiceGateway, *, mode: str = "aead_aes256_gcm_rtpsize",
              dave_version: int = 0) -> list[Any]:
    """Take *gateway* through a whole handshake; the session description's actions."""
    gateway.start(now=0.0)
    gateway.receive_text(message(8, {"heartbeat_interval": 13750}), now=0.0)
    gateway.receive_text(message(2, {"ssrc": 7, "ip": "203.0.113.5", "port": 50001,
                                     "modes": ["xsalsa20_poly1305", mode]}, seq=1), now=0.0)
    gateway.ip_discovered("198.51.100.9", 40000)
    actions = gateway.receive_text(message(4, {"mode": mode, "secret_key": list(KEY),
                                               "dave_protocol_version": dave_version},
                                           seq=2), now=0.0)
    assert gateway.phase is Phase.CONNECTED
    return actions


def connected(*, dave_version: int = 0, max_attempts: int = 5) -> VoiceGateway:
    """A gateway after a whole handshake."""
    gateway = VoiceGateway(CREDS, max_attempts=max_attempts)
    handshake(gateway, dave_version=dave_version)
    return gateway


# -- the handshake -----------------------------------------------------------------------


def test_the_handshake_step_by_step() -> None:
    gateway = VoiceGateway(CREDS)
    assert sent(gateway.start(now=0.0)) == [{"op": 0, "d": {
        "server_id": "41771983423143937", "user_id": "104694319306248192",
        "session_id": "sess", "token": "tok", "max_dave_protocol_version": 1}}]
    assert gateway.receive_text(message(8, {"heartbeat_interval": 13750.0}), now=0.0) == [
        StartHeartbeat(13.75)]
    actions = gateway.receive_text(message(2, {
        "ssrc": 7, "ip": "203.0.113.5", "port": 50001, "heartbeat_interval": 1,
        "modes": ["xsalsa20_poly1305", "aead_xchacha20_poly1305_rtpsize",
                  "aead_aes256_gcm_rtpsize"]}, seq=1), now=0.0)
    assert actions == [DiscoverIp("203.0.113.5", 50001, 7)]
    assert sent(gateway.ip_discovered("198.51.100.9", 40000)) == [{"op": 1, "d": {
        "protocol": "udp", "data": {"address": "198.51.100.9", "port": 40000,
                                    "mode": "aead_aes256_gcm_rtpsize"}}}]
    actions = gateway.receive_text(message(4, {"mode": "aead_aes256_gcm_rtpsize",
                                                "secret_key": list(KEY),
                                                "dave_protocol_version": 0}, seq=2), now=0.0)
    assert actions[0] == SessionReady(7, EncryptionMode.AEAD_AES256_GCM_RTPSIZE, KEY)
    assert sent(actions) == [{"op": 5, "d": {"speaking": 0, "delay": 0, "ssrc": 7}}]
    assert gateway.phase is Phase.CONNECTED
    assert sent(gateway.set_speaking(SpeakingFlag.MICROPHONE)) == [
        {"op": 5, "d": {"speaking": 1, "delay": 0, "ssrc": 7}}]


def test_xchacha_is_chosen_when_aes_gcm_is_not_offered_and_nothing_else_is_refused() -> None:
    gateway = VoiceGateway(CREDS)
    gateway.start(now=0.0)
    gateway.receive_text(message(2, {"ssrc": 1, "ip": "203.0.113.5", "port": 1,
                                     "modes": ["aead_xchacha20_poly1305_rtpsize"]}), now=0.0)
    assert sent(gateway.ip_discovered("a", 1))[0]["d"]["data"]["mode"] == \
        "aead_xchacha20_poly1305_rtpsize"
    other = VoiceGateway(CREDS)
    other.start(now=0.0)
    with pytest.raises(VoiceGatewayError, match="no mode we support"):
        other.receive_text(message(2, {"ssrc": 1, "ip": "h", "port": 1,
                                       "modes": ["xsalsa20_poly1305"]}), now=0.0)


def test_without_dave_or_a_channel_identify_offers_dave_version_0() -> None:
    for gateway in (VoiceGateway(CREDS, dave=False),
                    VoiceGateway(VoiceCredentials(1, 2, "s", "t", "e"))):
        assert sent(gateway.start(now=0.0))[0]["d"]["max_dave_protocol_version"] == 0
        assert gateway.dave is None


def test_heartbeats_carry_the_last_seq_and_acks_give_the_ping() -> None:
    gateway = connected()
    gateway.receive_binary(struct.pack(">HB", 5, 25) + b"")  # binary messages count too
    assert sent(gateway.heartbeat(now=10.0)) == [{"op": 3, "d": {"t": 10000, "seq_ack": 5}}]
    gateway.receive_text(message(6, {"t": 10000}), now=10.042)
    assert gateway.ping == pytest.approx(0.042)
    gateway.receive_text(message(5, {"speaking": 1, "ssrc": 9, "user_id": "3"}, seq=6),
                         now=11.0)
    assert sent(gateway.heartbeat(now=20.0))[0]["d"]["seq_ack"] == 6


def test_a_heartbeat_due_while_the_last_is_unanswered_closes_for_a_resume() -> None:
    gateway = connected()
    gateway.heartbeat(now=1.0)
    assert gateway.heartbeat(now=2.0) == [CloseForResume("heartbeat not acknowledged")]
    decision = gateway.connection_lost(1000, "", by_remote=False)  # our own close
    assert decision.action is CloseAction.RESUME
    assert sent(gateway.start(now=3.0)) == [{"op": 7, "d": {
        "server_id": "41771983423143937", "session_id": "sess", "token": "tok",
        "seq_ack": 2}}]
    gateway.receive_text(message(9, None, seq=3), now=3.1)
    assert gateway.phase is Phase.CONNECTED and gateway.resumes == 1


def test_resumed_repeats_speaking_when_we_were_speaking() -> None:
    gateway = connected()
    gateway.set_speaking(SpeakingFlag.MICROPHONE)
    gateway.connection_lost(4015, "crash", by_remote=True)
    gateway.start(now=0.0)
    assert sent(gateway.receive_text(message(9, None), now=0.0)) == [
        {"op": 5, "d": {"speaking": 1, "delay": 0, "ssrc": 7}}]


# -- what is refused -----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "words"), [
    ("not json", "not JSON"),
    ('{"d": 1}', "without an integer op"),
    ('[1, 2]', "without an integer op"),
    (message(2, {"ssrc": 1}), "unexpected READY while connected"),
    (message(9, None), "unexpected RESUMED while connected"),
    (message(4, {"mode": "aead_aes256_gcm_rtpsize", "secret_key": [1, 2]}),
     "malformed SESSION_DESCRIPTION"),
    (message(4, {"mode": "plain", "secret_key": list(KEY)}), "malformed SESSION_DESCRIPTION"),
    (message(8, {}), "malformed HELLO"),
])
def test_messages_out_of_place_or_malformed_are_named_errors(text: str, words: str) -> None:
    with pytest.raises(VoiceGatewayError, match=words):
        connected().receive_text(text, now=0.0)


def test_unknown_opcodes_are_ignored_and_binary_rules_hold() -> None:
    gateway = connected()
    assert gateway.receive_text(message(18, {"any": "thing"}, seq=9), now=0.0) == []
    assert gateway.receive_binary(struct.pack(">HB", 10, 99)) == []
    with pytest.raises(VoiceGatewayError, match="2 bytes"):
        gateway.receive_binary(b"\x00\x01")
    with pytest.raises(VoiceGatewayError, match="READY arrived as a binary"):
        gateway.receive_binary(struct.pack(">HB", 11, 2))


def test_inputs_out_of_order_are_usage_errors() -> None:
    gateway = VoiceGateway(CREDS)
    with pytest.raises(VoiceUsageError, match="ip_discovered is not possible"):
        gateway.ip_discovered("a", 1)
    gateway.start(now=0.0)
    with pytest.raises(VoiceUsageError, match="identify is not possible while identifying"):
        gateway.start(now=0.0)
    with pytest.raises(VoiceGatewayError, match="unexpected SESSION_DESCRIPTION"):
        gateway.receive_text(message(4, {"mode": "x", "secret_key": []}), now=0.0)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.builds(
    lambda op, d: json.dumps({"op": op, "d": d}),
    st.integers(-1, 40), st.none() | st.integers() | st.dictionaries(
        st.sampled_from(["ssrc", "ip", "port", "modes", "t", "mode", "secret_key",
                         "user_ids", "user_id", "heartbeat_interval", "transition_id",
                         "protocol_version", "epoch"]),
        st.none() | st.integers(-5, 70000) | st.text(max_size=5)
        | st.lists(st.integers(0, 255), max_size=33), max_size=6)))
def test_any_text_gives_actions_or_the_named_error(text: str) -> None:
    for gateway in (VoiceGateway(CREDS), connected()):
        if gateway.phase is Phase.DISCONNECTED:
            gateway.start(now=0.0)
        try:
            gateway.receive_text(text, now=0.0)
        except VoiceGatewayError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_any_binary_gives_actions_or_the_named_error(data: bytes) -> None:
    gateway = connected(dave_version=1)
    try:
        gateway.receive_binary(data)
    except VoiceGatewayError:
        pass


# -- closes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "resuming", "action"), [
    (None, False, CloseAction.RESUME),
    (1006, False, CloseAction.RESUME),
    (4015, False, CloseAction.RESUME),
    (1001, False, CloseAction.RESUME),
    (4009, False, CloseAction.REIDENTIFY),
    (4006, True, CloseAction.REIDENTIFY),
    (4006, False, CloseAction.FINAL),
    (4014, False, CloseAction.FINAL),
    (4022, False, CloseAction.FINAL),
    (4021, False, CloseAction.FINAL),
    (4004, False, CloseAction.FINAL),
    (4016, False, CloseAction.FINAL),
    (1000, False, CloseAction.FINAL),
])
def test_close_codes_as_discord_documents_them(code: int | None, resuming: bool,
                                               action: CloseAction) -> None:
    assert close_action(code, resuming=resuming) is action


def test_a_close_before_any_session_identifies_again_and_attempts_are_bounded() -> None:
    gateway = VoiceGateway(CREDS, max_attempts=3)
    decisions = []
    for _ in range(3):
        gateway.start(now=0.0)
        decisions.append(gateway.connection_lost(None, "refused", by_remote=False).action)
    assert decisions == [CloseAction.REIDENTIFY, CloseAction.REIDENTIFY, CloseAction.FINAL]
    assert gateway.phase is Phase.CLOSED


def test_a_connected_session_resets_the_attempt_count() -> None:
    gateway = connected(max_attempts=2)
    assert gateway.connection_lost(4015, "", by_remote=True).action is CloseAction.RESUME
    gateway.start(now=0.0)
    gateway.receive_text(message(9, None), now=0.0)
    assert gateway.failed_attempts == 0
    assert gateway.connection_lost(4015, "", by_remote=True).action is CloseAction.RESUME


def test_after_our_own_close_every_close_is_final() -> None:
    gateway = connected()
    gateway.close()
    decision = gateway.connection_lost(4015, "crash", by_remote=True)
    assert (decision.action, decision.code, decision.by_remote) == (
        CloseAction.FINAL, 4015, True)


def test_a_refused_resume_identifies_anew_with_a_fresh_seq() -> None:
    gateway = connected()
    gateway.connection_lost(4015, "", by_remote=True)
    gateway.start(now=0.0)
    assert gateway.connection_lost(4006, "", by_remote=True).action is CloseAction.REIDENTIFY
    assert sent(gateway.start(now=0.0))[0]["op"] == VoiceOp.IDENTIFY
    assert gateway.ssrc is None and gateway.phase is Phase.IDENTIFYING


# -- the gateway URL -----------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "url"), [
    ("sweetwater-12345.discord.media:2048", "wss://sweetwater-12345.discord.media:2048/?v=8"),
    ("c-fra08-1a2b.discord.media", "wss://c-fra08-1a2b.discord.media/?v=8"),
    ("ws://127.0.0.1:8765", "ws://127.0.0.1:8765/?v=8"),
    ("wss://voice.test/path?x=1", "wss://voice.test/path?x=1&v=8"),
])
def test_the_endpoint_becomes_a_v8_url(endpoint: str, url: str) -> None:
    assert gateway_url(endpoint) == url


@pytest.mark.parametrize("endpoint", ["http://voice.test", "wss://", ""])
def test_an_endpoint_that_is_no_websocket_is_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="is not a ws"):
        gateway_url(endpoint)


# -- RTP and IP discovery ------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(EncryptionMode))
def test_packets_decrypt_with_the_modes_own_primitives(mode: EncryptionMode) -> None:
    packetizer = RtpPacketizer(0xDEADBEEF, TransportEncryptor(mode, KEY, nonce=0xFFFF_FFFF),
                               sequence=0xFFFF, timestamp=0xFFFF_FF00)
    first, second = packetizer.packetize(b"opus-1"), packetizer.packetize(b"opus-2")
    for packet, sequence, timestamp, nonce in ((first, 0xFFFF, 0xFFFF_FF00, 0xFFFF_FFFF),
                                               (second, 0, 0x2C0, 0)):
        header, body, counter = packet[:12], packet[12:-4], packet[-4:]
        assert header == struct.pack(">BBHII", 0x80, 0x78, sequence, timestamp, 0xDEADBEEF)
        assert counter == struct.pack(">I", nonce)
        if mode is EncryptionMode.AEAD_AES256_GCM_RTPSIZE:
            plain = AESGCM(KEY).decrypt(counter + bytes(8), body, header)
        else:
            plain = crypto_aead_xchacha20poly1305_ietf_decrypt(body, header,
                                                               counter + bytes(20), KEY)
        assert plain == (b"opus-1" if packet is first else b"opus-2")
        assert len(body) == 6 + 16


def test_a_skipped_frame_moves_the_timestamp_but_not_the_sequence() -> None:
    packetizer = RtpPacketizer(1, TransportEncryptor(EncryptionMode.AEAD_AES256_GCM_RTPSIZE,
                                                     KEY), sequence=10, timestamp=1000)
    packetizer.skip()
    _, _, sequence, timestamp, _ = struct.unpack_from(">BBHII", packetizer.packetize(b"x"))
    assert (sequence, timestamp) == (10, 1960)


def test_a_key_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="31 bytes"):
        TransportEncryptor(EncryptionMode.AEAD_XCHACHA20_POLY1305_RTPSIZE, KEY[:31])


def test_ip_discovery_request_and_response() -> None:
    request = ip_discovery_request(0x01020304)
    assert request == b"\x00\x01\x00\x46\x01\x02\x03\x04" + bytes(66)
    response = (b"\x00\x02\x00\x46\x01\x02\x03\x04" + b"198.51.100.9".ljust(64, b"\x00")
                + struct.pack(">H", 40000))
    assert parse_ip_discovery_response(response, 0x01020304) == ("198.51.100.9", 40000)
    for bad, words in [(response[:-1], "73 bytes"), (response, "SSRC 5"),
                       (response[:8] + b"not an ip".ljust(64, b"\x00") + response[72:],
                        "address"),
                       (response[:72] + b"\x00\x00", "port 0")]:
        with pytest.raises(InvalidDiscoveryResponse, match=words):
            parse_ip_discovery_response(bad, 5 if words == "SSRC 5" else 0x01020304)


# -- DAVE ----------------------------------------------------------------------------------


def _binary(op: VoiceOp, payload: bytes, seq: int = 1) -> bytes:
    return struct.pack(">HB", seq, op) + payload


def test_dave_from_key_package_to_encrypted_frames() -> None:
    """The core and davey through a whole group creation: we commit the listener's Add
    proposal, the listener joins with our welcome and reads our frames."""
    gateway = VoiceGateway(CREDS)
    key_package = [a for a in handshake(gateway, dave_version=1) if isinstance(a, SendBinary)]
    assert [a.op for a in key_package] == [VoiceOp.DAVE_MLS_KEY_PACKAGE]
    sender = ExternalSender()
    listener = davey.DaveSession(1, 42, CREDS.channel_id or 0)
    listener.set_external_sender(sender.package())
    assert gateway.receive_binary(_binary(VoiceOp.DAVE_MLS_EXTERNAL_SENDER,
                                          sender.package())) == []
    proposal = sender.add_proposal(listener.get_serialized_key_package(),
                                   CREDS.channel_id or 0, epoch=0)
    actions = gateway.receive_binary(_binary(VoiceOp.DAVE_MLS_PROPOSALS,
                                             sender.proposals([proposal])))
    assert len(actions) == 1 and isinstance(actions[0], SendBinary)
    assert actions[0].op is VoiceOp.DAVE_MLS_COMMIT_WELCOME
    assert gateway.dave is not None and not gateway.dave.active
    frame = b"\xfc" + bytes(range(40))
    assert gateway.dave.encrypt(frame) == frame  # not ready yet: passes through
    # The listener is welcomed (the stand-in splits op 28; here we ask davey directly).
    commit_and_welcome = actions[0].payload
    commit = next(c for c, w in split_commit_welcome(commit_and_welcome)
                  if w is not None and _welcomes(listener, w))
    actions = gateway.receive_binary(_binary(VoiceOp.DAVE_MLS_ANNOUNCE_COMMIT_TRANSITION,
                                             struct.pack(">H", 3) + commit))
    assert sent(actions) == [{"op": 23, "d": {"transition_id": 3}}]
    assert gateway.receive_text(message(22, {"transition_id": 3}), now=0.0) == []
    assert gateway.dave.active and gateway.dave.privacy_code
    encrypted = gateway.dave.encrypt(frame)
    assert encrypted[-2:] == b"\xfa\xfa" and encrypted != frame
    assert listener.decrypt(CREDS.user_id, davey.MediaType.audio, encrypted) == frame


def _welcomes(listener: davey.DaveSession, welcome: bytes) -> bool:
    try:
        listener.process_welcome(welcome)
    except Exception:
        return False
    return True


@pytest.mark.parametrize(("op", "payload", "words"), [
    (VoiceOp.DAVE_MLS_EXTERNAL_SENDER, b"xx", "external sender package refused"),
    (VoiceOp.DAVE_MLS_PROPOSALS, b"", "without an operation type"),
    (VoiceOp.DAVE_MLS_ANNOUNCE_COMMIT_TRANSITION, b"\x00", "shorter than its transition id"),
    (VoiceOp.DAVE_MLS_WELCOME, b"", "shorter than its transition id"),
])
def test_malformed_dave_messages_are_named_errors(op: VoiceOp, payload: bytes,
                                                  words: str) -> None:
    with pytest.raises(VoiceGatewayError, match=words):
        connected(dave_version=1).receive_binary(_binary(op, payload))


def test_dave_messages_outside_a_dave_call_are_ignored() -> None:
    gateway = connected(dave_version=0)
    assert gateway.receive_binary(_binary(VoiceOp.DAVE_MLS_PROPOSALS, b"\x00\x00")) == []
    assert not gateway.dave or not gateway.dave.active


def test_an_unprocessable_commit_is_reported_and_the_session_starts_over() -> None:
    gateway = connected(dave_version=1)
    gateway.receive_binary(_binary(VoiceOp.DAVE_MLS_EXTERNAL_SENDER,
                                   ExternalSender().package()))
    actions = gateway.receive_binary(_binary(VoiceOp.DAVE_MLS_ANNOUNCE_COMMIT_TRANSITION,
                                             struct.pack(">H", 4) + b"garbage"))
    assert sent(actions) == [{"op": 31, "d": {"transition_id": 4}}]
    assert [a.op for a in actions if isinstance(a, SendBinary)] == [
        VoiceOp.DAVE_MLS_KEY_PACKAGE]


def test_a_downgrade_is_acknowledged_and_executed() -> None:
    driver = DaveDriver(1, 2)
    assert driver.session_description(1)[0].op is VoiceOp.DAVE_MLS_KEY_PACKAGE  # type: ignore[union-attr]
    assert sent(driver.receive_json(VoiceOp.DAVE_PREPARE_TRANSITION,
                                    {"transition_id": 8, "protocol_version": 0})) == [
        {"op": 23, "d": {"transition_id": 8}}]
    assert driver.protocol_version == 1
    driver.receive_json(VoiceOp.DAVE_EXECUTE_TRANSITION, {"transition_id": 8})
    assert driver.protocol_version == 0 and not driver.active
    assert driver.encrypt(b"frame") == b"frame" and driver.plain_frames == 1
    # Epoch 1 of a new version starts a new group: a new key package.
    actions = driver.receive_json(VoiceOp.DAVE_PREPARE_EPOCH,
                                  {"epoch": 1, "protocol_version": 1, "transition_id": 9})
    assert [a.op for a in actions if isinstance(a, SendBinary)] == [
        VoiceOp.DAVE_MLS_KEY_PACKAGE]
