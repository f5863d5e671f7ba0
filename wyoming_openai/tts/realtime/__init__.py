"""Text to speech through OpenAI realtime sessions: the engine (:mod:`.engine`), its
sessions pooled by voice (:mod:`.pool`) and the fidelity guard (:mod:`.fidelity`)."""

from .engine import RealtimeSpeechEngine
from .fidelity import word_error_rate

__all__ = ["RealtimeSpeechEngine", "word_error_rate"]
