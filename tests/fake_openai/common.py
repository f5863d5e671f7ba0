"""Constants, the stand-in transcriber and synthesizer, and small helpers shared by the endpoints.

Audio units: PCM is always signed 16-bit little-endian mono ("s16le"); lengths are bytes unless a
name says otherwise; rates are Hz.
"""

from __future__ import annotations

import math
import re
import secrets
import string
from collections.abc import Callable
from typing import Any

import numpy as np

DEFAULT_API_KEY = "sk-test-fake-key-0123456789"
REALTIME_RATE = 24000
"""Sample rate (Hz) of ``audio/pcm`` in the Realtime API and of ``/v1/audio/speech`` pcm."""

_PCM_BYTES_PER_MS = REALTIME_RATE * 2 // 1000  # 48
_G711_BYTES_PER_MS = 8  # 8 kHz, one byte per sample
_MIN_COMMIT_MS = 100.0
_MAX_UPLOAD_BYTES = 25 * 1024 * 1024
_WS_CLOSE_TIMEOUT = 2.0

Transcriber = Callable[[bytes, str | None, str | None], str]
"""``transcriber(pcm, language, prompt) -> transcript``; ``pcm`` is 24 kHz s16le mono.

Called synchronously in a worker thread (``asyncio.to_thread``)."""

Synthesizer = Callable[[str, str], bytes]
"""``synthesizer(text, voice) -> pcm``; returns 24 kHz s16le mono PCM.

Called synchronously in a worker thread. ``voice`` is the voice name, or the ``id`` of a custom
voice object."""

_DURATION_BILLED_MODELS = frozenset({"whisper-1", "gpt-realtime-whisper"})


def default_transcriber(pcm: bytes, language: str | None, prompt: str | None) -> str:
    """Deterministic stand-in transcriber: ``"hello world"`` for >= 100 ms of 24 kHz audio."""
    del language, prompt
    return "hello world" if len(pcm) >= _MIN_COMMIT_MS * _PCM_BYTES_PER_MS else ""


def default_synthesizer(text: str, voice: str) -> bytes:
    """Deterministic stand-in synthesizer: a 440 Hz sine, 50 ms (1,200 samples) per character.

    Returns 24 kHz s16le mono PCM (2,400 bytes per character of ``text``).
    """
    del voice
    n = len(text) * REALTIME_RATE // 20
    t = np.arange(n, dtype=np.float64) / REALTIME_RATE
    return (np.sin(2 * np.pi * 440.0 * t) * 0.3 * 32767).astype("<i2").tobytes()


def split_deltas(text: str) -> list[str]:
    """Split a transcript into per-word deltas that concatenate back to ``text`` exactly.

    Each word keeps the whitespace that follows it (leading whitespace goes with the first word).
    """
    return re.findall(r"\s*\S+\s*", text) if text.strip() else ([text] if text else [])


def _new_id(prefix: str, length: int = 21) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def _usage(model: str | None, pcm24k: bytes, prompt: str | None, text: str) -> dict[str, Any]:
    """A plausible ``usage`` object: duration-billed for whisper models, token-billed otherwise."""
    seconds = len(pcm24k) / (REALTIME_RATE * 2)
    if model in _DURATION_BILLED_MODELS:
        return {"type": "duration", "seconds": round(seconds, 3)}
    audio_tokens = max(1, math.ceil(seconds * 10))
    text_tokens = len((prompt or "").split())
    output_tokens = len(text.split())
    return {
        "type": "tokens",
        "input_tokens": audio_tokens + text_tokens,
        "output_tokens": output_tokens,
        "total_tokens": audio_tokens + text_tokens + output_tokens,
        "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": text_tokens},
    }
