// The playground page: one WebSocket to the gateway, raw 20 ms Opus frames in,
// WebCodecs AudioDecoder -> AudioWorklet ring buffer on one AudioContext out.
// The server holds all state; the page renders what it is told and reconnects
// by itself. window.playground exposes counters for tests and the curious.

const $ = (id) => document.getElementById(id);
const RATE = 48000;

const counters = {
  framesReceived: 0, framesDecoded: 0, framesDropped: 0, decodeErrors: 0,
  bufferedMs: 0, targetMs: 60, underruns: 0, playedMs: 0, overflows: 0, skippedMs: 0,
};
const view = { connected: false, engineConnected: true, userId: "", state: null, position: 0,
               duration: null, status: "idle", lastError: "", messages: [] };

// -- audio -----------------------------------------------------------------------

let audio = null;        // {context, node, analyser, decoder}
let audioStarting = null;
let timestamp = 0;

async function startAudio() {
  if (audio) return audio;
  if (audioStarting) return audioStarting;
  audioStarting = (async () => {
    if (!("AudioDecoder" in window)) throw new Error("this browser has no WebCodecs AudioDecoder");
    const support = await AudioDecoder.isConfigSupported(
      { codec: "opus", sampleRate: RATE, numberOfChannels: 2 });
    if (!support.supported) throw new Error("this browser cannot decode Opus with WebCodecs");
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
      error: (error) => { counters.decodeErrors++; showError(`audio decoder: ${error.message}`); },
    });
    decoder.configure({ codec: "opus", sampleRate: RATE, numberOfChannels: 2 });
    audio = { context, node, analyser, decoder };
    return audio;
  })();
  try {
    return await audioStarting;
  } catch (error) {
    showError(String(error.message || error));
    audioStarting = null;
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

function onGesture() {
  startAudio().then((a) => a.context.resume()).catch(() => {});
}
document.addEventListener("pointerdown", onGesture);
document.addEventListener("keydown", onGesture);

// -- the socket ------------------------------------------------------------------

let socket = null;
let retryDelay = 250;

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => { retryDelay = 250; setConnected(true); };
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
    if (event.code === 4401 || event.code === 4403) {
      showError(event.reason === "invalid identity"
        ? "your identity cookie is invalid: reload the page"
        : `the gateway refused this page (${event.reason || event.code})`);
      return;                                     // reconnecting would not help
    }
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(5000, retryDelay * 2);
  };
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(message));
    return true;
  }
  showError("not connected to the gateway; retrying…");
  return false;
}

function onMessage(message) {
  switch (message.type) {
    case "hello":
      view.engineConnected = message.engine_connected !== false;
      if (!view.engineConnected) showError("the audio engine is unreachable; reconnecting…");
      // falls through
    case "state":
      view.userId = message.user_id || view.userId;
      renderState(message.state);
      break;
    case "progress":
      view.position = message.position;
      view.duration = message.duration;
      view.status = message.status;
      renderProgress();
      break;
    case "event":
      if (message.event === "error") showError(message.message || "the track could not be played");
      break;
    case "error":
      showError(message.message);
      break;
    case "queued":
      showInfo(message.position === 0 ? `playing ${message.title}`
        : `added ${message.title} at position ${message.position}`);
      break;
    case "search_results":
      renderResults(message.results);
      break;
    case "ping":
      send({ type: "pong" });
      break;
    case "engine":
      view.engineConnected = message.connected;
      if (!message.connected) showError("the audio engine is unreachable; reconnecting…");
      else showInfo("the audio engine is back");
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

function setConnected(connected) {
  view.connected = connected;
  const pill = $("connection");
  pill.textContent = connected ? "connected" : "reconnecting…";
  pill.className = `pill ${connected ? "online" : "offline"}`;
}

function renderState(state) {
  view.state = state;
  view.status = state.status;
  view.position = state.position;
  view.duration = state.duration;
  const current = state.current;
  $("title").textContent = current ? (current.title || current.url) : "nothing yet";
  $("volume").value = Math.round(state.volume * 100);
  $("volume-value").textContent = `${Math.round(state.volume * 100)} %`;
  const queue = $("queue");
  queue.replaceChildren();
  if (!state.queue.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "the queue is empty";
    queue.append(li);
  }
  state.queue.forEach((track, index) => {
    const li = document.createElement("li");
    li.textContent = `${track.title || track.url} `;
    const actions = document.createElement("span");
    actions.className = "actions";
    const play = document.createElement("button");
    play.textContent = "play";
    play.onclick = () => send({ type: "jump", position: index + 1 });
    const remove = document.createElement("button");
    remove.textContent = "remove";
    remove.onclick = () => send({ type: "remove", position: index + 1 });
    actions.append(play, remove);
    li.append(actions);
    queue.append(li);
  });
  if (state.error) showError(state.error);
  if (state.notice) showError(state.notice);
  renderProgress();
}

function renderProgress() {
  const words = { idle: "idle", loading: "loading…", playing: "playing", paused: "paused" };
  $("status").textContent = words[view.status] || view.status;
  $("pause-icon").innerHTML = view.status === "paused"
    ? '<path d="M7 5v14l12-7z"/>' : '<path d="M7 5h4v14H7zM13 5h4v14h-4z"/>';
  $("position").textContent = clock(view.position);
  $("duration").textContent = clock(view.duration);
  const fraction = view.duration ? Math.min(1, view.position / view.duration) : 0;
  $("bar").style.width = `${(fraction * 100).toFixed(2)}%`;
}

function renderResults(results) {
  const list = $("results");
  list.replaceChildren();
  for (const result of results) {
    const li = document.createElement("li");
    li.textContent = `${result.title} (${clock(result.duration)}) `;
    const add = document.createElement("button");
    add.textContent = "add";
    add.onclick = () => send({ type: "add", url: result.url });
    li.append(add);
    list.append(li);
  }
}

let errorTimer = null;
function showError(text) {
  view.lastError = text;
  const box = $("error");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { box.hidden = true; }, 8000);
}

let infoTimer = null;
function showInfo(text) {
  $("info").textContent = text;
  clearTimeout(infoTimer);
  infoTimer = setTimeout(() => { $("info").textContent = ""; }, 5000);
}

setInterval(() => {
  $("buffered").textContent = Math.round(counters.bufferedMs);
  $("target").textContent = Math.round(counters.targetMs);
  $("frames").textContent = counters.framesDecoded;
  $("underruns").textContent = counters.underruns;
  const hz = dominantFrequency();
  $("tone").textContent = hz ? hz.toFixed(0) : "–";
  if (view.status === "playing" && view.duration) {     // smooth the bar between updates
    view.position = Math.min(view.duration, view.position + 0.25);
    renderProgress();
  }
}, 250);

// -- controls --------------------------------------------------------------------

$("play-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const url = $("url").value.trim();
  if (!url) { showError("enter a URL first"); return; }
  onGesture();
  send({ type: "play", url });
});
$("add").onclick = () => {
  const url = $("url").value.trim();
  if (!url) { showError("enter a URL first"); return; }
  send({ type: "add", url });
};
$("demo").onclick = () => { $("url").value = document.body.dataset.demoUrl || ""; };
$("previous").onclick = () => send({ type: "previous" });
$("skip").onclick = () => send({ type: "skip" });
$("stop").onclick = () => send({ type: "stop" });
$("clear").onclick = () => send({ type: "clear" });
$("pause").onclick = () => send({ type: view.status === "paused" ? "resume" : "pause" });
$("volume").addEventListener("change", (event) => {
  send({ type: "volume", volume: Number(event.target.value) / 100 });
});
$("progress").addEventListener("click", (event) => {
  if (!view.duration) return;
  const box = event.currentTarget.getBoundingClientRect();
  send({ type: "seek", seconds: ((event.clientX - box.left) / box.width) * view.duration });
});
$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = $("query").value.trim();
  if (query) send({ type: "search", query });
});

if (document.body.dataset.demoUrl) $("url").value = document.body.dataset.demoUrl;

window.playground = {
  stats: () => ({
    ...counters,
    dominantHz: dominantFrequency(),
    connected: view.connected,
    engineConnected: view.engineConnected,
    userId: view.userId,
    status: view.status,
    position: view.position,
    title: view.state && view.state.current ? view.state.current.title : "",
    queue: view.state ? view.state.queue.map((t) => t.title || t.url) : [],
    lastError: view.lastError,
    audioState: audio ? audio.context.state : "none",
  }),
  messages: () => view.messages.slice(),
  send: (message) => send(message),
  sendRaw: (text) => socket.send(text),
  startAudio: () => startAudio().then((a) => a.context.resume()).then(() => audio.context.state),
};

connect();
