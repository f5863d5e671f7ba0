"""``GET /v1/models`` and ``GET /v1/models/{id}``: the models and voices this server serves.

The shape is OpenAI's (API reference, Models; ``openai.types.Model``): a list ``{"object":
"list", "data": [...]}`` of ``{"id", "object": "model", "created", "owned_by"}``, with two
fields of our own that clients of OpenAI's shape ignore: ``task`` (``transcription`` or
``speech``, what the model is for) and, on speech models, ``voices`` (the voice names a
request may give). ``owned_by`` is the name credited for the model (``OpenAI``, ``Piper``...).

Listed: the transcription models of the STT engine and the speech model of the TTS
engine, then, when the local engines stand in for OpenAI during outages
(``fallback: local``), the local Whisper model and ``piper``. Any ``model`` a request names
is accepted and served by the configured engine (see :mod:`.transcriptions`), so this list
tells clients what really answers rather than what they must send.
"""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..engines import Engines
from ..errors import BridgeError, ErrorCode
from ..stt.base import SttEngine
from ..stt.fallback import FallbackSttEngine
from ..tts.base import TtsEngine
from ..tts.fallback import FallbackTtsEngine

LOCAL_SPEECH_MODEL = "piper"
"""The id Piper's speech is listed under (its voices are its models)."""


def _stt_entries(engine: SttEngine) -> list[tuple[str, str]]:
    return [(model.name, engine.model_attribution[0]) for model in engine.models()]


def _speech_models(engines: Engines, settings: Settings) -> list[str]:
    """The speech models of the TTS engine (``tts.mode``): ``tts.model`` for ``speech``,
    ``tts.realtime_model`` for ``realtime``, both for ``auto`` (the move may happen)."""
    if engines.plan.serving == "local":
        return [LOCAL_SPEECH_MODEL]
    tts = settings.tts
    return {
        "speech": [tts.model],
        "realtime": [tts.realtime_model],
        "auto": [tts.model, tts.realtime_model],
    }[tts.mode]


def _voices(engine: TtsEngine) -> list[str]:
    return [voice.name for voice in engine.voices()]


def model_list(engines: Engines, settings: Settings, created: int) -> dict[str, Any]:
    """The body of ``GET /v1/models``.

    Args:
        engines: the engines every face shares.
        settings: the process's settings (``tts`` section: which speech models).
        created: Unix time (s) given as every model's ``created`` (the server's start).
    """
    data: list[dict[str, Any]] = []
    stt, tts = engines.stt, engines.tts

    def add(model_id: str, owned_by: str, task: str, **extra: Any) -> None:
        if all(entry["id"] != model_id for entry in data):
            entry = {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}
            data.append({**entry, "task": task, **extra})

    for name, owner in _stt_entries(stt):
        add(name, owner, "transcription")
    primary_tts = tts.primary if isinstance(tts, FallbackTtsEngine) else tts
    for name in _speech_models(engines, settings):
        add(name, primary_tts.model_attribution[0], "speech", voices=_voices(primary_tts))
    if isinstance(stt, FallbackSttEngine):
        for name, owner in _stt_entries(stt.local):
            add(name, owner, "transcription")
    if isinstance(tts, FallbackTtsEngine):
        local = tts.local
        add(LOCAL_SPEECH_MODEL, local.model_attribution[0], "speech", voices=_voices(local))
    return {"object": "list", "data": data}


def model_object(engines: Engines, settings: Settings, created: int, model_id: str) -> Any:
    """The body of ``GET /v1/models/{id}``: one entry of :func:`model_list`.

    Raises:
        BridgeError: ``NOT_FOUND`` when ``model_id`` is not listed.
    """
    for entry in model_list(engines, settings, created)["data"]:
        if entry["id"] == model_id:
            return entry
    raise BridgeError(ErrorCode.NOT_FOUND, f"The model '{model_id}' does not exist")
