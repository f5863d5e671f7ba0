"""The optional audio dump: one WAV per utterance, exactly what went upstream, no secrets."""

from __future__ import annotations

import wave
from pathlib import Path

from tests.fake_openai import FakeOpenAI
from tests.harness import dumped_wavs, ha_transcribe, make_settings, running_server
from tests.utterances import tone


async def test_each_utterance_is_dumped_as_the_audio_sent_upstream(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    dump = tmp_path / "dump"
    async with running_server(make_settings(fake.base_url, "--audio-dump-dir", str(dump))) as srv:
        assert srv.port is not None
        for _ in range(2):
            result = await ha_transcribe(srv.port, tone(440, 0.5, 16000))
            assert result.transcript == "hello world"
        files = await dumped_wavs(dump, 2)  # written in a worker thread after audio-stop
    assert len(files) == 2
    for path, session in zip(files, fake.realtime_sessions, strict=True):
        with wave.open(str(path), "rb") as wav:
            assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (24000, 2, 1)
            assert wav.readframes(wav.getnframes()) == bytes(session.audio)
        assert fake.api_key.encode() not in path.read_bytes()
