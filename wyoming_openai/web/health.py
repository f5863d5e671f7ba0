"""``GET /healthz``: whether the engines serve, and which (no token needed)."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..engines import Engines
from ..stt.fallback import FallbackSttEngine
from ..tts.fallback import FallbackTtsEngine


def health(engines: Engines, ready: bool, token_required: bool) -> tuple[int, dict[str, Any]]:
    """``(HTTP status, JSON body)``: 200 ``{"status": "ok", ...}`` once the engines are
    prepared, 503 ``{"status": "starting", "reason": ...}`` before.

    The body: ``version``; ``stt``: ``engine`` (``openai`` or ``local``), ``model``,
    ``languages``, ``standing_in`` (the local engine answers for OpenAI after a failure);
    ``tts``: ``engine``, ``voice`` (the default), ``voices``, ``standing_in``; ``fallback``
    (the local engines cover OpenAI outages); ``token_required``.
    """
    stt, tts = engines.stt, engines.tts
    models = stt.models()
    body: dict[str, Any] = {
        "status": "ok" if ready else "starting",
        "version": __version__,
        "stt": {
            "engine": engines.plan.serving,
            "model": models[0].name if models else None,
            "languages": list(models[0].languages) if models else [],
            "standing_in": isinstance(stt, FallbackSttEngine) and stt.standing_in,
        },
        "tts": {
            "engine": engines.plan.serving,
            "voice": tts.default_voice(),
            "voices": [voice.name for voice in tts.voices()],
            "standing_in": isinstance(tts, FallbackTtsEngine) and tts.standing_in,
        },
        "fallback": engines.plan.fallback,
        "token_required": token_required,
    }
    if not ready:
        body["reason"] = "the engines are loading"
        return 503, body
    return 200, body
