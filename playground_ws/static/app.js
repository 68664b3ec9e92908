// The playground page: one WebSocket to the gateway, raw 20 ms Opus frames in,
// WebCodecs AudioDecoder -> AudioWorklet ring buffer on one AudioContext out.
// The server holds all state; the page renders what it is told and reconnects
// by itself. Of a user's tabs, the server sends audio to one (the one the person
// used last: a tab says so with a "focus" message); the others show the same
// state and controls and say where the sound is. window.playground exposes
// counters for tests and the curious.

const $ = (id) => document.getElementById(id);
const RATE = 48000;
const DECODER_CONFIG = { codec: "opus", sampleRate: RATE, numberOfChannels: 2 };
const SEEK_STEP = 5;          // seconds: arrows
const SEEK_JUMP = 15;         // seconds: J and L
const SEEK_PAGE = 30;         // seconds: Page Up / Page Down on the slider
const SEEK_SETTLE_MS = 350;   // a run of key presses becomes one seek

const counters = {
  framesReceived: 0, framesDecoded: 0, framesDropped: 0, decodeErrors: 0,
  bufferedMs: 0, targetMs: 60, underruns: 0, playedMs: 0, overflows: 0, skippedMs: 0,
};
const view = {
  connected: false, everConnected: false, engineConnected: true, userId: "", state: null,
  position: 0, duration: null, status: "idle", lastError: "", messages: [],
  audioHere: true, tabs: 1, seekPreview: null, volumeBeforeMute: 1, lastStateError: "",
  failures: 0,
};
// Dragging a track works with a mouse (HTML drag and drop), not with a finger.
const finePointer = window.matchMedia("(pointer: fine)");
const secure = window.isSecureContext;

// -- audio -----------------------------------------------------------------------

let audio = null;        // {context, node, analyser, decoder}
let audioStarting = null;
let timestamp = 0;

async function startAudio() {
  if (audio) return audio;
  if (audioStarting) return audioStarting;
  audioStarting = (async () => {
    if (!secure) throw new Error("insecure");
    if (!("AudioDecoder" in window)) {
      throw new Error("this browser cannot play the stream: use a recent Chrome, Edge or Safari");
    }
    const support = await AudioDecoder.isConfigSupported(DECODER_CONFIG);
    if (!support.supported) {
      throw new Error("this browser cannot play the stream: use a recent Chrome, Edge or Safari");
    }
    const context = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
    await context.audioWorklet.addModule("/static/worklet.js");
    const node = new AudioWorkletNode(context, "ring-player", { outputChannelCount: [2] });
    const analyser = context.createAnalyser();
    analyser.fftSize = 8192;
    analyser.smoothingTimeConstant = 0;
    node.connect(analyser);
    analyser.connect(context.destination);
    node.port.onmessage = (event) => Object.assign(counters, event.data);
    const decoder = new AudioDecoder({
      output: (data) => {
        const frames = data.numberOfFrames;
        const left = new Float32Array(frames);
        const right = new Float32Array(frames);
        data.copyTo(left, { planeIndex: 0, format: "f32-planar" });
        data.copyTo(right, { planeIndex: data.numberOfChannels > 1 ? 1 : 0, format: "f32-planar" });
        data.close();
        node.port.postMessage({ l: left, r: right }, [left.buffer, right.buffer]);
        counters.framesDecoded++;
      },
      error: () => {
        counters.decodeErrors++;
        showError("url", "the sound could not be decoded; reload the page to try again");
      },
    });
    decoder.configure(DECODER_CONFIG);
    audio = { context, node, analyser, decoder };
    return audio;
  })();
  try {
    return await audioStarting;
  } catch (error) {
    audioStarting = null;
    if (error.message !== "insecure") showError("url", String(error.message || error));
    throw error;
  }
}

function onFrame(buffer) {
  counters.framesReceived++;
  if (!audio || audio.decoder.state !== "configured") {
    counters.framesDropped++;
    return;
  }
  if (audio.decoder.decodeQueueSize > 25) {       // the decoder is 500 ms behind
    counters.framesDropped++;
    return;
  }
  audio.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp, data: buffer }));
  timestamp += 20000;
}

// Silence at once (the buffered audio is dropped) when the sound moves to another tab.
function flushAudio() {
  if (!audio) return;
  audio.node.port.postMessage({ reset: true });
  if (audio.decoder.state === "configured") {
    audio.decoder.reset();
    audio.decoder.configure(DECODER_CONFIG);
  }
}

function dominantFrequency() {
  if (!audio) return 0;
  const bins = new Float32Array(audio.analyser.frequencyBinCount);
  audio.analyser.getFloatFrequencyData(bins);
  let best = 1;
  for (let i = 2; i < bins.length - 1; i++) if (bins[i] > bins[best]) best = i;
  if (!isFinite(bins[best]) || bins[best] < -100) return 0;
  // Parabolic interpolation between neighbouring bins.
  const a = bins[best - 1], b = bins[best], c = bins[best + 1];
  const shift = (a - c) / (2 * (a - 2 * b + c)) || 0;
  return (best + shift) * audio.context.sampleRate / audio.analyser.fftSize;
}

// A click or key press anywhere: the browser now lets the page start sound.
function onGesture() {
  if (!secure) return;
  startAudio().then((a) => a.context.resume()).catch(() => {});
}
document.addEventListener("pointerdown", onGesture);
document.addEventListener("keydown", onGesture);

// -- which tab plays -------------------------------------------------------------
// The tab the person switched to last plays: a tab that gets the focus (switching
// tabs, clicking into its window) or is opened in front claims the sound. A click
// inside a tab that has the focus already changes nothing, so the controls of a
// tab in a window beside the one that plays work without moving the sound.

function claimOutput() {
  if (!view.audioHere && view.connected) send({ type: "focus" }, { quiet: true });
}
window.addEventListener("focus", claimOutput);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && document.hasFocus()) claimOutput();
});

function setOutput(here, tabs) {
  const was = view.audioHere;
  view.audioHere = here;
  view.tabs = tabs;
  $("output").hidden = here;
  if (!here) {
    $("output-text").textContent = tabs > 2
      ? `The sound plays in another of your ${tabs} open tabs.`
      : "The sound plays in another tab of this page.";
    if (was) flushAudio();
  }
}

// -- the socket ------------------------------------------------------------------

let socket = null;
let retryDelay = 250;

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    retryDelay = 250;
    view.everConnected = true;
    setConnected(true);
    // A tab opened (or reconnected) in front of the person takes the sound.
    if (document.visibilityState === "visible" && document.hasFocus()) {
      view.audioHere = false;
      claimOutput();
    }
  };
  socket.onmessage = (event) => {
    if (typeof event.data !== "string") { onFrame(event.data); return; }
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    view.messages.push(message);
    if (view.messages.length > 200) view.messages.shift();
    onMessage(message);
  };
  socket.onclose = (event) => {
    setConnected(false);
    if (event.code === 4401) {
      showError("url", "this browser's playground identity is not valid any more: reload the page");
      return;                                     // reconnecting would not help
    }
    if (event.code === 4403 || event.code === 4429) {
      if (event.reason) showError("url", event.reason);
      return;
    }
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(5000, retryDelay * 2);
  };
}

function send(message, { quiet = false } = {}) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(message));
    return true;
  }
  if (!quiet) showError("url", "not connected to the server; trying again…");
  return false;
}

// Which field a reply's error belongs next to: the one used last.
let errorField = "url";
function command(message, field = "url") {
  errorField = field;
  return send(message);
}

function onMessage(message) {
  switch (message.type) {
    case "hello":
      view.engineConnected = message.engine_connected !== false;
      renderPill();
      renderNotice();
      // falls through
    case "state":
      view.userId = message.user_id || view.userId;
      renderState(message.state);
      break;
    case "output":
      setOutput(Boolean(message.here), message.tabs || 1);
      break;
    case "progress":
      view.position = message.position;
      view.duration = message.duration;
      view.status = message.status;
      renderProgress();
      break;
    case "event":
      // A failed track is told by the state that follows (its error, in the one
      // wording every failure gets): the event's own words are not shown twice.
      break;
    case "error":
      showError(errorField, message.message);
      break;
    case "queued":
      showInfo(message.position === 0 ? `playing ${message.title}`
        : `added ${message.title} at position ${message.position}`);
      break;
    case "search_results":
      renderResults(message.results);
      if (!message.results.length) showInfo("the search found nothing");
      break;
    case "ping":
      send({ type: "pong" }, { quiet: true });
      break;
    case "engine":
      view.engineConnected = message.connected;
      renderPill();
      renderNotice();
      if (message.connected) showInfo("the audio engine is back");
      break;
    case "stream":
      break;
  }
}

// -- rendering -------------------------------------------------------------------

function clock(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–:––";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}:${String(m).padStart(2, "0")}:${String(r).padStart(2, "0")}`
           : `${m}:${String(r).padStart(2, "0")}`;
}

function spoken(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const m = Math.floor(s / 60), r = s % 60;
  const parts = [];
  if (m) parts.push(`${m} minute${m === 1 ? "" : "s"}`);
  if (r || !m) parts.push(`${r} second${r === 1 ? "" : "s"}`);
  return parts.join(" ");
}

function setConnected(connected) {
  view.connected = connected;
  renderPill();
}

// The pill says what the person can expect: "connected" only while this page is
// connected and the server has the audio engine.
function renderPill() {
  const pill = $("connection");
  let text = "connected", online = true;
  if (!view.connected) {
    text = view.everConnected ? "reconnecting…" : "connecting…";
    online = false;
  } else if (!view.engineConnected) {
    text = "audio engine unavailable";
    online = false;
  }
  pill.textContent = text;
  pill.className = `pill ${online ? "online" : "offline"}`;
}

function label(track) {
  return track.title || track.url;
}

// Only web images: a thumbnail is a link from the catalogue, shown as it is.
function thumbnail(track, className) {
  const url = track.thumbnail || "";
  if (/^https?:\/\//i.test(url)) {
    const img = document.createElement("img");
    img.className = className;
    img.src = url;
    img.alt = "";
    img.loading = "lazy";
    img.referrerPolicy = "no-referrer";
    return img;
  }
  const span = document.createElement("span");
  span.className = `${className} placeholder`;
  span.setAttribute("aria-hidden", "true");
  span.textContent = "♪";
  return span;
}

function button(text, name, onClick, data = {}) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", name);
  b.title = name;
  b.onclick = onClick;
  Object.assign(b.dataset, data);
  return b;
}

function trackItem(track, buttons) {
  const li = document.createElement("li");
  li.dataset.id = track.id || "";
  li.append(thumbnail(track, "thumb"));
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = label(track);
  if (track.duration) {
    const small = document.createElement("small");
    small.textContent = clock(track.duration);
    name.append(small);
  }
  const actions = document.createElement("span");
  actions.className = "actions";
  actions.append(...buttons);
  li.append(name, actions);
  return li;
}

function emptyItem(text) {
  const li = document.createElement("li");
  li.className = "empty";
  li.textContent = text;
  return li;
}

// After a re-render, keyboard focus goes back to the same button of the same track.
let refocus = null;

function renderState(state) {
  view.state = state;
  window.dispatchEvent(new CustomEvent("playground:state", { detail: state }));
  view.status = state.status;
  view.position = state.position;
  view.duration = state.duration;
  const current = state.current;
  $("title").textContent = current ? label(current) : "nothing playing";
  $("title").title = current ? label(current) : "";
  const cover = current ? thumbnail(current, "cover") : thumbnail({}, "cover");
  cover.id = "cover";
  if (cover.tagName === "SPAN") cover.textContent = "";
  $("cover").replaceWith(cover);
  renderVolume(state.volume);
  renderQueue(state.queue);
  renderQueueControls(state);
  renderHistory(state.history || []);
  // A state repeats the latest failure until the next one: show each failure once,
  // and a new one even when its words are the same.
  const failures = state.failures || 0;
  if (state.error && (state.error !== view.lastStateError || failures !== view.failures)) {
    showError("url", state.error);
  }
  view.lastStateError = state.error || "";
  view.failures = failures;
  renderNotice(state.notice || "");
  renderProgress();
}

function renderVolume(volume) {
  const percent = Math.round(volume * 100);
  $("volume").value = percent;
  $("volume").setAttribute("aria-valuetext", `${percent} %`);
  $("volume-value").textContent = `${percent} %`;
  if (volume > 0) view.volumeBeforeMute = volume;
  $("mute").setAttribute("aria-label", volume > 0 ? "mute" : "unmute");
  $("mute-icon").innerHTML = volume > 0
    ? '<path d="M4 9h4l5-4v14l-5-4H4zm12.5 3a4.5 4.5 0 0 0-2.5-4v8a4.5 4.5 0 0 0 2.5-4z"/>'
    : '<path d="M4 9h4l5-4v14l-5-4H4zm12.4-1.4L18 9.2l1.6-1.6 1.4 1.4-1.6 1.6 1.6 1.6-1.4 1.4'
      + '-1.6-1.6-1.6 1.6-1.4-1.4 1.6-1.6-1.6-1.6z"/>';
}

const LOOP_NEXT = { off: "queue", queue: "track", track: "off" };
const LOOP_WORDS = { off: "loop: off", queue: "loop: queue", track: "loop: track" };
const LOOP_HINTS = {
  off: "click to loop the queue", queue: "click to loop this track",
  track: "click to stop looping",
};

// Shuffle, loop, clear and its undo: what the queue card offers besides the tracks.
function renderQueueControls(state) {
  const upcoming = state.queue.length;
  $("clear").hidden = upcoming === 0;
  $("shuffle").disabled = upcoming < 2;
  const loop = state.loop || "off";
  $("loop-text").textContent = LOOP_WORDS[loop] || loop;
  $("loop").setAttribute("aria-pressed", String(loop !== "off"));
  $("loop").title = LOOP_HINTS[loop] || "";
  renderUndo(state.undo_clear || 0, state.undo_seconds || 0);
}

let undoTimer = null;
function renderUndo(count, seconds) {
  clearTimeout(undoTimer);
  const box = $("undo");
  if (!count || seconds <= 0) {
    box.hidden = true;
    return;
  }
  $("undo-text").textContent = `${count} track${count === 1 ? "" : "s"} cleared from the queue.`;
  $("undo-clear").setAttribute("aria-label", `undo: bring back the ${count} cleared track${
    count === 1 ? "" : "s"}`);
  box.hidden = false;
  // The server keeps the undo for that long; past it, the offer goes.
  undoTimer = setTimeout(() => { box.hidden = true; }, seconds * 1000);
}

function renderQueue(queue) {
  const list = $("queue");
  list.replaceChildren();
  if (!queue.length) list.append(emptyItem("the queue is empty"));
  queue.forEach((track, index) => {
    const position = index + 1;
    const name = label(track);
    const item = trackItem(track, [
      button("↑", `move ${name} up`, () => move(position, position - 1, track.id, "up"),
             { action: "up" }),
      button("↓", `move ${name} down`, () => move(position, position + 1, track.id, "down"),
             { action: "down" }),
      button("play", `play ${name}`, () => command({ type: "jump", position })),
      button("remove", `remove ${name}`, () => command({ type: "remove", position })),
    ]);
    item.querySelector("[data-action=up]").disabled = position === 1;
    item.querySelector("[data-action=down]").disabled = position === queue.length;
    item.draggable = finePointer.matches;
    item.dataset.position = String(position);
    list.append(item);
  });
  if (refocus) {
    const target = list.querySelector(
      `li[data-id="${CSS.escape(refocus.id)}"] [data-action="${refocus.action}"]`);
    if (target && !target.disabled) target.focus();
    else if (target) target.parentElement.querySelector("button:not([disabled])")?.focus();
    refocus = null;
  }
}

function move(position, to, id, action) {
  const length = view.state ? view.state.queue.length : 0;
  if (to < 1 || to > length || to === position) return;
  refocus = { id, action };
  command({ type: "move", position, to });
}

function renderHistory(history) {
  const list = $("history");
  list.replaceChildren();
  const recent = history.slice(-10).reverse();   // most recent first
  if (!recent.length) list.append(emptyItem("nothing played yet"));
  for (const track of recent) {
    const name = label(track);
    list.append(trackItem(track, [
      button("play again", `play ${name} again`, () => command({ type: "play", url: track.url })),
    ]));
  }
}

function renderResults(results) {
  const list = $("results");
  list.replaceChildren();
  for (const result of results) {
    const name = result.title || result.url;
    list.append(trackItem(result, [
      button("play", `play ${name}`, () => command({ type: "play", url: result.url })),
      button("add", `add ${name} to the queue`, () => command({ type: "add", url: result.url })),
    ]));
  }
}

const PLAY_ICON = '<path d="M7 5v14l12-7z"/>';
const PAUSE_ICON = '<path d="M7 5h4v14H7zM13 5h4v14h-4z"/>';

function renderProgress() {
  const state = view.state;
  const idle = view.status === "idle";
  const waiting = idle && state ? state.queue.length : 0;   // a stopped queue
  const words = { loading: "loading…", playing: "playing", paused: "paused" };
  $("status").textContent = idle
    ? (waiting ? `stopped · ${waiting} track${waiting === 1 ? "" : "s"} waiting` : "idle")
    : words[view.status] || view.status;
  $("player").classList.toggle("idle", idle);
  const paused = view.status === "paused";
  // Play (idle: the waiting queue, if any), pause, or resume.
  const pause = $("pause");
  $("pause-icon").innerHTML = idle || paused ? PLAY_ICON : PAUSE_ICON;
  pause.setAttribute("aria-label", idle ? "play" : paused ? "resume" : "pause");
  pause.disabled = idle && !waiting;
  $("previous").disabled = !(state && state.history && state.history.length);
  $("skip").disabled = idle;
  $("stop").disabled = idle;
  const position = idle ? 0 : view.seekPreview ?? view.position;
  const duration = view.duration || 0;
  $("position").textContent = clock(position);
  // A track whose length nobody knows (a live stream, a server without byte ranges)
  // says so: never a made-up number.
  const length = idle ? clock(null) : duration ? clock(duration) : "unknown";
  $("duration").textContent = length;
  // Narrow windows show the times beside the status, the position slider alone.
  $("status-time").textContent = idle ? "" : ` · ${clock(position)} / ${length}`;
  const fraction = duration ? Math.min(1, Math.max(0, position / duration)) : 0;
  $("bar").style.width = `${(fraction * 100).toFixed(2)}%`;
  $("knob").style.left = `${(fraction * 100).toFixed(2)}%`;
  const slider = $("seek");
  const seekable = Boolean(duration) && view.status !== "idle";
  slider.setAttribute("aria-disabled", String(!seekable));
  slider.setAttribute("aria-valuemax", String(Math.round(duration)));
  slider.setAttribute("aria-valuenow", String(Math.round(Math.min(position, duration))));
  slider.setAttribute("aria-valuetext", seekable
    ? `${spoken(position)} of ${spoken(duration)}`
    : idle ? "nothing is playing" : `${spoken(position)}, length unknown`);
}

// -- messages next to their field --------------------------------------------------

function showError(field, text) {
  view.lastError = text;
  const box = $(`${field}-error`);
  box.querySelector(".error-text").textContent = text;
  box.hidden = false;
}

for (const field of ["url", "search"]) {
  const box = $(`${field}-error`);
  box.querySelector(".dismiss").onclick = () => {
    box.hidden = true;
    $(field === "url" ? "url" : "query").focus();
  };
}

// Standing conditions (the engine is away, the secure-context check) are banners,
// not errors: they go away by themselves.
function renderNotice(text = "") {
  const words = text || (view.engineConnected ? ""
    : "the audio engine is unreachable; playback continues when it is back");
  $("notice").textContent = words;
  $("notice").hidden = !words;
}

let infoTimer = null;
function showInfo(text) {
  $("info").textContent = text;
  clearTimeout(infoTimer);
  infoTimer = setTimeout(() => { $("info").textContent = ""; }, 6000);
}

setInterval(() => {
  $("buffered").textContent = Math.round(counters.bufferedMs);
  $("target").textContent = Math.round(counters.targetMs);
  $("frames").textContent = counters.framesDecoded;
  $("underruns").textContent = counters.underruns;
  const hz = dominantFrequency();
  $("tone").textContent = hz ? hz.toFixed(0) : "–";
  if (view.status === "playing") {     // smooth the position between updates
    view.position += 0.25;
    if (view.duration) view.position = Math.min(view.duration, view.position);
    renderProgress();
  }
}, 250);

// -- seeking ---------------------------------------------------------------------

let seekTimer = null;

function seekable() {
  return Boolean(view.duration) && view.status !== "idle";
}

function previewSeek(seconds) {
  const max = Math.max(0, (view.duration || 0) - 1);
  view.seekPreview = Math.min(max, Math.max(0, seconds));
  renderProgress();
}

function commitSeek() {
  clearTimeout(seekTimer);
  seekTimer = null;
  if (view.seekPreview == null) return;
  const seconds = Math.round(view.seekPreview * 10) / 10;
  view.seekPreview = null;
  view.position = seconds;
  command({ type: "seek", seconds });
  renderProgress();
}

// A run of key presses moves the preview; the seek goes out once they stop.
function seekBy(delta) {
  if (!seekable()) return;
  previewSeek((view.seekPreview ?? view.position) + delta);
  clearTimeout(seekTimer);
  seekTimer = setTimeout(commitSeek, SEEK_SETTLE_MS);
}

function seekTo(seconds) {
  if (!seekable()) return;
  previewSeek(seconds);
  clearTimeout(seekTimer);
  seekTimer = setTimeout(commitSeek, SEEK_SETTLE_MS);
}

const slider = $("seek");
slider.addEventListener("keydown", (event) => {
  const steps = { ArrowRight: SEEK_STEP, ArrowUp: SEEK_STEP, ArrowLeft: -SEEK_STEP,
                  ArrowDown: -SEEK_STEP, PageUp: SEEK_PAGE, PageDown: -SEEK_PAGE };
  if (event.key in steps) seekBy(steps[event.key]);
  else if (event.key === "Home") seekTo(0);
  else if (event.key === "End") seekTo(view.duration || 0);
  else return;
  event.preventDefault();
  event.stopPropagation();
});

function sliderSeconds(event) {
  const box = slider.getBoundingClientRect();
  return Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)) * (view.duration || 0);
}
slider.addEventListener("pointerdown", (event) => {
  if (!seekable()) return;
  slider.setPointerCapture(event.pointerId);
  slider.focus();
  previewSeek(sliderSeconds(event));
});
slider.addEventListener("pointermove", (event) => {
  if (slider.hasPointerCapture(event.pointerId)) previewSeek(sliderSeconds(event));
});
slider.addEventListener("pointerup", (event) => {
  if (!slider.hasPointerCapture(event.pointerId)) return;
  slider.releasePointerCapture(event.pointerId);
  commitSeek();
});

// -- shortcuts -------------------------------------------------------------------

function typing(target) {
  if (!(target instanceof Element)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

function togglePause() {
  if (view.status === "idle") {
    // A stopped queue plays on from its first track; an empty one has nothing.
    if (view.state && view.state.queue.length) command({ type: "resume" });
    return;
  }
  command({ type: view.status === "paused" ? "resume" : "pause" });
}

function toggleMute() {
  const volume = view.state ? view.state.volume : 1;
  command({ type: "volume", volume: volume > 0 ? 0 : (view.volumeBeforeMute || 1) });
}

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  if (typing(event.target)) return;
  const onControl = event.target instanceof Element
    && event.target.closest("button, summary, a, [role=slider]");
  switch (event.key) {
    case " ":
      if (onControl && !event.target.closest("[role=slider]")) return;  // the control's own
      // falls through
    case "k": case "K":
      togglePause();
      break;
    case "ArrowLeft": seekBy(-SEEK_STEP); break;
    case "ArrowRight": seekBy(SEEK_STEP); break;
    case "j": case "J": seekBy(-SEEK_JUMP); break;
    case "l": case "L": seekBy(SEEK_JUMP); break;
    case "n": case "N": command({ type: "skip" }); break;
    case "p": case "P": command({ type: "previous" }); break;
    case "m": case "M": toggleMute(); break;
    case "/": $("url").focus(); break;
    default: return;
  }
  event.preventDefault();
});

// -- controls --------------------------------------------------------------------

$("play-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const url = $("url").value.trim();
  if (!url) { showError("url", "enter a link or a file name first"); return; }
  onGesture();
  command({ type: "play", url });
});
$("add").onclick = () => {
  const url = $("url").value.trim();
  if (!url) { showError("url", "enter a link or a file name first"); return; }
  command({ type: "add", url });
};
// The bundled demo track, as a link of this server (never a path on it).
const demoUrl = document.body.dataset.demoPath
  ? new URL(document.body.dataset.demoPath, location.origin).href : "";
$("demo").hidden = !demoUrl;
$("demo").onclick = () => { $("url").value = demoUrl; };
$("previous").onclick = () => command({ type: "previous" });
$("skip").onclick = () => command({ type: "skip" });
$("stop").onclick = () => command({ type: "stop" });
$("clear").onclick = () => command({ type: "clear" });
$("undo-clear").onclick = () => command({ type: "undo_clear" });
$("shuffle").onclick = () => command({ type: "shuffle" });
$("loop").onclick = () => {
  const loop = (view.state && view.state.loop) || "off";
  command({ type: "loop", mode: LOOP_NEXT[loop] || "off" });
};
$("mute").onclick = () => toggleMute();
$("pause").onclick = () => togglePause();
$("play-here").onclick = () => claimOutput();
$("volume").addEventListener("input", (event) => {
  $("volume-value").textContent = `${event.target.value} %`;
  event.target.setAttribute("aria-valuetext", `${event.target.value} %`);
});
$("volume").addEventListener("change", (event) => {
  command({ type: "volume", volume: Number(event.target.value) / 100 });
});
$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = $("query").value.trim();
  if (!query) { showError("search", "enter something to search for"); return; }
  command({ type: "search", query }, "search");
});

// Drag and drop reordering: a track dropped on another takes its place.
const queueList = $("queue");
let dragFrom = null;
queueList.addEventListener("dragstart", (event) => {
  const li = event.target.closest("li[data-position]");
  if (!li) return;
  dragFrom = Number(li.dataset.position);
  li.classList.add("dragging");
  event.dataTransfer.effectAllowed = "move";
  event.dataTransfer.setData("text/plain", li.dataset.position);
});
queueList.addEventListener("dragover", (event) => {
  const li = event.target.closest("li[data-position]");
  if (!li || dragFrom == null) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "move";
  for (const other of queueList.querySelectorAll(".drop-target")) {
    if (other !== li) other.classList.remove("drop-target");
  }
  li.classList.add("drop-target");
});
queueList.addEventListener("drop", (event) => {
  const li = event.target.closest("li[data-position]");
  if (!li || dragFrom == null) return;
  event.preventDefault();
  const to = Number(li.dataset.position);
  if (to !== dragFrom) command({ type: "move", position: dragFrom, to });
  dragFrom = null;
});
queueList.addEventListener("dragend", () => {
  dragFrom = null;
  for (const li of queueList.querySelectorAll(".dragging, .drop-target")) {
    li.classList.remove("dragging", "drop-target");
  }
});

if (!secure) {
  $("insecure").hidden = false;
  $("gesture-hint").hidden = true;
}
if (demoUrl) $("url").value = demoUrl;

// The page keeps the room the player bar takes at its bottom, whatever wraps in it.
new ResizeObserver(() => {
  document.documentElement.style.setProperty(
    "--player-height", `${Math.ceil($("player").getBoundingClientRect().height)}px`);
}).observe($("player"));

// Tracks can be dragged only where a mouse can drag them.
finePointer.addEventListener("change", () => {
  for (const li of $("queue").querySelectorAll("li[data-position]")) {
    li.draggable = finePointer.matches;
  }
});

window.playground = {
  stats: () => ({
    ...counters,
    dominantHz: dominantFrequency(),
    connected: view.connected,
    engineConnected: view.engineConnected,
    userId: view.userId,
    status: view.status,
    position: view.position,
    duration: view.duration,
    volume: view.state ? view.state.volume : 1,
    title: view.state && view.state.current ? view.state.current.title : "",
    thumbnail: view.state && view.state.current ? view.state.current.thumbnail || "" : "",
    queue: view.state ? view.state.queue.map((t) => t.title || t.url) : [],
    history: view.state ? (view.state.history || []).map((t) => t.title || t.url) : [],
    loop: view.state ? view.state.loop : "off",
    undoClear: view.state ? view.state.undo_clear || 0 : 0,
    pill: $("connection").textContent,
    lastError: view.lastError,
    audioState: audio ? audio.context.state : "none",
    audioHere: view.audioHere,
    tabs: view.tabs,
    secure,
  }),
  messages: () => view.messages.slice(),
  send: (message) => send(message),
  sendRaw: (text) => socket.send(text),
  startAudio: () => startAudio().then((a) => a.context.resume()).then(() => audio.context.state),
};

connect();
