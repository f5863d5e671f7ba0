"""Local engines benchmark: what a user waits for when faster-whisper and Piper serve.

Runs the real server on 127.0.0.1, driven as Home Assistant drives it, and reports (median,
p95, min, max; milliseconds):

- local STT (no API key): ``audio-stop`` -> ``transcript`` for real Piper speech;
- local STT as a fallback while the fake OpenAI refuses connections (503), and while it
  hangs with ``--openai-timeout``/``--openai-connect-timeout`` deadlines (the deadline is
  paid once; later utterances go straight to the local engine during the hold, so only the
  first run of each server pays it: each run here uses a fresh server);
- local TTS (Piper at 22,050 Hz): streamed request -> first ``audio-chunk``;
- TTS fallback (Piper resampled to 24 kHz) while OpenAI refuses connections;
- start-up: loading both models.

Run: ``.venv/bin/python benchmarks/local_engines.py [--runs N]``.

:func:`section` gives ``benchmarks/latency.py`` (``script/bench``, section ``local``) the rows
of the local engines' speed and of leaks (issue 14):

- no key: ``audio-stop`` -> ``transcript`` for Home Assistant-realistic commands (room
  noise, speech, 0.7 s of room noise; ``tests.utterances.command``) streamed in real time,
  so Whisper may run on the utterance while Home Assistant still counts its silence; next
  to it the same commands, alternately, to a server transcribing at ``audio-stop``
  (``stt.speculative_commit`` false), so both see the same load;
- WER of the command corpus transcribed locally, speculative (at the detector's end of
  speech) vs at ``audio-stop`` (``stt.speculative_commit`` false);
- no key: the chunk completing a streamed reply's first sentence (words 30 ms apart) ->
  first ``audio-chunk``, for a first sentence with a first clause and one without (Piper
  speaks the clause, or the first words, as soon as they are known, so the audio may come
  first: negative); and plain ``synthesize`` of the sentence without one -> first audio;
- Piper alone (no server): one inference of that whole sentence and of its first phrase,
  with ONNX Runtime's default threads (as served) and on one thread;
- upstream sessions (at the fake) and file descriptors (this process) still open after 100
  utterances rejected at ``audio-start`` (rate 0), beyond the warm session kept ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jiwer
import numpy as np
from wyoming.asr import Transcribe
from wyoming.audio import AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.harness import (
    TtsResult,
    ha_synthesize,
    ha_synthesize_stream,
    ha_transcribe,
    make_settings,
    running_server,
)
from tests.utterances import COMMANDS, command, eventually
from wyoming_openai.audio import AudioFormat
from wyoming_openai.config import Settings
from wyoming_openai.config_sources import load_settings
from wyoming_openai.resample import AudioConverter
from wyoming_openai.tts import piper_tts
from wyoming_openai.tts.sentences import PHRASE_REST_MIN_WORDS, first_phrase

TEXTS = [
    "Turn on the kitchen lights.",
    "What is the weather like tomorrow?",
    "Lock the front door and close the garage.",
]
REPLY = ["The garage door ", "is open. Shall I ", "close it?"]


def row(name: str, values_ms: list[float]) -> str:
    return (
        f"{name:<52} {statistics.median(values_ms):>8.1f} {np.percentile(values_ms, 95):>8.1f}"
        f" {min(values_ms):>8.1f} {max(values_ms):>8.1f}"
    )


def piper_16k(text: str) -> bytes:
    pcm, rate = speech.synthesize_speech(text)
    converter = AudioConverter(AudioFormat(rate, 2, 1), AudioFormat(16000, 2, 1))
    return converter.convert(pcm) + converter.flush()


async def stt_ms(settings: Settings, runs: int, audio: list[bytes], fresh: bool) -> list[float]:
    """``audio-stop`` -> ``transcript`` per run; ``fresh``: a new server per run."""
    times: list[float] = []
    if fresh:
        for index in range(runs):
            async with running_server(settings) as server:
                assert server.port is not None
                result = await ha_transcribe(server.port, audio[index % len(audio)])
            assert result.transcript_at is not None, result.error
            times.append(1000 * (result.transcript_at - result.audio_stop_at))
        return times
    async with running_server(settings) as server:
        assert server.port is not None
        for index in range(runs):
            result = await ha_transcribe(server.port, audio[index % len(audio)])
            assert result.transcript_at is not None, result.error
            times.append(1000 * (result.transcript_at - result.audio_stop_at))
    return times


async def tts_ms(settings: Settings, runs: int) -> list[float]:
    times: list[float] = []
    async with running_server(settings) as server:
        assert server.port is not None
        for _ in range(runs):
            result = await ha_synthesize_stream(server.port, REPLY)
            assert result.first_audio_at is not None, result.error
            times.append(1000 * (result.first_audio_at - result.started_at))
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per measurement")
    parser.add_argument("--timeout", type=float, default=1.0, help="OpenAI deadlines, s")
    args = parser.parse_args()
    audio = [piper_16k(text) for text in TEXTS]
    local = load_settings(["--uri", "tcp://127.0.0.1:0", "--no-zeroconf"], {})

    started = time.monotonic()
    async with running_server(local):
        load_ms = 1000 * (time.monotonic() - started)

    print(f"{'milliseconds':<52} {'median':>8} {'p95':>8} {'min':>8} {'max':>8}")
    print(f"{'start-up with both models (first load in process)':<52} {load_ms:>8.1f}")
    print(row("local STT: audio-stop -> transcript", await stt_ms(local, args.runs, audio, False)))
    print(row("local TTS (stream): request -> first audio", await tts_ms(local, args.runs)))

    async with FakeOpenAI(reject_connections=True) as fake:
        deadlines = ("--openai-max-retries", "0", "--tts-mode", "speech")
        refused = make_settings(fake.base_url, "--fallback", "local", *deadlines)
        print(
            row(
                "fallback STT, OpenAI refuses: audio-stop -> transcript",
                await stt_ms(refused, args.runs, audio, True),
            )
        )
        print(row("fallback TTS, OpenAI refuses: -> first audio", await tts_ms(refused, args.runs)))
    async with FakeOpenAI(hang=True) as fake:
        timeout = str(args.timeout)
        hanging = make_settings(
            fake.base_url,
            "--fallback",
            "local",
            "--openai-max-retries",
            "0",
            "--openai-timeout",
            timeout,
            "--openai-connect-timeout",
            timeout,
        )
        print(
            row(
                f"fallback STT, OpenAI hangs ({timeout} s deadline), first utterance",
                await stt_ms(hanging, max(3, args.runs // 3), audio, True),
            )
        )
        print(
            row(
                "fallback STT, OpenAI hangs, later utterances (hold)",
                await stt_ms(hanging, args.runs, audio, False),
            )
        )


# ------------------------------------------------------------------ rows for latency.py

WORD_INTERVAL = 0.03
"""Seconds between the words of a streamed reply (an LLM's pace)."""

CLAUSE_REPLY = [
    "The garage door is open, and the porch light is still on.",
    "Shall I close it?",
]
"""A reply whose first sentence has a first clause (spoken apart by Piper)."""

PLAIN_REPLY = ["The front door is locked and the alarm is on.", "Good night."]
"""A reply whose first sentence has none."""

REJECTED = 100


class Rows(Protocol):
    """What :func:`section` writes to (``benchmarks.latency.Table`` is one)."""

    def add(self, name: str, values: Sequence[float], unit: str = "ms") -> None: ...

    def one(self, name: str, value: float, unit: str) -> None: ...


class PrintedRows:
    """:class:`Rows` printed as they come (this module run alone)."""

    def add(self, name: str, values: Sequence[float], unit: str = "ms") -> None:
        print(row(f"{name} ({unit})", list(values)))

    def one(self, name: str, value: float, unit: str) -> None:
        print(f"{name + f' ({unit})':<52} {value:>8.1f}")


def no_key(env: dict[str, str] | None = None) -> Settings:
    """Settings without an API key (the local engines serve), on a free port."""
    return load_settings(["--uri", "tcp://127.0.0.1:0", "--no-zeroconf", "--no-web"], env or {})


async def first_sentence_ms(port: int, reply: list[str]) -> float:
    """``reply`` streamed word by word: the chunk completing its first sentence -> first
    audio (negative: the audio came before, from the first clause)."""
    words = " ".join(reply).split(" ")
    first_end = len(reply[0].split(" ")) - 1
    result = TtsResult()
    first_sentence_at = 0.0
    async with AsyncTcpClient("127.0.0.1", port) as client:

        async def read() -> None:
            while (event := await client.read_event()) is not None:
                if event.type == "audio-chunk" and result.first_audio_at is None:
                    result.first_audio_at = time.monotonic()
                if event.type in ("synthesize-stopped", "error"):
                    return

        reader = asyncio.create_task(read())
        await client.write_event(SynthesizeStart().event())
        for index, word in enumerate(words):
            await client.write_event(
                SynthesizeChunk(text=word if index == 0 else " " + word).event()
            )
            if index == first_end:
                first_sentence_at = time.monotonic()
            await asyncio.sleep(WORD_INTERVAL)
        await client.write_event(Synthesize(text=" ".join(words)).event())
        await client.write_event(SynthesizeStop().event())
        await asyncio.wait_for(reader, 60)
    assert result.first_audio_at is not None
    return 1000 * (result.first_audio_at - first_sentence_at)


def piper_inference_ms(runs: int) -> dict[str, list[float]]:
    """Piper alone: one inference of :data:`PLAIN_REPLY`'s first sentence and of its first
    phrase, with ONNX Runtime's default threads (as served) and on one thread, one voice at
    a time (an idle session's spinning threads would slow the other one)."""
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    files = piper_tts.resolve_piper_voice(None)
    config = PiperConfig.from_dict(json.loads(files.config.read_text(encoding="utf-8")))
    sentence = PLAIN_REPLY[0]
    cut = first_phrase(sentence, PHRASE_REST_MIN_WORDS, files.language)
    assert cut is not None
    times: dict[str, list[float]] = {}
    for threads, name in ((0, "default threads"), (1, "1 thread")):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(
            str(files.model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        voice = PiperVoice(session=session, config=config)
        list(voice.synthesize(piper_tts.WARM_UP_TEXT))
        for _ in range(runs):
            for text, kind in ((sentence, "whole sentence"), (cut[0], "first phrase")):
                started = time.perf_counter()
                list(voice.synthesize(text))
                elapsed = 1000 * (time.perf_counter() - started)
                times.setdefault(f"  Piper inference, {kind}, {name}", []).append(elapsed)
        del voice, session
    return times


async def local_wer(settings: Settings) -> float:
    """WER (%) of the command corpus transcribed by the local engine."""
    references, hypotheses = [], []
    async with running_server(settings) as server:
        assert server.port is not None
        for index, text in enumerate(COMMANDS):
            result = await ha_transcribe(server.port, command(text, seed=index))
            references.append(speech.normalize_text(text))
            hypotheses.append(speech.normalize_text(result.transcript or "") or "<empty>")
    return 100 * float(jiwer.wer(references, hypotheses))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def leaks(rows: Rows) -> None:
    """Sessions and descriptors left after :data:`REJECTED` rejected utterances."""
    async with FakeOpenAI() as fake:
        settings = make_settings(fake.base_url, "--stt-warm-sessions", "1")
        async with running_server(settings) as server:
            assert server.port is not None
            await ha_transcribe(server.port, command(COMMANDS[0]))
            with contextlib.suppress(TimeoutError):
                await eventually(lambda: fake.open_realtime_sessions <= 1, 5)
            baseline = open_fds()
            for _ in range(REJECTED):
                async with AsyncTcpClient("127.0.0.1", server.port) as client:
                    await client.write_event(Transcribe(language="en").event())
                    await client.write_event(AudioStart(rate=0, width=2, channels=1).event())
                    while (event := await client.read_event()) is not None:
                        if event.type == "error":
                            break
            with contextlib.suppress(TimeoutError):  # settled, or report what is left
                await eventually(
                    lambda: fake.open_realtime_sessions <= 1 and open_fds() <= baseline, 5
                )
            sessions, fds = fake.open_realtime_sessions - 1, open_fds() - baseline
    rows.one(f"upstream sessions left after {REJECTED} rejected utterances", sessions, "")
    rows.one(f"fds left after {REJECTED} rejected utterances", fds, "")


async def section(rows: Rows, runs: int) -> None:
    """The local engines' rows and the leak rows (see the module docstring)."""
    logging.getLogger("wyoming_openai").setLevel(logging.ERROR)  # 100 rejections logged
    at_stop = no_key({"WYOMING_OPENAI_STT_SPECULATIVE_COMMIT": "false"})
    async with running_server(no_key()) as server, running_server(at_stop) as reference:
        assert server.port is not None and reference.port is not None
        times: dict[int, list[float]] = {server.port: [], reference.port: []}
        for index in range(runs):  # alternately, so both see the same load
            pcm = command(COMMANDS[index % len(COMMANDS)], seed=index)
            for port, values in times.items():
                result = await ha_transcribe(port, pcm, realtime=True)
                assert result.transcript_at is not None, result.error
                values.append(1000 * (result.transcript_at - result.audio_stop_at))
        rows.add("no key: audio-stop -> transcript, command + 0.7 s quiet", times[server.port])
        rows.add("  the same, Whisper at audio-stop (as before)", times[reference.port])
        first = [await first_sentence_ms(server.port, CLAUSE_REPLY) for _ in range(runs)]
        rows.add("no key: reply's first sentence (with a clause) -> first audio", first)
        first = [await first_sentence_ms(server.port, PLAIN_REPLY) for _ in range(runs)]
        rows.add("no key: reply's first sentence (no clause) -> first audio", first)
        first = []
        for _ in range(runs):
            result = await ha_synthesize(server.port, PLAIN_REPLY[0])
            assert result.first_audio_at is not None, result.error
            first.append(1000 * (result.first_audio_at - result.started_at))
        rows.add("no key: plain synthesize (no clause) -> first audio", first)
    for name, values in (await asyncio.to_thread(piper_inference_ms, runs)).items():
        rows.add(name, values)
    rows.one(
        f"no key: WER of {len(COMMANDS)} commands, speculative", await local_wer(no_key()), "%"
    )
    rows.one(
        f"no key: WER of {len(COMMANDS)} commands, at audio-stop", await local_wer(at_stop), "%"
    )
    await leaks(rows)


if __name__ == "__main__":
    if "--section" in sys.argv:
        asyncio.run(section(PrintedRows(), 10))
    else:
        asyncio.run(main())
