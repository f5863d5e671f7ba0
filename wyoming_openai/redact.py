"""Keeping credentials out of every text the server produces.

The API key is registered once at start-up; :func:`redact` replaces it in any text.
:class:`~wyoming_openai.errors.BridgeError` messages (what clients see) and every log
record (at creation) and line (:class:`RedactingFormatter`, tracebacks included) pass
through it, so even a
service or an OpenAI-compatible server that echoes the key in an error message cannot
make it leak.
"""

from __future__ import annotations

import logging

MASK = "[redacted]"
_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Never show ``value`` (ignored when empty or shorter than 8 characters).

    The first call also installs :func:`_redacting_record_factory`, so records of every
    logger (third-party ones too: ``websockets.client`` logs request headers, the
    ``Authorization`` header included, at DEBUG) are clean for every handler.
    """
    if value and len(value) >= 8:
        if not _SECRETS:
            _install_record_factory()
        _SECRETS.add(value)


def _install_record_factory() -> None:
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call; the logging module reports it later
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``[redacted]``."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter whose output (message, arguments, traceback) never holds a secret."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
