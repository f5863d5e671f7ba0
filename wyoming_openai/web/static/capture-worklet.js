// Microphone capture for the wyoming-openai web face.
//
// Runs on the audio thread: mixes the input down to mono, converts Float32 samples to
// 16-bit signed little-endian PCM (s16le) and posts ~32 ms chunks (an ArrayBuffer,
// transferred) to the main thread, at the AudioContext's own sample rate: no resampling
// here, the server resamples. A "flush" message posts what is buffered (on Stop).

const CHUNK_SECONDS = 0.032;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    // sampleRate is a global of the AudioWorkletGlobalScope: the context's real rate.
    this.size = Math.max(128, Math.round(sampleRate * CHUNK_SECONDS));
    this.buffer = new Int16Array(this.size);
    this.filled = 0;
    this.stopped = false;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.post();
        this.port.postMessage("flushed");
      } else if (event.data === "stop") {
        this.post();
        this.stopped = true;
        this.port.postMessage("flushed");
      }
    };
  }

  post() {
    if (this.filled === 0) return;
    const chunk = this.buffer.slice(0, this.filled);
    this.port.postMessage(chunk.buffer, [chunk.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    if (this.stopped) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true; // not connected (yet)
    const channels = input.length;
    const frames = input[0].length;
    for (let i = 0; i < frames; i++) {
      let sample = input[0][i];
      if (channels > 1) {
        for (let c = 1; c < channels; c++) sample += input[c][i];
        sample /= channels;
      }
      sample = sample < -1 ? -1 : sample > 1 ? 1 : sample;
      // Int16Array is in the platform's byte order: little-endian on every browser platform.
      this.buffer[this.filled++] = sample < 0 ? Math.round(sample * 0x8000) : Math.round(sample * 0x7fff);
      if (this.filled === this.size) this.post();
    }
    return true;
  }
}

registerProcessor("capture", CaptureProcessor);
