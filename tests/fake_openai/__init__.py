"""A fake OpenAI API that speaks the real wire protocol, for tests.

``FakeOpenAI`` is an aiohttp server on ``127.0.0.1`` (random free port) implementing:

* ``GET /v1/realtime?intent=transcription`` -- a GA-shape Realtime *transcription* session over
  WebSocket (``session.created`` / ``session.update`` / ``input_audio_buffer.*`` /
  ``conversation.item.input_audio_transcription.*``), with the service's model rules;
* ``GET /v1/realtime?model=...`` -- a GA-shape Realtime *conversation* session that speaks:
  ``session.update`` (type ``realtime``), ``conversation.item.create`` / ``.delete``,
  ``response.create`` -> ``response.output_audio.delta`` / ``..._transcript.delta`` ... ->
  ``response.done``, and ``response.cancel`` (the synthesizer reads the last user message);
* ``POST /v1/audio/transcriptions`` -- multipart upload of a WAV file, JSON/text or SSE answer;
* ``POST /v1/audio/speech`` -- JSON request, raw 24 kHz PCM streamed back in chunks.

Every client event is validated against the ``openai`` SDK's own pydantic types
(``RealtimeClientEvent``), plus a check that no model in the tree carries unknown fields (the SDK
models silently accept extras). Every server event the fake sends is validated against
``RealtimeServerEvent`` too. Failures are recorded in ``FakeOpenAI.validation_failures``, which a
test of a well-behaved client asserts stays empty.

Audio units: PCM is always signed 16-bit little-endian mono ("s16le"); lengths are bytes unless a
name says otherwise; rates are Hz; delays and timestamps are seconds (``time.monotonic()``).

Layout: :mod:`.server` (``FakeOpenAI``: options, records, lifecycle, authentication and injected
errors) composes one mixin per endpoint: :mod:`.http_transcription`, :mod:`.http_speech`,
:mod:`.realtime_transcription` and :mod:`.realtime_speech`, over :mod:`.realtime` (the WebSocket
connection shared by both kinds of realtime session). :mod:`.records` holds the record classes,
:mod:`.validation` the checks against the SDK's types, :mod:`.common` the constants, the default
transcriber and synthesizer and the audio helpers.
"""

from .common import (
    DEFAULT_API_KEY,
    REALTIME_RATE,
    Synthesizer,
    Transcriber,
    default_synthesizer,
    default_transcriber,
    split_deltas,
)
from .http_speech import TTS_RESPONSE_FORMATS, TTS_VOICES
from .realtime import BETA_SHAPE_MESSAGE
from .realtime_speech import REALTIME_VOICES
from .records import RealtimeSessionRecord, SpeechStreamRecord
from .server import FakeOpenAI
from .validation import validate_client_event, validate_server_event

__all__ = [
    "BETA_SHAPE_MESSAGE",
    "DEFAULT_API_KEY",
    "REALTIME_RATE",
    "REALTIME_VOICES",
    "TTS_RESPONSE_FORMATS",
    "TTS_VOICES",
    "FakeOpenAI",
    "RealtimeSessionRecord",
    "SpeechStreamRecord",
    "Synthesizer",
    "Transcriber",
    "default_synthesizer",
    "default_transcriber",
    "split_deltas",
    "validate_client_event",
    "validate_server_event",
]
