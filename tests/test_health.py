"""``python -m wyoming_openai.health``: exit 0 against a running server, 1 with a one-line
reason otherwise (Docker's HEALTHCHECK convention)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from wyoming.event import async_read_event, async_write_event
from wyoming.info import Info

from wyoming_openai.server import WyomingOpenAIServer

ROOT = Path(__file__).resolve().parent.parent
Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


async def health(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the module as Docker would; returns (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wyoming_openai.health",
        *args,
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@asynccontextmanager
async def wyoming_peer(answer: Answer) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that runs ``answer`` per connection; yields its port."""
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_one_line_reason(code: int, stdout: str, stderr: str, *expected: str) -> None:
    assert code == 1, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("unhealthy: ")
    for text in expected:
        assert text in lines[0], lines[0]
    assert "Traceback" not in stderr


async def test_healthy_against_a_running_server(server: WyomingOpenAIServer, port: int) -> None:
    code, stdout, stderr = await health("--uri", f"tcp://127.0.0.1:{port}")
    assert code == 0, stderr
    assert stdout.startswith("healthy: ")
    assert "openai-stt" in stdout and "openai-tts" in stdout


async def test_default_uri_follows_the_server_environment(
    server: WyomingOpenAIServer, port: int, tmp_path: Path
) -> None:
    # Docker sets WYOMING_OPENAI_URI=tcp://0.0.0.0:PORT for the server: the check uses it.
    code, _, stderr = await health(env={"WYOMING_OPENAI_URI": f"tcp://0.0.0.0:{port}"})
    assert code == 0, stderr
    config = tmp_path / "config.yaml"
    config.write_text(f"uri: tcp://0.0.0.0:{port}\n")
    code, _, stderr = await health(env={"WYOMING_OPENAI_CONFIG": str(config)})
    assert code == 0, stderr


async def test_closed_port_is_unhealthy_with_the_reason() -> None:
    port = closed_port()
    result = await health("--uri", f"tcp://127.0.0.1:{port}")
    assert_one_line_reason(*result, f"tcp://127.0.0.1:{port}", "Connection refused")


async def test_silent_server_is_unhealthy_after_the_timeout() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads describe, says nothing
        writer.close()

    async with wyoming_peer(never_answer) as port:
        result = await health("--uri", f"tcp://127.0.0.1:{port}", "--timeout", "0.5")
    assert_one_line_reason(*result, "no info", "0.5 s")


async def test_info_without_installed_programs_is_unhealthy() -> None:
    async def empty_info(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        event = await async_read_event(reader)
        assert event is not None and event.type == "describe"
        await async_write_event(Info().event(), writer)
        writer.close()

    async with wyoming_peer(empty_info) as port:
        result = await health("--uri", f"tcp://127.0.0.1:{port}")
    assert_one_line_reason(*result, "no installed program")


async def test_connection_closed_before_info_is_unhealthy() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await async_read_event(reader)
        writer.close()

    async with wyoming_peer(hang_up) as port:
        result = await health("--uri", f"tcp://127.0.0.1:{port}")
    assert_one_line_reason(*result, "closed the connection")


@pytest.mark.parametrize("uri", ["stdio://", "tcp://127.0.0.1", "http://x:1"])
async def test_uncheckable_uri_is_unhealthy_not_a_traceback(uri: str) -> None:
    assert_one_line_reason(*await health("--uri", uri), uri)
