// The playground's player: a ring buffer of decoded stereo samples, read in real
// time by the AudioWorklet thread. Samples are appended in arrival order and read
// back to back, so playback is gapless by construction; a small adaptive jitter
// target (60-100 ms) decides when to start and how much to keep in hand.

const RATE = 48000;
const CAPACITY = RATE * 4;            // 4 s of stereo samples at most
const TARGET_MIN = RATE * 0.06;       // 60 ms
const TARGET_MAX = RATE * 0.10;       // 100 ms
const TARGET_STEP = RATE * 0.01;      // +10 ms after an underrun
const CALM_BLOCKS = Math.round(10 * RATE / 128);  // 10 s without underrun: -5 ms
const EXCESS = RATE * 0.25;           // more than target + 250 ms queued: catch up

class RingPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.left = new Float32Array(CAPACITY);
    this.right = new Float32Array(CAPACITY);
    this.readAt = 0;
    this.writeAt = 0;
    this.count = 0;
    this.target = TARGET_MIN;
    this.playing = false;
    this.underruns = 0;
    this.overflows = 0;
    this.skipped = 0;
    this.played = 0;
    this.calm = 0;
    this.blocks = 0;
    this.port.onmessage = (event) => {
      const data = event.data;
      if (data.reset) {
        this.readAt = this.writeAt = this.count = 0;
        this.playing = false;
        return;
      }
      this.push(data.l, data.r);
    };
  }

  push(left, right) {
    for (let i = 0; i < left.length; i++) {
      if (this.count >= CAPACITY) {        // full: drop the oldest sample
        this.readAt = (this.readAt + 1) % CAPACITY;
        this.count--;
        this.overflows++;
      }
      this.left[this.writeAt] = left[i];
      this.right[this.writeAt] = right[i];
      this.writeAt = (this.writeAt + 1) % CAPACITY;
      this.count++;
    }
  }

  process(inputs, outputs) {
    const out = outputs[0];
    const n = out[0].length;
    this.blocks++;
    if (!this.playing && this.count >= this.target) this.playing = true;
    if (this.playing && this.count < n) {
      // Underrun: play silence, wait for the buffer to refill past a larger target.
      this.playing = false;
      this.underruns++;
      this.calm = 0;
      this.target = Math.min(TARGET_MAX, this.target + TARGET_STEP);
    }
    if (!this.playing) {
      out[0].fill(0);
      if (out[1]) out[1].fill(0);
    } else {
      if (this.count > this.target + EXCESS) {
        // Far behind (a stall followed by a burst): drop audio to get back to
        // the target latency instead of playing late forever.
        const drop = this.count - this.target;
        this.readAt = (this.readAt + drop) % CAPACITY;
        this.count -= drop;
        this.skipped += drop;
      }
      for (let i = 0; i < n; i++) {
        out[0][i] = this.left[this.readAt];
        if (out[1]) out[1][i] = this.right[this.readAt];
        this.readAt = (this.readAt + 1) % CAPACITY;
      }
      this.count -= n;
      this.played += n;
      if (++this.calm > CALM_BLOCKS) {
        this.calm = 0;
        this.target = Math.max(TARGET_MIN, this.target - TARGET_STEP / 2);
      }
    }
    if (this.blocks % 25 === 0) {         // ~15 reports a second
      this.port.postMessage({
        bufferedMs: this.count / RATE * 1000,
        targetMs: this.target / RATE * 1000,
        underruns: this.underruns,
        overflows: this.overflows,
        skippedMs: this.skipped / RATE * 1000,
        playedMs: this.played / RATE * 1000,
        playing: this.playing,
      });
    }
    return true;
  }
}

registerProcessor("ring-player", RingPlayer);
