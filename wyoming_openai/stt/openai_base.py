"""What the OpenAI speech-to-text engines (realtime and HTTP) have in common."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import SttSettings
from ..retry import RetryPolicy
from .base import SttEngine, SttModelInfo, TranscribeRequest
from .models import transcription_options

if TYPE_CHECKING:
    from openai import AsyncOpenAI


class OpenAISttEngine(SttEngine):
    """What the OpenAI engines (realtime and HTTP) share: the client, the model in use
    (it may move to the current default when the service retires it), Info, and the
    transcription options for a request.

    Args:
        client: the process's SDK client.
        settings: the ``stt`` settings.
        retry: back-off for transient failures.
    """

    description_format = "{model}"
    """Info's description of the model (``{model}`` is replaced by its name)."""

    def __init__(
        self, client: AsyncOpenAI, settings: SttSettings, retry: RetryPolicy | None = None
    ) -> None:
        self._client = client
        self._settings = settings
        self._model = settings.model
        self.retry = retry or RetryPolicy()

    @property
    def client(self) -> AsyncOpenAI:
        """The SDK client this engine talks through."""
        return self._client

    @property
    def model(self) -> str:
        """The model in use (it may have moved from the configured one to the current default)."""
        return self._model

    def models(self) -> list[SttModelInfo]:
        return [
            SttModelInfo(
                name=self._model,
                description=self.description_format.format(model=self._model),
                languages=tuple(self._settings.languages),
            )
        ]

    def transcription(self, request: TranscribeRequest, model: str | None = None) -> dict[str, Any]:
        """``{"model": ..., **options}`` for ``request`` (default model: :attr:`model`)."""
        settings = self._settings
        model = model or self._model
        return {
            "model": model,
            **transcription_options(
                model,
                request.language or settings.language,
                settings.prompt if request.prompt is None else request.prompt,
                request.names,
                request.terms,
            ),
        }
