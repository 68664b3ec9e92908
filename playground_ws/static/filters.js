// The filters panel: presets, a 15-band equalizer (Lavalink's bands and gains), speed,
// pitch and the crossfade into the next track. It builds itself into
// <section id="filters-panel"> and talks through the page's socket
// (window.playground.send); the server's state (the "playground:state" event the page
// dispatches) says which filters are in effect, so every tab of a user shows the same.

// The presets (name, label, effect; "reset" last) and the equalizer's band centres
// come from the server, which writes them into the page from protocol/filter_presets.py.
const CATALOGUE = JSON.parse(document.getElementById("sound-catalogue")?.textContent || "{}");
const BANDS = CATALOGUE.bands || [];
const PRESETS = (CATALOGUE.presets || []).filter((preset) => preset.name !== "reset");
const RESET = (CATALOGUE.presets || []).find((preset) => preset.name === "reset");

const mount = document.getElementById("filters-panel");

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function hz(frequency) {
  return frequency >= 1000 ? `${frequency / 1000} kHz` : `${frequency} Hz`;
}

function signed(gain) {
  return `${gain > 0 ? "+" : ""}${gain.toFixed(2)}`;
}

function send(message) {
  if (window.playground) window.playground.send(message);
}

function slider(id, label, { min, max, step, value, describe }) {
  const wrap = element("div", { class: "fx-slider" });
  const name = element("label", { for: id }, label);
  const input = element("input", {
    id, type: "range", min: String(min), max: String(max), step: String(step),
    value: String(value),
  });
  const shown = element("output", { for: id, id: `${id}-value` }, describe(value));
  input.setAttribute("aria-valuetext", describe(value));
  input.addEventListener("input", () => {
    shown.textContent = describe(Number(input.value));
    input.setAttribute("aria-valuetext", describe(Number(input.value)));
  });
  wrap.append(name, input, shown);
  return { wrap, input, shown, set(next) {
    input.value = String(next);
    shown.textContent = describe(next);
    input.setAttribute("aria-valuetext", describe(next));
  } };
}

function build() {
  if (!mount) return null;
  const link = element("link", { rel: "stylesheet", href: "/static/filters.css" });
  document.head.append(link);
  mount.classList.add("card", "fx");
  mount.setAttribute("aria-labelledby", "fx-heading");
  mount.append(element("h2", { id: "fx-heading", class: "label" }, "sound"));

  const presets = element("div", { class: "fx-presets", role: "group",
                                   "aria-label": "filter presets" });
  const presetButtons = new Map();
  for (const { name, label, effect } of PRESETS) {
    const button = element("button", { type: "button", "data-preset": name, title: effect,
                                       "aria-pressed": "false" }, label);
    button.addEventListener("click", () => send({ type: "filters", preset: name }));
    presetButtons.set(name, button);
    presets.append(button);
  }
  const reset = element("button", { type: "button", id: "fx-reset",
                                    "aria-label": "reset: no filters",
                                    title: RESET ? RESET.effect : "" },
                        RESET ? RESET.label : "Reset");
  reset.addEventListener("click", () => send({ type: "filters", preset: "reset" }));
  presets.append(reset);
  const current = element("div", { id: "fx-current", class: "fx-current",
                                   "aria-live": "polite" }, "no filter");
  mount.append(presets, current);

  const eq = element("fieldset", { class: "fx-eq" });
  eq.append(element("legend", {}, "equalizer (gain per band, -0.25 to +1.00)"));
  const bands = BANDS.map((frequency, band) => {
    const control = slider(`fx-band-${band}`, hz(frequency), {
      min: -0.25, max: 1, step: 0.05, value: 0, describe: signed,
    });
    control.input.setAttribute("aria-label", `equalizer band ${hz(frequency)}`);
    control.input.classList.add("fx-band");
    control.input.addEventListener("change", sendCustom);
    eq.append(control.wrap);
    return control;
  });
  mount.append(eq);

  const times = element("div", { class: "fx-row" });
  const speed = slider("fx-speed", "speed", {
    min: 0.5, max: 2, step: 0.05, value: 1, describe: (v) => `${v.toFixed(2)}×`,
  });
  const pitch = slider("fx-pitch", "pitch", {
    min: 0.5, max: 2, step: 0.05, value: 1, describe: (v) => `${v.toFixed(2)}×`,
  });
  const crossfade = slider("fx-crossfade", "crossfade", {
    min: 0, max: 12, step: 1, value: 0, describe: (v) => (v ? `${v} s` : "off (gapless)"),
  });
  speed.input.addEventListener("change", sendCustom);
  pitch.input.addEventListener("change", sendCustom);
  let fading = null;
  crossfade.input.addEventListener("change", () => {
    clearTimeout(fading);
    fading = setTimeout(() => send({ type: "crossfade", seconds: Number(crossfade.input.value) }),
                        150);
  });
  times.append(speed.wrap, pitch.wrap, crossfade.wrap);
  mount.append(times);

  // A held arrow key changes a slider many times a second: send the settled value
  // (the server allows 10 messages a second).
  let pending = null;
  function sendCustom() {
    clearTimeout(pending);
    pending = setTimeout(sendNow, 150);
  }

  function sendNow() {
    pending = null;
    const filters = {};
    const equalizer = bands
      .map((control, band) => ({ band, gain: Number(control.input.value) }))
      .filter((entry) => entry.gain !== 0);
    if (equalizer.length) filters.equalizer = equalizer;
    const s = Number(speed.input.value), p = Number(pitch.input.value);
    if (s !== 1 || p !== 1) filters.timescale = { speed: s, pitch: p, rate: 1 };
    send({ type: "filters", filters });
  }

  function render(state) {
    if (pending !== null) return;  // the user's change is on its way
    const filters = state.filters || {};
    const name = state.filter || "";
    for (const [preset, button] of presetButtons) {
      button.setAttribute("aria-pressed", String(preset === name));
    }
    current.textContent = name ? `filter: ${name}` : "no filter";
    const gains = new Array(BANDS.length).fill(0);
    for (const entry of filters.equalizer || []) {
      if (entry.band >= 0 && entry.band < BANDS.length) gains[entry.band] = entry.gain;
    }
    bands.forEach((control, band) => control.set(gains[band]));
    const timescale = filters.timescale || {};
    speed.set(timescale.speed ?? 1);
    pitch.set(timescale.pitch ?? 1);
    crossfade.set(state.crossfade ?? 0);
  }

  return { render };
}

const panel = build();
window.addEventListener("playground:state", (event) => {
  if (panel && event.detail) panel.render(event.detail);
});
