"""Wyoming protocol server for OpenAI speech-to-text and text-to-speech."""

__version__ = "0.1.0"
