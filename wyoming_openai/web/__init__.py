"""The web face: a browser page for live transcription, and its WebSocket."""
