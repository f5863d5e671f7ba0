"""The ``info`` answer to ``describe``.

Home Assistant (2026.11, ``homeassistant/components/wyoming/config_flow.py`` and ``data.py``)
aborts set-up unless some program is ``installed: true``, titles the entry after the first
installed program, and loads STT and TTS under one entry when one Info holds both.
"""

from __future__ import annotations

from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice

from . import __version__
from .stt.base import SttEngine
from .tts.base import TtsEngine

PROGRAM_ATTRIBUTION = Attribution(
    name="wyoming-openai", url="https://pypi.org/project/wyoming-openai/"
)


def build_info(stt: SttEngine, tts: TtsEngine, early_transcript: bool = False) -> Info:
    """One ASR program (streaming transcripts) and one TTS program (streaming synthesis).

    Program names, descriptions and the credit for models and voices come from the
    engines, so Info names the engine that actually serves (OpenAI or local). With
    ``early_transcript`` the server ends utterances itself, and the ASR program says
    ``requires_external_vad: false`` (wyoming 1.10.2 ``AsrProgram``), which turns Home
    Assistant's own voice-activity detection off.
    """
    asr_program = AsrProgram(
        name=stt.program_name,
        description=stt.program_description,
        attribution=PROGRAM_ATTRIBUTION,
        installed=True,
        version=__version__,
        models=[
            AsrModel(
                name=model.name,
                description=model.description,
                attribution=Attribution(*stt.model_attribution),
                installed=True,
                version=None,
                languages=list(model.languages),
            )
            for model in stt.models()
        ],
        supports_transcript_streaming=True,
        requires_external_vad=not early_transcript,
    )
    tts_program = TtsProgram(
        name=tts.program_name,
        description=tts.program_description,
        attribution=PROGRAM_ATTRIBUTION,
        installed=True,
        version=__version__,
        voices=[
            TtsVoice(
                name=voice.name,
                description=voice.description,
                attribution=Attribution(*tts.model_attribution),
                installed=True,
                version=None,
                languages=list(voice.languages),
            )
            for voice in tts.voices()
        ],
        supports_synthesize_streaming=True,
    )
    return Info(asr=[asr_program], tts=[tts_program])
