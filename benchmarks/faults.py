"""What a client sees under each upstream fault and bad input, and how long it takes.

Runs the real server against the fake OpenAI server with each fault injected and prints
one row per case: the events the client received (compressed) and the time from
``audio-stop`` (or the request) to the answer. Extra arguments go to the server, e.g.
``.venv/bin/python benchmarks/faults.py --fallback none``.

Run: ``.venv/bin/python benchmarks/faults.py [server flags...]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_openai import FakeOpenAI
from tests.harness import (
    ha_synthesize,
    ha_synthesize_stream,
    ha_transcribe,
    make_settings,
    running_server,
)
from tests.utterances import tone
from wyoming_openai.stt.realtime import APPEND_BATCH_MS

Case = Callable[[FakeOpenAI, int], Awaitable[tuple[list[str], float, str]]]


def compress(types: list[str]) -> list[str]:
    """``[a, b, b, b]`` -> ``["a", "b x3"]``."""
    runs: list[list] = []
    for t in types:
        if runs and runs[-1][0] == t:
            runs[-1][1] += 1
        else:
            runs.append([t, 1])
    return [t if n == 1 else f"{t} x{n}" for t, n in runs]


async def stt(fake: FakeOpenAI, port: int, realtime: bool = True) -> tuple[list[str], float, str]:
    result = await ha_transcribe(port, tone(300, 1.0, 16000), realtime=realtime)
    end = result.transcript_at or time.monotonic()
    detail = result.error.code if result.error else repr(result.transcript)
    return result.types, end - result.audio_stop_at, detail or ""


async def drop_mid_utterance(fake: FakeOpenAI, port: int) -> tuple[list[str], float, str]:
    fake.drop_after_appends = 300 // APPEND_BATCH_MS  # 0.3 s of speech

    async def heal() -> None:
        first = await fake.wait_for_realtime_session(1)
        await first.closed.wait()
        fake.drop_after_appends = None

    task = asyncio.create_task(heal())
    out = await stt(fake, port)
    task.cancel()
    return out


async def refused_then_back(fake: FakeOpenAI, port: int) -> tuple[list[str], float, str]:
    fake.reject_connections = True
    asyncio.get_running_loop().call_later(0.4, setattr, fake, "reject_connections", False)
    return await stt(fake, port)


async def refused(fake: FakeOpenAI, port: int) -> tuple[list[str], float, str]:
    fake.reject_connections = True
    return await stt(fake, port)


async def hang(fake: FakeOpenAI, port: int) -> tuple[list[str], float, str]:
    fake.hang = True
    return await stt(fake, port)


async def expiry(fake: FakeOpenAI, port: int) -> tuple[list[str], float, str]:
    fake.session_max_duration = 0.5
    return await stt(fake, port)


async def tts_cut(fake: FakeOpenAI, port: int) -> tuple[list[str], float, str]:
    fake.speech_fail_after_bytes = 20_000
    result = await ha_synthesize_stream(port, ["A reply long enough to be cut off in the middle."])
    return result.types, time.monotonic() - result.started_at, f"{len(result.audio)} bytes"


async def tts_500(fake: FakeOpenAI, port: int) -> tuple[list[str], float, str]:
    fake.http_errors = [(500, "server_error")] * 10
    result = await ha_synthesize(port, "Hello.")
    return (
        result.types,
        time.monotonic() - result.started_at,
        str(result.error and result.error.code),
    )


CASES: list[tuple[str, Case]] = [
    ("no fault (realtime STT)", lambda f, p: stt(f, p)),
    ("WebSocket dropped mid-utterance", drop_mid_utterance),
    ("connections refused for 0.4 s", refused_then_back),
    ("connections refused throughout", refused),
    ("service accepts but never answers", hang),
    ("session expires mid-utterance", expiry),
    ("TTS body cut after 20,000 bytes", tts_cut),
    ("TTS HTTP 500 every time", tts_500),
]


async def main() -> None:
    flags = sys.argv[1:]
    print(f"server flags: {' '.join(flags) or '(defaults)'}; connect timeout 1 s, timeout 3 s")
    print(f"{'case':<36} {'seconds':>8}  result / events")
    for name, case in CASES:
        fake = FakeOpenAI()
        await fake.start()
        try:
            settings = make_settings(
                fake.base_url, "--openai-connect-timeout", "1", "--openai-timeout", "3", *flags
            )
            async with running_server(settings) as server:
                assert server.port is not None
                types, seconds, detail = await case(fake, server.port)
        finally:
            await fake.stop()
        print(f"{name:<36} {seconds:>8.2f}  {detail}: {' '.join(compress(types))}")


if __name__ == "__main__":
    asyncio.run(main())
