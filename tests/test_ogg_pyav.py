"""Our Ogg Opus writer and reader against a real implementation (FFmpeg via PyAV)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from protocol import (
    ENCODER_PRE_SKIP,
    NEED_DATA,
    OggOpusReader,
    OggOpusWriter,
    OpusHead,
    OpusPacket,
    OpusStreamStart,
    opus_packet_samples,
)

from .support.media import decode_ogg_opus, dominant_frequency, write_tone


def encode_tone_packets(frequency: float, frames: int) -> list[bytes]:
    """Raw 20 ms Opus packets of a stereo tone, encoded by PyAV's libopus."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = 48_000
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = 128_000
    codec.options = {"frame_duration": "20", "application": "audio"}
    codec.open()
    t = np.arange(frames * 960) / 48_000
    wave = (0.4 * np.sin(2 * np.pi * frequency * t) * 32767).astype(np.int16)
    interleaved = np.repeat(wave, 2).reshape(1, -1)
    packets: list[bytes] = []
    for index in range(frames):
        chunk = np.ascontiguousarray(interleaved[:, index * 1920 : (index + 1) * 1920])
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate = 48_000
        frame.pts = index * 960
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return packets


def test_pyav_plays_a_file_written_by_our_writer(tmp_path: Path) -> None:
    packets = encode_tone_packets(440.0, 100)
    assert all(opus_packet_samples(p) == 960 for p in packets)
    writer = OggOpusWriter(0xC0FFEE)
    path = tmp_path / "ours.opus"
    body = b"".join(writer.audio_page(p, eos=i == len(packets) - 1) for i, p in enumerate(packets))
    path.write_bytes(writer.header_pages + body)

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        assert stream.codec_context.sample_rate == 48_000
        assert stream.codec_context.channels == 2
        demuxed = [bytes(p) for p in container.demux(stream) if p.size]
    assert demuxed == packets

    samples, rate = decode_ogg_opus(path)
    assert rate == 48_000
    # FFmpeg trims the pre-skip announced in our OpusHead.
    assert samples.shape == (2, len(packets) * 960 - ENCODER_PRE_SKIP)
    assert abs(dominant_frequency(samples[0]) - 440.0) < 2


def test_our_reader_parses_an_ogg_opus_file_written_by_pyav(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "theirs.ogg", 660.0, 3.0)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        expected = [bytes(p) for p in container.demux(stream) if p.size]
        head = OpusHead.parse(stream.codec_context.extradata)
    data = path.read_bytes()
    reader = OggOpusReader()
    got: list[bytes] = []
    starts = []
    # Feed it in odd-sized chunks, as a socket would.
    for offset in range(0, len(data), 1237):
        reader.receive_data(data[offset : offset + 1237])
        while (event := reader.next_event()) is not NEED_DATA:
            if isinstance(event, OpusPacket):
                got.append(event.data)
            else:
                assert isinstance(event, OpusStreamStart)
                starts.append(event)
    assert got == expected
    assert len(starts) == 1 and starts[0].head == head
    assert reader.crc_failures == 0 and reader.skipped_bytes == 0
