"""Ending an utterance without ``audio-stop`` (``stt.early_transcript``, off by default).

Home Assistant reads the answer while it is still streaming and takes the FIRST
``transcript``, even one sent before ``audio-stop``; an ASR program whose Info says
``requires_external_vad: false`` (wyoming 1.10.2 ``AsrProgram``; the default is ``true``)
gets no voice-activity detection from Home Assistant, and must end every utterance
itself, or the request runs to Home Assistant's 300 s pipeline timeout (Home Assistant
2026.11 ``homeassistant/components/wyoming/stt.py``; ``DEFAULT_PIPELINE_TIMEOUT`` in
``homeassistant/components/assist_pipeline/const.py``). With the setting on, an utterance
ends here:

- when speech was heard and then ``silence_ms`` of non-speech followed (the local
  detector of :mod:`wyoming_openai.vad`): the transcript of the audio so far;
- when nobody speaks for :data:`NO_SPEECH_SECONDS` (or up to the longest utterance, if
  shorter): an empty transcript, without asking the engine (nothing was said);
- at :data:`MAX_COMMAND_SECONDS` (Home Assistant's own limit on a command), or at
  ``limits.max_utterance_seconds`` if shorter: the transcript of what was heard, not an
  error.

Times are milliseconds of audio received, not of the wall clock (a client streams in
real time, so the two agree; a client that sends faster gets the same answer).

The detector is the session's own when it runs one on the same audio (the realtime
engine's speculative commit, :attr:`SttSession.speech_detector`), else one of ours.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .vad import EndOfSpeechDetector

NO_SPEECH_SECONDS = 5.0
"""Audio without any speech after which an utterance ends with an empty transcript."""

MAX_COMMAND_SECONDS = 15.0
"""Longest command: Home Assistant's own voice-activity detection ends one at 15 s
(``VoiceCommandSegmenter.timeout_seconds`` in ``homeassistant/components/assist_pipeline/vad.py``,
Home Assistant 2026.11), so a client that relies on ours gets the same."""


class EndReason(enum.Enum):
    """Why an utterance ended before ``audio-stop``."""

    SPEECH_ENDED = "speech ended"
    NO_SPEECH = "no speech"
    TOO_LONG = "longest command reached"


@dataclass(frozen=True)
class EarlyEnd:
    """When an utterance ends without ``audio-stop`` (all in milliseconds of audio).

    Attributes:
        silence_ms: non-speech after speech that ends the utterance.
        no_speech_ms: audio without speech that ends it (empty transcript).
        max_ms: longest utterance; it is transcribed up to here.
    """

    silence_ms: float
    no_speech_ms: float = NO_SPEECH_SECONDS * 1000
    max_ms: float = MAX_COMMAND_SECONDS * 1000


class Endpointer:
    """Decides, chunk by chunk, whether one utterance is over (see the module docstring).

    Args:
        policy: when it is over.
        detector: the session's detector, fed by the session with the same audio, or None
            to run one here.
        rate: Hz of the s16le mono audio given to :meth:`heard` (for our own detector).
    """

    def __init__(self, policy: EarlyEnd, detector: EndOfSpeechDetector | None, rate: int) -> None:
        self.policy = policy
        self._own = detector is None
        self._detector = detector if detector is not None else EndOfSpeechDetector(rate=rate)

    @property
    def speech_heard(self) -> bool:
        """Whether any speech was heard so far."""
        return self._detector.speech_heard

    def heard(self, pcm: bytes) -> None:
        """Audio sent upstream (s16le mono at ``rate``), in order."""
        if self._own and pcm:
            self._detector.feed(pcm)

    def verdict(self, audio_ms: float) -> EndReason | None:
        """Whether the utterance is over after ``audio_ms`` milliseconds of client audio,
        and why; None while it goes on."""
        detector, policy = self._detector, self.policy
        if not detector.speech_heard:
            return (
                EndReason.NO_SPEECH if audio_ms >= min(policy.no_speech_ms, policy.max_ms) else None
            )
        if detector.quiet_ms >= policy.silence_ms:
            return EndReason.SPEECH_ENDED
        return EndReason.TOO_LONG if audio_ms >= policy.max_ms else None
