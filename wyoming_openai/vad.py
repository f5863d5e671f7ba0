"""Local end-of-speech detection for speculative commits.

Home Assistant ends a command with ``audio-stop`` only after 0.7 s of silence
(``VoiceCommandSegmenter.silence_seconds``, Home Assistant 2026.11
``homeassistant/components/assist_pipeline/vad.py``). The live transcription models
(``gpt-live-transcribe``, ``gpt-realtime-whisper``) reject any ``turn_detection``
(``RealtimeTranscriptionSessionAudioInput.turn_detection`` in ``openai.types.realtime``,
openai-python 3.57; the service's ``error``: "Turn detection is not supported for this
transcription model"), so the service cannot tell us when speech ended: a local
voice-activity detector does, early enough to commit the audio while Home Assistant is
still counting silence.

The detector is ``earshot`` (MIT/Apache-2.0, a small neural VAD in Rust with abi3 wheels
for linux/arm64 and linux/amd64, no model download), chosen over ``pymicro-vad``,
``webrtcvad-wheels`` and Silero for accuracy, CPU, memory and wheels
(``benchmarks/README.md``, End-of-speech detector).

Audio units: input is s16le mono bytes at the engine's input rate (24 kHz for the
realtime engine, 16 kHz for the HTTP and local ones); the detector works on 16 kHz frames
of 256 samples (16 ms), resampled here (when the input is not 16 kHz already) with soxr's
quick (``QQ``) filter, which delays least and is plenty for voice activity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import soxr

from .audio import PCM_24K_MONO

VAD_RATE = 16000
"""Hz: the rate ``earshot`` models."""

FRAME_SAMPLES = 256
"""Samples per ``earshot`` frame (16 ms at 16 kHz)."""

FRAME_MS = 1000 * FRAME_SAMPLES / VAD_RATE

SPEECH_THRESHOLD = 0.5
"""A frame scoring at least this is speech (``earshot``'s documented default)."""

MIN_SPEECH_FRAMES = 3
"""Consecutive speech frames (48 ms) that start speech: a click or a cough-like blip in
room noise does not."""

END_OF_SPEECH_MS = 300.0
"""Non-speech after speech that ends it, in ms: well inside Home Assistant's own 700 ms
(250 ms in its "aggressive" setting; ``VadSensitivity`` in the file named above), so the
model finalizes while Home Assistant still counts, yet long enough not to end speech at a
pause inside a sentence (``benchmarks/README.md``, End-of-speech detector)."""


class EndOfSpeechDetector:
    """Speech start and end in a stream of s16le mono PCM at ``rate`` Hz.

    Feed audio in order with :meth:`feed`; it returns where speech ended within that
    audio (speech of at least :data:`MIN_SPEECH_FRAMES` frames, then
    ``end_of_speech_ms`` of non-speech). :attr:`in_speech` tells whether speech has
    started since the last end; :attr:`speech_heard` and :attr:`quiet_ms` tell whether
    any speech was heard and for how long it has been quiet since (for a second,
    longer end, e.g. :mod:`wyoming_openai.endpointing`). CPU: one ``soxr`` call per
    :meth:`feed` (none at 16 kHz) and one model call per 16 ms frame.

    Args:
        end_of_speech_ms: milliseconds of non-speech that end speech.
        rate: Hz of the input (default 24 kHz, the realtime engine's input format).
    """

    def __init__(
        self, end_of_speech_ms: float = END_OF_SPEECH_MS, rate: int = PCM_24K_MONO.rate
    ) -> None:
        import earshot  # loaded with the first utterance

        self._model: Any = earshot.Detector()
        self._resampler = (
            soxr.ResampleStream(rate, VAD_RATE, 1, dtype="int16", quality="QQ")
            if rate != VAD_RATE
            else None
        )
        self._bytes_per_frame = round(FRAME_SAMPLES * rate / VAD_RATE) * 2
        self._frames_to_end = max(1, round(end_of_speech_ms / FRAME_MS))
        self._pending = np.zeros(0, dtype=np.int16)
        self._odd = b""
        self._frames = 0  # frames scored so far
        self._speech_run = 0  # consecutive speech frames
        self.in_speech = False
        """Speech started (and has not ended) in the audio fed so far."""
        self.speech_heard = False
        """Speech started at least once in the audio fed so far."""
        self.quiet_frames = 0
        """Frames scored since the last speech frame (0 while speech goes on)."""

    @property
    def quiet_ms(self) -> float:
        """Milliseconds of audio scored since the last speech frame (once speech was heard,
        this keeps counting past the end of speech; a frame of speech resets it)."""
        return self.quiet_frames * FRAME_MS

    def feed(self, pcm: bytes) -> list[int]:
        """Process s16le mono ``pcm`` at the detector's rate (any length; a trailing odd
        byte is kept).

        Returns:
            where speech ended within this audio, as byte offsets into the whole stream of
            audio fed so far (the end of the frame that completed the non-speech); usually
            empty.
        """
        if self._odd:
            pcm = self._odd + pcm
            self._odd = b""
        if len(pcm) % 2:
            self._odd = pcm[-1:]
            pcm = pcm[:-1]
        if not pcm:
            return []
        samples = np.frombuffer(pcm, dtype="<i2")
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        whole = samples.size - samples.size % FRAME_SAMPLES
        self._pending = samples[whole:].copy() if whole != samples.size else samples[:0]
        ends: list[int] = []
        predict = self._model.predict_i16
        for start in range(0, whole, FRAME_SAMPLES):
            self._frames += 1
            if predict(samples[start : start + FRAME_SAMPLES]) >= SPEECH_THRESHOLD:
                self._speech_run += 1
                self.quiet_frames = 0
                if self._speech_run >= MIN_SPEECH_FRAMES:
                    self.in_speech = self.speech_heard = True
                continue
            self._speech_run = 0
            self.quiet_frames += 1
            # In speech, every frame since its last speech frame was non-speech.
            if self.in_speech and self.quiet_frames >= self._frames_to_end:
                self.in_speech = False
                ends.append(self._frames * self._bytes_per_frame)
        return ends
