"""Outages and stalls: how long the user waits once hedged requests step in.

Rows of ``script/bench`` (skip key ``outage``), each against a fake OpenAI server of its
own and a server process (``benchmarks/latency.py``'s ``ServerProcess``, default hedge
settings: overdue after the rolling p99 of healthy answers, at least 1 s). Each server
first answers a few healthy commands and replies (finalize 150 ms, first byte 400 ms), so
it knows how long healthy answers take, as a running server does. Then, per run:

- OpenAI hangs (``fallback: local``, ``fallback_retry_after: 0`` so every run is the
  first command of an outage): sessions open and take the audio but never answer the
  commit; then, in a second row, the connect itself hangs too (handshakes never
  answered); ``audio-stop`` -> ``transcript`` of a Piper command (Home Assistant's 0.7 s
  tail, paced in real time), checked against its words;
- the same server, every ``/v1/audio/speech`` hanging: plain ``synthesize`` of a
  sentence -> first ``audio-chunk`` (Piper's);
- one stalled realtime session (``fallback: none``): the next commit is never answered,
  the next session is fine; ``audio-stop`` -> the fake's transcript;
- one stalled speech request (``fallback: none``): request -> first ``audio-chunk``;
- healthy OpenAI: ``audio-stop`` -> ``transcript``, and how many second sessions were
  started (hedges: must be 0).

Run: ``script/bench --skip stt,wer,tts,scale,web,http,warm`` (only these rows).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from benchmarks.latency import ServerProcess, SttRun, Table, ha_transcribe, tts_plain
from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.utterances import command

COMMAND = "Turn on the kitchen lights."
SENTENCE = "The front door is locked."
WARM_UP = 5
"""Healthy commands and replies before the rows (the tracker's history)."""

QUIET = ("--log-level", "ERROR")  # hedges log a warning each; not in the table


async def _warm_up(fake: FakeOpenAI, server: ServerProcess) -> None:
    fake.finalize_delay = 0.15
    fake.tts_first_byte_delay = 0.4
    for _ in range(WARM_UP):
        await ha_transcribe(server.port, command(COMMAND))
        await tts_plain(server.port, SENTENCE)


async def _server(fake: FakeOpenAI, args: argparse.Namespace, *flags: str) -> ServerProcess:
    server = ServerProcess(
        Path(args.server_root), fake.base_url, [*args.server_args.split(), *flags, *QUIET], {}
    )
    await server.wait_ready()
    await asyncio.sleep(0.5)  # the warm session is open
    return server


async def _transcribe(port: int, pcm: bytes, failures: list[float]) -> SttRun | None:
    """:func:`ha_transcribe`; an error (or nothing in 30 s) is appended to ``failures`` as
    seconds after ``audio-stop`` (the audio is paced in real time) and gives None."""
    started = time.monotonic()
    try:
        return await ha_transcribe(port, pcm)
    except (RuntimeError, TimeoutError):
        failures.append(time.monotonic() - started - len(pcm) / 32000)
        return None


def _failed(table: Table, failures: list[float]) -> None:
    if failures:
        table.add(f"  of which failed ({len(failures)} runs): error after", failures, "s")


def _right(text: str, expected: str) -> bool:
    return speech.normalize_text(text) == speech.normalize_text(expected)


async def _hanging(table: Table, args: argparse.Namespace, runs: int) -> None:
    fake = FakeOpenAI()
    await fake.start()
    try:
        server = await _server(fake, args, "--fallback", "local", "--fallback-retry-after", "0")
        try:
            await _warm_up(fake, server)
            pcm = command(COMMAND)
            fake.stall_after_commit = 10**6  # sessions open, take the audio, never answer
            for row, hang_connect in (
                ("OpenAI hangs after the commit, first command: audio-stop -> transcript", False),
                ("OpenAI's connect hangs, first command: audio-stop -> transcript", True),
            ):
                fake.hang_handshake = hang_connect
                waits, wrong, failures = [], 0, []
                for index in range(runs + 1):
                    run = await _transcribe(server.port, pcm, failures)
                    if index and run:  # the first run settles the state (warm session, caches)
                        waits.append((run.transcript_at - run.audio_stop_at) * 1000)
                        wrong += not _right(run.text, COMMAND)
                table.add(row, waits)
                table.one("  of which wrong transcripts (local Whisper answers)", wrong, "runs")
                _failed(table, failures)
            fake.hang = True  # HTTP: /v1/audio/speech never answers
            firsts, failed = [], 0
            for index in range(runs + 1):
                try:
                    reply = await tts_plain(server.port, SENTENCE)
                except (RuntimeError, TimeoutError):  # error, or no audio in 30 s
                    failed += 1
                    continue
                if index and reply.first_audio_at is not None:
                    firsts.append((reply.first_audio_at - reply.started_at) * 1000)
            table.add("OpenAI hangs, reply: request -> first audio (Piper)", firsts)
            table.one("  of which failed (error, or no audio in 30 s)", failed, "runs")
        finally:
            await server.stop()
    finally:
        await fake.stop()


async def _stalls(table: Table, args: argparse.Namespace, runs: int) -> None:
    fake = FakeOpenAI()
    await fake.start()
    try:
        server = await _server(fake, args, "--fallback", "none")
        try:
            await _warm_up(fake, server)
            pcm = command(COMMAND)
            healthy: list[float] = []
            sessions = sum(bool(s.commits) for s in fake.realtime_sessions)
            for _ in range(runs):
                run = await ha_transcribe(server.port, pcm)
                healthy.append((run.transcript_at - run.audio_stop_at) * 1000)
            hedges = sum(bool(s.commits) for s in fake.realtime_sessions) - sessions - runs
            table.add("healthy OpenAI (150 ms): audio-stop -> transcript", healthy)
            table.one("  hedges fired (second sessions)", hedges, "sessions")
            stalled, wrong, failures = [], 0, []
            for _ in range(runs):
                fake.stall_after_commit = 1
                run = await _transcribe(server.port, pcm, failures)
                if run:
                    stalled.append((run.transcript_at - run.audio_stop_at) * 1000)
                    wrong += run.text != "hello world"
            table.add("one stalled session (fallback none): audio-stop -> transcript", stalled)
            table.one("  of which wrong transcripts", wrong, "runs")
            _failed(table, failures)
            firsts = []
            for _ in range(runs):
                fake.speech_stalls = 1
                started = time.monotonic()
                reply = await tts_plain(server.port, SENTENCE)
                firsts.append(((reply.first_audio_at or started) - reply.started_at) * 1000)
            table.add("one stalled speech request (fallback none): -> first audio", firsts)
        finally:
            await server.stop()
    finally:
        await fake.stop()


async def outage_rows(table: Table, args: argparse.Namespace) -> None:
    """The rows of the module docstring, ``max(3, args.runs // 4)`` runs each."""
    runs = max(3, args.runs // 4)
    await _hanging(table, args, runs)
    await _stalls(table, args, runs)
