"""Recognising the service's answer that a model is retired or unknown.

OpenAI shuts models down on announced dates (``/v1/audio/speech`` models on 2027-01-06,
``whisper-1`` and ``gpt-4o-*-transcribe`` on 2027-02-26; ``shared/notes/openai.md``,
Deprecations). After that a request naming one is answered with HTTP 404 (or 400) and
``error.code = "model_not_found"``, with a message saying the model "has been deprecated"
or "does not exist" (the body shape is in ``shared/notes/openai.md``, HTTP > Errors).
Engines use :func:`is_model_retired` to move to the current model instead of failing.
"""

from __future__ import annotations

import re

import openai

from .errors import BridgeError, ErrorCode

RETIRED_CODES = frozenset(
    {"model_not_found", "model_deprecated", "deprecated_model", "model_retired", "model_shutdown"}
)
"""``error.code`` values that mean the requested model is gone or unknown."""

RETIRED_STATUSES = frozenset({400, 404, 410})
"""HTTP statuses a retired-model answer comes with."""

_RETIRED_TEXT = re.compile(
    r"deprecat|retired|shut ?down|no longer (?:available|supported|exists)", re.IGNORECASE
)


def _error_object(exc: openai.APIStatusError) -> dict[str, object]:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return error
    return {}


def is_model_retired(error: BaseException) -> bool:
    """Whether ``error`` says the requested model is retired or unknown to the service.

    True for a :class:`BridgeError` with code ``model-not-found`` (HTTP 404 or
    ``model_not_found``, see :func:`~wyoming_openai.openai_client.bridge_error`), and for
    an HTTP 400/404/410 answer (the error itself or the ``__cause__`` of a BridgeError)
    whose ``error.code`` is one of :data:`RETIRED_CODES` or whose message speaks of a
    deprecated, retired or shut-down model.
    """
    if isinstance(error, BridgeError) and error.code == ErrorCode.MODEL_NOT_FOUND:
        return True
    cause = error.__cause__ if isinstance(error, BridgeError) else error
    if not isinstance(cause, openai.APIStatusError) or cause.status_code not in RETIRED_STATUSES:
        return False
    details = _error_object(cause)
    if details.get("code") in RETIRED_CODES:
        return True
    message = str(details.get("message") or cause.message)
    return "model" in message.lower() and bool(_RETIRED_TEXT.search(message))
