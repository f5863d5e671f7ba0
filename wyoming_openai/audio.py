"""PCM audio formats and the streaming conversion between them.

All audio here is raw interleaved PCM, signed little-endian integers
(``width`` bytes per sample). Sizes are in bytes unless a name says samples or frames
(one frame = one sample per channel).
"""

from __future__ import annotations

from dataclasses import dataclass


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


PCM_24K_MONO = AudioFormat(rate=24000, width=2, channels=1)
"""24 kHz 16-bit mono: the only ``audio/pcm`` the OpenAI realtime API accepts
(``rate: Literal[24000]`` in ``openai.types.realtime.AudioPCM``) and what
``/v1/audio/speech`` returns for ``response_format: pcm``."""
