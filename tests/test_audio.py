"""Tests for the streaming PCM converter, format validation and WAV wrapping."""

from __future__ import annotations

import io
import itertools
import re
import wave
from collections.abc import Iterable, Iterator

import numpy as np
import pytest
import soxr

from wyoming_openai.audio import PCM_24K_MONO, AudioFormat, pcm_to_wav, validate_format
from wyoming_openai.resample import AudioConverter

CLIENT_RATES = (8000, 16000, 22050, 44100, 48000)
PCM_16K_MONO = AudioFormat(rate=16000, width=2, channels=1)


# ------------------------------------------------------------------------- helpers


def encode(samples: np.ndarray, width: int) -> bytes:
    """Float samples in [-1, 1] (1-D, or 2-D [frame, channel]) -> signed LE PCM bytes."""
    full = float(1 << (8 * width - 1))
    ints = np.clip(np.rint(np.asarray(samples, dtype=np.float64) * full), -full, full - 1)
    if width == 3:
        return ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return ints.astype({1: "i1", 2: "<i2", 4: "<i4"}[width]).tobytes()


def s16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


def sine(freq: float, rate: int, seconds: float, amp: float) -> np.ndarray:
    n = round(rate * seconds)
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def ten_ms_chunks(pcm: bytes, fmt: AudioFormat) -> Iterator[bytes]:
    """The way Wyoming clients send audio: fixed 10 ms chunks (last one shorter)."""
    size = fmt.bytes_for_ms(10)
    for start in range(0, len(pcm), size):
        yield pcm[start : start + size]


def odd_chunks(pcm: bytes) -> Iterator[bytes]:
    """Chunk sizes that split frames (and samples) at every possible offset."""
    sizes = itertools.cycle((1, 7, 333, 2, 1001, 5, 64, 3))
    start = 0
    while start < len(pcm):
        size = next(sizes)
        yield pcm[start : start + size]
        start += size


def run(conv: AudioConverter, chunks: Iterable[bytes]) -> bytes:
    return b"".join(conv.convert(c) for c in chunks) + conv.flush()


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def snr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    n = min(len(reference), len(actual))
    ref = reference[:n].astype(np.float64)
    err = actual[:n].astype(np.float64) - ref
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum(err**2), 1e-12)))


# ---------------------------------------------------------------- sine conversions


@pytest.mark.parametrize("chunking", ["10ms", "odd"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("width", [2, 4])
@pytest.mark.parametrize("rate", CLIENT_RATES)
@pytest.mark.parametrize("freq", [440, 1000])
def test_sine_to_24k_mono(freq: int, rate: int, width: int, channels: int, chunking: str) -> None:
    """Duration, pitch and loudness survive conversion from every client format."""
    src = AudioFormat(rate=rate, width=width, channels=channels)
    seconds, amp = 1.0, 0.5
    mono = sine(freq, rate, seconds, amp)
    pcm = encode(np.repeat(mono[:, None], channels, axis=1), width)
    chunks = ten_ms_chunks(pcm, src) if chunking == "10ms" else odd_chunks(pcm)

    conv = AudioConverter(src, PCM_24K_MONO)
    out = s16(run(conv, chunks))

    expected = 24000 * seconds
    assert abs(len(out) - expected) <= 24 * 3, f"{len(out)} samples, expected {expected}"
    assert abs(dominant_hz(out, 24000) - freq) <= 2
    steady = out[1200:-1200] / 32768  # skip 50 ms at each end (filter edges)
    level_db = 20 * np.log10(rms(steady) / (amp / np.sqrt(2)))
    assert abs(level_db) < 1.0


@pytest.mark.parametrize("rate", CLIENT_RATES)
def test_to_16k_mono_keeps_duration_and_pitch(rate: int) -> None:
    src = AudioFormat(rate=rate, width=2, channels=1)
    pcm = encode(sine(1000, rate, 1.0, 0.5), 2)
    out = s16(run(AudioConverter(src, PCM_16K_MONO), ten_ms_chunks(pcm, src)))
    assert abs(len(out) - 16000) <= 16 * 3
    assert abs(dominant_hz(out, 16000) - 1000) <= 2


# ------------------------------------------------------------ streaming == one-shot


def speechish(rate: int, seconds: float) -> np.ndarray:
    """A few partials below 4 kHz with a slow envelope (valid at every client rate)."""
    t = np.arange(round(rate * seconds)) / rate
    partials = sum(a * np.sin(2 * np.pi * f * t) for f, a in ((180, 0.3), (720, 0.2), (2900, 0.1)))
    return partials * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 16000])
def test_streaming_matches_ideal_resample(rate: int) -> None:
    src = AudioFormat(rate=rate, width=2, channels=1)
    signal = speechish(rate, 1.5)
    pcm = encode(signal, 2)
    streamed = s16(run(AudioConverter(src, PCM_24K_MONO), ten_ms_chunks(pcm, src)))

    decoded = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    ideal = soxr.resample(decoded, rate, 24000, quality="VHQ") * 32768
    assert abs(len(streamed) - len(ideal)) <= 2
    assert snr_db(ideal, streamed) > 40

    # The converter's own one-shot (whole signal in one call) agrees too.
    whole = s16(run(AudioConverter(src, PCM_24K_MONO), [pcm]))
    assert len(whole) == len(streamed)
    assert snr_db(whole, streamed) > 60


def speech_band_noise(rate: int, seconds: float, top_hz: float = 7000) -> np.ndarray:
    """Pink noise up to ``top_hz``: the bandwidth of real speech at 16 kHz (Piper's reaches
    7 kHz), where soxr's QQ and LQ filters measured 21 and 23 dB against VHQ and HQ 79 dB."""
    n = round(rate * seconds)
    spectrum = np.fft.rfft(np.random.default_rng(3).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum *= (freqs < top_hz) / np.sqrt(np.maximum(freqs, 100) / 100)
    noise = np.fft.irfft(spectrum, n)
    return 0.3 * noise / np.max(np.abs(noise))


def test_16k_speech_band_is_aligned_and_within_40_db() -> None:
    """Home Assistant's format: 16 kHz in 10 ms chunks -> exactly 3/2 as many samples,
    each where a plain soxr HQ stream puts it (no shift, no seam or click where the
    early output meets the rest), within 40 dB SNR of an ideal (VHQ) resample."""
    signal = speech_band_noise(16000, 1.5)
    pcm = encode(signal, 2)
    out = s16(run(AudioConverter(PCM_16K_MONO, PCM_24K_MONO), ten_ms_chunks(pcm, PCM_16K_MONO)))
    decoded = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    assert len(out) == round(len(decoded) * 3 / 2)

    plain = soxr.ResampleStream(16000, 24000, 1, dtype=np.float32, quality="HQ")
    reference = np.concatenate(
        [plain.resample_chunk(decoded), plain.resample_chunk(decoded[:0], last=True)]
    )
    assert len(reference) == len(out)
    assert np.max(np.abs(out - reference * 32768)) <= 1  # rounding only, every sample

    ideal = soxr.resample(decoded.astype(np.float64), 16000, 24000, quality="VHQ") * 32768
    assert snr_db(ideal, out) > 40
    assert snr_db(ideal, out) > snr_db(ideal[1:], out) + 20  # a 1-sample shift is far worse


@pytest.mark.parametrize(
    ("rate", "chunks"), [(16000, 1), (22050, 1), (44100, 1), (48000, 1), (8000, 2)]
)
def test_first_audio_comes_with_the_first_chunk(rate: int, chunks: int) -> None:
    """The first 10 ms chunk gives output at once (8 kHz: the second; its filter looks
    12 ms ahead), not only after the resampler's first 30 ms block has filled; and that
    output is the start of the stream, as a whole-signal conversion gives it."""
    src = AudioFormat(rate=rate, width=2, channels=1)
    pcm = encode(speechish(rate, 0.5), 2)
    pieces = list(ten_ms_chunks(pcm, src))
    conv = AudioConverter(src, PCM_24K_MONO)
    early = b"".join(conv.convert(chunk) for chunk in pieces[:chunks])
    assert len(early) >= PCM_24K_MONO.bytes_for_ms(2)

    whole = run(AudioConverter(src, PCM_24K_MONO), [pcm])
    rest = run(conv, pieces[chunks:])
    assert len(early + rest) == len(whole)
    assert np.max(np.abs(s16(early + rest).astype(np.int32) - s16(whole))) <= 1


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
@pytest.mark.parametrize("chunk_frames", [1, 160, 441])
def test_deferring_soxr_calls_never_delays_audio(rate: int, chunk_frames: int) -> None:
    """Chunks that soxr would answer with nothing are held and resampled together when its
    next block is due: every chunk returns exactly what it returns with that switched off
    (same bytes, same chunk), down to single frames, and the stream ends the same."""
    src = AudioFormat(rate=rate, width=2, channels=1)
    rng = np.random.default_rng(rate)
    pcm = (rng.standard_normal(rate // 4) * 3000).astype("<i2").tobytes()
    deferring = AudioConverter(src, PCM_24K_MONO)
    assert deferring._period is not None  # these rates have regular blocks
    plain = AudioConverter(src, PCM_24K_MONO)
    plain._period = None  # the schedule switched off: every chunk goes to soxr at once
    step = chunk_frames * 2
    for start in range(0, len(pcm), step):
        chunk = pcm[start : start + step]
        assert deferring.convert(chunk) == plain.convert(chunk), f"chunk at byte {start}"
    assert deferring.flush() == plain.flush()


def test_resampler_is_stateful_across_chunks() -> None:
    """Each chunk resampled from scratch would click at every 10 ms boundary."""
    src = AudioFormat(rate=16000, width=2, channels=1)
    pcm = encode(sine(440, 16000, 0.5, 0.5), 2)
    conv = AudioConverter(src, PCM_24K_MONO)
    assert conv.resamples
    out = s16(run(conv, ten_ms_chunks(pcm, src))).astype(np.float64)
    steady = out[600:-600]
    # A clean 440 Hz sine at 24 kHz moves at most 2*pi*440/24000 = 0.115 * amplitude
    # per sample; restarting the filter every 10 ms leaves gaps and steps far bigger.
    assert np.max(np.abs(np.diff(steady))) < 0.12 * 0.5 * 32768


# ------------------------------------------------------------------------ channels


def test_stereo_mixes_to_average() -> None:
    left = sine(440, 16000, 0.2, 0.5)
    right = sine(1000, 16000, 0.2, -0.25) + 0.1
    pcm = encode(np.stack([left, right], axis=1), 2)
    conv = AudioConverter(AudioFormat(16000, 2, 2), PCM_16K_MONO)
    assert not conv.resamples
    out = s16(run(conv, odd_chunks(pcm))).astype(np.int64)
    ints = np.frombuffer(pcm, dtype="<i2").reshape(-1, 2).astype(np.int64)
    assert len(out) == len(ints)
    assert np.max(np.abs(out * 2 - ints.sum(axis=1))) <= 1  # exact to rounding


def test_stereo_mix_with_resampling() -> None:
    left = sine(440, 48000, 1.0, 0.6)
    right = sine(1000, 48000, 1.0, 0.2)
    src = AudioFormat(48000, 4, 2)
    pcm = encode(np.stack([left, right], axis=1), 4)
    out = s16(run(AudioConverter(src, PCM_24K_MONO), ten_ms_chunks(pcm, src)))
    ideal = soxr.resample((left + right) / 2, 48000, 24000, quality="VHQ") * 32768
    assert snr_db(ideal, out) > 40


def test_stereo_to_stereo_keeps_channels_apart() -> None:
    src, dst = AudioFormat(48000, 2, 2), AudioFormat(24000, 2, 2)
    left, right = sine(440, 48000, 1.0, 0.5), sine(1000, 48000, 1.0, 0.25)
    pcm = encode(np.stack([left, right], axis=1), 2)
    out = s16(run(AudioConverter(src, dst), ten_ms_chunks(pcm, src))).reshape(-1, 2)
    assert abs(len(out) - 24000) <= 2
    assert abs(dominant_hz(out[:, 0], 24000) - 440) <= 2
    assert abs(dominant_hz(out[:, 1], 24000) - 1000) <= 2
    assert 20 * np.log10(rms(out[1200:-1200, 1]) / rms(out[1200:-1200, 0])) == pytest.approx(
        -6.02, abs=0.2
    )


def test_constant_stereo_values() -> None:
    pcm = np.array([[1000, -200], [-32768, -32768], [32767, 32767], [3, 4]], "<i2").tobytes()
    out = AudioConverter(AudioFormat(16000, 2, 2), PCM_16K_MONO).convert(pcm)
    assert s16(out).tolist() == [400, -32768, 32767, 4]  # 3.5 rounds half to even


def test_mono_to_stereo_duplicates() -> None:
    pcm = np.array([5, -7, 32767], "<i2").tobytes()
    out = AudioConverter(PCM_16K_MONO, AudioFormat(16000, 2, 2)).convert(pcm)
    assert s16(out).tolist() == [5, 5, -7, -7, 32767, 32767]


def test_six_channels_to_mono() -> None:
    frame = np.array([600, 0, -600, 1200, 0, 0], "<i2")
    out = AudioConverter(AudioFormat(16000, 2, 6), PCM_16K_MONO).convert(frame.tobytes() * 3)
    assert s16(out).tolist() == [200, 200, 200]


# -------------------------------------------------------------- sample encodings


def test_width_1_is_signed_8_bit() -> None:
    pcm = bytes([0x00, 0x7F, 0x80, 0xFF, 0x40, 0xC0])
    out = AudioConverter(AudioFormat(16000, 1, 1), PCM_16K_MONO).convert(pcm)
    assert s16(out).tolist() == [0, 127 * 256, -32768, -256, 64 * 256, -64 * 256]


def test_width_3_decodes_packed_s24le() -> None:
    values = [0, 1, -1, 0x123456, -0x123456, 8388607, -8388608]
    pcm = b"".join(v.to_bytes(3, "little", signed=True) for v in values)
    to32 = AudioConverter(AudioFormat(16000, 3, 1), AudioFormat(16000, 4, 1))
    assert np.frombuffer(to32.convert(pcm), "<i4").tolist() == [v << 8 for v in values]
    to16 = AudioConverter(AudioFormat(16000, 3, 1), PCM_16K_MONO)
    # 0x123456 / 256 = 0x1234.3 -> 0x1234; 8388607 / 256 = 32767.996 -> clipped 32767.
    assert s16(to16.convert(pcm)).tolist() == [0, 0, 0, 0x1234, -0x1234, 32767, -32768]


def test_width_3_encodes_packed_s24le() -> None:
    values = [0, 1, -1, 0x1234, -32768, 32767]
    conv = AudioConverter(PCM_16K_MONO, AudioFormat(16000, 3, 1))
    out = conv.convert(np.array(values, "<i2").tobytes())
    assert len(out) == 3 * len(values)
    decoded = [int.from_bytes(out[i : i + 3], "little", signed=True) for i in range(0, len(out), 3)]
    assert decoded == [v << 8 for v in values]


def test_width_3_stereo_in_odd_chunks() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(-(1 << 23), 1 << 23, size=(500, 2))
    pcm = b"".join(int(v).to_bytes(3, "little", signed=True) for v in values.ravel())
    conv = AudioConverter(AudioFormat(16000, 3, 2), AudioFormat(16000, 3, 1))
    out = run(conv, odd_chunks(pcm))
    got = [int.from_bytes(out[i : i + 3], "little", signed=True) for i in range(0, len(out), 3)]
    expected = np.rint(values.sum(axis=1) / 2).astype(np.int64)
    assert np.max(np.abs(np.array(got) - expected)) <= 1


# ------------------------------------------------------------------- identity path


def test_identity_returns_input_bytes() -> None:
    conv = AudioConverter(PCM_16K_MONO, PCM_16K_MONO)
    assert not conv.resamples
    chunk = encode(sine(440, 16000, 0.01, 0.5), 2)
    assert conv.convert(chunk) is chunk
    assert conv.flush() == b""


def test_identity_with_split_frames_keeps_every_byte() -> None:
    fmt = AudioFormat(16000, 2, 2)
    pcm = encode(np.stack([sine(440, 16000, 0.3, 0.5)] * 2, axis=1), 2)
    conv = AudioConverter(fmt, fmt)
    outputs = [conv.convert(c) for c in odd_chunks(pcm)]
    assert all(len(o) % fmt.frame_bytes == 0 for o in outputs)
    assert b"".join(outputs) + conv.flush() == pcm


def test_partial_frame_is_held_back() -> None:
    conv = AudioConverter(AudioFormat(16000, 2, 2), PCM_16K_MONO)
    assert conv.convert(b"\x10\x00\x20") == b""
    assert conv.pending_bytes == 3
    assert s16(conv.convert(b"\x00")).tolist() == [24]  # (16 + 32) / 2
    assert conv.pending_bytes == 0


def test_same_rate_needs_no_resampler() -> None:
    assert not AudioConverter(AudioFormat(24000, 4, 2), PCM_24K_MONO).resamples
    assert AudioConverter(AudioFormat(16000, 2, 1), PCM_24K_MONO).resamples


def test_use_after_flush_raises() -> None:
    conv = AudioConverter(PCM_16K_MONO, PCM_24K_MONO)
    conv.convert(b"\x00\x00" * 160)
    conv.flush()
    with pytest.raises(RuntimeError):
        conv.convert(b"\x00\x00")
    with pytest.raises(RuntimeError):
        conv.flush()


# ------------------------------------------------------------------------ clipping


def test_full_scale_32_bit_does_not_wrap() -> None:
    values = np.array([2**31 - 1, -(2**31), 2**31 - 1, 0], "<i4")
    out = AudioConverter(AudioFormat(16000, 4, 1), PCM_16K_MONO).convert(values.tobytes())
    assert s16(out).tolist() == [32767, -32768, 32767, 0]


def test_full_scale_32_bit_stays_32_bit() -> None:
    """Float rounding of 2**31 - 1 must not overflow the int32 cast."""
    frames = np.array([[2**31 - 1] * 2, [-(2**31)] * 2], "<i4")
    conv = AudioConverter(AudioFormat(16000, 4, 2), AudioFormat(16000, 4, 1))
    assert np.frombuffer(conv.convert(frames.tobytes()), "<i4").tolist() == [2**31 - 1, -(2**31)]


def test_resampler_overshoot_is_clipped_not_wrapped() -> None:
    """A full-scale square wave rings past full scale after resampling: clip it."""
    rate = 48000
    square = np.where(np.sin(2 * np.pi * 100 * np.arange(rate) / rate) >= 0, 1.0, -1.0)
    src = AudioFormat(rate, 4, 1)
    pcm = encode(square, 4)
    out = s16(run(AudioConverter(src, PCM_24K_MONO), ten_ms_chunks(pcm, src)))
    ideal = soxr.resample(square, rate, 24000, quality="VHQ")
    n = min(len(out), len(ideal))
    assert ideal.max() > 1.0  # the test really exercises overshoot
    assert out.max() == 32767 and out.min() == -32768
    loud = np.abs(ideal[:n]) > 0.5
    assert np.all(np.sign(out[:n][loud]) == np.sign(ideal[:n][loud]))


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("fmt", "field"),
    [
        (AudioFormat(rate=0, width=2, channels=1), "rate=0"),
        (AudioFormat(rate=200_000, width=2, channels=1), "rate=200000"),
        (AudioFormat(rate=16000, width=5, channels=1), "width=5"),
        (AudioFormat(rate=16000, width=0, channels=1), "width=0"),
        (AudioFormat(rate=16000, width=2, channels=0), "channels=0"),
        (AudioFormat(rate=16000, width=2, channels=9), "channels=9"),
        (AudioFormat(rate=16000.5, width=2, channels=1), "rate=16000.5"),  # type: ignore[arg-type]
    ],
)
def test_validate_format_rejects(fmt: AudioFormat, field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        validate_format(fmt)
    with pytest.raises(ValueError, match=re.escape(field)):
        AudioConverter(fmt, PCM_24K_MONO)


def test_validate_format_names_every_bad_field() -> None:
    with pytest.raises(ValueError, match=r"rate=0.*width=5.*channels=0"):
        validate_format(AudioFormat(rate=0, width=5, channels=0))


def test_validate_format_accepts_and_respects_max_rate() -> None:
    for rate, width, channels in itertools.product((1, 8000, 192_000), (1, 2, 3, 4), (1, 8)):
        validate_format(AudioFormat(rate, width, channels))
    with pytest.raises(ValueError, match="rate=48000"):
        validate_format(AudioFormat(48000, 2, 1), max_rate=24000)


def test_converter_error_says_which_side() -> None:
    with pytest.raises(ValueError, match=r"target.*width=5"):
        AudioConverter(PCM_16K_MONO, AudioFormat(24000, 5, 1))


# ----------------------------------------------------------------------------- WAV


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2])
def test_pcm_to_wav_round_trips(width: int, channels: int) -> None:
    fmt = AudioFormat(rate=22050, width=width, channels=channels)
    pcm = encode(np.repeat(sine(440, 22050, 0.1, 0.7)[:, None], channels, axis=1), width)
    with wave.open(io.BytesIO(pcm_to_wav(pcm, fmt)), "rb") as wav:
        assert wav.getframerate() == 22050
        assert wav.getsampwidth() == width
        assert wav.getnchannels() == channels
        assert wav.getnframes() == len(pcm) // fmt.frame_bytes
        frames = wav.readframes(wav.getnframes())
    if width == 1:  # WAV 8-bit is unsigned (offset 128)
        frames = (np.frombuffer(frames, np.uint8) ^ 0x80).astype(np.uint8).tobytes()
    assert frames == pcm


def test_pcm_to_wav_8_bit_is_unsigned() -> None:
    wav_bytes = pcm_to_wav(bytes([0x00, 0x7F, 0x80]), AudioFormat(8000, 1, 1))
    with wave.open(io.BytesIO(wav_bytes), "rb") as wav:
        assert wav.readframes(3) == bytes([0x80, 0xFF, 0x00])


def test_pcm_to_wav_rejects_partial_frames() -> None:
    with pytest.raises(ValueError, match="whole number"):
        pcm_to_wav(b"\x00\x00\x00", PCM_16K_MONO)
