"""Home Assistant-realistic utterances: real speech, pauses and trailing room noise.

Home Assistant streams the microphone until its voice detector has heard 0.7 s of
silence (``silence_seconds`` in Home Assistant 2026.11
``homeassistant/components/assist_pipeline/vad.py``), so a command ends with 0.7 s of the
room, never digital zero. The room here is quiet pink noise with a little
mains hum, by default at -50 dBFS (RMS), seeded so every run sends the same bytes.

All audio is 16 kHz s16le mono bytes (what Home Assistant sends), lengths in bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from tests import speech
from wyoming_openai.audio import PCM_24K_MONO, AudioFormat
from wyoming_openai.resample import AudioConverter

if TYPE_CHECKING:
    from tests.fake_openai import FakeOpenAI

RATE = 16000
"""Hz of every utterance here."""

HA_SILENCE_SECONDS = 0.7
"""Home Assistant's default silence before ``audio-stop``."""

ROOM_DBFS = -50.0
"""Room noise level, dB relative to full scale (RMS)."""

COMMANDS = [
    "Turn on the kitchen lights.",
    "What is the weather like tomorrow?",
    "Lock the front door and close the garage.",
    "Start the robot vacuum in the hallway.",
    "Play some jazz in the living room.",
    "Is the back door locked?",
    "Turn off the lights in the kitchen, the hallway, and the bedroom.",
    "Remind me to water the plants this evening.",
    "Dim the bedroom lights.",
    "Open the blinds in the office.",
    "Turn the heating down in the bedroom.",
    "What time is it in Tokyo?",
    "Add milk and eggs to the shopping list.",
    "Close the curtains in the living room.",
    "Is the garage door open?",
    "Turn off all the lights downstairs.",
    "Set the thermostat to eco mode.",
    "Play the news on the kitchen speaker.",
    "Stop the music in the bathroom.",
    "Lock all the doors and arm the alarm.",
    "How long will it take to drive to work?",
    "Switch on the fan in the study.",
    "Water the garden before sunset.",
    "Pause the movie in the living room.",
    "Turn on the porch light at night.",
    "Tell me a joke about cats.",
    "Where is my phone?",
    "Make the hallway lights warmer.",
    "Cancel the alarm for tomorrow morning.",
    "Read my calendar for today.",
]
"""The real-speech corpus (spoken by Piper, transcribed by Whisper in the fake)."""

_speech_cache: dict[str, bytes] = {}


def room_noise(seconds: float, seed: int = 0, dbfs: float = ROOM_DBFS) -> bytes:
    """``seconds`` of quiet room noise: pink noise plus 50 Hz hum at ``dbfs`` RMS."""
    count = int(seconds * RATE)
    if count == 0:
        return b""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(count))
    freqs = np.fft.rfftfreq(count, 1 / RATE)
    freqs[0] = 1.0
    pink = np.fft.irfft(spectrum / np.sqrt(freqs), count)
    pink /= np.sqrt(np.mean(pink**2)) or 1.0
    hum = 0.3 * np.sqrt(2) * np.sin(2 * np.pi * 50 * np.arange(count) / RATE)
    signal = (pink + hum) * 10 ** (dbfs / 20) * 32768
    return np.clip(np.round(signal), -32768, 32767).astype("<i2").tobytes()


def spoken(text: str) -> bytes:
    """Piper speech of ``text`` at 16 kHz s16le mono (cached per process)."""
    if text not in _speech_cache:
        pcm, rate = speech.synthesize_speech(text)
        converter = AudioConverter(AudioFormat(rate, 2, 1), AudioFormat(RATE, 2, 1))
        _speech_cache[text] = converter.convert(pcm) + converter.flush()
    return _speech_cache[text]


def command(
    *parts: str | float,
    lead_seconds: float = 0.2,
    tail_seconds: float = HA_SILENCE_SECONDS,
    seed: int = 0,
) -> bytes:
    """An utterance as Home Assistant streams it: room noise, then ``parts`` (text is
    spoken, a number is that many seconds of room noise), then ``tail_seconds`` of room
    noise (the silence Home Assistant waits for before ``audio-stop``)."""
    pieces = [room_noise(lead_seconds, seed)]
    for index, part in enumerate(parts):
        if isinstance(part, str):
            pieces.append(spoken(part))
        else:
            pieces.append(room_noise(part, seed + 100 + index))
    pieces.append(room_noise(tail_seconds, seed + 1))
    return b"".join(pieces)


async def eventually(predicate: Callable[[], object], seconds: float = 5.0) -> None:
    """Wait until ``predicate()`` is true (records the fake fills in as events arrive).

    Raises:
        TimeoutError: not within ``seconds``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.005)


def halves(text: str) -> tuple[str, str]:
    """``text`` cut in two at its middle word, where a speaker may pause to think ("Turn on
    the" ... "kitchen lights."); the Piper corpus itself has no pause inside a command."""
    words = text.split()
    middle = max(1, len(words) // 2)
    return " ".join(words[:middle]), " ".join(words[middle:])


def sound_bounds(pcm: bytes, dbfs: float = -45.0) -> tuple[int, int]:
    """Byte offsets in 16 kHz s16le mono ``pcm`` where its first sound starts and its last
    sound ends: the first and last 10 ms windows louder than ``dbfs`` (RMS; the room noise
    here is -50 dBFS). Piper speech starts and ends with 0.02-0.25 s of near silence.
    ``(0, 0)`` when nothing is that loud."""
    window = RATE // 100
    samples = np.frombuffer(pcm, "<i2").astype(np.float64) / 32768
    count = len(samples) // window
    rms = np.sqrt(np.mean(samples[: count * window].reshape(count, window) ** 2, axis=1))
    loud = np.nonzero(rms > 10 ** (dbfs / 20))[0]
    if not loud.size:
        return 0, 0
    return int(loud[0]) * window * 2, int(loud[-1] + 1) * window * 2


def paused(text: str, silence: float, seed: int = 0, **kwargs: float) -> bytes:
    """:func:`command` of ``text`` with a pause at its middle word (:func:`halves`) whose
    silence, from the last sound before it to the first sound after it, is ``silence``
    seconds (room noise fills what Piper's own edges leave); ``kwargs`` go to
    :func:`command`."""
    first, second = halves(text)
    before, after = spoken(first), spoken(second)
    edges = (len(before) - sound_bounds(before)[1] + sound_bounds(after)[0]) / 2 / RATE
    return command(first, max(0.0, silence - edges), second, seed=seed, **kwargs)


# ----------------------------------------------------------------- tones and real speech


def tone(freq: float, seconds: float, rate: int, width: int = 2, channels: int = 1) -> bytes:
    """A sine at ``freq`` Hz, half scale, as interleaved little-endian PCM."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    dtype = {2: "<i2", 4: "<i4"}[width]
    samples = (wave * (2 ** (8 * width - 1) - 1)).astype(dtype)
    return np.repeat(samples, channels).tobytes()


def dominant_hz(pcm24k: bytes) -> float:
    samples = np.frombuffer(pcm24k, "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * PCM_24K_MONO.rate / len(samples))


def use_whisper(fake: FakeOpenAI) -> None:
    """Make the fake transcribe for real (Whisper tiny.en on the 24 kHz audio it got)."""
    fake.transcriber = lambda pcm, language, prompt: speech.transcribe_speech(
        pcm, PCM_24K_MONO.rate, language
    )


def piper_16k(text: str) -> bytes:
    """Piper speech of ``text`` at 16 kHz s16 mono, as a voice satellite would send it."""
    pcm, rate = speech.synthesize_speech(text)
    converter = AudioConverter(AudioFormat(rate, 2, 1), AudioFormat(16000, 2, 1))
    return converter.convert(pcm) + converter.flush()
