"""Speech to text through OpenAI realtime transcription sessions: the engine
(:mod:`.engine`), its warm sessions (:mod:`.pool`) and one utterance (:mod:`.session`)."""

from .engine import SUCCESSOR_MODEL, RealtimeSttEngine
from .session import APPEND_BATCH_MS

__all__ = ["APPEND_BATCH_MS", "SUCCESSOR_MODEL", "RealtimeSttEngine"]
