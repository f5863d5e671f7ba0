"""What the server offers: voices, languages and default models, in one place.

Settings validate against these lists, engines build Info from them, and anything that
shows a choice to a person (Home Assistant's voice list, an add-on form) reads them here.
"""

from __future__ import annotations

DEFAULT_MODELS: dict[str, str] = {"realtime": "gpt-live-transcribe", "http": "gpt-transcribe"}
"""The current model of each transcription path (``stt.mode``): the default when none is
set, and where a configured model the service reports retired or unknown moves to.
``whisper-1`` and the ``gpt-4o-*-transcribe`` models shut down on 2027-02-26
(``openai.types.realtime.audio_transcription_param``, openai-python 3.51)."""

OPENAI_VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
"""The built-in voices of ``/v1/audio/speech`` (``voice`` in
``openai.types.audio.speech_create_params``, openai-python 3.52)."""

REALTIME_VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
"""The built-in voices of realtime sessions (``Voice`` in
``openai.types.realtime.realtime_audio_config_output``): no fable, onyx or nova."""

WHISPER_LANGUAGES: tuple[str, ...] = tuple(
    (  # noqa: SIM905 - a word list reads better than 100 quoted strings
        "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu "
        "ta no th ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn "
        "bs kk sq sw gl mr pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn "
        "mt sa lb my bo tl mg as tt haw ln ha ba jw su yue"
    ).split()
)
"""ISO-639-1 codes (Whisper's language list) that OpenAI transcription accepts."""
