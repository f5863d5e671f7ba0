"""PCM audio formats, their validation, and WAV.

Conversion between formats is :mod:`wyoming_openai.resample`.

All audio here is raw interleaved PCM, signed little-endian integers
(``width`` bytes per sample). Sizes are in bytes unless a name says samples or frames
(one frame = one sample per channel).
"""

from __future__ import annotations

import io
import numbers
import wave
from dataclasses import dataclass
from typing import Final

import numpy as np


@dataclass(frozen=True)
class AudioFormat:
    """A PCM format: ``rate`` in Hz, ``width`` in bytes per sample, ``channels``."""

    rate: int
    width: int
    channels: int

    @property
    def frame_bytes(self) -> int:
        """Bytes in one frame (``width * channels``)."""
        return self.width * self.channels

    @property
    def bytes_per_second(self) -> int:
        """Bytes in one second of audio."""
        return self.rate * self.frame_bytes

    def bytes_for_ms(self, ms: float) -> int:
        """Bytes in ``ms`` milliseconds, rounded down to whole frames."""
        return int(self.rate * ms / 1000) * self.frame_bytes

    def duration_ms(self, num_bytes: int) -> float:
        """Milliseconds of audio in ``num_bytes`` bytes."""
        return 1000.0 * num_bytes / self.bytes_per_second


PCM_16K_MONO = AudioFormat(rate=16000, width=2, channels=1)
"""16 kHz 16-bit mono: what Whisper-family models take (their feature extractor works at
16 kHz), and 2/3 the size of 24 kHz for uploads."""

REALTIME_PCM_RATE: Final = 24000
"""Hz of ``audio/pcm`` in the OpenAI realtime API (a literal type there)."""

PCM_24K_MONO = AudioFormat(rate=REALTIME_PCM_RATE, width=2, channels=1)
"""24 kHz 16-bit mono: the only ``audio/pcm`` the OpenAI realtime API accepts
(``rate: Literal[24000]`` in ``openai.types.realtime.AudioPCM``) and what
``/v1/audio/speech`` returns for ``response_format: pcm``."""


# --------------------------------------------------------------------------- validation

MAX_RATE = 192_000
"""Default upper bound (Hz) accepted by :func:`validate_format`."""

SUPPORTED_WIDTHS = (1, 2, 3, 4)
"""Sample widths in bytes: signed 8-bit, s16le, packed s24le, s32le."""

MAX_CHANNELS = 8
"""Most interleaved channels accepted by :func:`validate_format`."""


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validate_format(fmt: AudioFormat, max_rate: int = MAX_RATE) -> None:
    """Check that ``fmt`` is a PCM format this module can handle.

    Valid: ``rate`` an integer in 1..``max_rate`` Hz, ``width`` in {1, 2, 3, 4} bytes,
    ``channels`` an integer in 1..8.

    Raises:
        ValueError: naming every bad field and its value, e.g.
            ``"invalid audio format: rate=0 Hz (must be an integer in 1..192000 Hz)"``.
    """
    problems: list[str] = []
    if not _is_int(fmt.rate) or not 1 <= fmt.rate <= max_rate:
        problems.append(f"rate={fmt.rate!r} Hz (must be an integer in 1..{max_rate} Hz)")
    if not _is_int(fmt.width) or fmt.width not in SUPPORTED_WIDTHS:
        problems.append(f"width={fmt.width!r} bytes (must be one of 1, 2, 3, 4 bytes per sample)")
    if not _is_int(fmt.channels) or not 1 <= fmt.channels <= MAX_CHANNELS:
        problems.append(f"channels={fmt.channels!r} (must be an integer in 1..{MAX_CHANNELS})")
    if problems:
        raise ValueError("invalid audio format: " + "; ".join(problems))


# ------------------------------------------------------------------------------ WAV


def pcm_to_wav(pcm: bytes, fmt: AudioFormat) -> bytes:
    """Wrap raw PCM in a RIFF/WAVE file, in memory (stdlib :mod:`wave`).

    All widths are supported: WAV stores 8-bit samples unsigned, so width 1 (signed
    8-bit here) is converted by flipping the sign bit; widths 2..4 are written as is
    (little-endian, as WAV requires). The header is plain ``WAVE_FORMAT_PCM``.

    Raises:
        ValueError: ``fmt`` is invalid (:func:`validate_format`) or ``pcm`` is not a
            whole number of frames (``len(pcm) % fmt.frame_bytes != 0``).
    """
    validate_format(fmt)
    if len(pcm) % fmt.frame_bytes:
        raise ValueError(
            f"PCM length {len(pcm)} bytes is not a whole number of {fmt.frame_bytes}-byte frames"
        )
    if fmt.width == 1:
        pcm = (np.frombuffer(pcm, dtype=np.uint8) ^ np.uint8(0x80)).tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(fmt.channels)
        wav.setsampwidth(fmt.width)
        wav.setframerate(fmt.rate)
        wav.writeframes(pcm)
    return buf.getvalue()
