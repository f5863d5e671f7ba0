"""Current transcription models by default, and retired models moving to them by themselves.

``whisper-1`` and the ``gpt-4o-*-transcribe`` models shut down on 2027-02-26; the current
ones are ``gpt-live-transcribe`` (realtime) and ``gpt-transcribe`` (HTTP uploads).
"""

from __future__ import annotations

import logging

import httpx2
import numpy as np
import openai
import pytest

from tests.fake_openai import FakeOpenAI
from tests.harness import describe, ha_transcribe, make_settings, running_server
from wyoming_openai import upstream
from wyoming_openai.config_sources import load_settings
from wyoming_openai.engines import is_openai_base_url

KEY = {"OPENAI_API_KEY": "sk-test"}


def tone(seconds: float = 0.5, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2").tobytes()


@pytest.mark.parametrize(
    ("argv", "model"),
    [
        ([], "gpt-live-transcribe"),
        (["--stt-mode", "realtime"], "gpt-live-transcribe"),
        (["--stt-mode", "http"], "gpt-transcribe"),
        (["--stt-mode", "http", "--stt-model", "whisper-1"], "whisper-1"),
        (["--stt-model", "gpt-realtime-whisper"], "gpt-realtime-whisper"),
    ],
)
def test_default_transcription_model_depends_on_the_mode(argv: list[str], model: str) -> None:
    assert load_settings(argv, KEY).stt.model == model


async def test_realtime_default_is_live_transcribe_without_turn_detection(
    fake: FakeOpenAI, port: int
) -> None:
    """The fake applies the service's rule: live models reject any turn_detection."""
    result = await ha_transcribe(port, tone(), language="de")
    assert result.error is None and result.transcript == "hello world"
    (session,) = fake.realtime_sessions
    assert session.session_config is not None
    audio_in = session.session_config["audio"]["input"]
    assert audio_in["turn_detection"] is None
    assert audio_in["transcription"]["model"] == "gpt-live-transcribe"
    assert audio_in["transcription"]["languages"] == ["de"]
    assert "language" not in audio_in["transcription"]
    assert (await describe(port)).asr[0].models[0].name == "gpt-live-transcribe"


async def test_http_default_is_gpt_transcribe(fake: FakeOpenAI) -> None:
    async with running_server(make_settings(fake.base_url, "--stt-mode", "http")) as server:
        assert server.port is not None
        info = await describe(server.port)
        result = await ha_transcribe(server.port, tone(), language="en")
    assert info.asr[0].models[0].name == "gpt-transcribe"
    assert result.transcript == "hello world"
    (upload,) = fake.transcription_requests
    assert upload["model"] == "gpt-transcribe"
    assert upload["languages"] == ["en"]


async def test_http_retired_model_moves_to_the_current_one_within_the_utterance(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.retired_models = {"whisper-1"}
    settings = make_settings(fake.base_url, "--stt-mode", "http", "--stt-model", "whisper-1")
    async with running_server(settings) as server:
        assert server.port is not None
        before = await describe(server.port)
        with caplog.at_level(logging.WARNING):
            first = await ha_transcribe(server.port, tone(), language="en")
            second = await ha_transcribe(server.port, tone(), language="en")
        after = await describe(server.port)
    assert first.error is None and first.transcript == "hello world"
    assert second.error is None and second.transcript == "hello world"
    models = [request["model"] for request in fake.transcription_requests]
    assert models == ["whisper-1", "gpt-transcribe", "gpt-transcribe"]
    assert fake.transcription_requests[1]["languages"] == ["en"]  # options of the new model
    moved = [r for r in caplog.records if "from now on" in r.getMessage()]
    assert len(moved) == 1 and "whisper-1" in moved[0].getMessage()
    assert before.asr[0].models[0].name == "whisper-1"
    assert after.asr[0].models[0].name == "gpt-transcribe"


async def test_http_model_stays_when_the_current_one_fails_too(fake: FakeOpenAI) -> None:
    """An OpenAI-compatible server without gpt-transcribe: the configured model's error is
    reported and the engine keeps it (the server may load it later)."""
    fake.retired_models = {"Systran/faster-whisper-small", "gpt-transcribe"}
    settings = make_settings(
        fake.base_url, "--stt-mode", "http", "--stt-model", "Systran/faster-whisper-small"
    )
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, tone(), language="en")
        info = await describe(server.port)
    assert result.error is not None and result.error.code == "model-not-found"
    assert "Systran/faster-whisper-small" in result.error.text
    assert info.asr[0].models[0].name == "Systran/faster-whisper-small"


def _status_error(status: int, code: str | None, message: str) -> openai.APIStatusError:
    request = httpx2.Request("POST", "https://api.openai.com/v1/audio/speech")
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    response = httpx2.Response(status, request=request, json=body)
    cls = openai.NotFoundError if status == 404 else openai.BadRequestError
    return cls(message, response=response, body=body["error"])


@pytest.mark.parametrize(
    ("status", "code", "message", "retired"),
    [
        (404, "model_not_found", "The model `tts-1` does not exist.", True),
        (400, "model_not_found", "The model `tts-1` does not exist.", True),
        (400, None, "The model `tts-1` has been deprecated, learn more here: ...", True),
        (400, "model_deprecated", "Gone.", True),
        (400, "invalid_value", "Invalid value: 'nobody'. Supported values are: 'alloy'.", False),
        (400, None, "This parameter is deprecated: 'speed'.", False),
    ],
)
def test_retired_model_answers_are_recognised(
    status: int, code: str | None, message: str, retired: bool
) -> None:
    error = upstream.from_exception(_status_error(status, code, message), "speech synthesis")
    assert error.model_retired is retired


@pytest.mark.parametrize(
    ("url", "openai_host"),
    [
        ("https://api.openai.com/v1", True),
        ("https://us.api.openai.com/v1", True),
        ("http://127.0.0.1:8000/v1", False),
        ("http://speaches:8000/v1", False),
        ("https://api.openai.com.example.net/v1", False),
    ],
)
def test_openai_base_url(url: str, openai_host: bool) -> None:
    assert is_openai_base_url(url) is openai_host
