"""Tests for the web face's audio decoders: pcm16, G.711 and WebM/Opus to PCM s16le."""

from __future__ import annotations

import asyncio
import io
import random
import threading
import warnings

import av
import numpy as np
import pytest

from wyoming_openai.audio import AudioFormat
from wyoming_openai.errors import BridgeError, ErrorCode
from wyoming_openai.web.decode import (
    DEFAULT_RATES,
    FORMATS,
    AudioDecoder,
    make_decoder,
)

TONE_HZ = 440.0
TONE_LEVEL = 0.3  # of full scale


# ------------------------------------------------------------------------- helpers


def tone(rate: int, seconds: float, level: float = TONE_LEVEL) -> np.ndarray:
    """A 440 Hz sine as int16 samples."""
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(level * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def level_db(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale."""
    rms = np.sqrt(np.mean((samples.astype(np.float64) / 32768) ** 2))
    return float(20 * np.log10(rms))


def assert_tone(pcm: bytes, rate: int, seconds: float) -> None:
    samples = np.frombuffer(pcm, dtype="<i2")
    assert abs(len(samples) - rate * seconds) <= 0.02 * rate * seconds
    body = samples[len(samples) // 10 : -len(samples) // 10 or None]  # skip the edges
    assert abs(dominant_hz(body, rate) - TONE_HZ) < 5
    expected = 20 * np.log10(TONE_LEVEL / np.sqrt(2))
    assert abs(level_db(body) - expected) < 2


def random_splits(data: bytes, seed: int, max_len: int = 700) -> list[bytes]:
    """``data`` cut into chunks of random lengths 0..max_len (empty chunks included)."""
    rng = random.Random(seed)
    chunks, pos = [], 0
    while pos < len(data):
        n = rng.randint(0, max_len)
        chunks.append(data[pos : pos + n])
        pos += n
    return chunks


async def decode_all(decoder: AudioDecoder, chunks: list[bytes]) -> bytes:
    try:
        out = [decoder.feed(chunk) for chunk in chunks]
        out.append(await decoder.finish())
        return b"".join(out)
    finally:
        await decoder.aclose()


def g711_encode(format: str, samples: np.ndarray, rate: int) -> bytes:
    """int16 samples -> G.711 bytes with FFmpeg's encoder."""
    codec = {"g711_ulaw": "pcm_mulaw", "g711_alaw": "pcm_alaw"}[format]
    ctx = av.CodecContext.create(codec, "w")
    ctx.sample_rate = rate
    ctx.layout = "mono"
    ctx.format = "s16"
    frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
    frame.rate = rate
    return b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))


class _WriteOnly(io.RawIOBase):
    """A non-seekable sink: the muxer writes a live stream (unknown sizes), as
    MediaRecorder does."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += b
        return len(b)


def webm_opus(seconds: float = 2.0, channels: int = 1, live: bool = False) -> bytes:
    """A WebM file with one Opus track holding a 440 Hz tone."""
    sink: io.BytesIO | _WriteOnly = _WriteOnly() if live else io.BytesIO()
    layout = "mono" if channels == 1 else "stereo"
    with av.open(sink, "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = layout
        samples = tone(48000, seconds)
        for i in range(0, len(samples), 960):
            block = samples[i : i + 960]
            frame = av.AudioFrame.from_ndarray(
                np.repeat(block, channels)[None, :], format="s16", layout=layout
            )
            frame.rate = 48000
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return bytes(sink.data) if isinstance(sink, _WriteOnly) else sink.getvalue()


def decoder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "webm-opus-decoder"]


@pytest.fixture(autouse=True)
def no_thread_left():
    yield
    assert not decoder_threads()


# --------------------------------------------------------------------------- make_decoder


def test_interface_constants() -> None:
    assert FORMATS == ("pcm16", "g711_ulaw", "g711_alaw", "webm_opus")
    assert DEFAULT_RATES == {"pcm16": 16000, "g711_ulaw": 8000, "g711_alaw": 8000}


@pytest.mark.parametrize("name", ["mp3", "PCM16", "", "opus"])
def test_unknown_format(name: str) -> None:
    with pytest.raises(BridgeError) as info:
        make_decoder(name)
    assert info.value.code == ErrorCode.UNSUPPORTED_FORMAT
    assert "pcm16" in info.value.message


@pytest.mark.parametrize("format", ["pcm16", "g711_ulaw", "g711_alaw"])
@pytest.mark.parametrize("rate", [0, -8000, 1_000_000, 16000.5, True])
def test_impossible_rate(format: str, rate: object) -> None:
    with pytest.raises(BridgeError) as info:
        make_decoder(format, rate)  # type: ignore[arg-type]
    assert info.value.code == ErrorCode.BAD_AUDIO_FORMAT
    assert "rate" in info.value.message


# --------------------------------------------------------------------------------- pcm16


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
async def test_pcm16_round_trip(rate: int) -> None:
    pcm = tone(rate, 0.5).tobytes()
    decoder = make_decoder("pcm16", rate)
    assert decoder.output_format == AudioFormat(rate, 2, 1)
    out = await decode_all(decoder, random_splits(pcm, seed=rate, max_len=333))
    assert out == pcm


async def test_pcm16_default_rate_and_odd_bytes() -> None:
    decoder = make_decoder("pcm16")
    assert decoder.output_format == AudioFormat(16000, 2, 1)
    assert decoder.feed(b"\x01") == b""
    assert decoder.feed(b"\x02\x03") == b"\x01\x02"
    assert decoder.feed(b"") == b""
    assert decoder.feed(b"\x04\x05\x06\x07") == b"\x03\x04\x05\x06"
    assert await decoder.finish() == b""  # half a sample is dropped
    await decoder.aclose()
    await decoder.aclose()


# --------------------------------------------------------------------------------- G.711


@pytest.mark.parametrize("format", ["g711_ulaw", "g711_alaw"])
@pytest.mark.parametrize("rate", [8000, 16000])
async def test_g711_tone(format: str, rate: int) -> None:
    encoded = g711_encode(format, tone(rate, 1.0), rate)
    assert len(encoded) == rate
    decoder = make_decoder(format, rate)
    assert decoder.output_format == AudioFormat(rate, 2, 1)
    whole = await decode_all(decoder, [encoded])
    assert_tone(whole, rate, 1.0)
    for seed in range(3):
        split = await decode_all(make_decoder(format, rate), random_splits(encoded, seed))
        assert split == whole


@pytest.mark.parametrize(
    ("format", "lin2law"), [("g711_ulaw", "lin2ulaw"), ("g711_alaw", "lin2alaw")]
)
async def test_g711_matches_audioop(format: str, lin2law: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    samples = tone(8000, 0.5)
    encoded = getattr(audioop, lin2law)(samples.tobytes(), 2)
    law2lin = {"g711_ulaw": audioop.ulaw2lin, "g711_alaw": audioop.alaw2lin}[format]
    assert await decode_all(make_decoder(format), [encoded]) == law2lin(encoded, 2)


# ----------------------------------------------------------------------------- webm_opus


@pytest.mark.parametrize(("channels", "live"), [(1, False), (1, True), (2, True)])
async def test_webm_opus_tone(channels: int, live: bool) -> None:
    data = webm_opus(2.0, channels=channels, live=live)
    decoder = make_decoder("webm_opus", rate=16000)  # the rate is the stream's
    assert decoder.output_format is None
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    out = []
    for chunk in chunks:
        out.append(decoder.feed(chunk))
        await asyncio.sleep(0.001)
    assert decoder_threads()
    out.append(await decoder.finish())
    await decoder.aclose()
    assert decoder.output_format == AudioFormat(48000, 2, 1)
    assert b"".join(out[:-1])  # PCM came out before the end of the stream
    assert_tone(b"".join(out), 48000, 2.0)


async def test_webm_opus_random_splits() -> None:
    data = webm_opus(1.0)
    whole = await decode_all(make_decoder("webm_opus"), [data])
    assert_tone(whole, 48000, 1.0)
    split = await decode_all(make_decoder("webm_opus"), random_splits(data, seed=1))
    assert split == whole


@pytest.mark.parametrize(
    "data",
    [
        bytes(random.Random(0).randbytes(5000)),
        b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(4000),
        b"\x1a\x45\xdf\xa3" + bytes(100),  # an EBML ID, then nothing sensible
    ],
    ids=["random", "wav", "truncated-ebml"],
)
async def test_webm_opus_garbage(data: bytes) -> None:
    decoder = make_decoder("webm_opus")
    with pytest.raises(BridgeError) as info:
        for i in range(0, len(data), 1000):
            decoder.feed(data[i : i + 1000])
            await asyncio.sleep(0.01)
        await decoder.finish()
    assert info.value.code == ErrorCode.BAD_AUDIO_FORMAT
    assert "webm_opus" in info.value.message
    with pytest.raises(BridgeError):  # the error sticks
        await decoder.finish()
    await decoder.aclose()


async def test_webm_opus_header_missing() -> None:
    """A stream joined mid-way (no header): a client that reconnects without restarting
    its MediaRecorder."""
    data = webm_opus(1.0, live=True)
    with pytest.raises(BridgeError) as info:
        await decode_all(make_decoder("webm_opus"), [data[len(data) // 2 :]])
    assert info.value.code == ErrorCode.BAD_AUDIO_FORMAT


async def test_webm_opus_empty() -> None:
    decoder = make_decoder("webm_opus")
    assert decoder.feed(b"") == b""
    assert await decoder.finish() == b""
    assert decoder.output_format is None
    await decoder.aclose()


async def test_webm_opus_aclose_mid_stream() -> None:
    data = webm_opus(2.0, live=True)
    decoder = make_decoder("webm_opus")
    decoder.feed(data[: len(data) // 2])
    await asyncio.sleep(0.05)
    assert decoder_threads()
    await decoder.aclose()
    assert not decoder_threads()
    await decoder.aclose()  # idempotent
    with pytest.raises(RuntimeError):
        decoder.feed(b"more")


async def test_webm_opus_aclose_waiting_for_header() -> None:
    decoder = make_decoder("webm_opus")
    decoder.feed(b"\x1a\x45")  # the thread blocks reading the rest of the header
    await asyncio.sleep(0.02)
    await decoder.aclose()
    assert not decoder_threads()


async def test_webm_without_opus() -> None:
    """A valid WebM whose only track is video (VP8)."""
    if "libvpx" not in av.codecs_available:
        pytest.skip("no VP8 encoder in this PyAV build")
    sink = io.BytesIO()
    with av.open(sink, "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(BridgeError) as info:
        await decode_all(make_decoder("webm_opus"), [sink.getvalue()])
    assert info.value.code == ErrorCode.BAD_AUDIO_FORMAT
    assert "no Opus track" in info.value.message
