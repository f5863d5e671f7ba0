"""Decoders for the audio web clients send: a live stream over the WebSocket, or a whole
file uploaded to ``POST /v1/audio/transcriptions``.

Stream decoders (:func:`make_decoder`) turn client bytes, in chunks of any size, into PCM
s16le (interleaved):

- ``pcm16``: mono s16le at the declared rate (default 16 kHz), passed through.
- ``g711_ulaw`` / ``g711_alaw``: mono 8-bit G.711 (ITU-T G.711) at the declared rate
  (default 8 kHz), decoded by FFmpeg's ``pcm_mulaw`` / ``pcm_alaw`` through PyAV.
- ``webm_opus``: what a browser's ``MediaRecorder`` produces for
  ``audio/webm;codecs=opus``: one WebM (Matroska) stream cut into chunks, the first
  holding the header. FFmpeg's Matroska demuxer and Opus decoder (through PyAV) run in a
  worker thread per stream; the output is mono at 48 kHz, the rate Opus always decodes
  at (RFC 6716, section 2).

Uploaded files (:func:`open_audio_file`) are anything FFmpeg's demuxers and decoders read
(WAV, MP3, FLAC, OGG/Opus, WebM, M4A/AAC...), through PyAV; their first audio track is
decoded to mono PCM s16le at its own rate, packet by packet, in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator

import av
from av.audio.frame import AudioFrame

from ..audio import AudioFormat, validate_format
from ..errors import BridgeError, ErrorCode

_LOGGER = logging.getLogger(__name__)

FORMATS = ("pcm16", "g711_ulaw", "g711_alaw", "webm_opus")
"""Format names a client may declare."""

DEFAULT_RATES = {"pcm16": 16000, "g711_ulaw": 8000, "g711_alaw": 8000}
"""Rate (Hz) assumed when the client declares none; ``webm_opus`` takes it from the stream."""

OPUS_RATE = 48000
"""Hz of decoded Opus, hence of ``webm_opus`` output."""

_G711_CODECS = {"g711_ulaw": "pcm_mulaw", "g711_alaw": "pcm_alaw"}
_JOIN_TIMEOUT_S = 5.0


class AudioDecoder(ABC):
    """Client bytes -> PCM s16le (interleaved) in ``output_format``.

    ``output_format`` is None until known (``webm_opus``: until the first decoded frame).
    Methods raise :class:`BridgeError` ``BAD_AUDIO_FORMAT`` for data that does not decode.
    """

    output_format: AudioFormat | None = None

    @abstractmethod
    def feed(self, data: bytes) -> bytes:
        """Take the next chunk; return the PCM decoded so far (may be ``b""``). Never blocks."""

    @abstractmethod
    async def finish(self) -> bytes:
        """End of input: return the rest of the PCM."""

    async def aclose(self) -> None:  # noqa: B027 (a no-op unless the decoder holds resources)
        """Release resources and stop any worker thread. Idempotent."""


def make_decoder(format: str, rate: int | None = None) -> AudioDecoder:
    """A decoder for ``format`` (one of :data:`FORMATS`) at ``rate`` Hz.

    ``rate`` defaults to :data:`DEFAULT_RATES`; it is ignored for ``webm_opus``.

    Raises:
        BridgeError: ``UNSUPPORTED_FORMAT`` for an unknown format; ``BAD_AUDIO_FORMAT``
            for an impossible rate.
    """
    if format == "webm_opus":
        return _WebmOpusDecoder()
    if format not in FORMATS:
        raise BridgeError(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"unknown audio format {format!r} (supported: {', '.join(FORMATS)})",
        )
    fmt = AudioFormat(rate=DEFAULT_RATES[format] if rate is None else rate, width=2, channels=1)
    try:
        validate_format(fmt)
    except ValueError as err:
        raise BridgeError(ErrorCode.BAD_AUDIO_FORMAT, f"{format}: {err}") from None
    if format == "pcm16":
        return _Pcm16Decoder(fmt)
    return _G711Decoder(format, fmt)


def _frame_pcm(frame: AudioFrame) -> bytes:
    """A packed s16 frame -> its PCM bytes (without the frame's padding)."""
    return frame.to_ndarray().tobytes()


# ------------------------------------------------------------------------ pcm16, G.711


class _Pcm16Decoder(AudioDecoder):
    """Mono s16le in, as is; an odd trailing byte waits for the next chunk."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.output_format = fmt
        self._odd = b""

    def feed(self, data: bytes) -> bytes:
        data = self._odd + bytes(data)
        cut = len(data) & ~1
        self._odd = data[cut:]
        return data[:cut]

    async def finish(self) -> bytes:
        """The rest: nothing (half a sample left over is dropped)."""
        self._odd = b""
        return b""


class _G711Decoder(AudioDecoder):
    """Mono G.711 (one byte a sample, stateless) -> s16le at the same rate."""

    def __init__(self, format: str, fmt: AudioFormat) -> None:
        self.output_format = fmt
        self._format = format
        ctx = av.CodecContext.create(_G711_CODECS[format], "r")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = fmt.rate
        ctx.layout = "mono"
        self._ctx = ctx

    def feed(self, data: bytes) -> bytes:
        if not data:  # an empty packet would flush (end) the decoder
            return b""
        try:
            frames = self._ctx.decode(av.Packet(bytes(data)))
        except av.FFmpegError as err:
            raise BridgeError(
                ErrorCode.BAD_AUDIO_FORMAT, f"{self._format} audio does not decode: {err.strerror}"
            ) from None
        return b"".join(_frame_pcm(frame) for frame in frames)

    async def finish(self) -> bytes:
        return b""


# ---------------------------------------------------------------------------- webm_opus


class _Pipe:
    """A blocking byte pipe: the event loop writes, the demuxer thread reads."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._eof = False

    def write(self, data: bytes) -> None:
        """Append ``data`` (dropped once the pipe is closed). Never blocks for long."""
        with self._cond:
            if not self._eof:
                self._buf += data
                self._cond.notify_all()

    def close(self) -> None:
        """End of input: ``read`` returns what is left, then ``b""``."""
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def abort(self) -> None:
        """Drop what is buffered; ``read`` returns ``b""`` from now on."""
        with self._cond:
            self._eof = True
            self._buf.clear()
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all buffered if negative); blocks until data or end."""
        with self._cond:
            while not self._buf and not self._eof:
                self._cond.wait()
            if size < 0:
                size = len(self._buf)
            data = bytes(self._buf[:size])
            del self._buf[:size]
            return data


class _WebmOpusDecoder(AudioDecoder):
    """A WebM/Opus stream (``MediaRecorder``) -> mono s16le at 48 kHz.

    One daemon thread, started by the first non-empty ``feed``, demuxes and decodes from a
    :class:`_Pipe`; its PCM and any error come back through a deque that ``feed`` and
    ``finish`` drain. PCM therefore lags input: a chunk's audio usually appears at the
    next ``feed``, and the rest at ``finish``.
    """

    def __init__(self) -> None:
        self._pipe = _Pipe()
        self._pcm: deque[bytes] = deque()
        self._error: BridgeError | None = None
        self._thread: threading.Thread | None = None
        self._ended = False
        self._closed = False

    def feed(self, data: bytes) -> bytes:
        if self._ended:
            raise RuntimeError("feed() after finish() or aclose()")
        if data:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="webm-opus-decoder", daemon=True
                )
                self._thread.start()
            self._pipe.write(bytes(data))
        return self._drain()

    async def finish(self) -> bytes:
        self._ended = True
        self._pipe.close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        return self._drain()

    async def aclose(self) -> None:
        self._ended = self._closed = True
        self._pipe.abort()
        thread = self._thread
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, _JOIN_TIMEOUT_S)
            if thread.is_alive():
                _LOGGER.warning("webm_opus decoder thread still running after aclose()")
        self._pcm.clear()

    def _drain(self) -> bytes:
        """The PCM the thread has produced; raises the thread's error, if any."""
        if self._error is not None:
            raise self._error
        chunks = []
        while self._pcm:
            chunks.append(self._pcm.popleft())
        return b"".join(chunks)

    def _run(self) -> None:
        """Thread body: demux and decode until end of input or ``aclose``."""
        try:
            self._decode()
        except BridgeError as err:
            self._fail(err)
        except av.FFmpegError as err:
            self._fail(
                BridgeError(
                    ErrorCode.BAD_AUDIO_FORMAT,
                    f"webm_opus audio does not decode ({err.strerror}): expected a WebM/Opus "
                    "stream from its first byte, as MediaRecorder sends for "
                    "audio/webm;codecs=opus",
                )
            )
        except Exception:
            _LOGGER.exception("webm_opus decoder failed")
            self._fail(
                BridgeError(
                    ErrorCode.BAD_AUDIO_FORMAT,
                    "webm_opus audio does not decode (details in the server log)",
                )
            )
        finally:
            self._pipe.abort()  # later writes are dropped, not buffered for nobody

    def _fail(self, error: BridgeError) -> None:
        if not self._closed:  # after aclose() the end of input is ours, not an error
            self._error = error

    def _decode(self) -> None:
        with av.open(self._pipe, mode="r", format="webm") as container:
            streams = container.streams.audio
            if not streams or streams[0].codec_context.name not in ("opus", "libopus"):
                raise BridgeError(
                    ErrorCode.BAD_AUDIO_FORMAT,
                    "webm_opus audio has no Opus track: expected what MediaRecorder sends "
                    "for audio/webm;codecs=opus",
                )
            stream = streams[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=OPUS_RATE)
            for packet in container.demux(stream):  # ends with an empty packet: flush
                for frame in packet.decode():
                    if not self._emit(resampler.resample(frame)):
                        return
            self._emit(resampler.resample(None))

    def _emit(self, frames: list[AudioFrame]) -> bool:
        """Queue decoded frames; False once the caller has aborted."""
        if self._closed:
            return False
        for frame in frames:
            if self.output_format is None:
                self.output_format = AudioFormat(rate=OPUS_RATE, width=2, channels=1)
            self._pcm.append(_frame_pcm(frame))
        return True


# ------------------------------------------------------------------------ uploaded files

PROBE_BYTES = "4096"
"""FFmpeg's ``probesize`` when opening an upload: every container's header names its audio
track's rate within it, and FFmpeg's default (5 MB) makes it read a whole WAV file before
the first packet. A file whose rate is not found so is probed again with the default."""


class AudioFile:
    """An uploaded audio file, opened for decoding. Blocking: use it in a worker thread.

    Args:
        data: the whole file (any container and codec FFmpeg reads).

    Attributes:
        source_format: the PCM :meth:`pcm` yields: mono s16le at the first audio track's
            rate.

    Raises:
        BridgeError: (``__init__``) ``UNDECODABLE_AUDIO`` when FFmpeg recognises no
            container or no audio track in ``data``.
    """

    def __init__(self, data: bytes) -> None:
        self._container = _open(data, {"probesize": PROBE_BYTES})
        streams = self._container.streams.audio
        if not streams or not streams[0].codec_context.sample_rate:  # probe it all
            self._container.close()
            self._container = _open(data, {})
            streams = self._container.streams.audio
        rate = streams[0].codec_context.sample_rate if streams else 0
        fmt = AudioFormat(rate=rate, width=2, channels=1)
        try:
            validate_format(fmt)
        except ValueError:
            self._container.close()
            reason = "no audio track" if not streams else f"an audio track at {rate} Hz"
            raise _undecodable(reason) from None
        self._stream = streams[0]
        self.source_format = fmt

    def pcm(self, stop: Callable[[], bool] = lambda: False) -> Iterator[bytes]:
        """The track's audio as mono PCM s16le (:attr:`source_format`), as it is decoded.

        Decoding stops early once ``stop()`` is true. A packet that does not decode after
        some audio did ends the audio there (logged): what was decoded is kept.

        Raises:
            BridgeError: ``UNDECODABLE_AUDIO`` when the first packets do not decode.
        """
        context = self._stream.codec_context
        if context.name == "pcm_s16le" and context.layout.nb_channels == 1:
            yield from self._packets(stop)  # already what is wanted: no decoding
            return
        resampler = av.AudioResampler(format="s16", layout="mono", rate=self.source_format.rate)
        decoded = False
        try:
            for packet in self._container.demux(self._stream):  # ends with a flush packet
                if stop():
                    return
                for frame in packet.decode():
                    for out in resampler.resample(frame):
                        decoded = True
                        yield _frame_pcm(out)
            for out in resampler.resample(None):
                yield _frame_pcm(out)
        except av.FFmpegError as err:
            if not decoded:
                raise _undecodable(err.strerror or str(err)) from None
            _LOGGER.warning("Uploaded audio stops decoding (%s); keeping what came before", err)

    def _packets(self, stop: Callable[[], bool]) -> Iterator[bytes]:
        """The payloads of a mono PCM s16le track (a truncated file's odd last byte dropped)."""
        odd = b""
        try:
            for packet in self._container.demux(self._stream):
                if stop():
                    return
                data = odd + bytes(packet)
                cut = len(data) & ~1
                odd = data[cut:]
                if cut:
                    yield data[:cut]
        except av.FFmpegError as err:
            _LOGGER.warning("Uploaded audio stops decoding (%s); keeping what came before", err)

    def close(self) -> None:
        """Release FFmpeg's resources. Idempotent."""
        self._container.close()


def _open(data: bytes, options: dict[str, str]) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(data), mode="r", options=options)
    except (av.FFmpegError, ValueError) as err:
        raise _undecodable(str(getattr(err, "strerror", None) or err)) from None


def _undecodable(reason: str) -> BridgeError:
    return BridgeError(
        ErrorCode.UNDECODABLE_AUDIO,
        f"the file is not audio this server can decode ({reason}); send WAV, MP3, FLAC, "
        "OGG/Opus, WebM or M4A",
    )
