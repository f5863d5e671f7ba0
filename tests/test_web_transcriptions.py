"""``POST /v1/audio/transcriptions`` and ``GET /v1/models`` of the web face, with the official
``openai`` SDK as the client (what an app pointed at this server instead of OpenAI uses),
against the fake OpenAI server, local Whisper, or the local fallback."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import numpy as np
import openai
import pytest

from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.harness import (
    API_KEY,
    READ_TIMEOUT,
    logged_problems,
    running_web,
    sdk_client,
    settings_with,
    with_web,
)
from tests.utterances import dominant_hz, eventually, paused, piper_16k, tone, use_whisper
from wyoming_openai import metrics
from wyoming_openai.audio import PCM_16K_MONO, pcm_to_wav
from wyoming_openai.web import transcriptions
from wyoming_openai.web.face import WebFace

TEXT = "Turn on the kitchen lights."
FAKE_TRANSCRIPT = "hello world"  # tests.fake_openai.default_transcriber, for any speech

UPLOAD_FORMATS = {
    # name: (container, codec, rate of the encoded audio)
    "wav": ("wav", "pcm_s16le", 16000),
    "mp3": ("mp3", "libmp3lame", 16000),
    "flac": ("flac", "flac", 16000),
    "ogg": ("ogg", "libopus", 48000),
    "webm": ("webm", "libopus", 48000),
    "m4a": ("ipod", "aac", 16000),
}


def encode(pcm16k: bytes, name: str) -> bytes:
    """16 kHz s16le mono PCM as a ``name`` file (:data:`UPLOAD_FORMATS`), encoded by PyAV."""
    container_format, codec, rate = UPLOAD_FORMATS[name]
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        frame_size = stream.codec_context.frame_size or 1024
        resampler = av.AudioResampler(
            format=stream.codec_context.format.name, layout="mono", rate=rate, frame_size=frame_size
        )
        samples = np.frombuffer(pcm16k, "<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = PCM_16K_MONO.rate
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(chunk))
        container.mux(stream.encode(None))
    return out.getvalue()


async def transcribe(
    face: WebFace, file: bytes, name: str = "hello.wav", api_key: str = "anything", **kwargs: Any
) -> Any:
    """``audio.transcriptions.create`` made with the SDK (``model`` whisper-1 unless given)."""
    request: dict[str, Any] = {"model": "whisper-1", **kwargs}
    async with sdk_client(face, api_key) as client:
        return await client.audio.transcriptions.create(file=(name, file), **request)


def wav_of(pcm16k: bytes) -> bytes:
    return pcm_to_wav(pcm16k, PCM_16K_MONO)


TONE_WAV = wav_of(tone(440, 1.0, 16000))


def normalized(text: str) -> str:
    return speech.normalize_text(text)


# -------------------------------------------------------------------- with OpenAI behind


@pytest.mark.parametrize("mode", ["realtime", "http"])
async def test_plain_json_is_the_upstream_transcript_of_all_the_audio(
    fake: FakeOpenAI, mode: str
) -> None:
    seconds = 3.0
    async with running_web(settings_with(fake, "--stt-mode", mode)) as (_server, face):
        result = await transcribe(face, wav_of(tone(440, seconds, 16000)))
    assert isinstance(result, openai.types.audio.Transcription)
    assert result.text == FAKE_TRANSCRIPT
    assert result.usage is not None and result.usage.type == "duration"
    assert result.usage.seconds == pytest.approx(seconds, abs=0.01)
    if mode == "realtime":
        (session,) = fake.realtime_sessions
        upstream = bytes(session.audio)
    else:
        (request,) = fake.transcription_requests
        upstream = speech.resample_pcm(request["audio"], request["rate"], 24000)
    # all of the file reached OpenAI, unchanged
    assert len(upstream) / 48000 == pytest.approx(seconds, abs=0.01)
    assert dominant_hz(upstream) == pytest.approx(440, abs=5)


async def test_every_response_format_has_the_transcript(fake: FakeOpenAI) -> None:
    async with running_web(settings_with(fake, "--stt-language", "en")) as (_server, face):
        as_json = await transcribe(face, TONE_WAV, response_format="json")
        as_text = await transcribe(face, TONE_WAV, response_format="text")
        verbose = await transcribe(face, TONE_WAV, response_format="verbose_json")
    assert as_json.text == FAKE_TRANSCRIPT
    assert as_text == FAKE_TRANSCRIPT + "\n"
    assert isinstance(verbose, openai.types.audio.TranscriptionVerbose)
    assert verbose.text == FAKE_TRANSCRIPT
    assert verbose.language == "en"
    assert verbose.duration == pytest.approx(1.0, abs=0.01)
    assert verbose.segments is not None
    (segment,) = verbose.segments
    assert (segment.start, segment.end, segment.text) == (0.0, verbose.duration, verbose.text)


@pytest.mark.parametrize("response_format", ["json", "text"])
async def test_stream_is_openais_delta_and_done_events(
    fake: FakeOpenAI, response_format: str
) -> None:
    fake.transcriber = lambda pcm, language, prompt: "turn on the kitchen lights"
    async with (
        running_web(settings_with(fake)) as (_server, face),
        sdk_client(face) as client,
    ):
        stream = await client.audio.transcriptions.create(
            file=("hello.wav", TONE_WAV),
            model="gpt-4o-transcribe",
            stream=True,
            response_format=response_format,  # type: ignore[arg-type]
        )
        events = [event async for event in stream]
    *deltas, done = events
    assert deltas and all(
        isinstance(e, openai.types.audio.TranscriptionTextDeltaEvent) for e in deltas
    )
    assert isinstance(done, openai.types.audio.TranscriptionTextDoneEvent)
    assert done.type == "transcript.text.done"
    assert done.text == "turn on the kitchen lights"
    assert "".join(e.delta for e in deltas).strip() == done.text


@pytest.mark.parametrize("mode", ["realtime", "http"])
async def test_language_prompt_and_keywords_reach_the_engine(fake: FakeOpenAI, mode: str) -> None:
    settings = settings_with(fake, "--stt-mode", mode, "--stt-model", "gpt-4o-transcribe")
    async with running_web(settings) as (_server, face), sdk_client(face) as client:
        await client.audio.transcriptions.create(
            file=("hello.wav", TONE_WAV),
            model="gpt-4o-transcribe",
            language="de",
            prompt="Kitchen commands.",
            extra_body={"keywords": ["Wohnzimmer"]},
        )
    if mode == "realtime":
        (session,) = fake.realtime_sessions
        assert session.session_config is not None
        options = session.session_config["audio"]["input"]["transcription"]
    else:
        (options,) = fake.transcription_requests
    assert options["language"] == "de"
    assert options["prompt"].startswith("Kitchen commands.")
    assert "Wohnzimmer" in options["prompt"]


async def test_a_file_alone_is_enough_as_curl_sends_it(fake: FakeOpenAI) -> None:
    """``curl -F file=@hello.wav .../v1/audio/transcriptions``: no model, no format."""
    async with running_web(settings_with(fake)) as (_server, face), aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("file", TONE_WAV, filename="hello.wav", content_type="audio/wav")
        async with http.post(face.url + "v1/audio/transcriptions", data=form) as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            body = await response.json()
    assert body["text"] == FAKE_TRANSCRIPT


async def test_any_model_name_is_served_by_the_configured_engine(fake: FakeOpenAI) -> None:
    settings = settings_with(fake, "--stt-mode", "http", "--stt-model", "gpt-4o-transcribe")
    async with running_web(settings) as (_server, face):
        result = await transcribe(face, TONE_WAV, model="some-other-model")
    assert result.text == FAKE_TRANSCRIPT
    assert [r["model"] for r in fake.transcription_requests] == ["gpt-4o-transcribe"]


@pytest.mark.parametrize("name", list(UPLOAD_FORMATS))
async def test_every_upload_format_reaches_openai_as_the_same_audio(
    fake: FakeOpenAI, name: str
) -> None:
    file = encode(tone(440, 1.0, 16000), name)
    async with running_web(settings_with(fake)) as (_server, face):
        result = await transcribe(face, file, name=f"hello.{name}")
    assert result.text == FAKE_TRANSCRIPT
    (session,) = fake.realtime_sessions
    upstream = bytes(session.audio)
    assert len(upstream) / 48000 == pytest.approx(1.0, abs=0.1)  # codecs pad a little
    assert dominant_hz(upstream) == pytest.approx(440, abs=5)


async def test_audio_handed_over_piece_by_piece_arrives_whole_and_in_order(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long file reaches the session as it decodes: here every packet is its own piece."""
    monkeypatch.setattr(transcriptions, "FEED_INTERVAL_S", 0.0)
    low, high = tone(440, 1.0, 16000), tone(880, 1.0, 16000)
    async with running_web(settings_with(fake)) as (_server, face):
        result = await transcribe(face, encode(low + high, "flac"), name="two.flac")
    assert result.text == FAKE_TRANSCRIPT
    (session,) = fake.realtime_sessions
    upstream = bytes(session.audio)
    assert len(upstream) == pytest.approx(2 * 48000, abs=480)
    half = len(upstream) // 2
    assert dominant_hz(upstream[:half]) == pytest.approx(440, abs=5)
    assert dominant_hz(upstream[half:]) == pytest.approx(880, abs=5)


async def test_a_stereo_44100_hz_file_is_mixed_down_and_resampled(fake: FakeOpenAI) -> None:
    from wyoming_openai.audio import AudioFormat

    stereo = pcm_to_wav(tone(440, 1.0, 44100, channels=2), AudioFormat(44100, 2, 2))
    async with running_web(settings_with(fake)) as (_server, face):
        result = await transcribe(face, stereo)
    assert result.text == FAKE_TRANSCRIPT
    (session,) = fake.realtime_sessions
    assert len(session.audio) / 48000 == pytest.approx(1.0, abs=0.01)
    assert dominant_hz(bytes(session.audio)) == pytest.approx(440, abs=5)


async def test_a_truncated_wav_is_transcribed_as_far_as_it_goes(fake: FakeOpenAI) -> None:
    """A WAV cut off mid-sample (its header says more than there is): what is there counts."""
    async with running_web(settings_with(fake)) as (_server, face):
        result = await transcribe(face, TONE_WAV[: len(TONE_WAV) // 2 + 1])
    assert result.text == FAKE_TRANSCRIPT
    (session,) = fake.realtime_sessions
    assert len(session.audio) / 48000 == pytest.approx(0.5, abs=0.01)


async def test_a_client_hanging_up_releases_its_session_without_an_error(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.finalize_delay = 1.0  # OpenAI takes a while; the client does not wait
    async with running_web(settings_with(fake)) as (_server, face):
        async with aiohttp.ClientSession() as http:
            form = aiohttp.FormData()
            form.add_field("file", TONE_WAV, filename="hello.wav")
            post = asyncio.ensure_future(http.post(face.url + "v1/audio/transcriptions", data=form))
            session = await fake.wait_for_realtime_session()
            await eventually(lambda: session.commits, READ_TIMEOUT)
            post.cancel()  # gone before the answer
            with contextlib.suppress(asyncio.CancelledError):
                await post
        await asyncio.wait_for(session.closed.wait(), READ_TIMEOUT)  # released upstream
        fake.finalize_delay = 0.0
        assert (await transcribe(face, TONE_WAV)).text == FAKE_TRANSCRIPT  # it goes on
    assert not logged_problems(caplog.records)


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"response_format": "srt"}, "srt"),
        ({"response_format": "vtt"}, "vtt"),
        ({"response_format": "diarized_json"}, "diarized_json"),
        ({"response_format": "xml"}, "response_format"),
        ({"language": "english please"}, "language"),
        ({"extra_body": {"stream": "maybe"}}, "stream"),
    ],
)
async def test_a_bad_field_is_a_bad_request_error(
    fake: FakeOpenAI, kwargs: dict[str, Any], words: str
) -> None:
    async with running_web(settings_with(fake)) as (_server, face):
        with pytest.raises(openai.BadRequestError) as info:
            await transcribe(face, TONE_WAV, **kwargs)
        assert info.value.status_code == 400
        assert info.value.code == "bad-request" and words in info.value.message
        assert fake.realtime_sessions == []  # refused before OpenAI was asked
        assert (await transcribe(face, TONE_WAV)).text == FAKE_TRANSCRIPT  # it goes on


async def test_no_file_or_no_multipart_is_a_bad_request(fake: FakeOpenAI) -> None:
    async with running_web(settings_with(fake)) as (_server, face), aiohttp.ClientSession() as http:
        url = face.url + "v1/audio/transcriptions"
        form = aiohttp.FormData({"model": "whisper-1"}, default_to_multipart=True)
        async with http.post(url, data=form) as response:
            assert response.status == 400
            body = await response.json()
        async with http.post(url, json={"file": "hello.wav"}) as response:
            assert response.status == 400
            other = await response.json()
    assert "'file' is required" in body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"
    assert "multipart/form-data" in other["error"]["message"]


@pytest.mark.parametrize(
    "file", [b"", b"this is not audio at all" * 100, TONE_WAV[:30], b"RIFF" + bytes(2000)]
)
async def test_an_undecodable_file_is_415(fake: FakeOpenAI, file: bytes) -> None:
    async with running_web(settings_with(fake)) as (_server, face):
        with pytest.raises(openai.APIStatusError) as info:
            await transcribe(face, file)
        assert info.value.status_code == (400 if not file else 415)
        assert info.value.code == ("bad-request" if not file else "undecodable-audio")
        assert fake.realtime_sessions == []  # no upstream session for a bad file
        assert (await transcribe(face, TONE_WAV)).text == FAKE_TRANSCRIPT


async def test_a_file_over_the_upload_limit_is_413(fake: FakeOpenAI) -> None:
    settings = with_web(settings_with(fake), max_upload_bytes=64 * 1024)
    big = wav_of(tone(440, 3.0, 16000))  # 96 kB
    async with running_web(settings) as (_server, face):
        with pytest.raises(openai.APIStatusError) as info:
            await transcribe(face, big)
        assert info.value.status_code == 413
        assert info.value.code == "upload-too-large"
        assert (await transcribe(face, TONE_WAV)).text == FAKE_TRANSCRIPT  # 32 kB is fine
    assert len(fake.realtime_sessions) == 1


async def test_a_file_over_the_limit_without_content_length_is_413(fake: FakeOpenAI) -> None:
    """A chunked upload (no Content-Length) is cut off once the file passes the limit."""
    settings = with_web(settings_with(fake), max_upload_bytes=64 * 1024)
    big = wav_of(tone(440, 3.0, 16000))

    async def body() -> AsyncIterator[bytes]:
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]
        yield b"\r\n--xyz--\r\n"

    async with running_web(settings) as (_server, face), aiohttp.ClientSession() as http:
        headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
        url = face.url + "v1/audio/transcriptions"
        async with http.post(url, data=body(), headers=headers) as response:
            assert response.status == 413
            assert (await response.json())["error"]["code"] == "upload-too-large"


async def test_audio_longer_than_the_utterance_limit_is_refused(fake: FakeOpenAI) -> None:
    settings = settings_with(fake, "--limits-max-utterance-seconds", "2")
    async with running_web(settings) as (_server, face):
        with pytest.raises(openai.BadRequestError) as info:
            await transcribe(face, wav_of(tone(440, 3.0, 16000)))
    assert info.value.code == "utterance-too-long"


async def test_the_token_is_required_as_the_api_key(fake: FakeOpenAI) -> None:
    async with running_web(settings_with(fake, token="s3cret")) as (_server, face):
        with pytest.raises(openai.AuthenticationError) as info:
            await transcribe(face, TONE_WAV, api_key="wrong")
        assert info.value.code == "unauthorized"
        assert "s3cret" not in str(info.value.body)
        with pytest.raises(openai.AuthenticationError):
            async with sdk_client(face, "wrong") as client:
                await client.models.list()
        assert fake.realtime_sessions == []
        assert (await transcribe(face, TONE_WAV, api_key="s3cret")).text == FAKE_TRANSCRIPT


async def test_unknown_routes_under_v1_are_openais_404(fake: FakeOpenAI) -> None:
    async with running_web(settings_with(fake)) as (_server, face):
        async with sdk_client(face) as client:
            with pytest.raises(openai.NotFoundError) as info:
                await client.post("/audio/nonsense", cast_to=object, body={})
            assert info.value.body == {
                "message": "Invalid URL (POST /v1/audio/nonsense)",
                "type": "invalid_request_error",
                "param": None,
                "code": "not-found",
            }
        async with aiohttp.ClientSession() as http:
            async with http.get(face.url + "v1/audio/transcriptions") as response:
                assert response.status == 404  # a wrong method: OpenAI's "Invalid URL"
                body = await response.json()
            async with http.get(face.url + "no/such/page") as response:
                assert response.status == 404  # outside /v1/: aiohttp's own page
    assert body["error"]["message"] == "Invalid URL (GET /v1/audio/transcriptions)"


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        ("refuse", openai.InternalServerError, 503),
        ("quota", openai.RateLimitError, 429),
    ],
)
async def test_openai_out_without_fallback_is_its_status(
    fake: FakeOpenAI, fault: str, error: type[openai.APIStatusError], status: int
) -> None:
    if fault == "refuse":
        fake.reject_connections = True
    else:
        fake.http_errors = [(429, "insufficient_quota")]
    settings = settings_with(
        fake, "--stt-mode", "http", "--openai-max-retries", "0", "--openai-timeout", "2"
    )
    async with running_web(settings) as (_server, face):
        with pytest.raises(error) as info:
            await transcribe(face, TONE_WAV)
    assert info.value.status_code == status
    assert API_KEY not in str(info.value.body)


def http_stt_requests(outcome: str) -> float:
    labels = {"face": "http", "kind": "stt", "outcome": outcome}
    return metrics.REGISTRY.get_sample_value("wyoming_openai_requests_total", labels) or 0.0


async def test_transcriptions_are_counted_on_metrics_by_outcome(fake: FakeOpenAI) -> None:
    before = {o: http_stt_requests(o) for o in ("ok", "undecodable-audio", "bad-request")}
    async with running_web(settings_with(fake)) as (_server, face):
        await transcribe(face, TONE_WAV)
        for bad, error in (
            (b"not audio" * 100, openai.APIStatusError),
            (b"", openai.BadRequestError),
        ):
            with pytest.raises(error):
                await transcribe(face, bad)
    assert {o: http_stt_requests(o) - n for o, n in before.items()} == {
        "ok": 1,
        "undecodable-audio": 1,
        "bad-request": 1,
    }


# ------------------------------------------------------------------------------ models


async def test_models_lists_what_really_serves(fake: FakeOpenAI) -> None:
    settings = settings_with(fake, "--stt-model", "gpt-4o-transcribe", "--tts-mode", "speech")
    async with running_web(settings) as (_server, face), sdk_client(face) as client:
        page = await client.models.list()
        models = {model.id: model for model in page.data}
        one = await client.models.retrieve("gpt-4o-transcribe")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("no-such-model")
    assert set(models) == {"gpt-4o-transcribe", "gpt-4o-mini-tts"}
    assert one == models["gpt-4o-transcribe"]
    assert one.object == "model" and one.owned_by == "OpenAI" and one.created > 0
    speech_model = models["gpt-4o-mini-tts"].model_dump()
    assert speech_model["task"] == "speech" and "alloy" in speech_model["voices"]
    assert one.model_dump()["task"] == "transcription"


# ------------------------------------------------------------- local Whisper, fallback


@pytest.mark.slow
async def test_with_no_key_local_whisper_transcribes_the_upload(fake: FakeOpenAI) -> None:
    settings = settings_with(fake, "--engine", "local")
    async with running_web(settings) as (server, face):
        result = await transcribe(face, wav_of(piper_16k(TEXT)), response_format="verbose_json")
        async with sdk_client(face) as client:
            listed = [model.id async for model in client.models.list()]
    assert normalized(result.text) == normalized(TEXT)
    assert result.language == "en"
    assert fake.realtime_sessions == [] and fake.transcription_requests == []
    assert server.engines.stt.models()[0].name in listed


@pytest.mark.slow
async def test_openai_out_the_local_fallback_transcribes_the_upload(fake: FakeOpenAI) -> None:
    fake.reject_connections = True
    settings = settings_with(fake, "--fallback", "local", "--openai-max-retries", "0")
    async with running_web(settings) as (_server, face), sdk_client(face) as client:
        stream = await client.audio.transcriptions.create(
            file=("hello.wav", wav_of(piper_16k(TEXT))), model="whisper-1", stream=True
        )
        events = [event async for event in stream]
    assert fake.rejected_requests >= 1  # OpenAI was asked first
    assert events[-1].type == "transcript.text.done"
    assert normalized(events[-1].text) == normalized(TEXT)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(UPLOAD_FORMATS))
async def test_every_upload_format_of_real_speech_is_heard(fake: FakeOpenAI, name: str) -> None:
    use_whisper(fake)
    file = await asyncio.to_thread(encode, piper_16k(TEXT), name)
    async with running_web(settings_with(fake)) as (_server, face):
        result = await transcribe(face, file, name=f"command.{name}")
    assert normalized(result.text) == normalized(TEXT)


@pytest.mark.slow
async def test_an_upload_with_pauses_is_committed_once_as_one_item(fake: FakeOpenAI) -> None:
    """A recording is given whole: no end of speech inside it is acted on (no early commit
    to be cleared and paid again), one commit of all the audio answers."""
    use_whisper(fake)
    text = "Turn on the kitchen lights and close the garage door."
    pcm = paused(text, 0.8) + paused(text, 0.8, seed=1)  # ends of speech inside the file
    async with running_web(settings_with(fake)) as (_server, face):
        result = await transcribe(face, wav_of(pcm))
    (session,) = fake.realtime_sessions
    assert [len(c) for c in session.commits] == [len(session.audio)]
    assert normalized(result.text) == normalized(f"{text} {text}")


async def test_an_upload_is_answered_at_once_with_hedging_on(fake: FakeOpenAI) -> None:
    """With hedged requests on (the default), the answer is not held back until the
    deadline (``--openai-timeout``) by the hedge's watch: the response comes with the
    transcript, long before the client's own timeout."""
    settings = settings_with(fake, "--openai-hedge", "--openai-timeout", "300")
    async with running_web(settings) as (_server, face):
        result = await transcribe(face, wav_of(tone(440, 3.0, 16000)))
    assert result.text == FAKE_TRANSCRIPT
