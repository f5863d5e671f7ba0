"""The web face's page in a real browser: Chromium (Debian's) driven by Playwright.

The microphone is Chromium's fake capture device playing a WAV of Piper speech in a loop
(``--use-file-for-fake-audio-capture``), so the page's whole path runs as a user's would:
``getUserMedia`` -> AudioContext at 16 kHz -> the capture AudioWorklet -> s16le frames over
``WS /v1/transcriptions`` -> the server's engines -> finals in the list. Speech plays through
the page's streaming player, whose ``window.speechStats`` counts what it received.

Needs Playwright for Python and a Chromium (``/usr/bin/chromium``, or ``CHROMIUM``); never
``playwright install``. ``UPDATE_SCREENSHOT=1`` rewrites ``docs/web-face.png`` from the
live transcription test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fake_openai import FakeOpenAI, default_synthesizer
from tests.harness import make_settings, running_web, with_token
from tests.speech import normalize_text
from tests.utterances import piper_16k, use_whisper

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, WebSocket

playwright_api = pytest.importorskip("playwright.async_api")

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "web-face.png"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

SENTENCE = "Turn on the kitchen lights."
SPOKEN = "The front door is locked."
TOKEN = "correct-horse-battery-staple"

HANG_GUARD_MS = 120_000
"""Longest any wait in the browser may take: a guard against hangs, not an expectation."""

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

NORMALIZE_JS = r"""
const normalize = (text) => text.normalize("NFKC").toLowerCase()
  .replace(/['\u2019\u2018`]/g, "")
  .replace(/[\p{P}\p{S}]/gu, " ")
  .replace(/\s+/g, " ")
  .trim();
"""
"""tests/speech.py's ``normalize_text`` in JavaScript (Unicode categories P and S)."""

ENGINE_SHOWN = "document.getElementById('status').textContent.startsWith('Engine')"
"""True once the page has read ``/healthz``."""

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"no Chromium at {CHROMIUM} (set CHROMIUM)"
)


@pytest.fixture(scope="module")
def microphone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake microphone: 0.5 s of silence, the sentence, 1.5 s of silence (Chromium
    loops it); 16-bit PCM, mono, 16 kHz."""
    path = tmp_path_factory.mktemp("microphone") / "kitchen-lights.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(16000) + piper_16k(SENTENCE) + bytes(48000))
    return path


@pytest.fixture
async def browser(microphone_wav: Path) -> AsyncIterator[Browser]:
    """Headless Chromium whose microphone plays :func:`microphone_wav`."""
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*LAUNCH_ARGS, f"--use-file-for-fake-audio-capture={microphone_wav}"],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class Tab:
    """A page with what it did: uncaught script errors, and the WebSocket's frames (text
    frames parsed, binary ones as their length in bytes)."""

    page: Page
    script_errors: list[str] = field(default_factory=list)
    sent: list[Any] = field(default_factory=list)
    received: list[Any] = field(default_factory=list)

    def watch(self, ws: WebSocket) -> None:
        ws.on("framesent", lambda data: self.sent.append(_frame(data)))
        ws.on("framereceived", lambda data: self.received.append(_frame(data)))


def _frame(data: str | bytes) -> Any:
    return json.loads(data) if isinstance(data, str) else len(data)


async def open_page(
    browser: Browser, url: str, *, phone: bool = False, locale: str = "en-US", init: str = ""
) -> Tab:
    """A fresh context (own sessionStorage), microphone allowed, at ``url``, after running
    the script ``init``; returns once the page shows the engine (it has read ``/healthz``)."""
    viewport = {"width": 430, "height": 640} if phone else {"width": 1000, "height": 800}
    context = await browser.new_context(
        viewport=viewport,
        device_scale_factor=2 if phone else 1,
        permissions=["microphone"],
        locale=locale,
    )
    tab = Tab(await context.new_page())
    tab.page.set_default_timeout(HANG_GUARD_MS)
    tab.page.on("pageerror", lambda error: tab.script_errors.append(str(error)))
    tab.page.on("websocket", tab.watch)
    if init:
        await tab.page.add_init_script(init)
    await tab.page.goto(url)
    await tab.page.wait_for_function(ENGINE_SHOWN)
    return tab


async def finish(tab: Tab) -> None:
    """No uncaught script error on the page; close its context."""
    assert tab.script_errors == []
    await tab.page.context.close()


async def listen_for_sentence(page: Page) -> str:
    """Click Start, wait until a final equal to :data:`SENTENCE` (normalised) is listed and
    return its text. Chromium's fake microphone loops: an utterance cut by the start of
    capture is followed by a whole one."""
    assert await page.text_content("#listen") == "Start"
    await page.click("#listen")
    wanted = normalize_text(SENTENCE)
    handle = await page.wait_for_function(
        f"""(wanted) => {{
            {NORMALIZE_JS}
            const error = document.getElementById("error");
            if (!error.hidden) return "error: " + error.textContent;
            for (const item of document.querySelectorAll("#finals li.final .text")) {{
                if (normalize(item.textContent) === wanted) return item.textContent;
            }}
            return false;
        }}""",
        arg=wanted,
        polling=100,
    )
    text = await handle.json_value()
    assert not text.startswith("error: "), text
    assert normalize_text(text) == wanted
    return text


async def stop_listening(page: Page) -> None:
    """Click Stop; the session ends (the server said ``stopped``) without an error."""
    assert await page.text_content("#listen") == "Stop"
    await page.click("#listen")
    await page.wait_for_function("document.getElementById('listen').textContent === 'Start'")
    assert await page.is_hidden("#error"), await page.text_content("#error")


async def assert_finals_show_latency(page: Page) -> None:
    """Every final carries "· N ms" (the server sends ``latency_ms``)."""
    finals = await page.locator("#finals li.final").count()
    latencies = await page.locator("#finals li.final .latency").all_text_contents()
    assert finals >= 1
    assert len(latencies) == finals
    assert all(re.fullmatch(r" · \d+ ms", latency) for latency in latencies), latencies


async def speak(page: Page, text: str) -> dict[str, Any]:
    """Type ``text``, click Speak, wait until the body has ended; ``window.speechStats``."""
    await page.fill("#speak-text", text)
    await page.click("#speak")
    await page.wait_for_function("window.speechStats.done")
    return await page.evaluate("window.speechStats")


# ------------------------------------------------------------------ live transcription


IGNORE_SAMPLE_RATE_JS = """
window.AudioContext = class extends window.AudioContext {
  constructor(options) { super({...options, sampleRate: 48000}); }
};
"""
"""A browser that captures at its own rate whatever the page asks (Safari may)."""


@pytest.mark.slow
@pytest.mark.parametrize("rate", [16000, 48000])
async def test_page_transcribes_the_microphone_live(
    fake: FakeOpenAI, browser: Browser, rate: int
) -> None:
    use_whisper(fake)
    screenshot = os.environ.get("UPDATE_SCREENSHOT") == "1" and rate == 16000
    async with running_web(make_settings(fake.base_url)) as (_, face):
        tab = await open_page(
            browser, face.url, phone=screenshot, init=IGNORE_SAMPLE_RATE_JS if rate != 16000 else ""
        )
        page = tab.page
        assert await page.text_content("#status") == "Engine: OpenAI"
        assert await page.input_value("#language") == "en"  # the browser's (en-US)
        await listen_for_sentence(page)
        await assert_finals_show_latency(page)
        if screenshot:
            await page.fill("#speak-text", SPOKEN)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
        await stop_listening(page)
        await finish(tab)

    # The protocol as the page spoke it: start with the context's real rate (Chromium
    # honours 16 kHz) and no token (none is required), s16le frames of 32 ms, stop; the
    # server answered with a session, finals, and stopped.
    start, *audio, stop = tab.sent
    assert start == {"action": "start", "language": "en", "format": "pcm16", "rate": rate}
    assert stop == {"action": "stop"}
    assert audio and all(isinstance(size, int) and size % 2 == 0 for size in audio)
    assert max(audio) == 2 * round(rate * 0.032)  # the last, flushed at Stop, may be shorter
    assert "session_id" in tab.received[0]
    assert any("partial" in message for message in tab.received if isinstance(message, dict))
    assert any("final" in message for message in tab.received if isinstance(message, dict))
    assert tab.received[-1] == {"stopped": True}
    assert fake.realtime_sessions, "OpenAI (the fake) transcribed"


@pytest.mark.slow
async def test_page_transcribes_with_the_local_engine(fake: FakeOpenAI, browser: Browser) -> None:
    async with running_web(make_settings(fake.base_url, "--engine", "local")) as (_, face):
        tab = await open_page(browser, face.url)
        assert await tab.page.text_content("#status") == "Engine: local"
        await listen_for_sentence(tab.page)
        await assert_finals_show_latency(tab.page)
        await stop_listening(tab.page)
        await finish(tab)
    assert not fake.realtime_sessions, "the local engine served, not OpenAI"


RECORD_MEDIA_JS = """
window.__tracks = [];
window.__contexts = [];
const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const stream = await getUserMedia(constraints);
  window.__tracks.push(...stream.getTracks());
  return stream;
};
window.AudioContext = class extends window.AudioContext {
  constructor(options) { super(options); window.__contexts.push(this); }
};
"""
"""Records the microphone tracks and audio contexts the page makes."""

RELEASED_JS = """
window.__tracks.length > 0 && window.__tracks.every((track) => track.readyState === "ended")
  && window.__contexts.every((context) => context.state === "closed")
"""


@pytest.mark.slow
async def test_page_releases_the_microphone_when_stopped_while_starting(
    fake: FakeOpenAI, browser: Browser
) -> None:
    async with running_web(make_settings(fake.base_url)) as (_, face):
        tab = await open_page(browser, face.url, init=RECORD_MEDIA_JS)
        # Start, and Stop at once: whichever step of the start the Stop lands in (here,
        # usually before the WebSocket opens), the microphone and the context are released.
        await tab.page.dblclick("#listen")
        await tab.page.wait_for_function(RELEASED_JS)
        assert await tab.page.text_content("#listen") == "Start"
        assert await tab.page.is_hidden("#error"), await tab.page.text_content("#error")
        # And it starts again.
        await tab.page.click("#listen")
        await tab.page.wait_for_selector("#finals li.final")  # the fake hears "hello world"
        await stop_listening(tab.page)
        await tab.page.wait_for_function(RELEASED_JS)
        await finish(tab)


@pytest.mark.slow
async def test_page_says_when_the_server_ends_the_session(
    fake: FakeOpenAI, browser: Browser
) -> None:
    async with running_web(make_settings(fake.base_url)) as (_, face):
        tab = await open_page(browser, face.url)
        await tab.page.click("#listen")
        # The fake answers every utterance with "hello world".
        await tab.page.wait_for_selector("#finals li.final")
    # The web face stopped with the session open: it said why, and the page shows it.
    await tab.page.wait_for_function("document.getElementById('listen').textContent === 'Start'")
    assert await tab.page.text_content("#error") == "The server is stopping."
    assert tab.received[-1] == {"error": "the server is stopping", "code": "upstream-unavailable"}
    await finish(tab)


# ------------------------------------------------------------------ speech


@pytest.mark.slow
async def test_page_plays_streamed_speech(fake: FakeOpenAI, browser: Browser) -> None:
    async with running_web(make_settings(fake.base_url)) as (_, face):
        tab = await open_page(browser, face.url)
        voice = await tab.page.input_value("#voice")
        assert voice, "the voice select is filled from /healthz"
        stats = await speak(tab.page, SPOKEN)
        assert stats["error"] is None, stats
        expected = len(default_synthesizer(SPOKEN, voice))
        assert stats["bytes"] == expected
        assert stats["chunks"] >= 1
        assert abs(stats["scheduledSeconds"] - expected / 48000) <= 2 / 24000
        assert await tab.page.is_hidden("#error")
        await finish(tab)


@pytest.mark.slow
async def test_page_shows_a_speech_error_in_plain_words(fake: FakeOpenAI, browser: Browser) -> None:
    async with running_web(make_settings(fake.base_url)) as (_, face):
        tab = await open_page(browser, face.url)
        # Longer than limits.max_text_chars (20,000): the server refuses it with a message.
        await tab.page.fill("#speak-text", "x" * 25_000)
        await tab.page.click("#speak")
        await tab.page.wait_for_function("window.speechStats.done")
        stats = await tab.page.evaluate("window.speechStats")
        assert stats["bytes"] == 0
        assert "20000 characters" in stats["error"]
        assert await tab.page.is_visible("#error")
        assert await tab.page.text_content("#error") == stats["error"]
        await finish(tab)


# ------------------------------------------------------------------ engine and language


HEALTH = {
    "status": "ok",
    "version": "0.0.0",
    "stt": {"engine": "openai", "model": "m", "standing_in": False, "languages": ["pt"]},
    "tts": {"engine": "openai", "voice": "nova", "voices": ["alloy", "nova"]},
    "fallback": True,
    "token_required": False,
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        ({}, "Engine: OpenAI"),
        ({"engine": "local"}, "Engine: local"),
        ({"standing_in": True}, "Engine: local (standing in for OpenAI)"),
    ],
)
@pytest.mark.parametrize("speech_too", [True, False])
async def test_page_names_the_engine_and_takes_the_browser_language(
    fake: FakeOpenAI, browser: Browser, changes: dict[str, Any], shown: str, speech_too: bool
) -> None:
    body = {
        **HEALTH,
        "stt": {**HEALTH["stt"], **changes},
        "tts": {**HEALTH["tts"], **(changes if speech_too else {})},
    }
    if not speech_too and changes:
        shown += "; speech: OpenAI"  # the speech engine is named when it differs
    async with running_web(make_settings(fake.base_url)) as (_, face):
        context = await browser.new_context(locale="de-DE")
        page = await context.new_page()
        page.set_default_timeout(HANG_GUARD_MS)
        await page.route("**/healthz", lambda route: route.fulfill(json=body))
        await page.goto(face.url)
        await page.wait_for_function(ENGINE_SHOWN)
        assert await page.text_content("#status") == shown
        assert await page.input_value("#language") == "de"
        options = "#language option"
        languages = await page.eval_on_selector_all(options, "os => os.map(o => o.value)")
        assert languages == ["en", "de", "fr", "es", "it", "nl", "pt"]
        assert await page.input_value("#voice") == "nova"
        await context.close()


# ------------------------------------------------------------------ token


@pytest.mark.slow
async def test_page_asks_for_the_token_and_sends_it(fake: FakeOpenAI, browser: Browser) -> None:
    use_whisper(fake)
    async with running_web(with_token(make_settings(fake.base_url), TOKEN)) as (_, face):
        tab = await open_page(browser, face.url)
        page = tab.page
        assert await page.is_visible("#token-form")
        assert await page.is_disabled("#listen")
        assert await page.is_disabled("#speak")

        # A wrong token: the server refuses the session, the page asks again.
        await page.fill("#token", "wrong")
        await page.click("#token-save")
        assert await page.is_hidden("#token-form")
        await page.click("#listen")
        await page.wait_for_function("!document.getElementById('token-form').hidden")
        assert "token" in (await page.text_content("#error") or "")
        assert await page.text_content("#listen") == "Start"

        # The right one: live transcription and speech work; the tab keeps the token.
        await page.fill("#token", TOKEN)
        await page.click("#token-save")
        assert await page.is_hidden("#token-form")
        assert await page.is_hidden("#error")
        assert await page.evaluate("sessionStorage.getItem('wyoming-openai-token')") == TOKEN
        await listen_for_sentence(page)
        await stop_listening(page)
        stats = await speak(page, SPOKEN)
        assert stats["error"] is None, stats
        assert stats["bytes"] == len(default_synthesizer(SPOKEN, await page.input_value("#voice")))

        await page.reload()
        await page.wait_for_function(ENGINE_SHOWN)
        assert await page.is_hidden("#token-form"), "asked once per tab"
        assert await page.is_enabled("#listen")
        await finish(tab)

    starts = [m for m in tab.sent if isinstance(m, dict) and m.get("action") == "start"]
    assert [start["token"] for start in starts] == ["wrong", TOKEN]
