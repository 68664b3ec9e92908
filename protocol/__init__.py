"""Sans-I/O core of the engine's wire contract: framing, event lines, Ogg Opus.

Pure code: bytes in, typed values out, and back. No asyncio, sockets or clocks,
and no imports from the project's other packages; both the engine and the gateway
build their I/O as thin loops around it. See docs/protocol.md.
"""

from __future__ import annotations

from protocol.constants import (
    CHANNELS,
    DEFAULT_API_PORT,
    DEFAULT_SOCKET_PATH,
    FRAME_DURATION,
    FRAME_DURATION_MS,
    FRAMES_PER_SECOND,
    LENGTH_PREFIX_SIZE,
    PCM_FRAME_BYTES,
    PCM_SAMPLE_WIDTH,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    SESSION_ID_FIELD_SIZE,
)
from protocol.errors import (
    InvalidSessionId,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    TruncatedStream,
)
from protocol.hello import (
    MAX_HELLO_LINE_SIZE,
    ConsumerOrder,
    Hello,
    HelloReader,
    encode_hello,
    parse_hello,
)
from protocol.messages import (
    MAX_PAYLOAD_SIZE,
    AudioPacket,
    Event,
    EventType,
    ExtraValue,
    FinishReason,
    encode_event_line,
    encode_packet,
)
from protocol.need_data import NEED_DATA, NeedData
from protocol.ogg import (
    FLAG_BOS,
    FLAG_CONTINUED,
    FLAG_EOS,
    MAX_PAGE_SIZE,
    OggPage,
    OggPageReader,
    build_page,
    ogg_crc,
    single_packet_page,
)
from protocol.oggopus import (
    MAX_OPUS_PACKET_SIZE,
    OggOpusReader,
    OggOpusWriter,
    OpusPacket,
    OpusStreamStart,
)
from protocol.opus import (
    ENCODER_PRE_SKIP,
    OPUS_SILENCE_FRAME,
    OpusHead,
    OpusTags,
    opus_packet_samples,
)
from protocol.session_id import (
    MAX_SESSION_ID_LENGTH,
    pad_session_id,
    unpad_session_id,
    validate_session_id,
)
from protocol.stream import (
    DEFAULT_MAX_EVENT_LINE_SIZE,
    DEFAULT_MAX_PACKET_SIZE,
    DecodedMessage,
    Discarded,
    StreamDecoder,
)

__all__ = [
    "CHANNELS",
    "DEFAULT_API_PORT",
    "DEFAULT_MAX_EVENT_LINE_SIZE",
    "DEFAULT_MAX_PACKET_SIZE",
    "DEFAULT_SOCKET_PATH",
    "ENCODER_PRE_SKIP",
    "FLAG_BOS",
    "FLAG_CONTINUED",
    "FLAG_EOS",
    "FRAMES_PER_SECOND",
    "FRAME_DURATION",
    "FRAME_DURATION_MS",
    "LENGTH_PREFIX_SIZE",
    "MAX_HELLO_LINE_SIZE",
    "MAX_OPUS_PACKET_SIZE",
    "MAX_PAGE_SIZE",
    "MAX_PAYLOAD_SIZE",
    "MAX_SESSION_ID_LENGTH",
    "NEED_DATA",
    "OPUS_SILENCE_FRAME",
    "PCM_FRAME_BYTES",
    "PCM_SAMPLE_WIDTH",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "SESSION_ID_FIELD_SIZE",
    "AudioPacket",
    "ConsumerOrder",
    "DecodedMessage",
    "Discarded",
    "Event",
    "EventType",
    "ExtraValue",
    "FinishReason",
    "Hello",
    "HelloReader",
    "InvalidSessionId",
    "LocalProtocolError",
    "NeedData",
    "OggOpusReader",
    "OggOpusWriter",
    "OggPage",
    "OggPageReader",
    "OpusHead",
    "OpusPacket",
    "OpusStreamStart",
    "OpusTags",
    "ProtocolError",
    "RemoteProtocolError",
    "StreamDecoder",
    "TruncatedStream",
    "build_page",
    "encode_event_line",
    "encode_hello",
    "encode_packet",
    "ogg_crc",
    "opus_packet_samples",
    "pad_session_id",
    "parse_hello",
    "single_packet_page",
    "unpad_session_id",
    "validate_session_id",
]
