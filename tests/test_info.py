"""describe -> info, as Home Assistant's config flow reads it."""

from __future__ import annotations

from pathlib import Path

from wyoming.client import AsyncClient, AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info

from tests.fake_openai import FakeOpenAI
from tests.harness import describe, make_settings, running_server
from wyoming_openai import __version__
from wyoming_openai.catalogue import OPENAI_VOICES


def ha_config_flow_accepts(info: Info) -> str:
    """Home Assistant's checks (``config_flow.py``): some program installed; the entry is
    titled after the first installed one (order: satellite, asr, tts, wake, intent, handle)."""
    programs = [*info.asr, *info.tts]
    installed = [program for program in programs if program.installed]
    assert installed, "Home Assistant aborts: no installed program"
    return installed[0].name


async def test_info_has_asr_and_tts_programs_home_assistant_accepts(port: int) -> None:
    info = await describe(port)
    assert ha_config_flow_accepts(info) == "openai-stt"
    (asr,) = info.asr
    (tts,) = info.tts
    assert asr.installed and tts.installed
    assert asr.version == __version__ == tts.version
    assert asr.attribution.name and asr.attribution.url
    assert asr.supports_transcript_streaming is True
    assert tts.supports_synthesize_streaming is True
    (model,) = asr.models
    assert model.name == "gpt-live-transcribe"  # the realtime default
    assert model.installed
    assert "en" in model.languages and "de" in model.languages
    assert [voice.name for voice in tts.voices] == list(OPENAI_VOICES)
    assert all(voice.installed and "en" in voice.languages for voice in tts.voices)


async def test_describe_again_on_new_connections_and_after_unknown_events(port: int) -> None:
    """HA re-describes every 30 s; new event types must be ignored, never closing."""
    for _ in range(3):
        await describe(port)
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Event(type="some-future-event", data={"x": 1}))
        await client.write_event(Describe().event())
        event = await client.read_event()
        assert event is not None and Info.is_type(event.type)


async def test_configured_voices_and_models_for_a_compatible_server(fake: FakeOpenAI) -> None:
    settings = make_settings(
        fake.base_url,
        "--tts-voices",
        "af_heart,am_adam",
        "--tts-voice",
        "af_heart",
        "--tts-languages",
        "en",
        "--stt-model",
        "Systran/faster-whisper-small",
        "--stt-languages",
        "en,fr",
    )
    async with running_server(settings) as server:
        assert server.port is not None
        info = await describe(server.port)
    assert [voice.name for voice in info.tts[0].voices] == ["af_heart", "am_adam"]
    assert info.tts[0].voices[0].languages == ["en"]
    assert info.asr[0].models[0].name == "Systran/faster-whisper-small"
    assert info.asr[0].models[0].languages == ["en", "fr"]


async def test_a_unix_socket_uri_is_served(fake: FakeOpenAI, tmp_path: Path) -> None:
    """``--uri unix://PATH`` is listened on (by the server's own listener, not wyoming's)."""
    path = tmp_path / "wyoming.sock"
    settings = make_settings(fake.base_url, "--uri", f"unix://{path}")
    async with running_server(settings) as server:
        assert server.port is None
        async with AsyncClient.from_uri(f"unix://{path}") as client:
            await client.write_event(Describe().event())
            event = await client.read_event()
        assert event is not None and Info.is_type(event.type)
        assert ha_config_flow_accepts(Info.from_event(event)) == "openai-stt"
