"""The API key never appears in a log line (at debug level too), an error event, or an
exception message, even when the upstream server quotes it back."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI
from tests.harness import (
    describe,
    ha_synthesize,
    ha_synthesize_stream,
    ha_transcribe,
    make_settings,
    running_server,
)
from tests.utterances import tone
from wyoming_openai.redact import RedactingFormatter, redact, register_secret

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_listening(port: int, process: asyncio.subprocess.Process) -> None:
    """Poll until the server answers ``describe`` (it loads the local fallback engines
    first; a 60 s safety net, not an assertion)."""
    async with asyncio.timeout(60):
        while True:
            if process.returncode is not None:
                raise AssertionError(f"server exited with {process.returncode}")
            try:
                await describe(port)
                return
            except OSError:
                await asyncio.sleep(0.05)


async def exercise(fake: FakeOpenAI, port: int) -> list[str]:
    """Every path that could print a key: success, refused connections, HTTP errors
    that quote the key, TTS failures. Returns the texts of all error events."""
    errors: list[str] = []
    await describe(port)
    ok = await ha_transcribe(port, tone(300, 0.5, 16000))
    assert ok.transcript == "hello world"
    await ha_synthesize_stream(port, ["Hello. ", "Goodbye."])
    fake.echo_key_in_errors = True
    fake.http_errors = [(400, "invalid_value")]
    failed_tts = await ha_synthesize(port, "This fails.")
    assert failed_tts.error is not None
    errors.append(failed_tts.error.text)
    fake.reject_connections = True
    failed_stt = await ha_transcribe(port, tone(300, 0.3, 16000))
    if failed_stt.error is not None:  # unless a local fallback answered
        errors.append(failed_stt.error.text)
    fake.reject_connections = False
    return errors


async def test_key_never_in_debug_logs_or_errors_of_the_real_cli(fake: FakeOpenAI) -> None:
    """The real command line with --debug; a server that quotes the key in its errors."""
    port = free_port()
    env = {**os.environ, "OPENAI_API_KEY": fake.api_key}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wyoming_openai",
        "--debug",
        "--uri",
        f"tcp://127.0.0.1:{port}",
        "--openai-base-url",
        fake.base_url,
        "--openai-max-retries",
        "0",
        "--web-uri",
        f"http://127.0.0.1:{free_port()}",
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        await wait_until_listening(port, process)
        errors = await exercise(fake, port)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr_bytes = await asyncio.wait_for(process.communicate(), 20)
    stderr = stderr_bytes.decode()
    assert "DEBUG" in stderr and "Injected error 400" in stderr  # the failures were logged
    assert fake.api_key not in stderr
    assert "[redacted]" in stderr
    for text in errors:
        assert fake.api_key not in text
    assert process.returncode == 0


async def test_key_never_in_error_events_or_exceptions_in_process(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_server(make_settings(fake.base_url, "--debug")) as server:
        assert server.port is not None
        errors = await exercise(fake, server.port)
    assert all(fake.api_key not in text for text in errors)
    assert fake.api_key not in caplog.text


def test_redacting_formatter_covers_messages_arguments_and_tracebacks() -> None:
    secret = "sk-proj-unit-test-secret-123456"
    register_secret(secret)
    assert redact(f"key={secret}!") == "key=[redacted]!"
    formatter = RedactingFormatter("%(message)s")
    try:
        raise ValueError(f"bad key {secret}")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "using %s", (secret,), sys.exc_info()
        )
    text = formatter.format(record)
    assert secret not in text
    assert text.count("[redacted]") == 2
