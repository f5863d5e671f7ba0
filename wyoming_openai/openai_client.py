"""The one ``AsyncOpenAI`` client of the process.

The SDK carries HTTP (``/v1/audio/*``) and the realtime WebSocket; every engine that
talks to OpenAI (or an OpenAI-compatible server) uses the client :func:`make_client`
builds. Its failures are classified by :mod:`wyoming_openai.upstream`.
"""

from __future__ import annotations

import openai
from openai import AsyncOpenAI

from .config import OpenAISettings


def make_client(settings: OpenAISettings) -> AsyncOpenAI:
    """An SDK client with voice-assistant deadlines (seconds, not the SDK's 10 minutes).

    The realtime WebSocket URL is derived by the SDK from ``base_url`` (http->ws,
    https->wss), so an OpenAI-compatible or fake server needs no second setting.
    """
    api_key = settings.api_key.get_secret_value() if settings.api_key else ""
    return AsyncOpenAI(
        api_key=api_key,
        base_url=settings.base_url,
        organization=settings.organization,
        project=settings.project,
        timeout=openai.Timeout(settings.timeout, connect=settings.connect_timeout),
        max_retries=0,  # ours instead: wyoming_openai.retry (no retry of insufficient_quota)
    )
