"""Early transcript (``stt.early_transcript``): how much sooner the answer comes, and how
often it cuts a command short.

The server runs in its own process (``benchmarks/latency.py``'s ``ServerProcess``: as
deployed, one warm session, no local engines) against the fake OpenAI server; clients talk
to it as Home Assistant does, with HA-realistic audio (0.2 s of quiet room noise, Piper
speech, then the room: -50 dBFS pink noise and hum) in 10 ms chunks. "Last sound" is the
end of the last 10 ms of speech louder than -45 dBFS (``tests.utterances.sound_bounds``;
Piper's audio goes on 0.1-0.25 s past it, near silent).

1. Gain, paced in real time, the fake finalizing 150 and 450 ms after each commit
   (stand-in transcriber): last sound -> ``transcript`` in the normal mode (the default:
   speculative commit on, early transcript off), with ``audio-stop`` where Home Assistant
   would send it, and in the early mode for each ``stt.early_transcript_silence``, the
   client streaming the room until the transcript comes, never sending ``audio-stop``.
   Two models of Home Assistant's ``audio-stop``:
   - "0.7 s": 0.7 s after the last sound (its silence; Home Assistant 2026.11
     ``homeassistant/components/assist_pipeline/vad.py``);
   - "HA's detector": where Home Assistant's segmenter ends the command, simulated here
     with its defaults (``assist_pipeline/vad.py`` ``VoiceCommandSegmenter``: 0.3 s of
     speech starts a command, 0.7 s of non-speech ends it, a command lasts at least 1 s,
     speech probability above 0.5 in a command) on the speech probability of
     ``pymicro-vad``, the detector Home Assistant feeds it (dev extra). Its model keeps
     scoring speech for about 0.6 s after the last sound, so this ``audio-stop`` comes
     later than the first model's.
2. Cut-off rate, Whisper tiny.en in the fake, chunks sent at once (the server decides on
   audio time, so pacing changes nothing here): the corpus (``tests.utterances.COMMANDS``)
   as spoken, and with a pause at its middle word (``tests.utterances.paused``) of 0.3,
   0.5, 0.6 and 0.8 s of silence between the last sound and the next. An utterance is cut
   off when its early transcript lacks a word of its ``audio-stop`` transcript (normal
   mode: the whole utterance, 0.7 s of room, ``audio-stop``). For comparison, how often
   Home Assistant's own (simulated) detector would end the command inside the pause.

Run: ``.venv/bin/python benchmarks/early_transcript.py`` (about 25 minutes; ``--runs N``
utterances per gain row, ``--silences 0.5,0.7``, ``--skip gain,cutoff``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wyoming.asr import Transcribe, Transcript  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402

from benchmarks.latency import ServerProcess, Table  # noqa: E402
from tests import speech  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402
from tests.utterances import (  # noqa: E402
    COMMANDS,
    HA_SILENCE_SECONDS,
    RATE,
    command,
    halves,
    paused,
    room_noise,
    sound_bounds,
    spoken,
)

CHUNK_BYTES = RATE // 100 * 2  # 10 ms
LEAD_SECONDS = 0.2
EARLY_TAIL_SECONDS = 3.0  # room streamed after the speech in early mode (ends long before)
PAUSES = (0.3, 0.5, 0.6, 0.8)
FINALIZE = (0.15, 0.45)


# ------------------------------------------------------------------------------ Home Assistant


def ha_stop_chunk(pcm: bytes) -> int | None:
    """The 10 ms chunk of 16 kHz ``pcm`` after which Home Assistant's segmenter ends the
    command (module docstring: its defaults on ``pymicro-vad``'s speech probability), or
    None if it does not within ``pcm``."""
    from pymicro_vad import MicroVad

    vad = MicroVad()
    step = 0.01
    in_command = False
    speech_left, command_left, silence_left, reset_left = 0.3, 0.7, 0.7, 1.0
    for index in range(len(pcm) // CHUNK_BYTES):
        probability = vad.process_10ms(pcm[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES])
        if not in_command:
            if probability > 0.2:  # speech before a command
                reset_left = 1.0
                speech_left -= step
                if speech_left <= 0:
                    in_command, command_left, silence_left = True, 0.7, HA_SILENCE_SECONDS
            else:
                reset_left -= step
                if reset_left <= 0:
                    speech_left, reset_left = 0.3, 1.0
        elif probability > 0.5:  # speech in the command: 1 s of it restores the silence
            reset_left -= step
            command_left -= step
            if reset_left <= 0:
                silence_left, reset_left = HA_SILENCE_SECONDS, 1.0
        else:
            reset_left = 1.0
            silence_left -= step
            command_left -= step
            if silence_left <= 0 and command_left <= 0:
                return index
    return None


def have_microvad() -> bool:
    try:
        import pymicro_vad  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------ client


@dataclass
class Run:
    text: str = ""
    transcript_at: float = math.nan
    sent_at: list[float] = field(default_factory=list)  # monotonic s, per chunk written


async def ha_stream(port: int, pcm: bytes, *, stop_after: int | None, realtime: bool) -> Run:
    """``transcribe``, ``audio-start``, 10 ms chunks; with ``stop_after``, ``audio-stop``
    after that many chunks (Home Assistant's detection), else chunks until the transcript
    arrives and never ``audio-stop`` (early mode). Reads concurrently until ``transcript``."""
    run = Run()
    async with AsyncTcpClient("127.0.0.1", port) as client:

        async def read() -> None:
            while True:
                event = await client.read_event()
                if event is None:
                    raise RuntimeError("connection closed before the transcript")
                if event.type == "error":
                    raise RuntimeError(f"error: {event.data}")
                if Transcript.is_type(event.type):
                    run.transcript_at = time.monotonic()
                    run.text = Transcript.from_event(event).text
                    return

        reader = asyncio.create_task(read())
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        started = time.monotonic()
        for index, start in enumerate(range(0, len(pcm), CHUNK_BYTES)):
            if index == stop_after or reader.done():
                break
            audio = pcm[start : start + CHUNK_BYTES]
            await client.write_event(
                AudioChunk(rate=RATE, width=2, channels=1, audio=audio).event()
            )
            run.sent_at.append(time.monotonic())
            if realtime:
                delay = started + (index + 1) / 100 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        if stop_after is not None:
            await client.write_event(AudioStop().event())
        await asyncio.wait_for(reader, 30)
    return run


def last_sound_chunk(text: str) -> int:
    """Index of the 10 ms chunk holding the last sound of ``command(text)``."""
    end = int(LEAD_SECONDS * RATE) * 2 + sound_bounds(spoken(text))[1]
    return math.ceil(end / CHUNK_BYTES) - 1


async def with_server(
    fake: FakeOpenAI, args: list[str], body: Callable[[ServerProcess], Awaitable[None]]
) -> None:
    server = ServerProcess(ROOT, fake.base_url, args, {})
    try:
        await server.wait_ready()
        await asyncio.sleep(0.5)  # the warm session is open
        await body(server)
    finally:
        await server.stop()


def early_args(silence: float) -> list[str]:
    return ["--stt-early-transcript", "--stt-early-transcript-silence", str(silence)]


# ------------------------------------------------------------------------------ gain


async def gain_rows(table: Table, fake: FakeOpenAI, runs: int, silences: list[float]) -> None:
    """Last sound -> transcript per mode and finalize delay; the gains of the medians."""
    medians: dict[tuple[str, float], float] = {}
    texts = [COMMANDS[i % len(COMMANDS)] for i in range(runs)]
    audio = [
        command(text, lead_seconds=LEAD_SECONDS, tail_seconds=EARLY_TAIL_SECONDS, seed=i)
        for i, text in enumerate(texts)
    ]
    lasts = [last_sound_chunk(text) for text in texts]
    stops: dict[str, list[int]] = {"0.7 s": [last + 1 + 70 for last in lasts]}
    if have_microvad():
        ha = [ha_stop_chunk(pcm) for pcm in audio]
        stops["HA's detector"] = [
            (stop if stop is not None else len(pcm)) + 1
            for stop, pcm in zip(ha, audio, strict=True)
        ]
        after = [
            (stop - 1 - last) * 10 for stop, last in zip(stops["HA's detector"], lasts, strict=True)
        ]
        table.add("HA's detector: audio-stop after the last sound", after)
    else:
        print("pymicro-vad is not installed: no 'HA's detector' rows (pip install pymicro-vad)")

    async def measure(server: ServerProcess, label: str, stop_after: list[int] | None) -> None:
        for delay in FINALIZE:
            fake.finalize_delay = delay
            waits = []
            for index, pcm in enumerate(audio):
                stop = None if stop_after is None else stop_after[index]
                run = await ha_stream(server.port, pcm, stop_after=stop, realtime=True)
                waits.append((run.transcript_at - run.sent_at[lasts[index]]) * 1000)
                await asyncio.sleep(0.05)  # the spare session is replaced
            table.add(f"last sound -> transcript, {label}, finalize {delay * 1000:.0f} ms", waits)
            medians[(label, delay)] = statistics.median(waits)

    async def normal(server: ServerProcess) -> None:
        for model, stop_after in stops.items():
            await measure(server, f"normal, audio-stop at {model}", stop_after)

    await with_server(fake, [], normal)
    for silence in silences:

        async def early(server: ServerProcess, silence: float = silence) -> None:
            await measure(server, f"early, silence {silence:.1f} s", None)

        await with_server(fake, early_args(silence), early)
    for model in stops:
        for silence in silences:
            for delay in FINALIZE:
                gain = (
                    medians[(f"normal, audio-stop at {model}", delay)]
                    - medians[(f"early, silence {silence:.1f} s", delay)]
                )
                table.one(
                    f"gain over {model}: silence {silence:.1f} s, finalize {delay * 1000:.0f} ms",
                    gain,
                    "ms",
                )


# ------------------------------------------------------------------------------ cut-off


def variants() -> list[tuple[str, bytes, bytes]]:
    """(pause label, audio ending with 0.7 s of room, the same audio with 2.3 s more room):
    the early mode hears exactly what the normal mode does, and more."""
    found = []
    for pause in (None, *PAUSES):
        for index, text in enumerate(COMMANDS):
            if pause is None:
                pcm = command(text, tail_seconds=HA_SILENCE_SECONDS, seed=index)
            else:
                pcm = paused(text, pause, seed=index, tail_seconds=HA_SILENCE_SECONDS)
            more = room_noise(EARLY_TAIL_SECONDS - HA_SILENCE_SECONDS, seed=1000 + index)
            found.append(("none" if pause is None else f"{pause:.1f} s", pcm, pcm + more))
    return found


def words(text: str) -> Counter[str]:
    return Counter(speech.normalize_text(text).split())


def ha_cut_rows(table: Table) -> None:
    """How often Home Assistant's own (simulated) detector ends a paused command inside
    the pause (before the first sound after it)."""
    for pause in PAUSES:
        cut = 0
        for index, text in enumerate(COMMANDS):
            pcm = paused(text, pause, seed=index, tail_seconds=EARLY_TAIL_SECONDS)
            second = halves(text)[1]
            resumes = len(pcm) - int(EARLY_TAIL_SECONDS * RATE) * 2 - len(spoken(second))
            resumes += sound_bounds(spoken(second))[0]
            stop = ha_stop_chunk(pcm)
            cut += stop is not None and (stop + 1) * CHUNK_BYTES <= resumes
        table.one(
            f"cut off by HA's detector: pause {pause:.1f} s ({cut}/{len(COMMANDS)})",
            100 * cut / len(COMMANDS),
            "%",
        )


async def cutoff_rows(table: Table, fake: FakeOpenAI, silences: list[float]) -> None:
    saved = fake.transcriber, fake.finalize_delay
    fake.transcriber = speech.whisper_transcriber
    fake.finalize_delay = 0.0
    cases = variants()
    at_stop: list[str] = []
    labels = list(dict.fromkeys(label for label, _stop, _early in cases))
    try:

        async def stopped(server: ServerProcess) -> None:
            for _label, pcm, _early in cases:
                chunks = math.ceil(len(pcm) / CHUNK_BYTES)
                run = await ha_stream(server.port, pcm, stop_after=chunks, realtime=False)
                at_stop.append(run.text)

        await with_server(fake, [], stopped)
        for silence in silences:
            early_texts: list[str] = []

            async def early(server: ServerProcess, into: list[str] = early_texts) -> None:
                for _label, _stop, pcm in cases:
                    run = await ha_stream(server.port, pcm, stop_after=None, realtime=False)
                    into.append(run.text)

            await with_server(fake, early_args(silence), early)
            for label in labels:
                rows = [
                    (stop, got)
                    for (case, _a, _b), stop, got in zip(cases, at_stop, early_texts, strict=True)
                    if case == label
                ]
                cut = [(stop, got) for stop, got in rows if words(stop) - words(got)]
                table.one(
                    f"cut off: silence {silence:.1f} s, pause {label} ({len(cut)}/{len(rows)})",
                    100 * len(cut) / len(rows),
                    "%",
                )
                for stop, got in cut[:1]:
                    print(f"  e.g. silence {silence:.1f} s, pause {label}: {got!r}, not {stop!r}")
    finally:
        fake.transcriber, fake.finalize_delay = saved
    if have_microvad():
        ha_cut_rows(table)


# ------------------------------------------------------------------------------ main


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="utterances per gain row")
    parser.add_argument(
        "--silences",
        default="0.3,0.5,0.7,0.9",
        help="stt.early_transcript_silence values to compare, seconds",
    )
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: gain,cutoff")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    silences = [float(s) for s in args.silences.split(",") if s]
    table = Table()
    fake = FakeOpenAI()
    await fake.start()
    try:
        if "gain" not in skip:
            await gain_rows(table, fake, args.runs, silences)
        if "cutoff" not in skip:
            await cutoff_rows(table, fake, silences)
    finally:
        await fake.stop()
    print(f"runs={args.runs}; silences {silences}; corpus {len(COMMANDS)} commands")
    table.print()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
