"""Command line: ``wyoming-openai`` / ``python -m wyoming_openai``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from . import __version__
from .config import ConfigError, Settings
from .config_sources import load_settings
from .redact import RedactingFormatter, register_secret

if TYPE_CHECKING:
    from .plan import EnginePlan

QUIET_LOGGERS = (
    "openai",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "websockets",
    "asyncio",
    "faster_whisper",
)
"""Third-party loggers kept at WARNING even with ``--debug``: their debug output can
carry request headers, and ours says what matters (faster-whisper logs every utterance's
duration at INFO)."""


def setup_logging(settings: Settings) -> None:
    """Log to stderr at ``settings.log_level`` (DEBUG with ``--debug``)."""
    level = logging.DEBUG if settings.debug else getattr(logging, settings.log_level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def configuration_error(err: ConfigError) -> int:
    """Print the one-line configuration error; returns its exit code, 2."""
    print(f"wyoming-openai: configuration error: {err}", file=sys.stderr)
    return 2


async def main(argv: Sequence[str] | None = None) -> int:
    """Load settings, then serve until SIGTERM/SIGINT. Returns the exit code."""
    from .plan import plan_engines  # imports neither the SDK nor the local engines

    try:
        settings = load_settings(argv)
        plan = plan_engines(settings)  # the local engines are installed where they are needed
    except ConfigError as err:
        return configuration_error(err)
    return await run_server(settings, plan)


async def run_server(
    settings: Settings,
    plan: EnginePlan,
    alongside: Callable[[Settings], Coroutine[Any, Any, None]] | None = None,
) -> int:
    """Serve with valid ``settings`` until SIGTERM/SIGINT. Returns the exit code.

    ``alongside(settings)``, if given, runs as a task meanwhile (from before the server
    listens; cancelled when it stops): the add-on's discovery message.
    """
    if settings.openai.api_key is not None:
        register_secret(settings.openai.api_key.get_secret_value())
    setup_logging(settings)
    logging.getLogger(__name__).info("wyoming-openai %s", __version__)

    # The SDK is imported once the settings are valid.
    from .app import serve
    from .engines import build_engines

    task = asyncio.create_task(alongside(settings)) if alongside is not None else None
    try:
        await serve(settings, build_engines(settings, plan))
    except ConfigError as err:  # a local model or voice that cannot be loaded
        return configuration_error(err)
    except OSError as err:
        print(f"wyoming-openai: cannot listen: {err.strerror or err}", file=sys.stderr)
        return 1
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(asyncio.run(main()))


if __name__ == "__main__":
    run()
