"""The optional audio dump: one WAV per utterance, exactly what went upstream, no secrets."""

from __future__ import annotations

import wave
from pathlib import Path

from tests.fake_openai import FakeOpenAI
from tests.harness import READ_TIMEOUT, ha_transcribe, make_settings, running_server
from tests.test_stt import tone
from tests.utterances import eventually


def whole_wav(path: Path) -> bool:
    """Whether ``path`` is a WAV file holding every frame its header announces."""
    try:
        with wave.open(str(path), "rb") as wav:
            frames = wav.getnframes()
            size = frames * wav.getsampwidth() * wav.getnchannels()
            return len(wav.readframes(frames)) == size
    except (OSError, EOFError, wave.Error):
        return False


async def dumped_wavs(directory: Path, count: int) -> list[Path]:
    """The WAV files of ``directory`` (sorted by name), once there are ``count`` and each is
    whole: the server writes them in a worker thread after the utterance, so one may be
    seen half-written (a hang guard, not an assertion on time)."""

    files: list[Path] = []

    def written() -> bool:
        files[:] = sorted(directory.glob("*.wav"))
        return len(files) >= count and all(whole_wav(path) for path in files)

    await eventually(written, READ_TIMEOUT)
    return files


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
