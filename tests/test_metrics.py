"""``GET /metrics``: the Prometheus series move as requests are served through every face.

The exposition is read as Prometheus reads it (``prometheus_client.parser``). The metrics
are the process's (``wyoming_openai.metrics``), shared by every server a test starts, so
each test compares the series before and after its own requests; a counter is read once it
has moved (the server counts right after writing its answer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from wyoming.audio import AudioChunk
from wyoming.client import AsyncTcpClient

from tests.fake_openai import FakeOpenAI
from tests.harness import (
    API_KEY,
    READ_TIMEOUT,
    ha_synthesize,
    ha_synthesize_stream,
    ha_transcribe,
    running_web,
    settings_with,
)
from tests.utterances import command, piper_16k, tone
from wyoming_openai import metrics
from wyoming_openai.config import Settings
from wyoming_openai.web.face import WebFace

TOKEN = "metrics-token-0f3c9a7e51"
TRANSCRIPT = "purple giraffes whistle quietly"
"""What the fake hears: it must never show up in the metrics."""
TEXT = "Seventeen walruses sing opera."
"""What the server is asked to say: it must never show up in the metrics."""

Key = tuple[str, tuple[tuple[str, str], ...]]


class Scrape:
    """One ``GET /metrics`` answer: its text and every sample, parsed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[Key, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests(face: str, kind: str, outcome: str) -> tuple[str, dict[str, str]]:
    return "wyoming_openai_requests_total", {"face": face, "kind": kind, "outcome": outcome}


def counted(before: Scrape, after: Scrape, face: str, kind: str, outcome: str) -> float:
    """Requests of ``face``/``kind`` answered with ``outcome`` between two scrapes."""
    name, labels = requests(face, kind, outcome)
    return after.value(name, **labels) - before.value(name, **labels)


def open_sessions(kind: str) -> float:
    """Upstream sessions open now, read from the registry (also with no server running)."""
    value = metrics.REGISTRY.get_sample_value("wyoming_openai_upstream_sessions", {"kind": kind})
    assert value is not None
    return value


async def get_metrics(face: WebFace, token: str | None = None) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(face.url + "metrics", headers=headers) as response,
    ):
        await response.read()
        return response


async def scrape(face: WebFace, token: str | None = None) -> Scrape:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(face.url + "metrics", headers=headers) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return Scrape(await response.text())


async def scrape_until(
    face: WebFace,
    moved: Callable[[Scrape], bool],
    token: str | None = None,
) -> Scrape:
    """Scrape until ``moved(scrape)`` holds (a hang guard, not a timing assertion)."""
    async with asyncio.timeout(READ_TIMEOUT):
        while True:
            now = await scrape(face, token)
            if moved(now):
                return now
            await asyncio.sleep(0.01)


def grew(before: Scrape, name: str, by: float = 1, **labels: str) -> Callable[[Scrape], bool]:
    """Whether a sample grew by at least ``by`` since ``before``."""
    return lambda now: now.value(name, **labels) - before.value(name, **labels) >= by


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


@contextlib.asynccontextmanager
async def web_face(settings: Settings) -> AsyncIterator[tuple[int, WebFace]]:
    """The Wyoming port and the web face of one server."""
    async with running_web(settings) as (server, face):
        assert server.port is not None
        yield server.port, face


@pytest.fixture
def hears(fake: FakeOpenAI) -> FakeOpenAI:
    """The fake hears :data:`TRANSCRIPT` in any utterance of 100 ms or more."""
    fake.transcriber = lambda pcm, language, prompt: TRANSCRIPT if len(pcm) >= 4800 else ""
    return fake


async def post_speech(face: WebFace, body: dict[str, Any], token: str | None = TOKEN) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(face.url + "v1/audio/speech", json=body, headers=headers) as response,
    ):
        await response.read()
        return response.status


# ------------------------------------------------------------------ the endpoint


async def test_the_token_gates_metrics(fake: FakeOpenAI) -> None:
    async with web_face(settings_with(fake, token=TOKEN)) as (_port, face):
        missing = await get_metrics(face)
        wrong = await get_metrics(face, "not-the-token")
        scraped = await scrape(face, TOKEN)
    assert missing.status == wrong.status == 401
    assert scraped.value("wyoming_openai_upstream_sessions", kind="stt") >= 0
    assert ("process_open_fds", ()) in scraped.samples
    assert TOKEN not in scraped.text and API_KEY not in scraped.text


async def test_every_series_is_there_before_any_request(fake: FakeOpenAI) -> None:
    async with web_face(settings_with(fake)) as (_port, face):
        scraped = await scrape(face)
    names = {name for name, _labels in scraped.samples}
    for face_name in metrics.FACES:
        for kind in metrics.KINDS:
            for outcome in ("ok", "fallback"):
                name, labels = requests(face_name, kind, outcome)
                assert (name, tuple(sorted(labels.items()))) in scraped.samples
    assert {
        "wyoming_openai_transcript_seconds_count",
        "wyoming_openai_first_audio_seconds_count",
        "wyoming_openai_upstream_retries_total",
        "wyoming_openai_warm_session_renewals_total",
        "wyoming_openai_upstream_sessions",
    } <= names


# ------------------------------------------------------------------ Wyoming


async def test_wyoming_transcription_and_synthesis_are_counted_and_timed(
    hears: FakeOpenAI,
) -> None:
    async with web_face(settings_with(hears, token=TOKEN)) as (port, face):
        before = await scrape(face, TOKEN)
        heard = await ha_transcribe(port, tone(300, 0.5, 16000))
        spoken = await ha_synthesize_stream(port, ["Seventeen walruses ", "sing opera."])
        after = await scrape_until(
            face,
            lambda now: (
                counted(before, now, "wyoming", "stt", "ok") >= 1
                and counted(before, now, "wyoming", "tts", "ok") >= 1
            ),
            TOKEN,
        )
    assert heard.transcript == TRANSCRIPT and spoken.error is None
    assert counted(before, after, "wyoming", "stt", "ok") == 1
    assert counted(before, after, "wyoming", "tts", "ok") == 1
    assert delta(before, after, "wyoming_openai_transcript_seconds_count", face="wyoming") == 1
    assert delta(before, after, "wyoming_openai_first_audio_seconds_count", face="wyoming") == 1
    # Latencies are seconds of this test's own requests: bounded by the test's duration.
    waited = delta(before, after, "wyoming_openai_transcript_seconds_sum", face="wyoming")
    assert 0 < waited < READ_TIMEOUT
    assert delta(before, after, "wyoming_openai_first_audio_seconds_sum", face="wyoming") > 0
    for text in (TRANSCRIPT, "walrus", "opera", TOKEN, API_KEY):
        assert text not in after.text


async def test_wyoming_errors_are_counted_by_code(hears: FakeOpenAI) -> None:
    async with web_face(settings_with(hears)) as (port, face):
        before = await scrape(face)
        unknown = await ha_synthesize(port, TEXT, voice="no-such-voice")
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(
                AudioChunk(rate=16000, width=2, channels=1, audio=bytes(320)).event()
            )
            error = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
        name, labels = requests("wyoming", "stt", "audio-without-start")
        after = await scrape_until(face, grew(before, name, **labels))
    assert unknown.error is not None and unknown.error.code == "unknown-voice"
    assert error is not None and error.data["code"] == "audio-without-start"
    assert counted(before, after, "wyoming", "tts", "unknown-voice") == 1
    assert counted(before, after, "wyoming", "tts", "ok") == 0
    assert "no-such-voice" not in after.text  # a client's voice name is never a label


async def test_upstream_failures_are_counted_with_their_retries(hears: FakeOpenAI) -> None:
    """A 500 then an answer: one retry, one transcript. No quota: its code, no retry."""
    hears.http_errors = [(500, None)]
    async with web_face(settings_with(hears, "--stt-mode", "http")) as (port, face):
        before = await scrape(face)
        retried = await ha_transcribe(port, tone(300, 0.5, 16000))
        hears.http_errors = [(429, "insufficient_quota")]
        refused = await ha_transcribe(port, tone(300, 0.5, 16000))
        after = await scrape_until(
            face,
            lambda now: (
                counted(before, now, "wyoming", "stt", "ok") >= 1
                and counted(before, now, "wyoming", "stt", "quota-exceeded") >= 1
            ),
        )
    assert retried.transcript == TRANSCRIPT
    assert refused.error is not None and refused.error.code == "quota-exceeded"
    assert counted(before, after, "wyoming", "stt", "ok") == 1
    assert delta(before, after, "wyoming_openai_upstream_retries_total", kind="stt") == 1
    assert delta(before, after, "wyoming_openai_upstream_retries_total", kind="tts") == 0


async def test_a_retired_speech_model_counts_one_move_to_realtime_sessions(
    fake: FakeOpenAI,
) -> None:
    fake.retired_models = {"gpt-4o-mini-tts"}
    settings = settings_with(fake, "--tts-realtime-move", "true")
    open_before = open_sessions("tts")
    async with web_face(settings) as (port, face):
        before = await scrape(face)
        first = await ha_synthesize(port, "Good morning.")
        second = await ha_synthesize(port, "Good night.")
        name, labels = requests("wyoming", "tts", "ok")
        after = await scrape_until(face, grew(before, name, 2, **labels))
    assert first.error is None and second.error is None
    move = {"kind": "tts", "retired": "gpt-4o-mini-tts", "successor": settings.tts.realtime_model}
    assert delta(before, after, "wyoming_openai_model_moves_total", **move) == 1
    # The realtime session is kept for the next request, and closed with the server.
    assert after.value("wyoming_openai_upstream_sessions", kind="tts") == open_before + 1
    assert open_sessions("tts") == open_before


async def test_a_retired_transcription_model_counts_one_move(hears: FakeOpenAI) -> None:
    hears.retired_models = {"whisper-1"}
    settings = settings_with(hears, "--stt-mode", "http", "--stt-model", "whisper-1")
    async with web_face(settings) as (port, face):
        before = await scrape(face)
        first = await ha_transcribe(port, tone(300, 0.5, 16000))
        second = await ha_transcribe(port, tone(300, 0.5, 16000))
        name, labels = requests("wyoming", "stt", "ok")
        after = await scrape_until(face, grew(before, name, 2, **labels))
    assert first.transcript == second.transcript == TRANSCRIPT
    move = {"kind": "stt", "retired": "whisper-1", "successor": "gpt-transcribe"}
    assert delta(before, after, "wyoming_openai_model_moves_total", **move) == 1


async def test_warm_sessions_are_counted_open_renewed_and_closed(fake: FakeOpenAI) -> None:
    fake.session_expires_in = 2.0  # the bridge renews each warm session after about 1.5 s
    settings = settings_with(fake, "--stt-warm-sessions", "1")
    open_before = open_sessions("stt")
    async with web_face(settings) as (_port, face):
        before = await scrape(face)
        renewed = grew(before, "wyoming_openai_warm_session_renewals_total", kind="stt")
        await scrape_until(face, renewed)
        # The renewed session replaced the first one: one open, as before the renewal.
        await scrape_until(
            face,
            lambda now: (
                now.value("wyoming_openai_upstream_sessions", kind="stt") == open_before + 1
            ),
        )
    assert open_sessions("stt") == open_before  # closed with the server


# ------------------------------------------------------------------ web face


async def test_live_websocket_utterances_and_session_errors_are_counted(
    hears: FakeOpenAI,
) -> None:
    async with web_face(settings_with(hears)) as (_port, face):
        before = await scrape(face)
        url = face.url.replace("http://", "ws://") + "v1/transcriptions"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url) as ws:
                await ws.send_json({"action": "start", "language": "en"})
                await ws.receive_json(timeout=READ_TIMEOUT)
                pcm = command("Turn on the kitchen lights.")
                for start in range(0, len(pcm), 640):
                    await ws.send_bytes(pcm[start : start + 640])
                await ws.send_json({"action": "stop"})
                answers = [await ws.receive_json(timeout=READ_TIMEOUT)]
                while "stopped" not in answers[-1]:
                    answers.append(await ws.receive_json(timeout=READ_TIMEOUT))
            async with session.ws_connect(url) as ws:
                await ws.send_json({"action": "dance"})
                refused = await ws.receive_json(timeout=READ_TIMEOUT)
        name, labels = requests("websocket", "stt", "bad-request")
        after = await scrape_until(face, grew(before, name, **labels))
    assert [a["final"] for a in answers if "final" in a] == [TRANSCRIPT]
    assert refused["code"] == "bad-request"
    assert counted(before, after, "websocket", "stt", "ok") == 1
    assert delta(before, after, "wyoming_openai_transcript_seconds_count", face="websocket") == 1
    assert TRANSCRIPT not in after.text


async def test_http_speech_is_counted_and_timed(fake: FakeOpenAI) -> None:
    async with web_face(settings_with(fake, token=TOKEN)) as (_port, face):
        before = await scrape(face, TOKEN)
        ok = await post_speech(face, {"input": TEXT, "voice": "alloy", "response_format": "pcm"})
        empty = await post_speech(face, {"input": "  ", "voice": "alloy"})
        no_token = await post_speech(face, {"input": TEXT}, token=None)
        name, labels = requests("http", "tts", "ok")
        after = await scrape_until(face, grew(before, name, **labels), TOKEN)
    assert (ok, empty, no_token) == (200, 400, 401)
    assert counted(before, after, "http", "tts", "empty-text") == 1
    assert counted(before, after, "http", "tts", "unauthorized") == 1
    assert delta(before, after, "wyoming_openai_first_audio_seconds_count", face="http") == 1
    for text in ("walrus", "opera", TOKEN, API_KEY):
        assert text not in after.text


# ------------------------------------------------------------------ the local fallback


@pytest.mark.slow  # the local engines answer (real models)
async def test_answers_of_the_local_fallback_are_counted_as_fallback(fake: FakeOpenAI) -> None:
    """OpenAI refuses every connection: Whisper transcribes (the first utterance after
    OpenAI failed, the next one straight away while it is held off) and Piper speaks, to
    Home Assistant and over HTTP."""
    fake.reject_connections = True
    settings = settings_with(
        fake, "--fallback", "local", "--openai-max-retries", "0", "--tts-mode", "speech"
    )
    async with web_face(settings) as (port, face):
        before = await scrape(face)
        first = await ha_transcribe(port, piper_16k("Turn on the kitchen lights."))
        second = await ha_transcribe(port, piper_16k("Lock the front door."))
        spoken = await ha_synthesize(port, "The door is locked.")
        status = await post_speech(face, {"input": "The door is locked.", "voice": "alloy"})
        after = await scrape_until(
            face,
            lambda now: (
                counted(before, now, "http", "tts", "fallback") >= 1
                and counted(before, now, "wyoming", "tts", "fallback") >= 1
            ),
        )
    assert first.transcript and second.transcript and spoken.error is None and status == 200
    assert counted(before, after, "wyoming", "tts", "fallback") == 1
    assert counted(before, after, "wyoming", "stt", "fallback") == 2
    assert counted(before, after, "wyoming", "stt", "ok") == 0
    assert counted(before, after, "wyoming", "tts", "ok") == 0
    assert "locked" not in after.text and "kitchen" not in after.text
