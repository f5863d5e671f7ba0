// wyoming-openai web face: live transcription from the microphone and speech playback.
//
// Plain JavaScript, no build step, no external resources. URLs are relative to the page, so
// the page also works behind a reverse proxy under a path prefix.
//
//   GET  healthz                 engines, voices, whether a token is needed (no token needed)
//   WS   v1/transcriptions       {"action": "start", ...}, binary s16le audio, {"action": "stop"}
//   POST v1/audio/speech         {"input", "voice", "response_format": "pcm"} -> 24 kHz s16le mono
"use strict";

(() => {
  const TOKEN_KEY = "wyoming-openai-token";
  const LANGUAGE_KEY = "wyoming-openai-language";
  const BASE_LANGUAGES = ["en", "de", "fr", "es", "it", "nl"];
  const SPEECH_RATE = 24000; // Hz of the speech endpoint's "pcm" (s16le mono)
  const CAPTURE_RATE = 16000; // asked for; the browser may use another rate, which is sent
  const HEALTH_EVERY_MS = 30000;
  const HEALTH_RETRY_MS = 2000;
  const SESSION_START_MS = 15000; // wait for the server's session_id
  const STOP_WAIT_MS = 60000; // wait for the last final and "stopped" after Stop

  const el = {
    status: document.getElementById("status"),
    detail: document.getElementById("detail"),
    error: document.getElementById("error"),
    tokenForm: document.getElementById("token-form"),
    token: document.getElementById("token"),
    language: document.getElementById("language"),
    listen: document.getElementById("listen"),
    partial: document.getElementById("partial"),
    finals: document.getElementById("finals"),
    speakText: document.getElementById("speak-text"),
    voice: document.getElementById("voice"),
    speak: document.getElementById("speak"),
  };

  let health = null; // the last /healthz answer
  let healthTimer = null;
  let live = null; // the live transcription session, while there is one
  let player = null; // {ctx, current} for speech playback

  // Test hook: what the last Speak received and scheduled.
  window.speechStats = { bytes: 0, chunks: 0, scheduledSeconds: 0, done: false, error: null };

  // ------------------------------------------------------------------ small helpers

  function storageGet(storage, key) {
    try {
      return window[storage].getItem(key) || "";
    } catch {
      return ""; // storage disabled (private mode, policies)
    }
  }

  function storageSet(storage, key, value) {
    try {
      if (value) window[storage].setItem(key, value);
      else window[storage].removeItem(key);
    } catch {
      // storage disabled: the value lives until the page is reloaded
    }
  }

  let tokenInMemory = "";

  function getToken() {
    return storageGet("sessionStorage", TOKEN_KEY) || tokenInMemory;
  }

  function setToken(token) {
    tokenInMemory = token;
    storageSet("sessionStorage", TOKEN_KEY, token);
  }

  function authHeaders() {
    const token = getToken();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  function sentence(message) {
    // The server's messages are plain words ("a valid token is required"): shown as a sentence.
    const text = String(message || "").trim();
    if (!text) return "";
    const first = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?…]$/.test(first) ? first : `${first}.`;
  }

  function showError(message) {
    el.error.textContent = sentence(message);
    el.error.hidden = !message;
  }

  function pageUrl(path) {
    return new URL(path, document.baseURI);
  }

  function needsToken() {
    return Boolean(health && health.token_required && !getToken());
  }

  function askForToken(message) {
    setToken("");
    el.tokenForm.hidden = false;
    if (message) showError(message);
    updateButtons();
    el.token.focus();
  }

  function updateButtons() {
    const usable = Boolean(health) && !needsToken();
    el.listen.disabled = live ? live.stopping : !usable;
    el.speak.disabled = !usable;
  }

  // ------------------------------------------------------------------ server health

  function engineName(part, fallback) {
    if (!part) return "unknown";
    if (fallback && part.standing_in) return "local (standing in for OpenAI)";
    return part.engine === "local" ? "local" : "OpenAI";
  }

  function languageName(code) {
    try {
      const name = new Intl.DisplayNames([code], { type: "language" }).of(code);
      if (name && name !== code) return `${name.charAt(0).toUpperCase()}${name.slice(1)} (${code})`;
    } catch {
      // no Intl.DisplayNames, or an unknown code
    }
    return code;
  }

  function fillLanguages(offered) {
    const codes = [...BASE_LANGUAGES];
    for (const code of [...(offered || [])].sort()) {
      if (typeof code === "string" && code && !codes.includes(code)) codes.push(code);
    }
    if (el.language.options.length === codes.length) return; // already filled: keep the choice
    const wanted = el.language.value || storageGet("localStorage", LANGUAGE_KEY);
    const browser = (navigator.languages || [navigator.language || ""])
      .map((tag) => String(tag).toLowerCase().split("-")[0])
      .find((code) => codes.includes(code));
    el.language.replaceChildren(
      ...codes.map((code) => new Option(languageName(code), code)),
    );
    el.language.value = codes.includes(wanted) ? wanted : browser || "en";
  }

  function fillVoices(tts) {
    const voices = [...((tts && tts.voices) || [])];
    if (tts && tts.voice && !voices.includes(tts.voice)) voices.unshift(tts.voice);
    const same =
      el.voice.options.length === voices.length &&
      voices.every((voice, index) => el.voice.options[index].value === voice);
    if (same) return;
    const wanted = el.voice.value || (tts && tts.voice) || voices[0] || "";
    el.voice.replaceChildren(...voices.map((voice) => new Option(voice, voice)));
    el.voice.value = voices.includes(wanted) ? wanted : voices[0] || "";
  }

  function showHealth() {
    const stt = engineName(health.stt, health.fallback);
    const tts = engineName(health.tts, health.fallback);
    let status = `Engine: ${stt}`;
    if (tts !== stt) status += `; speech: ${tts}`;
    if (health.status === "starting") status = `Starting up… ${status}`;
    el.status.textContent = status;
    const details = [];
    if (health.stt && health.stt.model) details.push(`model ${health.stt.model}`);
    if (health.tts && health.tts.voice) details.push(`voice ${health.tts.voice}`);
    if (health.version) details.push(`version ${health.version}`);
    el.detail.textContent = details.join(" · ");
    fillLanguages(health.stt && health.stt.languages);
    fillVoices(health.tts);
    if (health.token_required && !getToken()) el.tokenForm.hidden = false;
    updateButtons();
  }

  async function loadHealth() {
    clearTimeout(healthTimer);
    let next = HEALTH_EVERY_MS;
    try {
      const response = await fetch(pageUrl("healthz"), {
        headers: authHeaders(),
        cache: "no-store",
      });
      const body = await response.json();
      if (!body || typeof body !== "object" || !body.stt) throw new Error("unexpected answer");
      health = body;
      showHealth();
      if (health.status !== "ok") next = HEALTH_RETRY_MS;
    } catch {
      el.status.textContent = health
        ? "The server does not answer right now; trying again…"
        : "Cannot reach the server; trying again…";
      next = HEALTH_RETRY_MS;
    }
    healthTimer = setTimeout(loadHealth, next);
  }

  // ------------------------------------------------------------------ live transcription

  function microphoneError(err) {
    const name = err && err.name;
    if (name === "NotAllowedError" || name === "SecurityError") {
      return "The microphone is blocked. Allow it for this page in the browser's settings and try again.";
    }
    if (name === "NotFoundError" || name === "OverconstrainedError") {
      return "No microphone was found.";
    }
    if (name === "NotReadableError" || name === "AbortError") {
      return "The microphone could not be opened: another app may be using it.";
    }
    return `The microphone could not be started (${(err && err.message) || err}).`;
  }

  function addFinal(text, latencyMs) {
    const item = document.createElement("li");
    item.className = "final";
    const words = document.createElement("span");
    words.className = "text";
    words.textContent = text;
    item.append(words);
    if (typeof latencyMs === "number" && Number.isFinite(latencyMs)) {
      const latency = document.createElement("span");
      latency.className = "latency";
      latency.textContent = ` · ${Math.round(latencyMs)} ms`;
      latency.title = "Time from the end of speech to this text";
      item.append(latency);
    }
    el.finals.append(item);
    item.scrollIntoView({ block: "nearest" });
  }

  function setListening(session) {
    const running = Boolean(session);
    el.listen.textContent = running ? (session.stopping ? "Stopping…" : "Stop") : "Start";
    el.listen.classList.toggle("running", running);
    el.listen.closest("section").classList.toggle("listening", running);
    el.language.disabled = running;
    updateButtons();
  }

  function newCaptureContext() {
    try {
      return new AudioContext({ sampleRate: CAPTURE_RATE });
    } catch {
      return new AudioContext(); // the browser refuses the rate: send its own
    }
  }

  async function connectMicrophone(session) {
    await session.ctx.audioWorklet.addModule(pageUrl("static/capture-worklet.js"));
    try {
      session.source = session.ctx.createMediaStreamSource(session.stream);
    } catch {
      // Some browsers cannot connect a microphone to a context at another rate than its own.
      await session.ctx.close();
      session.ctx = new AudioContext();
      await session.ctx.audioWorklet.addModule(pageUrl("static/capture-worklet.js"));
      session.source = session.ctx.createMediaStreamSource(session.stream);
    }
    session.node = new AudioWorkletNode(session.ctx, "capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      channelCount: 1,
      channelCountMode: "explicit",
      channelInterpretation: "speakers",
    });
  }

  function openSocket(session) {
    return new Promise((resolve, reject) => {
      const url = pageUrl("v1/transcriptions");
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      session.ws = ws;
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error("socket"));
      ws.onclose = () => reject(new Error("socket"));
    });
  }

  function waitFor(session, key, ms) {
    // Resolves when session[key] is set (by a message or the close), or after ms.
    return new Promise((resolve) => {
      let timer = null;
      const check = () => {
        if (session[key] || session.closed) {
          clearTimeout(timer);
          resolve(Boolean(session[key]));
          return true;
        }
        return false;
      };
      if (check()) return;
      timer = setTimeout(() => {
        session.waiters = session.waiters.filter((waiter) => waiter !== check);
        resolve(false);
      }, ms);
      session.waiters.push(check);
    });
  }

  function wake(session) {
    session.waiters = session.waiters.filter((waiter) => !waiter());
  }

  function onMessage(session, event) {
    if (typeof event.data !== "string") return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.session_id !== undefined) {
      session.sessionId = String(message.session_id);
    }
    if (typeof message.partial === "string") {
      el.partial.textContent = message.partial;
    }
    if (typeof message.final === "string") {
      el.partial.textContent = "";
      if (message.final.trim()) addFinal(message.final.trim(), message.latency_ms);
    }
    if (message.error !== undefined) {
      session.failed = true;
      const text = String(message.error || "The server stopped listening.");
      if (message.code === "unauthorized") askForToken(text);
      else showError(text);
      teardown(session);
    }
    if (message.stopped) {
      session.stopped = true;
    }
    wake(session);
  }

  function onClose(session, event) {
    session.closed = true;
    if (!session.stopping && !session.failed) {
      const reason = event && event.reason ? `: ${event.reason}` : "";
      showError(`The connection to the server closed${reason}.`);
    }
    wake(session);
    teardown(session);
  }

  function sendAudio(session, data) {
    if (data === "flushed") {
      session.flushed = true;
      wake(session);
      return;
    }
    if (data instanceof ArrayBuffer && session.ws && session.ws.readyState === WebSocket.OPEN) {
      session.ws.send(data);
    }
  }

  async function startListening() {
    showError("");
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError(
        "The microphone works only on a secure page: open this page as http://localhost on the " +
          "computer running the server, or over HTTPS.",
      );
      return;
    }
    if (!window.AudioWorkletNode) {
      showError("This browser cannot capture audio for the page (no AudioWorklet): try a newer one.");
      return;
    }
    const session = {
      ws: null,
      ctx: null,
      stream: null,
      source: null,
      node: null,
      sessionId: null,
      stopping: false,
      stopped: false,
      failed: false,
      closed: false,
      flushed: false,
      ended: false,
      waiters: [],
    };
    live = session;
    el.partial.textContent = "";
    // Made inside the click so that browsers let it run (autoplay rules).
    session.ctx = newCaptureContext();
    setListening(session);
    try {
      try {
        session.stream = await navigator.mediaDevices.getUserMedia({
          audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
        });
      } catch (err) {
        if (session.ended) return;
        showError(microphoneError(err));
        session.failed = true;
        return;
      }
      if (session.ended) return;
      await connectMicrophone(session);
      await session.ctx.resume();
      if (session.ended) return;
      try {
        await openSocket(session);
      } catch {
        if (session.ended) return;
        showError("Cannot connect to the server for live transcription.");
        session.failed = true;
        return;
      }
      session.ws.onmessage = (event) => onMessage(session, event);
      session.ws.onclose = (event) => onClose(session, event);
      session.ws.onerror = null;
      if (session.ended) return;
      const start = {
        action: "start",
        language: el.language.value || "en",
        format: "pcm16",
        rate: session.ctx.sampleRate,
      };
      const token = getToken();
      if (token) start.token = token;
      session.ws.send(JSON.stringify(start));
      const started = await waitFor(session, "sessionId", SESSION_START_MS);
      if (session.ended) return;
      if (!started) {
        if (!session.failed) showError("The server did not start listening.");
        session.failed = true;
        return;
      }
      session.node.port.onmessage = (event) => sendAudio(session, event.data);
      session.source.connect(session.node);
      // The node writes silence; connected so that every browser keeps running it.
      session.node.connect(session.ctx.destination);
    } catch (err) {
      if (session.ended) return; // stopped while starting
      showError(`Listening failed: ${(err && err.message) || err}`);
      session.failed = true;
    } finally {
      if (session.failed || session.ended) teardown(session);
    }
  }

  async function stopListening(session) {
    if (session.stopping || session.ended) return;
    session.stopping = true;
    setListening(session);
    for (const track of session.stream ? session.stream.getTracks() : []) track.stop();
    if (session.sessionId && session.node && session.ws && session.ws.readyState === WebSocket.OPEN) {
      // The audio buffered in the worklet goes out before "stop".
      session.node.port.postMessage("stop");
      await waitFor(session, "flushed", 1000);
      if (session.ws.readyState === WebSocket.OPEN) {
        session.ws.send(JSON.stringify({ action: "stop" }));
        const done = await waitFor(session, "stopped", STOP_WAIT_MS);
        if (!done && !session.closed && !session.failed) {
          showError("The server did not finish the transcription in time.");
        }
      }
    }
    teardown(session);
  }

  function teardown(session) {
    // Idempotent: also releases what a start still in progress acquired after a Stop.
    session.ended = true;
    for (const track of session.stream ? session.stream.getTracks() : []) track.stop();
    try {
      if (session.source) session.source.disconnect();
      if (session.node) {
        session.node.port.onmessage = null;
        session.node.disconnect();
      }
    } catch {
      // already disconnected
    }
    if (session.ctx && session.ctx.state !== "closed") session.ctx.close().catch(() => {});
    if (session.ws && session.ws.readyState <= WebSocket.OPEN) {
      session.ws.onclose = null;
      session.ws.onmessage = null;
      session.ws.close(1000);
    }
    session.closed = true;
    wake(session);
    if (live === session) {
      live = null;
      el.partial.textContent = "";
      setListening(null);
    }
  }

  // ------------------------------------------------------------------ speech

  function playbackContext() {
    if (!player) {
      let ctx;
      try {
        ctx = new AudioContext({ sampleRate: SPEECH_RATE }); // no resampling per chunk
      } catch {
        ctx = new AudioContext();
      }
      player = { ctx, current: null };
    }
    if (player.ctx.state === "suspended") player.ctx.resume().catch(() => {});
    return player.ctx;
  }

  function stopSpeaking() {
    const current = player && player.current;
    if (!current) return;
    current.abort.abort();
    for (const source of current.sources) {
      try {
        source.stop();
      } catch {
        // not started or already ended
      }
    }
    player.current = null;
  }

  function schedule(ctx, current, bytes, stats) {
    const count = bytes.length >> 1;
    const view = new DataView(bytes.buffer, bytes.byteOffset, count * 2);
    const buffer = ctx.createBuffer(1, count, SPEECH_RATE);
    const samples = buffer.getChannelData(0);
    for (let i = 0; i < count; i++) samples[i] = view.getInt16(i * 2, true) / 32768;
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    const at = Math.max(ctx.currentTime, current.next);
    source.start(at);
    current.next = at + buffer.duration;
    current.sources.add(source);
    source.onended = () => current.sources.delete(source);
    stats.chunks += 1;
    stats.scheduledSeconds += count / SPEECH_RATE;
  }

  async function httpErrorMessage(response) {
    let message = "";
    let code = "";
    try {
      const body = await response.json();
      if (body && body.error) {
        message = typeof body.error === "string" ? body.error : body.error.message || "";
        code = body.error.code || "";
      }
    } catch {
      // not JSON
    }
    if (!message) message = `The server answered ${response.status} ${response.statusText}`.trim();
    return { message, code };
  }

  async function speak() {
    const text = el.speakText.value.trim();
    if (!text) {
      showError("Type something to speak first.");
      return;
    }
    showError("");
    const ctx = playbackContext(); // inside the click, so that it may play
    stopSpeaking();
    const current = { abort: new AbortController(), sources: new Set(), next: 0 };
    player.current = current;
    const stats = { bytes: 0, chunks: 0, scheduledSeconds: 0, done: false, error: null };
    window.speechStats = stats;
    const fail = (message) => {
      stats.error = sentence(message);
      if (player.current === current) showError(message);
    };
    try {
      const response = await fetch(pageUrl("v1/audio/speech"), {
        method: "POST",
        headers: { "Content-Type": "application/json", ...authHeaders() },
        body: JSON.stringify({ input: text, voice: el.voice.value, response_format: "pcm" }),
        signal: current.abort.signal,
      });
      if (!response.ok) {
        const { message, code } = await httpErrorMessage(response);
        if (response.status === 401 || code === "unauthorized") askForToken(message);
        fail(message);
        return;
      }
      const reader = response.body.getReader();
      let carry = null; // an odd trailing byte, for the next chunk
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (!value || value.length === 0) continue;
        stats.bytes += value.length;
        let bytes = value;
        if (carry !== null) {
          bytes = new Uint8Array(value.length + 1);
          bytes[0] = carry;
          bytes.set(value, 1);
          carry = null;
        }
        if (bytes.length % 2) {
          carry = bytes[bytes.length - 1];
          bytes = bytes.subarray(0, bytes.length - 1);
        }
        if (bytes.length) schedule(ctx, current, bytes, stats);
      }
    } catch (err) {
      if (err && err.name === "AbortError") return; // replaced by a newer Speak
      fail(stats.bytes ? "The speech broke off: the connection to the server was lost." :
        "Cannot reach the server to speak.");
    } finally {
      stats.done = true;
    }
  }

  // ------------------------------------------------------------------ wiring

  el.listen.addEventListener("click", () => {
    if (live) stopListening(live);
    else startListening();
  });

  el.language.addEventListener("change", () => {
    storageSet("localStorage", LANGUAGE_KEY, el.language.value);
  });

  el.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = el.token.value.trim();
    if (!token) return;
    setToken(token);
    el.token.value = "";
    el.tokenForm.hidden = true;
    showError("");
    updateButtons();
  });

  el.speak.addEventListener("click", () => speak());

  el.speakText.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !el.speak.disabled) {
      event.preventDefault();
      speak();
    }
  });

  window.addEventListener("pagehide", () => {
    if (live) teardown(live);
    stopSpeaking();
  });

  fillLanguages([]);
  loadHealth();
})();
