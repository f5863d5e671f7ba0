"""Streaming encoding of speech PCM into the ``response_format`` of ``/v1/audio/speech``.

The formats are OpenAI's (API reference, Audio > Create speech, ``response_format``;
``openai.types.audio.speech_create_params``): ``pcm`` (raw 24 kHz s16le mono, no header),
``wav``, ``mp3``, ``opus`` (in Ogg), ``flac`` and ``aac`` (in ADTS). Every format but
``pcm`` is muxed by PyAV (FFmpeg) into a sink that cannot seek, with ``flush_packets`` on,
so each packet leaves as soon as the encoder yields it. A streamed file cannot know its
length: WAV's RIFF and ``data`` sizes are 0xFFFFFFFF (FFmpeg's ``wav`` muxer on an
unseekable output; stdlib :mod:`wave` and FFmpeg read such a file to its end), MP3 has no
Xing/LAME length frame and FLAC no total in STREAMINFO. Ogg pages are closed every
20 ms (``page_duration``) instead of every second, so Opus streams too.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..audio import PCM_24K_MONO, AudioFormat

if TYPE_CHECKING:
    import av.container

RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
"""``response_format`` values, as OpenAI lists them."""


@dataclass(frozen=True)
class Container:
    """How one ``response_format`` is written: FFmpeg muxer and encoder, their options,
    the HTTP ``Content-Type``, and whether encoding costs enough to leave the event loop
    (figures in ``benchmarks/README.md``)."""

    muxer: str
    codec: str
    content_type: str
    muxer_options: tuple[tuple[str, str], ...] = ()
    costly: bool = True


CONTAINERS: dict[str, Container] = {
    "wav": Container("wav", "pcm_s16le", "audio/wav", (("fflags", "+bitexact"),), costly=False),
    "mp3": Container("mp3", "libmp3lame", "audio/mpeg", (("write_xing", "0"),)),
    "opus": Container("ogg", "libopus", "audio/ogg", (("page_duration", "20000"),)),
    "flac": Container("flac", "flac", "audio/flac"),
    "aac": Container("adts", "aac", "audio/aac"),
}
"""The formats PyAV writes (``pcm`` is passed through as it is)."""

PCM_CONTENT_TYPE = "application/octet-stream"
"""``Content-Type`` of ``pcm``: raw samples, no registered type for little-endian PCM."""


def content_type(response_format: str) -> str:
    """The HTTP ``Content-Type`` of ``response_format`` (one of :data:`RESPONSE_FORMATS`)."""
    if response_format == "pcm":
        return PCM_CONTENT_TYPE
    return CONTAINERS[response_format].content_type


class _Sink:
    """Where the muxer writes: bytes collected until taken (no ``seek``: a stream)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class SpeechEncoder:
    """Encode PCM chunks into one response format, as a stream.

    :meth:`open` (optional: it lets the encoder be set up while the first audio is
    awaited), :meth:`encode` each chunk (whole frames of ``source``) in order, then
    :meth:`finish` once; each returns the container bytes made so far (possibly none: an
    encoder needs a whole frame of samples, e.g. 576 for MP3 at 24 kHz).
    :meth:`close` releases FFmpeg's state
    (also without :meth:`finish`, after a failure). Methods may run in any thread, one at
    a time: a lock serializes them.

    Args:
        response_format: one of :data:`RESPONSE_FORMATS`.
        source: the PCM given to :meth:`encode` (16-bit mono; OpenAI's formats are 24 kHz).

    Raises:
        ValueError: an unknown ``response_format``, or a ``source`` that is not 16-bit mono.
    """

    def __init__(self, response_format: str, source: AudioFormat = PCM_24K_MONO) -> None:
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"unknown response format {response_format!r}")
        if source.width != 2 or source.channels != 1:
            raise ValueError(f"only 16-bit mono PCM is encoded, not {source}")
        self.response_format = response_format
        self.source = source
        self._container = CONTAINERS.get(response_format)
        self._output: av.container.OutputContainer | None = None
        self._stream: Any = None
        self._sink = _Sink()
        self._samples = 0
        self._lock = threading.Lock()
        self._closed = False

    @property
    def costly(self) -> bool:
        """Whether encoding takes long enough to run off the event loop (not ``pcm``,
        passed through as it is, nor ``wav``, a header and the samples as they are)."""
        return self._container is not None and self._container.costly

    def open(self) -> bytes:
        """Set the muxer and encoder up; returns the container's header (may be empty).

        Raises:
            RuntimeError: after :meth:`finish` or :meth:`close`.
        """
        if self._container is None:
            return b""
        with self._lock:
            self._check_open()
            self._open()
            return self._sink.take()

    def encode(self, pcm: bytes) -> bytes:
        """The container bytes ``pcm`` completes (the header with the first call).

        Raises:
            RuntimeError: after :meth:`finish` or :meth:`close`.
        """
        if self._container is None:
            return pcm
        with self._lock:
            self._check_open()
            stream = self._open()
            if pcm:
                samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
                frame = _audio_frame(samples, self.source.rate, self._samples)
                self._samples += samples.shape[1]
                self._mux(stream.encode(frame))
            return self._sink.take()

    def finish(self) -> bytes:
        """The encoder's last packets and the container's trailer; the encoder is closed.

        Raises:
            RuntimeError: after :meth:`finish` or :meth:`close`.
        """
        if self._container is None:
            self._closed = True
            return b""
        with self._lock:
            self._check_open()
            stream = self._open()
            self._mux(stream.encode(None))
            self._close_output()
            return self._sink.take()

    def close(self) -> None:
        """Release the encoder (what it had not given out is dropped)."""
        with self._lock:
            self._close_output()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the encoder is closed")

    def _open(self) -> Any:
        if self._stream is None:
            import av

            container = self._container
            assert container is not None
            options = {"flush_packets": "1", **dict(container.muxer_options)}
            self._output = av.open(self._sink, mode="w", format=container.muxer, options=options)
            self._stream = self._output.add_stream(
                container.codec, rate=self.source.rate, layout="mono"
            )
            self._output.start_encoding()  # opens the encoder, writes the header
        return self._stream

    def _mux(self, packets: Any) -> None:
        assert self._output is not None
        for packet in packets:
            self._output.mux(packet)

    def _close_output(self) -> None:
        self._closed = True
        if self._output is not None:
            output, self._output = self._output, None
            output.close()


def _audio_frame(samples: np.ndarray, rate: int, pts: int) -> Any:
    """A PyAV s16 mono frame of ``samples`` (shape ``(1, n)``) starting at sample ``pts``."""
    import av

    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    return frame
