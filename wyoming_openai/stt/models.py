"""Which transcription options each OpenAI model takes.

Facts from ``openai.types.realtime.audio_transcription_param`` and
``openai.types.audio.transcription_create_params`` (openai-python 3.57):

- ``gpt-transcribe`` and ``gpt-live-transcribe`` take ``languages[]`` (not ``language``)
  and ``keywords[]``;
- ``gpt-realtime-whisper`` takes ``language`` but no ``prompt``;
- ``whisper-1`` takes a prompt written as a keyword list;
- the ``gpt-4o-*transcribe`` models take a free-text ``prompt``.
"""

from __future__ import annotations

from typing import Any

KEYWORD_MODELS = frozenset({"gpt-transcribe", "gpt-live-transcribe"})
NO_PROMPT_MODELS = frozenset({"gpt-realtime-whisper"})
NO_STREAM_MODELS = frozenset({"whisper-1"})
"""Models whose ``/v1/audio/transcriptions`` ignores ``stream=true``."""


def transcription_options(
    model: str,
    language: str | None,
    prompt: str,
    names: tuple[str, ...] = (),
    terms: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Transcription options for ``model``, without ``model`` itself.

    Args:
        model: the transcription model name.
        language: ISO-639-1 code, or ``None`` to let the model detect it.
        prompt: configured free-text prompt (may be empty).
        names: ``transcribe.transcript_names``: names first, they matter most.
        terms: ``transcribe.transcript_terms``.

    Returns:
        a dict with some of ``language``, ``languages``, ``prompt``, ``keywords``, in the
        shape both the realtime ``audio.input.transcription`` object and the HTTP
        transcription form use.
    """
    options: dict[str, Any] = {}
    bias = list(dict.fromkeys([*names, *terms]))  # ordered, without repeats
    if model in KEYWORD_MODELS:
        if language:
            options["languages"] = [language]
        if bias:
            options["keywords"] = bias
        if prompt:
            options["prompt"] = prompt
        return options

    if language:
        options["language"] = language
    if model in NO_PROMPT_MODELS:
        return options
    if model == "whisper-1":
        parts = [prompt] if prompt else []
        parts.extend(bias)
        text = ", ".join(parts)
    else:
        text = prompt
        if bias:
            text = f"{prompt} " if prompt else ""
            text += "Names and terms that may be spoken: " + ", ".join(bias) + "."
    if text:
        options["prompt"] = text
    return options
