"""Streaming conversion between PCM formats: rate (soxr), width and channels.

Sizes are in bytes unless a name says samples or frames (one frame = one sample per
channel). A converter keeps its filter state across chunks: audio is never resampled
chunk by chunk from scratch.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from .audio import AudioFormat, validate_format

# ------------------------------------------------------------------ sample (de)coding

_INT_DTYPES: dict[int, str] = {1: "i1", 2: "<i2", 4: "<i4"}


def _decode_ints(pcm: bytes, width: int) -> npt.NDArray[np.signedinteger[Any]]:
    """Whole-frame PCM bytes -> 1-D array of signed integer samples (interleaved)."""
    if width != 3:
        return np.frombuffer(pcm, dtype=_INT_DTYPES[width])
    # Packed s24le: put the 3 bytes in the top of a little-endian int32, then shift
    # right arithmetically, which sign-extends.
    packed = np.frombuffer(pcm, dtype=np.uint8).reshape(-1, 3)
    wide = np.zeros((packed.shape[0], 4), dtype=np.uint8)
    wide[:, 1:] = packed
    return wide.view("<i4").reshape(-1) >> 8


def _encode(samples: npt.NDArray[np.floating[Any]], width: int) -> bytes:
    """Float samples in [-1, 1) -> little-endian signed PCM bytes, rounded and clipped.

    ``width == 4`` needs float64 input (float32 cannot represent 2**31 - 1, so the
    clip bound would round up to 2**31 and wrap around on the integer cast).
    """
    full_scale = float(1 << (8 * width - 1))
    scaled = np.rint(samples * full_scale)
    np.clip(scaled, -full_scale, full_scale - 1, out=scaled)
    if width != 3:
        return scaled.astype(_INT_DTYPES[width]).tobytes()
    as_bytes = scaled.astype("<i4").view(np.uint8).reshape(-1, 4)
    return as_bytes[:, :3].tobytes()


# ------------------------------------------------------------------------ converter

RESAMPLE_QUALITY = "HQ"
"""soxr quality for streaming conversion.

HQ is libsoxr's 20-bit-precision filter (~120 dB of alias rejection, flat to ~91 %
of Nyquist). Its impulse response spans +-6 ms for 16 -> 24 kHz, so an output sample
needs 6 ms of later input. VHQ (28-bit) costs more CPU and delays more for no audible or
recognisable difference once the result is rounded to 16 bits. The cheaper qualities fail
a 40 dB SNR bound (against a VHQ resample) on speech (``benchmarks/README.md``, Resampler
quality)."""

FIRST_OUTPUT_MS = 10
"""The first output of a resampling converter is due after this much input, ms: one
Home Assistant chunk (``homeassistant/components/wyoming/stt.py``, Home Assistant 2026.11).
See :func:`_priming_frames`."""


@functools.lru_cache(maxsize=32)
def _first_block(in_rate: int, out_rate: int, channels: int, dtype: str) -> tuple[int, int]:
    """``(frames_in, frames_out)``: a new HQ ``soxr.ResampleStream`` returns nothing until it
    has had ``frames_in`` input frames, then ``frames_out`` output frames at once.

    libsoxr filters in blocks and returns a block's output only when the block (plus the
    filter's look-ahead) has arrived. Probed here, not assumed (the blocks depend on
    the rates and on libsoxr's filter design): zeros are fed 64 frames at a time until
    output appears, then, to a second stream, one frame at a time across that last step;
    cached per rate pair.
    """
    coarse = 64
    fed = 0
    probe = soxr.ResampleStream(in_rate, out_rate, channels, dtype=dtype, quality=RESAMPLE_QUALITY)
    step = np.zeros((coarse, channels), dtype=dtype)
    while not len(probe.resample_chunk(step)):
        fed += coarse
    probe = soxr.ResampleStream(in_rate, out_rate, channels, dtype=dtype, quality=RESAMPLE_QUALITY)
    probe.resample_chunk(np.zeros((fed, channels), dtype=dtype))
    step = step[:1]
    while True:
        fed += 1
        out = probe.resample_chunk(step)
        if len(out):
            return fed, len(out)


@functools.lru_cache(maxsize=32)
def _block_period(in_rate: int, out_rate: int, channels: int, dtype: str) -> Fraction | None:
    """Input frames from one output block of an HQ ``soxr.ResampleStream`` to the next, when
    its blocks are regular; None when they are not (then nothing is deferred).

    Regular means: block ``k`` (the first is ``k = 0``, see :func:`_first_block`) comes out
    when the input reaches ``frames_in + ceil(k * period)`` frames, not one frame sooner,
    and holds ``frames_out`` frames, where ``period = frames_out * in_rate / out_rate``.
    Checked on zeros over a whole cycle of the fraction's rounding (``denominator`` blocks,
    at most 256; two ``resample_chunk`` calls per block).
    """
    first_in, first_out = _first_block(in_rate, out_rate, channels, dtype)
    period = Fraction(first_out * in_rate, out_rate)
    if period.denominator > 256:
        return None
    probe = soxr.ResampleStream(in_rate, out_rate, channels, dtype=dtype, quality=RESAMPLE_QUALITY)
    fed = 0

    def feed(frames: int) -> int:
        nonlocal fed
        fed += frames
        zeros = np.zeros((frames, channels), dtype=dtype)
        return len(probe.resample_chunk(zeros)) if frames else 0

    for k in range(period.denominator + 2):
        due = first_in + math.ceil(k * period)
        if feed(due - 1 - fed) or feed(1) != first_out:
            return None
    return period


def _priming_frames(in_rate: int, out_rate: int, channels: int, dtype: str) -> int:
    """Zero frames to feed a new stream before the real input (their output is dropped),
    so that the first :data:`FIRST_OUTPUT_MS` of input complete the stream's first block.

    Feeding silence before the start is what the stream assumes anyway (its filter starts
    on zeros), so the real output is unchanged (to float32 rounding); only the block
    boundaries move. The priming is a whole number of rate periods (``in_rate / gcd`` input
    frames, which give exactly ``out_rate / gcd`` output frames), so the frames to drop are
    exact. When the filter's look-ahead exceeds :data:`FIRST_OUTPUT_MS` (as at 8 kHz), the
    first block is aimed at the end of the second chunk, and so on.
    """
    first_in, first_out = _first_block(in_rate, out_rate, channels, dtype)
    gcd = math.gcd(in_rate, out_rate)
    period_in, period_out = in_rate // gcd, out_rate // gcd
    chunk = max(1, in_rate * FIRST_OUTPUT_MS // 1000)
    due = chunk
    while True:  # ends: with no priming (frames == 0) the first block has output
        frames = -(-max(0, first_in - due) // period_in) * period_in  # whole periods
        if frames * period_out // period_in < first_out:
            return frames
        due += chunk


class AudioConverter:
    """Streaming PCM converter from ``source`` to ``target`` format.

    Feed the chunks of one continuous stream, in order, to :meth:`convert` (any size in
    bytes; a chunk may end mid-frame, the partial frame is kept and prefixed to the next
    chunk), then call :meth:`flush` once at the end of the stream. The converter is
    single-use: after :meth:`flush`, :meth:`convert` and :meth:`flush` raise
    ``RuntimeError``; make a new converter for the next stream.

    Pipeline per chunk (numpy-vectorised, no per-sample Python loops):

    1. decode whole frames (width 1 = signed 8-bit, as ``audioop``/Wyoming use it;
       2 = s16le; 3 = packed s24le; 4 = s32le; channels interleaved) to floats;
    2. channels: unchanged if ``source.channels == target.channels``, otherwise mixed
       down to mono by averaging, then (if ``target.channels > 1``) duplicated;
    3. resample with one ``soxr.ResampleStream`` kept for the whole stream (filter state
       carries across chunks), only when the rates differ;
    4. encode to ``target.width`` little-endian, rounded and clipped (never wrapped).

    When ``source == target`` nothing is decoded: :meth:`convert` returns the input
    bytes (only whole frames), with no numpy work.

    Resampling latency: libsoxr returns output in whole blocks and never the last of the
    input (its filter's look-ahead) before :meth:`flush`, so a plain stream gives nothing
    for the first few chunks. The stream is therefore primed with silence
    (:func:`_priming_frames`; that output is dropped, the real output is unchanged to
    float32 rounding) so that the **first chunk** already returns audio; later output
    comes a block at a time, the rest out of :meth:`flush` (figures per rate:
    ``benchmarks/README.md``, Resampler blocks and latency).

    Deferred soxr calls: where the blocks are regular (:func:`_block_period`), a chunk that
    cannot complete soxr's next block is only kept, and given to soxr with the chunk that
    completes it, which returns exactly what chunk-by-chunk calls would have (same bytes,
    from the same chunk: tested down to single frames), with fewer decodes and soxr calls
    (``benchmarks/README.md``, Resampler CPU).
    """

    def __init__(self, source: AudioFormat, target: AudioFormat) -> None:
        """Create a converter for one stream.

        Raises:
            ValueError: ``source`` or ``target`` is invalid (see :func:`validate_format`).
        """
        for role, fmt in (("source", source), ("target", target)):
            try:
                validate_format(fmt)
            except ValueError as err:
                raise ValueError(f"{role}: {err}") from None
        self.source = source
        self.target = target
        self._identity = source == target
        self._frame_bytes = source.frame_bytes
        self._remainder = b""
        self._flushed = False

        self._keep_channels = source.channels == target.channels
        # Channels that go through the resampler (and are encoded before duplication).
        self._work_channels = source.channels if self._keep_channels else 1
        # float32 is exact enough for every output except 32-bit (see _encode).
        self._dtype: type[np.floating[Any]] = np.float64 if target.width == 4 else np.float32
        self._in_scale = 1.0 / float(1 << (8 * source.width - 1))
        if not self._keep_channels:
            self._in_scale /= source.channels  # average = sum * (1 / channels)

        self._resampler: soxr.ResampleStream | None = None
        self._drop_frames = 0  # output frames of the priming still to be dropped
        # Deferral (see the class docstring): source PCM not given to soxr yet, and when
        # soxr's next block is due, in input frames given to it (priming included).
        self._held: list[bytes] = []
        self._held_frames = 0
        self._in_frames = 0  # frames given to soxr, priming included
        self._out_frames = 0  # frames soxr returned, priming included
        self._period: Fraction | None = None
        self._first_block = (0, 0)
        self._due = 0
        if source.rate != target.rate:
            self._resampler = soxr.ResampleStream(
                source.rate,
                target.rate,
                self._work_channels,
                dtype=self._dtype,
                quality=RESAMPLE_QUALITY,
            )
            dtype_name = np.dtype(self._dtype).name
            priming = _priming_frames(source.rate, target.rate, self._work_channels, dtype_name)
            if priming:
                zeros = np.zeros((priming, self._work_channels), dtype=self._dtype)
                early = self._resampler.resample_chunk(zeros)  # none: below the first block
                self._drop_frames = priming * target.rate // source.rate - len(early)
                self._in_frames, self._out_frames = priming, len(early)
            self._period = _block_period(source.rate, target.rate, self._work_channels, dtype_name)
            self._first_block = _first_block(
                source.rate, target.rate, self._work_channels, dtype_name
            )
            self._update_due()

    @property
    def resamples(self) -> bool:
        """True when the rates differ and a soxr resampler is in use."""
        return self._resampler is not None

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete source frame held back for the next chunk."""
        return len(self._remainder)

    def convert(self, pcm: bytes) -> bytes:
        """Convert one chunk of ``source`` PCM; return ``target`` PCM bytes (maybe ``b""``).

        ``pcm`` may be any length in bytes; a trailing partial frame is held back until
        the next chunk completes it.

        Raises:
            RuntimeError: called after :meth:`flush`.
        """
        if self._flushed:
            raise RuntimeError("AudioConverter used after flush(); create a new one")
        if type(pcm) is not bytes:
            pcm = bytes(pcm)
        if self._remainder:
            pcm = self._remainder + pcm
        whole = len(pcm) - len(pcm) % self._frame_bytes
        if whole != len(pcm):
            self._remainder = pcm[whole:]
            pcm = pcm[:whole]
        else:
            self._remainder = b""
        if self._identity or not pcm:
            return pcm
        if self._period is not None:
            frames = len(pcm) // self._frame_bytes
            if self._in_frames + self._held_frames + frames < self._due:
                self._held.append(pcm)  # soxr would return nothing for it yet
                self._held_frames += frames
                return b""
            if self._held:
                pcm = b"".join((*self._held, pcm))
                self._held.clear()
                self._held_frames = 0
        return self._process(pcm)

    def flush(self) -> bytes:
        """End the stream: return the resampler's remaining ``target`` PCM bytes.

        A trailing partial source frame (fewer than ``source.frame_bytes`` bytes), if
        any, cannot be decoded and is dropped. Call once; the converter is unusable
        afterwards.

        Raises:
            RuntimeError: called a second time.
        """
        if self._flushed:
            raise RuntimeError("AudioConverter.flush() called twice")
        self._flushed = True
        self._remainder = b""
        if self._resampler is None:
            return b""
        held = b""
        if self._held:
            held = self._process(b"".join(self._held))
            self._held.clear()
        empty = np.zeros((0, self._work_channels), dtype=self._dtype)
        tail = self._resampler.resample_chunk(empty, last=True)
        return held + self._finish(self._drop_priming(tail))

    def _process(self, pcm: bytes) -> bytes:
        ints = _decode_ints(pcm, self.source.width)
        samples: npt.NDArray[np.floating[Any]]
        if self._keep_channels:
            samples = ints.astype(self._dtype)
            samples *= self._in_scale
            if self.source.channels > 1:
                samples = samples.reshape(-1, self.source.channels)
        else:
            frames = ints.reshape(-1, self.source.channels)
            samples = frames.sum(axis=1, dtype=self._dtype) * self._in_scale
        if self._resampler is not None:
            out = self._resampler.resample_chunk(samples)
            self._in_frames += len(samples)
            self._out_frames += len(out)
            self._update_due()
            samples = self._drop_priming(out)
        return self._finish(samples)

    def _update_due(self) -> None:
        """Input frames (priming included) at which soxr's next block comes out."""
        if self._period is None:
            return
        first_in, first_out = self._first_block
        blocks = self._out_frames // first_out
        self._due = first_in + math.ceil(blocks * self._period)

    def _drop_priming(
        self, samples: npt.NDArray[np.floating[Any]]
    ) -> npt.NDArray[np.floating[Any]]:
        if self._drop_frames:
            dropped = min(self._drop_frames, len(samples))
            self._drop_frames -= dropped
            samples = samples[dropped:]
        return samples

    def _finish(self, samples: npt.NDArray[np.floating[Any]]) -> bytes:
        if not samples.size:
            return b""
        if not self._keep_channels and self.target.channels > 1:
            samples = np.repeat(samples.reshape(-1, 1), self.target.channels, axis=1)
        return _encode(samples, self.target.width)
