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
"""A frame scoring at least this is speech (``earshot``'s documented default): it resets
:attr:`EndOfSpeechDetector.quiet_ms`, and :data:`MIN_SPEECH_FRAMES` of them in a row set
:attr:`EndOfSpeechDetector.speech_heard` (the measures of :mod:`wyoming_openai.endpointing`)."""

END_THRESHOLD = 0.7
"""Speech starts (and resumes) with :data:`MIN_SPEECH_FRAMES` frames scoring at least this;
after speech, a frame scoring below it counts toward its end. ``earshot``'s score decays
slowly after the last sound of a real voice (breath, reverb, a trailing consonant), so
counting from :data:`SPEECH_THRESHOLD` hears the end late (``benchmarks/README.md``, End
of real speech)."""

RECHECK_MS = 200.0
"""After an end of speech, ms during which a rise of the score (:data:`RISE`) over its
lowest since the end resumes speech: a consonant released after a silent closure (the
"t" of "locked") scores low, but higher than the quiet before it."""

RISE = 0.12
"""Score rise over the lowest score since the end of speech that resumes it."""

MIN_SPEECH_FRAMES = 3
"""Consecutive speech frames (48 ms) that start speech: a click or a cough-like blip in
room noise does not."""

END_OF_SPEECH_MS = 150.0
"""Frames below :data:`END_THRESHOLD` after speech that end it, in ms: early, so a model
that finalizes in 450 ms still answers inside Home Assistant's own 700 ms of silence
(``VadSensitivity`` in the file named above). Such an end also falls inside natural pauses
of a command; the realtime session then re-commits the whole utterance when speech
resumes (:mod:`wyoming_openai.stt.realtime.session`), so nothing is transcribed in pieces
(``benchmarks/README.md``, End of real speech)."""


class EndOfSpeechDetector:
    """Speech start and end in a stream of s16le mono PCM at ``rate`` Hz.

    Feed audio in order with :meth:`feed`; it returns where speech ended within that
    audio (speech of at least :data:`MIN_SPEECH_FRAMES` frames, then
    ``end_of_speech_ms`` of frames below :data:`END_THRESHOLD`; a rise of the score soon
    after, :data:`RECHECK_MS` / :data:`RISE`, resumes it), and :attr:`speech_starts` lists
    where speech started. :attr:`in_speech` tells whether
    speech has started since the last end; :attr:`speech_heard` and :attr:`quiet_ms` tell whether
    any speech was heard and for how long it has been quiet since (for a second,
    longer end, e.g. :mod:`wyoming_openai.endpointing`). CPU: one ``soxr`` call per
    :meth:`feed` (none at 16 kHz) and one model call per 16 ms frame.

    Args:
        end_of_speech_ms: milliseconds of frames below :data:`END_THRESHOLD` that end
            speech.
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
        self._frames_to_recheck = round(RECHECK_MS / FRAME_MS)
        self._pending = np.zeros(0, dtype=np.int16)
        self._odd = b""
        self._frames = 0  # frames scored so far
        self._speech_run = 0  # consecutive speech frames
        self._sure_run = 0  # consecutive frames at or above END_THRESHOLD
        self._ending = 0  # consecutive frames below END_THRESHOLD
        self._recheck = 0  # frames left to watch for a rise after an end
        self._lowest = 1.0  # lowest score since the last end
        self.speech_starts: list[int] = []
        """Byte offsets into the stream fed so far where speech started (the end of the
        frame that confirmed it): the first start, and every resumption after an end."""
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
            score = predict(samples[start : start + FRAME_SAMPLES])
            if score >= SPEECH_THRESHOLD:
                self._speech_run += 1
                self.quiet_frames = 0
                if self._speech_run >= MIN_SPEECH_FRAMES:
                    self.speech_heard = True
            else:
                self._speech_run = 0
                self.quiet_frames += 1
            if score >= END_THRESHOLD:
                self._sure_run += 1
                self._ending = 0
                if self._sure_run >= MIN_SPEECH_FRAMES and not self.in_speech:
                    self.in_speech = True
                    self._recheck = 0
                    self.speech_starts.append(self._frames * self._bytes_per_frame)
                continue
            self._sure_run = 0
            self._ending += 1
            if self._recheck and not self.in_speech:
                self._recheck -= 1
                if score >= self._lowest + RISE:  # a sound after a silent closure
                    self._recheck = self._ending = 0
                    self.in_speech = True
                    self.speech_starts.append(self._frames * self._bytes_per_frame)
                    continue
                self._lowest = min(self._lowest, score)
            # In speech, every frame since the last one scoring END_THRESHOLD was below it.
            if self.in_speech and self._ending >= self._frames_to_end:
                self.in_speech = False
                ends.append(self._frames * self._bytes_per_frame)
                self._recheck = self._frames_to_recheck
                self._lowest = score
        return ends
