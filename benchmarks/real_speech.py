"""Real voices (``script/bench``, skip key ``real``): recordings of people, not Piper.

Clips from ``benchmarks/recordings.py`` (``script/fetch-recordings``; the rows are "-" when
they were not fetched). Each is sent as Home Assistant sends a command: the recording up to
its last sound (``recordings.last_sound``) and then 0.7 s of what follows it in the
recording (its own breath, reverb and room), padded with -60 dBFS room noise where the
recording is shorter; then ``audio-stop``. Rows:

- last sound -> the detector's end of speech (``wyoming_openai.vad``, the detector of the
  speculative commit, fed in 10 ms chunks at 24 kHz as the realtime session feeds it): the
  last end it reports; and how many ends it reported before the last sound (pauses inside
  the clip);
- ``audio-stop`` -> ``transcript`` with the fake finalizing 450 and 150 ms after a commit
  (speculative commit on, the default), paced in real time;
- WER of the clips (Whisper tiny.en in the fake), speculative commit vs commit at
  ``audio-stop``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import jiwer
import numpy as np

from benchmarks import recordings

if TYPE_CHECKING:
    from benchmarks.latency import ServerProcess, Table
    from tests.fake_openai import FakeOpenAI

TAIL_SECONDS = 0.7
"""Home Assistant's silence before ``audio-stop``."""

WithServer = Callable[..., Awaitable["ServerProcess"]]


def utterance(clip: recordings.Recording) -> tuple[bytes, int]:
    """``clip`` as Home Assistant streams it (module docstring) and its last sound (bytes)."""
    from tests.utterances import room_noise

    last = clip.last_sound
    end = last + int(TAIL_SECONDS * recordings.RATE) * 2
    pcm = clip.pcm[:end]
    if len(pcm) < end:
        pcm += room_noise((end - len(pcm)) / 2 / recordings.RATE, seed=1, dbfs=-60.0)
    return pcm, last


def detector_delays(clips: list[recordings.Recording]) -> tuple[list[float], int]:
    """Milliseconds from each clip's last sound to the detector's last end of speech, and
    the number of ends heard before a last sound."""
    from benchmarks.latency import to_24k
    from wyoming_openai.vad import EndOfSpeechDetector

    delays: list[float] = []
    early = 0
    chunk = 24000 // 100 * 2
    for clip in clips:
        pcm, last = utterance(clip)
        detector = EndOfSpeechDetector()
        audio = to_24k(pcm)
        ends: list[int] = []
        for start in range(0, len(audio), chunk):
            ends += detector.feed(audio[start : start + chunk])
        last_24k = last * 3 // 2
        if ends:
            delays.append((ends[-1] - last_24k) / 48)
            early += sum(1 for end in ends[:-1] if end < last_24k)
    return delays, early


async def _waits(fake: FakeOpenAI, port: int, clips: list[recordings.Recording], runs: int):
    from benchmarks.latency import ha_transcribe

    waits = []
    for index in range(runs):
        pcm, _ = utterance(clips[index % len(clips)])
        run = await ha_transcribe(port, pcm)
        waits.append((run.transcript_at - run.audio_stop_at) * 1000)
        await asyncio.sleep(0.05)  # the spare session is replaced
    return waits


async def _wer(fake: FakeOpenAI, port: int, clips: list[recordings.Recording]) -> float:
    from benchmarks.latency import ha_transcribe
    from tests import speech

    saved = fake.transcriber, fake.finalize_delay
    fake.transcriber = speech.whisper_transcriber
    fake.finalize_delay = 0.0
    references, hypotheses = [], []
    try:
        for clip in clips:
            run = await ha_transcribe(port, utterance(clip)[0], realtime=False)
            references.append(speech.normalize_text(clip.text))
            hypotheses.append(speech.normalize_text(run.text) or "<empty>")
    finally:
        fake.transcriber, fake.finalize_delay = saved
    return 100 * float(jiwer.wer(references, hypotheses))


async def section(
    table: Table,
    fake: FakeOpenAI,
    args: argparse.Namespace,
    with_server: WithServer,
) -> None:
    """The rows of the module docstring, added to ``table``."""
    name = "real voices"
    try:
        clips = recordings.load()
    except FileNotFoundError as error:
        print(f"{name}: {error}")
        for row in ("last sound -> detector's end of speech", "audio-stop -> transcript"):
            table.add(f"{name}: {row}", [])
        return
    delays, early = await asyncio.to_thread(detector_delays, clips)
    table.add(f"{name} ({len(clips)} clips): last sound -> detector's end of speech", delays)
    table.one(f"{name}: ends heard before the last sound (pauses)", early, "ends")
    wers: dict[str, float] = {}

    async def speculative(server: ServerProcess) -> None:
        await asyncio.sleep(1.0)
        for finalize in (0.45, 0.15):
            fake.finalize_delay = finalize
            waits = await _waits(fake, server.port, clips, args.runs)
            label = f"{name}, 0.7 s tail, finalizing in {finalize * 1000:.0f} ms"
            table.add(f"{label}: audio-stop -> transcript", waits)
        wers["speculative commit"] = await _wer(fake, server.port, clips)

    async def at_stop(server: ServerProcess) -> None:
        await asyncio.sleep(0.5)
        wers["commit at audio-stop"] = await _wer(fake, server.port, clips)

    await with_server(fake, args, {}, speculative)
    off = {"WYOMING_OPENAI_STT_SPECULATIVE_COMMIT": "false"}
    await with_server(fake, args, off, at_stop)
    for label, value in wers.items():
        table.one(f"{name}: WER of {len(clips)} clips, {label}", value, "%")
    fake.finalize_delay = 0.15


def summary(values: list[float]) -> str:
    """Median / p95 of ``values`` (for quick prints)."""
    return f"{statistics.median(values):.0f} / {float(np.percentile(values, 95)):.0f}"


def _scores(pcm: bytes, model: str) -> tuple[np.ndarray, int]:
    """Speech scores of 16 kHz ``pcm`` per frame, and the frame's samples."""
    samples = np.frombuffer(pcm, "<i2")
    if model == "earshot":
        import earshot

        detector = earshot.Detector()
        frames = range(0, samples.size - 255, 256)
        return np.array([detector.predict_i16(samples[i : i + 256]) for i in frames]), 256
    from faster_whisper.vad import get_vad_model  # the local extra only

    audio = samples[: samples.size - samples.size % 512].astype(np.float32) / 32768
    return np.asarray(get_vad_model()(audio)).reshape(-1), 512


def _last_end(scores: np.ndarray, samples: int, threshold: float, hang_ms: float) -> list[int]:
    """Ends (byte offsets) by the rule "3 frames >= threshold start, ``hang_ms`` below end"."""
    need = max(1, round(hang_ms / (1000 * samples / recordings.RATE)))
    ends, run, below, speech = [], 0, 0, False
    for index, score in enumerate(scores):
        if score >= threshold:
            run, below = run + 1, 0
            speech = speech or run >= 3
            continue
        run, below = 0, below + 1
        if speech and below >= need:
            speech = False
            ends.append((index + 1) * samples * 2)
    return ends


def compare() -> None:
    """The options of ``benchmarks/README.md`` (End of real speech), printed: earshot at
    several thresholds and hangovers and Silero (``faster_whisper.vad``, when installed) on
    the clips, with the rule of the detector before the rise check; and how many Piper
    commands with a 0.3 s pause at their middle word get an end inside the pause."""
    from tests.utterances import COMMANDS, HA_SILENCE_SECONDS, halves, paused, sound_bounds, spoken

    clips = [utterance(clip) for clip in recordings.load()]
    tail = int(HA_SILENCE_SECONDS * recordings.RATE) * 2
    pauses = []
    for index, text in enumerate(COMMANDS):
        pcm = paused(text, 0.3, seed=index)
        first = spoken(halves(text)[0])
        pause_start = int(0.2 * recordings.RATE) * 2 + sound_bounds(first)[1]
        second = spoken(halves(text)[1])
        pause_end = len(pcm) - tail - len(second) + sound_bounds(second)[0]
        pauses.append((pcm, pause_start, pause_end))
    models = ["earshot"]
    try:
        import faster_whisper.vad  # noqa: F401

        models.append("silero")
    except ImportError:
        print("silero: faster-whisper not installed (the local extra)")
    for model in models:
        cache = {id(pcm): _scores(pcm, model) for pcm, _ in clips}
        cache.update({id(pcm): _scores(pcm, model) for pcm, _, _ in pauses})
        for threshold in (0.5, 0.6, 0.7):
            for hang in (100.0, 150.0, 200.0, 300.0):
                delays, cut = [], 0
                for pcm, last in clips:
                    ends = _last_end(*cache[id(pcm)], threshold, hang)
                    if ends:
                        delays.append((ends[-1] - last) / 32)
                for pcm, start, end in pauses:
                    ends = _last_end(*cache[id(pcm)], threshold, hang)
                    cut += any(start < e < end + 3200 for e in ends)
                print(
                    f"{model:8} threshold {threshold:.1f}, {hang:3.0f} ms: last sound -> end "
                    f"{summary(delays)} ms (median / p95); ends in a 0.3 s pause: "
                    f"{cut}/{len(pauses)}"
                )


if __name__ == "__main__":
    import sys

    if "--compare" in sys.argv:
        compare()
    else:
        found = recordings.load()
        found_delays, found_early = detector_delays(found)
        print(f"last sound -> end: {summary(found_delays)} ms; ends before: {found_early}")
