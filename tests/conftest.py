"""Shared fixtures: the fake OpenAI server and the real wyoming-openai server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fake_openai import FakeOpenAI
from tests.harness import make_settings, running_server
from wyoming_openai.server import WyomingOpenAIServer


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    """A fake OpenAI API on 127.0.0.1; fails the test if any client event was invalid."""
    server = FakeOpenAI()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    assert server.validation_failures == [], server.validation_failures


@pytest.fixture
async def server(fake: FakeOpenAI) -> AsyncIterator[WyomingOpenAIServer]:
    """wyoming-openai with default settings, pointed at the fake."""
    async with running_server(make_settings(fake.base_url)) as running:
        yield running


@pytest.fixture
def port(server: WyomingOpenAIServer) -> int:
    """The TCP port of :func:`server`."""
    assert server.port is not None
    return server.port
